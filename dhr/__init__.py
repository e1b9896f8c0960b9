"""DHR rebalancing core: pure, vectorised functions on tensors (CPU or GPU). Features in, masks out."""

from .crf import CRFConfig, dense_crf
from .labels import BACKGROUND, IGNORE_INDEX
from .metrics import confusion_matrix, minor_class_recall, segmentation_scores
from .normalise import minmax_maps, normalise_cams
from .ot import SOLVERS, OTSettings, SinkhornLog, ot_rebalance, plan_maps, transport_plan
from .prototypes import class_prototypes
from .rebalance import DHRConfig, DHRResult, rebalance

__all__ = [
    "BACKGROUND",
    "IGNORE_INDEX",
    "CRFConfig",
    "OTSettings",
    "SOLVERS",
    "SinkhornLog",
    "DHRConfig",
    "DHRResult",
    "class_prototypes",
    "confusion_matrix",
    "dense_crf",
    "minmax_maps",
    "minor_class_recall",
    "normalise_cams",
    "ot_rebalance",
    "plan_maps",
    "rebalance",
    "segmentation_scores",
    "transport_plan",
]
