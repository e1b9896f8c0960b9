"""Brush and eraser in the review session: strokes added to or erased from an instance's mask, saved at once.

A painted mask is the annotator's own ("manual", nothing left to check); strokes with no selected instance
start a new one. Stroke masks come from :func:`annotate.review.brush.stroke_mask`.

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from annotate.review.brush import stroke_mask
from annotate.review.refine import EditableInstance
from annotate.review.saving import SavingSession


class PaintEdits(SavingSession):
    """Masks painted by hand: :meth:`paint` with stroke masks, :meth:`brush` along a polyline."""

    def paint(
        self, add: np.ndarray | None = None, remove: np.ndarray | None = None, index: int | None = None
    ) -> int:
        """Brush (``add``) and eraser (``remove``) on the selected instance: (H, W) bool stroke masks.

        With no selection and a non-empty ``add``, the strokes become a new instance of :attr:`new_class`.
        Returns the signed change of the mask's pixel count.
        """
        image = self.require_image()
        shape = image.shape[:2]
        for name, stroke in (("brush", add), ("eraser", remove)):
            if stroke is not None and stroke.shape != shape:
                raise ValueError(f"{name} stroke has shape {stroke.shape}, the image is {shape}")
        add = np.zeros(shape, bool) if add is None else add.astype(bool)
        remove = np.zeros(shape, bool) if remove is None else remove.astype(bool)
        created = False  # a new instance started by the brush
        if index is None and self.selected is None:
            if not add.any():
                raise ValueError("select an instance first (or paint with the brush to start a new one)")
            self.instances.append(
                EditableInstance(class_id=self._new_instance_class(None), mask=np.zeros(shape, bool))
            )
            self.selected = len(self.instances) - 1
            created = True
        index = self._selected_or(index)
        inst = self.instances[index]
        previous = None if created else dataclasses.replace(inst)
        before = inst.area
        inst.reshape((inst.mask | add) & ~remove)  # painted: no segmenter predicted this mask
        inst.source = "manual"
        inst.needs_review = False
        self._save_or_roll_back(self._save_labels, lambda: self._put_back(index, previous))
        return inst.area - before

    def brush(self, points: Sequence[tuple[float, float]], radius: float, *, erase: bool = False) -> int:
        """Paint (or erase) a stroke of ``radius`` px along ``points`` (XY) on the selected instance."""
        image = self.require_image()
        stroke = stroke_mask(image.shape[:2], points, radius)
        return self.paint(remove=stroke) if erase else self.paint(add=stroke)
