"""GrabCut (OpenCV) stand-in for Segment Anything, taking the same prompts; used when no SAM checkpoint exists.

GrabCut works on a bounded region at a bounded resolution, so a click costs about the same on a 12 MP photo as on
a small one: the region of interest is the prompt's extent (the box, the mask prompt's bounding box, discs around
positive points off it; the whole image for points alone) grown by a margin (``box_slack`` x its size, at least ``min_slack`` pixels); it is cut out,
scaled down so that its long side is at most ``work_side`` pixels, segmented there, and the mask is scaled back
up into the region (the rest of the image stays background).

Prompts become GrabCut's trimap:

- a mask prompt (SAM low-res logits, mapped back to the image) marks probable foreground;
- a box: the margin around it is background: with a mask prompt all of it probable background (prompt boxes
  from a seed mask may be a little tight), for a box alone only a band of ``min_slack`` pixels, the rest sure
  background; an instance the annotator drew as a box is cut to its box by
  :func:`annotate.review.refine.refine_instance`; without a mask prompt the inside of the box is probable
  foreground;
- positive points mark discs of sure foreground (radius ``point_radius``); one off the mask prompt also a disc of
  probable foreground (``click_radius`` x the image's long side) around it, the part it adds;
- negative points act on their region: the connected part of the mask prompt that holds a negative point (and no
  positive point) becomes sure background, and a disc of ``negative_radius`` x the square root of the object's
  area (at least ``point_radius``) around each negative point is sure background too;
- points alone: probable foreground in a disc of ``click_radius`` x the image's long side around each
  positive point; the work region is then the whole image (at the bounded resolution: later clicks, with the
  first mask as their prompt, work on its region at a finer one).

Connected pieces of the result that touch no positive point and no prior pixel are dropped. GrabCut has no quality
head: the score is the IoU of the result with its prior region (the mask prompt, else the box), so a result that
strays far from its prompt scores low. One mask is returned whatever ``multimask``.

GrabCut initialises its colour models with k-means, which draws from OpenCV's random number generator; the
generator of the calling thread is reset with ``cv2.setRNGSeed(seed)`` before every GrabCut call, so the same
image and prompts always give the same mask (other OpenCV random draws in that thread restart from the seed too).
A k-means start can settle on a poor split: a box alone whose answer agrees poorly with the box (IoU below
``RESTART_BELOW``) is run again from ``seed + 1``, then ``seed + 2`` (``RESTARTS``), and the answer agreeing best
is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import numpy as np

from models.segmenters.base import Segmenter, SegmenterOutput, mask_iou

logger = logging.getLogger(__name__)

PRIOR_SIDE = 1024
"""Long side (px) at which a mask prompt is first mapped back to the image, to find its extent."""
RESTART_BELOW = 0.5
"""A box alone whose GrabCut answer has an IoU with the box below this gets another start (the next seed)..."""
RESTARTS = 2
"""... at most this many times."""


@dataclasses.dataclass(frozen=True)
class WorkRegion:
    """The image crop GrabCut runs on: rows ``top:bottom``, columns ``left:right`` of the full image, worked on
    at ``(height, width)`` pixels (the crop scaled by ``scale`` <= 1)."""

    top: int
    bottom: int
    left: int
    right: int
    height: int
    width: int

    @classmethod
    def around(cls, x0: float, y0: float, x1: float, y1: float, image_size: tuple[int, int], work_side: int):
        """The crop covering XYXY extent (x0, y0, x1, y1) (full-size pixels, clipped to the image)."""
        rows, cols = image_size
        top, left = max(0, int(math.floor(y0))), max(0, int(math.floor(x0)))
        bottom, right = min(rows, int(math.ceil(y1)) + 1), min(cols, int(math.ceil(x1)) + 1)
        bottom, right = max(bottom, top + 1), max(right, left + 1)
        scale = min(1.0, work_side / max(bottom - top, right - left))
        height = max(1, int(round((bottom - top) * scale)))
        width = max(1, int(round((right - left) * scale)))
        return cls(top, bottom, left, right, height, width)

    @property
    def scale(self) -> tuple[float, float]:
        """(row, column) factors from full-size to work pixels."""
        return self.height / (self.bottom - self.top), self.width / (self.right - self.left)

    def point(self, x: float, y: float) -> tuple[int, int]:
        """Full-size XY -> work-pixel (column, row), pixel centres lined up."""
        sy, sx = self.scale
        return int(round((x - self.left + 0.5) * sx - 0.5)), int(round((y - self.top + 0.5) * sy - 0.5))

    def length(self, pixels: float) -> int:
        """A full-size length in work pixels (at least 1)."""
        return max(1, int(round(pixels * min(self.scale))))

    def box_mask(self, box: np.ndarray) -> np.ndarray:
        """(height, width) bool: work pixels whose centre lies inside XYXY ``box`` (full-size pixels)."""
        sy, sx = self.scale
        cols = self.left + (np.arange(self.width) + 0.5) / sx
        rows = self.top + (np.arange(self.height) + 0.5) / sy
        x0, y0, x1, y1 = (float(v) for v in box)
        return ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]

    def to_full(self, mask: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """A (height, width) work mask -> (H, W) bool at full size (zero outside the crop)."""
        import cv2

        full = np.zeros(image_size, bool)
        size = (self.right - self.left, self.bottom - self.top)
        if (self.width, self.height) == size:
            full[self.top : self.bottom, self.left : self.right] = mask
        else:
            up = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR)
            full[self.top : self.bottom, self.left : self.right] = up > 127
        return full


class GrabCutSegmenter(Segmenter):
    """OpenCV GrabCut behind the ``Segmenter`` interface (``is_fallback`` True; ``message`` says why it runs).

    ``work_side`` bounds the long side (px) of the region GrabCut runs on; ``negative_radius`` sizes the sure
    background disc of a negative point relative to the object (see the module notes). ``seed`` is given to
    ``cv2.setRNGSeed`` before each GrabCut call, so results repeat.
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
        work_side: int = 320,
        negative_radius: float = 0.15,
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if work_side < 16:
            raise ValueError(f"work_side must be >= 16 px, got {work_side}")
        self.iterations = iterations
        self.point_radius = point_radius
        self.box_slack = box_slack
        self.min_slack = min_slack
        self.click_radius = click_radius
        self.long_side = long_side
        self.mask_input_size = mask_input_size
        self.seed = int(seed)
        self.work_side = int(work_side)
        self.negative_radius = float(negative_radius)
        self.message = (
            message or "GrabCut (OpenCV) segmenter: a fallback with lower quality than Segment Anything"
        )
        self._image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Keep ``image`` (H, W, 3) uint8 RGB for ``predict`` (GrabCut has no embedding)."""
        self._image = self.check_image(image)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    # ------------------------------------------------------------------ geometry
    def _slack(self, extent: float) -> float:
        return max(float(self.min_slack), self.box_slack * extent)

    def _region(self, point_coords, point_labels, box, coarse: np.ndarray | None) -> WorkRegion:
        """The work region: the prompt's extent plus the margin (see the module notes)."""
        height, width = self._image_size
        extents: list[tuple[float, float, float, float]] = []
        if box is not None:
            extents.append(tuple(float(v) for v in box))
        has_prior = coarse is not None and coarse.any()
        if has_prior:
            rows, cols = np.nonzero(coarse)
            fy, fx = height / coarse.shape[0], width / coarse.shape[1]
            extents.append((cols.min() * fx, rows.min() * fy, (cols.max() + 1) * fx, (rows.max() + 1) * fy))
        if point_coords is not None:
            click = self.click_radius * max(height, width)
            for (x, y), label in zip(point_coords, point_labels, strict=True):
                if label != 1:
                    continue
                if box is None and not has_prior:
                    # points alone: the object may reach far beyond the disc, and GrabCut needs the image's
                    # background colours to tell it apart; the whole image, at the bounded resolution
                    radius = float(max(height, width))
                elif has_prior and coarse[min(int(y * coarse.shape[0] / height), coarse.shape[0] - 1),
                                          min(int(x * coarse.shape[1] / width), coarse.shape[1] - 1)]:
                    radius = 0.0
                else:
                    radius = click  # a click outside the prompt: room for what it adds
                extents.append((x - radius, y - radius, x + radius, y + radius))
        if not extents:  # negative points only: nothing to segment, an empty region around them
            extents = [(float(x), float(y), float(x) + 1, float(y) + 1) for x, y in point_coords]
        x0 = min(e[0] for e in extents)
        y0 = min(e[1] for e in extents)
        x1 = max(e[2] for e in extents)
        y1 = max(e[3] for e in extents)
        sx, sy = self._slack(x1 - x0), self._slack(y1 - y0)
        return WorkRegion.around(x0 - sx, y0 - sy, x1 + sx, y1 + sy, (height, width), self.work_side)

    def _trimap(self, point_coords, point_labels, box, mask_input) -> tuple[WorkRegion, np.ndarray, np.ndarray]:
        """(region, trimap (h, w) uint8 with cv2.GC_* values, prior (h, w) bool), at the region's work size."""
        import cv2

        height, width = self._image_size
        coarse = None
        if mask_input is not None:
            factor = min(1.0, PRIOR_SIDE / max(height, width))
            size = (max(1, int(round(height * factor))), max(1, int(round(width * factor))))
            coarse = self.logits_to_mask(mask_input, size)
        region = self._region(point_coords, point_labels, box, coarse)
        shape = (region.height, region.width)
        trimap = np.full(shape, cv2.GC_PR_BGD, np.uint8)
        prior = np.zeros(shape, bool)
        if coarse is not None:
            fy, fx = coarse.shape[0] / height, coarse.shape[1] / width
            crop = coarse[
                int(region.top * fy) : max(int(region.top * fy) + 1, int(math.ceil(region.bottom * fy))),
                int(region.left * fx) : max(int(region.left * fx) + 1, int(math.ceil(region.right * fx))),
            ]
            prior = cv2.resize(crop.astype(np.uint8), (region.width, region.height), interpolation=cv2.INTER_NEAREST) > 0
        if box is not None:
            inside = region.box_mask(box)
            x0, y0, x1, y1 = (float(v) for v in box)
            # With a mask prompt the box may be a little tight (a seed's box): the whole margin is probable
            # background. A box alone frames the object: only a thin band outside it stays probable, the rest
            # of the margin is sure background (stable colour models to learn from).
            sx, sy = (self._slack(x1 - x0), self._slack(y1 - y0)) if coarse is not None else (self.min_slack,) * 2
            near = region.box_mask(np.array([x0 - sx, y0 - sy, x1 + sx, y1 + sy]))
            trimap[~near] = cv2.GC_BGD
            prior = prior & near if coarse is not None else inside
        elif coarse is None and point_coords is not None:
            radius = region.length(self.click_radius * max(height, width))
            disc = np.zeros(shape, np.uint8)
            for (x, y), label in zip(point_coords, point_labels, strict=True):
                if label == 1:
                    cv2.circle(disc, region.point(x, y), radius, 1, -1)
            prior = disc.astype(bool)
        if coarse is not None and point_coords is not None:
            # A positive click off the mask prompt: probable foreground around it, the part it adds.
            radius = region.length(self.click_radius * max(height, width))
            for (x, y), label in zip(point_coords, point_labels, strict=True):
                c, r = region.point(x, y)
                if label == 1 and 0 <= r < shape[0] and 0 <= c < shape[1] and not prior[r, c]:
                    disc = np.zeros(shape, np.uint8)
                    cv2.circle(disc, (c, r), radius, 1, -1)
                    trimap[(disc > 0) & (trimap != cv2.GC_BGD)] = cv2.GC_PR_FGD
        trimap[prior] = cv2.GC_PR_FGD
        if point_coords is not None:
            self._mark_points(trimap, prior, region, point_coords, point_labels, box)
        return region, trimap, prior

    def _mark_points(self, trimap, prior, region: WorkRegion, point_coords, point_labels, box) -> None:
        """Positive points: sure-foreground discs. Negative points: their part of the prior, and a disc sized to the
        object, become sure background."""
        import cv2

        positive = [region.point(x, y) for (x, y), lab in zip(point_coords, point_labels, strict=True) if lab == 1]
        negative = [region.point(x, y) for (x, y), lab in zip(point_coords, point_labels, strict=True) if lab == 0]
        if negative:
            sy, sx = region.scale
            area = prior.sum() / (sy * sx) if prior.any() else 0.0
            if not area and box is not None:
                area = float((box[2] - box[0]) * (box[3] - box[1]))
            radius = region.length(max(self.point_radius, self.negative_radius * math.sqrt(area)))
            if prior.any():
                count, parts = cv2.connectedComponents(prior.astype(np.uint8), connectivity=8)
                held = {int(parts[r, c]) for c, r in positive if 0 <= r < prior.shape[0] and 0 <= c < prior.shape[1]}
                for c, r in negative:
                    if 0 <= r < prior.shape[0] and 0 <= c < prior.shape[1]:
                        part = int(parts[r, c])
                        if part and part not in held:
                            trimap[parts == part] = cv2.GC_BGD
            for centre in negative:
                cv2.circle(trimap, centre, radius, int(cv2.GC_BGD), -1)
        dot = region.length(self.point_radius)
        for centre in positive:
            cv2.circle(trimap, centre, dot, int(cv2.GC_FGD), -1)

    # ------------------------------------------------------------------ prediction
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
        region, trimap, prior = self._trimap(point_coords, point_labels, box, mask_input)
        result = self._grabcut(region, trimap, self.seed)
        if box is not None and mask_input is None:
            # GrabCut's k-means start can settle on a poor split of a box (e.g. a helmet's visor alone): up to
            # RESTARTS more starts, and the answer that agrees best with the box is kept
            agreement = mask_iou(result, prior)
            for restart in range(1, RESTARTS + 1):
                if agreement >= RESTART_BELOW:
                    break
                again = self._grabcut(region, trimap, self.seed + restart)
                if mask_iou(again, prior) > agreement:
                    result, agreement = again, mask_iou(again, prior)
        if result.any():
            count, labels = cv2.connectedComponents(result.astype(np.uint8), connectivity=8)
            keep = np.zeros(count, bool)
            keep[np.unique(labels[prior & result])] = True
            keep[np.unique(labels[trimap == cv2.GC_FGD])] = True
            keep[0] = False
            result = keep[labels]
        reference = prior if prior.any() else (trimap == cv2.GC_FGD)
        score = mask_iou(result, reference)
        full = region.to_full(result, self._image_size)
        logits = self.mask_prompt(full)
        return SegmenterOutput(masks=full[None], scores=np.array([score], np.float32), low_res_logits=logits)

    def _grabcut(self, region: WorkRegion, trimap: np.ndarray, seed: int) -> np.ndarray:
        """Run GrabCut on the region's crop (scaled to the trimap's size); (h, w) bool foreground."""
        import cv2

        candidate = (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)
        if not candidate.any():
            return np.zeros(trimap.shape, bool)
        if not ((trimap == cv2.GC_BGD) | (trimap == cv2.GC_PR_BGD)).any():
            warnings.warn("GrabCut prompt covers the whole image; the prompt region is returned", stacklevel=3)
            return candidate
        image = self._image[region.top : region.bottom, region.left : region.right]
        if image.shape[:2] != trimap.shape:
            image = cv2.resize(image, (region.width, region.height), interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image)
        crop = trimap.copy()
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(seed)  # k-means initialisation of the colour models: same prompts, same mask
        try:
            cv2.grabCut(
                image, crop, None, background_model, foreground_model, self.iterations, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error as error:
            warnings.warn(f"GrabCut failed ({error}); the prompt region is returned", stacklevel=3)
            return candidate
        return (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)


def build_grabcut_segmenter(name: str = "grabcut", **_: object) -> GrabCutSegmenter:
    """GrabCut chosen on purpose (the registry's builder; it takes no weights, device or cache)."""
    return GrabCutSegmenter(message="GrabCut (OpenCV) segmenter, chosen explicitly; Segment Anything is not used")
