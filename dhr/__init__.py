"""DHR rebalancing core: pure, vectorised functions on tensors (CPU or GPU). Features in, masks out.

The names below are loaded on first use, so that ``dhr.labels`` (the reserved label values every layer shares)
can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "BACKGROUND": "labels",
    "IGNORE_INDEX": "labels",
    "CRFConfig": "crf",
    "dense_crf": "crf",
    "confusion_matrix": "metrics",
    "minor_class_recall": "metrics",
    "segmentation_scores": "metrics",
    "minmax_maps": "normalise",
    "normalise_cams": "normalise",
    "SOLVERS": "ot",
    "OTSettings": "ot",
    "SinkhornLog": "ot",
    "ot_rebalance": "ot",
    "plan_maps": "ot",
    "transport_plan": "ot",
    "class_prototypes": "prototypes",
    "DHRConfig": "pipeline",
    "DHRResult": "pipeline",
    "rebalance": "pipeline",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'dhr' has no attribute {name!r}")
    source = _SOURCES[name]
    module = importlib.import_module(f".{source}", __name__)
    # Bind every name of that module at once (a module's other names need not trigger a second lookup).
    globals().update({n: getattr(module, n) for n, s in _SOURCES.items() if s == source})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
