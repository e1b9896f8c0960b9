"""``dhr accept | reject | review``: the review decisions of the GUI from the command line.

- ``dhr accept PROJECT IMAGE...`` / ``dhr reject PROJECT IMAGE...``: set the status of images named by id, by
  name (``images/a.jpg`` or ``a.jpg``) or by a glob (``'street_*.jpg'``); every name must match an image, or
  nothing is changed. Accepted images are what ``dhr export --accepted-only`` writes and what
  ``dhr train --accepted-weight`` weights.
- ``dhr review PROJECT [--status S]``: the review queue, least confident first (the GUI's order).
"""

from __future__ import annotations

import argparse
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from annotate.store import ImageRecord, ProjectStore

GLOB_CHARACTERS = "*?["


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``accept``, ``reject`` and ``review``."""
    for command, status in (("accept", "accepted"), ("reject", "rejected")):
        parser = subparsers.add_parser(command, help=f"mark images as {status} (by id, name or glob)")
        parser.add_argument("project", help="project folder")
        parser.add_argument(
            "images",
            nargs="+",
            metavar="IMAGE",
            help="image id, name (images/a.jpg or a.jpg) or glob in quotes ('street_*.jpg')",
        )
        parser.add_argument("--user", default="cli", help="name recorded in the change log")
        parser.set_defaults(func=run_set_status, status=status)

    review = subparsers.add_parser("review", help="the review queue: images, least confident first")
    review.add_argument("project", help="project folder")
    review.add_argument(
        "--status",
        action="append",
        choices=["new", "pseudo", "review", "accepted", "rejected"],
        help="only images with this status (repeatable; default: every image)",
    )
    review.set_defaults(func=run_review)


def match_images(store: ProjectStore, names: list[str]) -> list[ImageRecord]:
    """The images named by ids, names or globs, in project order; ValueError naming what matched nothing."""
    records = store.list_images(order="name")
    chosen: dict[int, ImageRecord] = {}
    unmatched: list[str] = []
    for name in names:
        if any(c in name for c in GLOB_CHARACTERS):
            hits = [r for r in records if _glob_matches(r.file_name, name)]
        else:
            try:
                hits = [store.lookup_image(name)]
            except ValueError:
                hits = []
        if not hits:
            unmatched.append(name)
        chosen.update((r.id, r) for r in hits)
    if unmatched:
        raise ValueError(f"{store.root}: no image matches {', '.join(repr(n) for n in unmatched)}; nothing changed")
    return [r for r in records if r.id in chosen]


def _glob_matches(file_name: str, pattern: str) -> bool:
    """Whether a glob matches an image's stored name (``images/a.jpg``) or its name as added (``a.jpg``)."""
    from annotate.store import IMAGES_DIR

    added = file_name.removeprefix(f"{IMAGES_DIR}/")
    return fnmatchcase(file_name, pattern) or fnmatchcase(added, pattern)


def run_set_status(args: argparse.Namespace) -> int:
    """Set the status of every named image (in one transaction: all or none)."""
    from annotate.store import ProjectStore

    with ProjectStore.open(args.project) as store:
        records = match_images(store, args.images)
        with store.transaction():
            for record in records:
                store.set_status(record.id, args.status, user=args.user)
        shown = ", ".join(r.file_name for r in records[:10]) + (" ..." if len(records) > 10 else "")
        print(f"{args.status} {len(records)} image(s) in {store.root}: {shown}")
    return 0


def run_review(args: argparse.Namespace) -> int:
    """Print the queue as a table: id, image, status, confidence, instances (flagged for review)."""
    from annotate.store import ProjectStore

    with ProjectStore.open(args.project) as store:
        records = store.list_images(status=args.status, order="confidence")
        _, instances = store.snapshot(args.status)
        print("| id | image | status | confidence | instances | flagged |\n|---:|---|---|---:|---:|---:|")
        for record in records:
            mine = instances.get(record.id, [])
            confidence = "" if record.confidence is None else f"{record.confidence:.3f}"
            flagged = sum(i.needs_review for i in mine)
            print(f"| {record.id} | {record.file_name} | {record.status} | {confidence} | {len(mine)} | {flagged} |")
        print(f"{len(records)} image(s), least confident first")
    return 0
