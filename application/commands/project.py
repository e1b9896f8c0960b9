"""``dhr init | import-coco | export | status``: create a project, bring labels in, take them out, count them.

- ``dhr init PROJECT --classes a,b,c|FILE [--images DIR] [--tags FILE]``: a new project; with ``--images``
  and/or ``--tags`` the tagged images (CSV ``file,tags`` with ``;`` between tags, JSON mapping, VOC folder or
  COCO file, see :mod:`annotate.dataset`) are checked (decoded) and copied in. Unknown or empty tags, missing
  or unreadable images are listed once and those entries left out; with ``--strict`` nothing is created
  instead; with ``--allow-new-classes`` unknown tags become new classes.
- ``dhr import-coco PROJECT FILE [--map old=new ...] [--images DIR]``: labels from a COCO file.
- ``dhr export PROJECT OUT.json [--status accepted,review | --accepted-only | --all] [--polygons]
  [--semantic DIR]``: COCO (and PNG masks) of the accepted and in-review images unless told otherwise; the
  first line says which images were included and which left out.
- ``dhr status PROJECT``: images per status.
- ``dhr remove PROJECT IMAGE...``: take images out of the project (by id or name; their files go to
  ``removed/``, their labels stay in the change log).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``init``, ``import-coco``, ``export`` and ``status``."""
    init = subparsers.add_parser("init", help="create an annotation project (optionally with tagged images)")
    init.add_argument("project", help="project folder (created; must not hold a project)")
    init.add_argument(
        "--classes",
        required=True,
        help="class names: comma-separated (cat,dog,bird) or a file with one name a line; ids follow its order",
    )
    init.add_argument("--images", help="folder of images to add (tags from --tags or a tags file in it)")
    init.add_argument(
        "--tags", help="tags file: CSV (file,tags with ';'), JSON mapping, VOC folder or COCO json"
    )
    init.add_argument(
        "--allow-new-classes", action="store_true", help="add tags missing from --classes as classes"
    )
    init.add_argument(
        "--strict", action="store_true", help="stop on any dataset problem instead of skipping entries"
    )
    init.add_argument("--skip-bad", action="store_true", help=argparse.SUPPRESS)  # the default; kept as an alias
    init.add_argument("--user", default="cli", help="name recorded in the change log")
    init.set_defaults(func=run_init)

    imp = subparsers.add_parser("import-coco", help="import instance labels from a COCO json file")
    imp.add_argument("project", help="project folder")
    imp.add_argument("file", help="COCO instances json (ours or another tool's)")
    imp.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="rename a category of the file to a project class (repeatable); categories match by name",
    )
    imp.add_argument(
        "--images", help="folder the file's image paths are relative to (default: the file's folder)"
    )
    imp.add_argument("--allow-new-classes", action="store_true", help="add unknown categories as new classes")
    imp.add_argument("--user", default="import", help="name recorded in the change log")
    imp.set_defaults(func=run_import)

    exp = subparsers.add_parser("export", help="export labels as COCO json (and semantic PNG masks)")
    exp.add_argument("project", help="project folder")
    exp.add_argument("out", help="output COCO json file (written atomically)")
    which = exp.add_mutually_exclusive_group()
    which.add_argument(
        "--status",
        help="comma-separated statuses of the images to export (default: accepted,review, the images a "
        "person accepted or worked on; others: new, pseudo, rejected)",
    )
    which.add_argument("--accepted-only", action="store_true", help="only images with status 'accepted'")
    which.add_argument("--all", action="store_true", help="every image, pseudo-labelled and rejected ones too")
    exp.add_argument(
        "--polygons",
        action="store_true",
        help="polygons instead of RLE; area and bbox follow the polygons; instances with holes and crowd "
        "regions stay RLE (polygons cannot hold holes; a note counts them)",
    )
    exp.add_argument(
        "--polygon-tolerance",
        type=float,
        default=0.25,
        help="polygon simplification in pixels (0: every corner)",
    )
    exp.add_argument("--semantic", metavar="DIR", help="also write palette PNG class-id masks to DIR")
    exp.add_argument(
        "--ignore-review", action="store_true", help="semantic masks: 255 where an instance needs review"
    )
    exp.add_argument(
        "--no-image-check",
        action="store_true",
        help="do not check the image files against their recorded SHA-256 before exporting",
    )
    exp.set_defaults(func=run_export)

    status = subparsers.add_parser("status", help="number of images per status")
    status.add_argument("project", help="project folder")
    status.set_defaults(func=run_status)

    remove = subparsers.add_parser("remove", help="remove images from a project (files kept in removed/)")
    remove.add_argument("project", help="project folder")
    remove.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image id, or name (images/a.jpg or a.jpg)"
    )
    remove.add_argument("--user", default="cli", help="name recorded in the change log")
    remove.set_defaults(func=run_remove)


def _split_classes(text: str) -> list[str]:
    """--classes: the names of an existing file (one a line), else comma-separated names."""
    if Path(text).is_file():
        from annotate.dataset import read_class_file

        return read_class_file(text)
    return [name.strip() for name in text.split(",") if name.strip()]


