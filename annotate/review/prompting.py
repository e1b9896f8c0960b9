"""Prompting the segmenter from the review session: points and boxes, each refined and saved at once.

A click adds a positive or negative point to the selected instance (or starts a new one) and a box starts a
new instance; either is refined through :func:`annotate.review.refine.refine_instance` with all the instance's
prompts, then saved.

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels; boxes XYXY pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from annotate.review.refine import EditableInstance, refine_instance
from annotate.review.saving import SavingSession


class PromptEdits(SavingSession):
    """Instances drawn with segmenter prompts: :meth:`add_point` and :meth:`add_box`."""

    def add_point(self, x: float, y: float, *, positive: bool = True, class_id: int | None = None) -> int:
        """Add a click to the selected instance and refine it at once; with no selection a positive click
        starts a new instance of ``class_id`` (default :attr:`new_class`). Returns the instance index."""
        image = self.require_image()
        if not (0 <= x < image.shape[1] and 0 <= y < image.shape[0]):
            raise ValueError(
                f"point ({x:.0f}, {y:.0f}) lies outside the {image.shape[1]}x{image.shape[0]} image"
            )
        if self.selected is None:
            if not positive:
                raise ValueError("a negative point needs a selected instance")
            cid = self._new_instance_class(class_id)
            inst = EditableInstance(class_id=cid, mask=np.zeros(image.shape[:2], bool), source="manual")
            self.instances.append(inst)
            index = len(self.instances) - 1
            created = True
        else:
            index, inst, created = self.selected, self.instances[self.selected], False
        previous = None if created else dataclasses.replace(inst)
        inst.points = np.concatenate([inst.points, np.array([[x, y]], np.float32)])
        inst.labels = np.concatenate([inst.labels, np.array([1 if positive else 0], np.int64)])

        def refine_and_save() -> None:
            refine_instance(self.segmenter, self.image_key, image, inst)
            self.selected = index
            self._save_labels()

        self._save_or_roll_back(refine_and_save, lambda: self._put_back(index, previous))
        return index

    def add_box(self, box: Sequence[float], class_id: int | None = None) -> int:
        """A new instance of ``class_id`` (default :attr:`new_class`) from an XYXY box; selected and saved."""
        image = self.require_image()
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = sorted((min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)))
        y0, y1 = sorted((min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError(
                f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) is too small: drag at least 2 px each way"
            )
        cid = self._new_instance_class(class_id)
        inst = EditableInstance(
            class_id=cid, mask=np.zeros((h, w), bool), source="manual", box=(x0, y0, x1, y1)
        )
        refine_instance(self.segmenter, self.image_key, image, inst)
        self.instances.append(inst)
        self.selected = len(self.instances) - 1
        self._save_or_roll_back(self._save_labels, lambda: self._put_back(len(self.instances) - 1, None))
        return self.selected
