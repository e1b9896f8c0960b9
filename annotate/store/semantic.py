"""A project image's semantic mask: its instances painted into one class-id map.

The store answers ``semantic_mask(image_id)`` with this; export formats (COCO, PNG masks) read the same map, so
the rule lives here, below them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from annotate.rle import decode_rle
from dhr.labels import IGNORE_INDEX

if TYPE_CHECKING:
    from annotate.store.records import InstanceRecord

__all__ = ["IGNORE_INDEX", "paint_semantic"]


def paint_semantic(instances: Sequence[InstanceRecord], height: int, width: int) -> np.ndarray:
    """(H, W) uint8 class-id map (0 = background): instances painted in increasing score, so the most confident
    is on top. Crowd regions (``iscrowd``) are painted first, as ``IGNORE_INDEX`` (255): their pixels carry no
    label for training or scoring, except where an individual instance lies over them."""
    semantic = np.zeros((height, width), np.uint8)
    ordered = sorted(instances, key=lambda r: (not getattr(r, "iscrowd", False), r.score, r.id))
    for record in ordered:
        x, y, w, h = (int(round(v)) for v in record.bbox)
        window = (slice(y, y + h), slice(x, x + w))  # paint inside the box only: the rest of the mask is empty
        value = IGNORE_INDEX if getattr(record, "iscrowd", False) else record.class_id
        semantic[window][decode_rle(record.rle)[window]] = value
    return semantic