def run_init(args: argparse.Namespace) -> int:
    """Create the project; check and add the tagged images (bad entries skipped, or nothing with --strict)."""
    from annotate.dataset import load_dataset
    from annotate.store import DB_NAME, IMAGES_DIR, ProjectStore

    if args.skip_bad:
        print("note: --skip-bad is the default now and will go away; --strict stops on bad entries")
    classes = _split_classes(args.classes)
    root = Path(args.project)
    if (root / DB_NAME).exists():
        raise ValueError(f"{root}: a project already exists here")
    dataset = None
    if args.images or args.tags:
        dataset = load_dataset(
            args.images or Path(args.tags).parent,
            tags=args.tags,
            images=args.images,
            classes=classes,
            new_classes=args.allow_new_classes,
            strict=args.strict,
            check_images="decode",
            warn=False,
        )
        for line in dataset.problem_report() + dataset.notes():
            print(line)
    existed = {path: path.exists() for path in (root, root / IMAGES_DIR)}
    store = ProjectStore.create(root, classes)
    try:
        with store.transaction():
            for entry in dataset.entries if dataset is not None else []:
                store.add_image(
                    entry.path,
                    entry.tags,
                    user=args.user,
                    allow_new_classes=args.allow_new_classes,
                    dest_name=entry.file_name.replace("\\", "/"),
                )
    except BaseException:
        store.close()
        _remove_new_project(root, existed)
        raise
    added = len(dataset.entries) if dataset is not None else 0
    print(
        f"created project {store.root} with {len(store.classes)} classes {store.classes}; added {added} images"
    )
    store.close()
    return 0


def _remove_new_project(root: Path, existed: dict[Path, bool]) -> None:
    """Undo a failed ``init``: remove what it created (the folder, or the database and images folder)."""
    from annotate.store import DB_NAME

    if not existed[root]:
        shutil.rmtree(root, ignore_errors=True)
        return
    for suffix in ("", "-wal", "-shm"):
        (root / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    for folder, was_there in existed.items():
        if folder != root and not was_there:
            shutil.rmtree(folder, ignore_errors=True)


def _category_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--map expects OLD=NEW, got {pair!r}")
        mapping[old.strip()] = new.strip()
    return mapping


def run_import(args: argparse.Namespace) -> int:
    from annotate.coco import import_coco
    from annotate.store import ProjectStore

    with ProjectStore.open(args.project) as store:
        stored = import_coco(
            store,
            args.file,
            category_map=_category_map(args.map),
            image_dir=args.images,
            user=args.user,
            allow_new_classes=args.allow_new_classes,
        )
        print(f"imported {stored} annotations from {args.file} into {store.root}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export COCO (and semantic masks); every target is checked against the project's own files first."""
    from annotate.coco import (
        DEFAULT_STATUSES,
        ExportReport,
        chosen_statuses,
        export_coco,
        export_semantic_masks,
        scope_summary,
    )
    from annotate.coco.semantic import check_semantic_folder
    from annotate.store import ProjectStore

    if args.all:
        statuses = None
    elif args.accepted_only:
        statuses = ["accepted"]
    else:
        chosen = DEFAULT_STATUSES if args.status is None else args.status.split(",")
        statuses = chosen_statuses([s.strip() for s in chosen if s.strip()])
    with ProjectStore.open(args.project) as store:
        store.own_files().check_file(args.out, "COCO export")
        if args.semantic:
            images, _ = store.snapshot(statuses)
            check_semantic_folder(store, args.semantic, images)
        coco = export_coco(
            store,
            args.out,
            statuses=statuses,
            polygons=args.polygons,
            polygon_tolerance=args.polygon_tolerance,
            verify_images=not args.no_image_check,
            report=(report := ExportReport()),
        )
        scope = scope_summary(store.status_counts(), statuses)
        print(f"{scope}{'' if statuses is None else ' (choose with --status or --all)'}")
        print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations")
        if report.polygon_note():
            print(f"note: {report.polygon_note()}")
        if args.semantic:
            written = export_semantic_masks(
                store, args.semantic, statuses=statuses, ignore_review=args.ignore_review
            )
            print(f"wrote {len(written)} semantic masks to {args.semantic}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from annotate.store import ProjectStore

    with ProjectStore.open(args.project) as store:
        counts = store.status_counts()
        print(f"project {store.root}: {len(store.classes)} classes {store.classes}")
        print("| status | images |\n|---|---:|")
        for status, count in counts.items():
            print(f"| {status} | {count} |")
        print(f"| total | {sum(counts.values())} |")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Remove the named images (all of them, or none when one is unknown)."""
    from annotate.store import ProjectStore

    with ProjectStore.open(args.project) as store:
        records = [store.lookup_image(name) for name in args.images]
        names = store.remove_images([r.id for r in records], user=args.user)
        print(f"removed {len(names)} image(s) from {store.root}: {', '.join(names)}")
    return 0
