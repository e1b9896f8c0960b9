"""Make ``assets/demo/labels.json``: the demo photos labelled with the review tools (boxes and clicks, GrabCut).

Every object is drawn as a reviewer would in the GUI, through :class:`annotate.review.session.ReviewSession`
on the GrabCut segmenter: a box around it, then positive and negative clicks where the mask needs them. The
result is exported as COCO (RLE) with the project's own exporter; ``--preview DIR`` also writes each photo
with its overlay as a PNG to check by eye.

    PYTHONPATH=. python scripts/make_demo_labels.py --preview /tmp/demo-preview
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Drawn:
    """One object as a reviewer draws it: a box, then clicks ``(x, y, positive)``, then brush strokes
    (``paint``: filled polygons of XY points, as the brush tab applies them), the eraser on polygons
    (``erase_area``) and over the objects drawn before it that lie on top of it (``erase``: their classes)."""

    class_name: str
    box: tuple[float, float, float, float]
    clicks: tuple[tuple[float, float, bool], ...] = ()
    paint: tuple[tuple[tuple[int, int], ...], ...] = ()
    erase_area: tuple[tuple[tuple[int, int], ...], ...] = ()
    erase: tuple[str, ...] = ()


COLLAR = ((185, 178), (255, 175), (270, 185), (285, 205), (282, 235), (265, 255), (230, 262), (195, 258),
          (170, 240), (160, 215), (168, 190))
FLAG_STRIP = ((0, 296), (22, 300), (26, 360), (22, 420), (18, 511), (0, 511))
BOOSTERS = (((438, 40), (445, 30), (452, 40), (454, 150), (438, 150)),
            ((387, 45), (393, 34), (399, 45), (400, 105), (386, 105)))
NAME_PATCH = ((276, 336), (334, 336), (332, 372), (318, 380), (276, 378))
CUP_BODY = ((176, 96), (410, 96), (410, 120), (402, 160), (390, 190), (375, 215), (355, 230), (330, 240),
            (300, 246), (260, 245), (230, 238), (215, 232), (205, 215), (192, 195), (182, 165), (176, 130))
CUP_HANDLE = ((205, 232), (248, 232), (255, 250), (252, 275), (245, 295), (225, 302), (205, 298), (198, 280),
              (198, 255))

PROMPTS: dict[str, list[Drawn]] = {
    "astronaut.jpg": [
        Drawn("flag", (0, 0, 98, 330), paint=(FLAG_STRIP,)),  # the flag goes on below the box, behind her
        Drawn("rocket", (350, 0, 472, 282), paint=BOOSTERS),  # white boosters against the white wall
        # GrabCut leaves out the black collar, and takes the flag's edge for the suit
        Drawn("person", (18, 12, 368, 511), paint=(COLLAR,), erase_area=(FLAG_STRIP,), erase=("flag",)),
        Drawn("helmet", (275, 340, 511, 511), erase_area=(NAME_PATCH,)),  # the name patch is the suit's
    ],
    "chelsea.jpg": [
        Drawn("cat", (0, 0, 398, 299)),
    ],
    "coffee.jpg": [
        # GrabCut takes the red cup body for saucer: the brush adds it (and the handle) to the cup
        Drawn("cup", (170, 14, 410, 302), paint=(CUP_BODY, CUP_HANDLE)),
        Drawn("spoon", (322, 64, 426, 328), clicks=((405, 100, True), (385, 180, True), (412, 76, True))),
        Drawn("saucer", (75, 90, 482, 392), erase=("cup", "spoon")),
    ],
    "rocket.jpg": [
        Drawn("rocket", (300, 124, 342, 410), clicks=((321, 140, True),)),  # the nose cone
        # lattice towers are labelled by their outline, the sky seen through them included
        Drawn("tower", (0, 0, 92, 426), paint=(((0, 280), (78, 280), (78, 370), (0, 370)),)),
        Drawn("tower", (553, 0, 639, 426)),
        Drawn("tower", (165, 118, 212, 400), paint=(((197, 120), (204, 120), (204, 195), (197, 195)),)),  # mast
        Drawn("tower", (434, 118, 482, 420), paint=(((443, 122), (450, 122), (450, 195), (443, 195)),)),
    ],
}
"""What is drawn on each photo, in order, in full-size pixels."""


def _filled(shape: tuple[int, int], polygons) -> np.ndarray:
    """(H, W) bool: the filled ``polygons`` (XY points)."""
    import cv2

    canvas = np.zeros(shape, np.uint8)
    if polygons:
        cv2.fillPoly(canvas, [np.asarray(polygon, np.int32) for polygon in polygons], 1)
    return canvas.astype(bool)


def draw(session: Any, drawn: Drawn) -> None:
    """Draw one object on the open image of ``session`` with the review tools (saved at each step)."""
    shape = session.require_image().shape[:2]
    session.add_box(drawn.box, class_id=drawn.class_name)
    for x, y, positive in drawn.clicks:
        session.add_point(x, y, positive=positive)
    if drawn.paint:
        session.paint(add=_filled(shape, drawn.paint))
    if drawn.erase or drawn.erase_area:
        ids = {session.class_id(name) for name in drawn.erase}
        over = _filled(shape, drawn.erase_area)
        for inst in session.instances[:-1]:
            if inst.class_id in ids:
                over |= inst.mask
        session.paint(remove=over)
    session.select(None)


def label_demo(out: Path, preview: Path | None = None) -> dict:
    """Label a fresh copy of the demo project with :data:`PROMPTS`, export it to ``out``; returns the COCO dict."""
    from PIL import Image

    from annotate.coco import export_coco
    from annotate.review.demo import DEMO_USER, ensure_demo_project
    from annotate.review.refine import SharedSegmenter
    from annotate.review.session import ReviewSession
    from models.segmenters import GrabCutSegmenter

    with tempfile.TemporaryDirectory() as tmp:
        store = ensure_demo_project(Path(tmp) / "demo", labels=False)
        session = ReviewSession(store, SharedSegmenter(GrabCutSegmenter()), user=DEMO_USER)
        for record in store.list_images(order="name"):
            session.open_image(record.id)
            for drawn in PROMPTS[Path(record.file_name).name]:
                draw(session, drawn)
            if preview is not None:
                preview.mkdir(parents=True, exist_ok=True)
                name = Path(record.file_name).stem + ".png"
                Image.fromarray(session.render(opacity=0.55)).save(preview / name)
        coco = export_coco(store, out, description="dhr-label demo labels (scripts/make_demo_labels.py)")
        store.close()
    return coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets/demo/labels.json"))
    parser.add_argument("--preview", help="folder for the photos with their overlays (PNG)")
    args = parser.parse_args()
    coco = label_demo(Path(args.out), Path(args.preview) if args.preview else None)
    print(f"{len(coco['annotations'])} instances on {len(coco['images'])} photos -> {args.out}")


if __name__ == "__main__":
    main()
