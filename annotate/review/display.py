"""What the review session shows of the open image: the instance list, one instance's description, the overlay.

Conventions: images HWC uint8 RGB; masks (H, W) bool; areas in pixels; class id = index in ``store.classes``
+ 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from annotate.review.overlay import render_overlay
from annotate.review.state import SessionState


class SessionDisplay(SessionState):
    """:meth:`instance_rows`, :meth:`describe` and :meth:`render` of the open image."""

    def instance_rows(self) -> list[list[Any]]:
        """Rows of the instance list: [#, class, score, source, area px]; "▶" marks the selected instance and
        "⚑" one flagged for review (its reason: :meth:`describe`)."""
        rows = []
        for i, inst in enumerate(self.instances):
            number = ("▶ " if i == self.selected else "") + str(i + 1) + (" ⚑" if inst.needs_review else "")
            rows.append(
                [number, self.class_name(inst.class_id), round(float(inst.score), 2), inst.source, inst.area]
            )
        return rows

    def describe(self, index: int | None = None) -> str:
        """One line about the selected (or given) instance: class, size, source and any review note."""
        index = self._selected_or(index)
        inst = self.instances[index]
        name = self.class_name(inst.class_id)
        text = f"instance #{index + 1}: {name}, {inst.area} px, score {inst.score:.3f}, from {inst.source}"
        if inst.iscrowd:
            text += " · crowd region (ignored in semantic masks)"
        if inst.needs_review:
            text += " · ⚑ to check" + (f": {inst.reason}" if inst.reason else "")
        return text

    def render(
        self,
        *,
        opacity: float = 0.5,
        hidden_classes: Iterable[int] = (),
        show_points: bool = True,
        scale: float = 1.0,
    ) -> np.ndarray:
        """The open image with instance overlays (:func:`annotate.review.overlay.render_overlay`): HWC uint8 RGB.

        The selected instance is outlined in white with its clicks; a pending box corner is marked.
        """
        return render_overlay(
            self.require_image(),
            self.instances,
            selected=self.selected,
            pending_corner=self.pending_corner,
            opacity=opacity,
            hidden_classes=hidden_classes,
            show_points=show_points,
            scale=scale,
            cache=self._overlay_cache,
        )
