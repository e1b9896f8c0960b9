"""GrabCut (OpenCV) stand-in for Segment Anything, taking the same prompts; used when no SAM checkpoint exists.

Prompts become GrabCut's trimap:

- a mask prompt (SAM low-res logits, mapped back to the image) marks probable foreground;
- a box: pixels farther than ``box_slack`` x the box size (at least ``min_slack`` pixels) outside it are sure
  background, the band just outside it probable background (prompt boxes from a seed mask may be a little
  tight); without a mask prompt the inside of the box is probable foreground;
- positive / negative points mark discs of sure foreground / background (radius ``point_radius``);
- points alone: probable foreground in a disc of ``click_radius`` x the image's long side around each
  positive point.

GrabCut runs on the prompt's region of interest only (faster on large images). Connected pieces of the
result that touch no positive point and no prior pixel are dropped. GrabCut has no quality head: the score is
the IoU of the result with its prior region (the mask prompt, else the box), so a result that strays far from
its prompt scores low. One mask is returned whatever ``multimask``.

GrabCut initialises its colour models with k-means, which draws from OpenCV's random number generator; the
generator of the calling thread is reset with ``cv2.setRNGSeed(seed)`` before every GrabCut call, so the same
image and prompts always give the same mask (other OpenCV random draws in that thread restart from the seed too).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from models.segmenters.base import Segmenter, SegmenterOutput, mask_iou

logger = logging.getLogger(__name__)


class GrabCutSegmenter(Segmenter):
    """OpenCV GrabCut behind the ``Segmenter`` interface (``is_fallback`` True; ``message`` says why it runs).

    ``seed`` is given to ``cv2.setRNGSeed`` before each GrabCut call, so results repeat (see the module notes).
    """

    source = "grabcut"
    model_id = "grabcut"
    is_fallback = True

    def __init__(
        self,
        iterations: int = 5,
        point_radius: int = 3,
        box_slack: float = 0.25,
        min_slack: int = 8,
        click_radius: float = 0.1,
        message: str = "",
        long_side: int = 1024,
        mask_input_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        self.point_radius = point_radius
        self.box_slack = box_slack
        self.min_slack = min_slack
        self.click_radius = click_radius
        self.long_side = long_side
        self.mask_input_size = mask_input_size
        self.seed = int(seed)
        self.message = (
            message or "GrabCut (OpenCV) segmenter: a fallback with lower quality than Segment Anything"
        )
        self._image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Keep ``image`` (H, W, 3) uint8 RGB for ``predict`` (GrabCut has no embedding)."""
        self._image = self.check_image(image)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    def _trimap(self, point_coords, point_labels, box, mask_input) -> tuple[np.ndarray, np.ndarray]:
        """GrabCut trimap (H, W) uint8 with cv2.GC_* values, and the prior region (H, W) bool."""
        import cv2

        height, width = self._image_size
        trimap = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
        prior = np.zeros((height, width), bool)
        if mask_input is not None:
            prior = self.logits_to_mask(mask_input, (height, width))
        if box is not None:
            x0, y0, x1, y1 = box
            slack_x = max(self.min_slack, self.box_slack * (x1 - x0))
            slack_y = max(self.min_slack, self.box_slack * (y1 - y0))
            rows = np.arange(height)[:, None] + 0.5
            cols = np.arange(width)[None, :] + 0.5
            inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1)
            near = (
                (cols >= x0 - slack_x)
                & (cols <= x1 + slack_x)
                & (rows >= y0 - slack_y)
                & (rows <= y1 + slack_y)
            )
            trimap[~near] = cv2.GC_BGD
            prior = prior & near if mask_input is not None else inside
        elif mask_input is None and point_coords is not None:
            radius = int(round(self.click_radius * max(height, width)))
            disc = np.zeros((height, width), np.uint8)
            for (x, y), label in zip(point_coords, point_labels, strict=True):
                if label == 1:
                    cv2.circle(disc, (int(round(x)), int(round(y))), radius, 1, -1)
            prior = disc.astype(bool)
        trimap[prior] = cv2.GC_PR_FGD
        if point_coords is not None:
            for (x, y), label in zip(point_coords, point_labels, strict=True):
                value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
                cv2.circle(trimap, (int(round(x)), int(round(y))), self.point_radius, int(value), -1)
        return trimap, prior

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmenterOutput:
        """One GrabCut mask (1, H, W) bool for the prompts, its score (1,) and low-res logits (1, L, L)."""
        import cv2

        point_coords, point_labels, box, mask_input = self.check_prompts(
            point_coords, point_labels, box, mask_input
        )
        trimap, prior = self._trimap(point_coords, point_labels, box, mask_input)
        result = self._grabcut(trimap)
        if result.any():
            count, labels = cv2.connectedComponents(result.astype(np.uint8), connectivity=8)
            keep = np.zeros(count, bool)
            keep[np.unique(labels[prior & result])] = True
            keep[np.unique(labels[trimap == cv2.GC_FGD])] = True
            keep[0] = False
            result = keep[labels]
        reference = prior if prior.any() else (trimap == cv2.GC_FGD)
        score = mask_iou(result, reference)
        logits = self.mask_prompt(result)
        return SegmenterOutput(
            masks=result[None], scores=np.array([score], np.float32), low_res_logits=logits
        )

    def _grabcut(self, trimap: np.ndarray) -> np.ndarray:
        """Run GrabCut on the bounding box of the non-background trimap; (H, W) bool foreground."""
        import cv2

        candidate = (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)
        if not candidate.any():
            return np.zeros(trimap.shape, bool)
        rows, cols = np.nonzero(trimap != cv2.GC_BGD)
        # The bounding box of the undecided pixels plus a one-pixel frame (sure background where it exists).
        top, left = max(0, rows.min() - 1), max(0, cols.min() - 1)
        bottom, right = min(trimap.shape[0], rows.max() + 2), min(trimap.shape[1], cols.max() + 2)
        crop = trimap[top:bottom, left:right].copy()
        if not ((crop == cv2.GC_BGD) | (crop == cv2.GC_PR_BGD)).any():
            warnings.warn(
                "GrabCut prompt covers the whole image; the prompt region is returned", stacklevel=3
            )
            return candidate
        image = np.ascontiguousarray(self._image[top:bottom, left:right])
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)  # k-means initialisation of the colour models: same prompts, same mask
        try:
            cv2.grabCut(
                image, crop, None, background_model, foreground_model, self.iterations, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error as error:
            warnings.warn(f"GrabCut failed ({error}); the prompt region is returned", stacklevel=3)
            return candidate
        result = np.zeros(trimap.shape, bool)
        result[top:bottom, left:right] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
        return result


def build_grabcut_segmenter(name: str = "grabcut", **_: object) -> GrabCutSegmenter:
    """GrabCut chosen on purpose (the registry's builder; it takes no weights, device or cache)."""
    return GrabCutSegmenter(message="GrabCut (OpenCV) segmenter, chosen explicitly; Segment Anything is not used")
