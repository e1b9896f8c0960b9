"""Shards of a bootstrap run: which images shard ``i/n`` labels, and joining the shard folders into one project.

``shard=(i, n)`` (0 <= i < n) keeps the images whose position in the name-sorted dataset is ``i mod n``;
:func:`merge_shards` joins the shard output folders (same classes) into one project and COCO file. Each shard
folder's ``bootstrap.json`` records its ``[i, n]``: a merge that lacks a share, mixes splits, or holds a folder
that is no shard is refused unless ``allow_partial``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from annotate.bootstrap.outputs import CLASSIFIER_FILE, MANIFEST_FILE, export_outputs, mask_path, open_project
from annotate.dataset import DatasetEntry
from annotate.store.paths import source_name
from core.files import atomic_copy


def shard_entries(entries: Sequence[DatasetEntry], shard: tuple[int, int]) -> list[DatasetEntry]:
    """Entries of shard ``(i, n)``: positions ``i, i + n, ...`` of the name-sorted list."""
    i, n = shard
    ordered = sorted(entries, key=lambda e: e.file_name)
    return ordered[i::n]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse "i/n" -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as error:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from error
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def shard_of(folder: str | Path) -> tuple[int, int] | None:
    """The ``(i, n)`` a bootstrap output folder's manifest records, or None (no manifest, or none recorded)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        shard = json.loads(path.read_text(encoding="utf-8")).get("shard")
        i, n = (int(v) for v in shard)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return i, n


def check_shards(shard_dirs: Sequence[str | Path], *, allow_partial: bool = False) -> None:
    """ValueError naming what is missing when the folders are not exactly the shares 0..n-1 of one split
    (a warning instead with ``allow_partial``)."""
    shares = {str(d): shard_of(d) for d in shard_dirs}
    problems = []
    unknown = [d for d, s in shares.items() if s is None]
    if unknown:
        problems.append(f"{', '.join(unknown)} record{'s' if len(unknown) == 1 else ''} no shard ({MANIFEST_FILE})")
    splits = sorted({s[1] for s in shares.values() if s is not None})
    if len(splits) > 1:
        problems.append(f"the folders come from different splits (into {' and '.join(map(str, splits))} shares)")
    elif splits:
        n = splits[0]
        given = [s[0] for s in shares.values() if s is not None]
        missing = [f"{i}/{n}" for i in range(n) if i not in given]
        twice = sorted({f"{i}/{n}" for i in given if given.count(i) > 1})
        if missing:
            problems.append(f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing")
        if twice:
            problems.append(f"shard {', '.join(twice)} given twice")
    if not problems:
        return
    message = "partial merge: " + "; ".join(problems)
    if not allow_partial:
        raise ValueError(f"{message}; give every shard's folder, or allow a partial merge (--allow-partial)")
    warnings.warn(message + " (merged anyway)", stacklevel=3)


def merge_shards(
    out: str | Path, shard_dirs: Sequence[str | Path], *, progress: bool = True, allow_partial: bool = False
) -> Path | None:
    """Join shard projects (same classes) into one project at ``out``; returns the merged COCO file path.

    Images keep their names, instances, status and confidence; semantic PNGs and the classifier are copied.
    Raises ValueError for differing classes, an image present in two shards, or (unless ``allow_partial``)
    folders that are not all the shares of one split (:func:`check_shards`).
    """
    from tqdm.auto import tqdm

    from annotate.store import ProjectStore

    out = Path(out)
    if not shard_dirs:
        raise ValueError("no shard folders given")
    shards = [ProjectStore.open(Path(d)) for d in shard_dirs]
    try:
        classes = shards[0].classes
        for d, s in zip(shard_dirs, shards, strict=True):
            if s.classes != classes:
                raise ValueError(f"shard {d} has classes {s.classes}, the first shard {classes}")
        records = []
        seen: dict[str, str] = {}
        for d, s in zip(shard_dirs, shards, strict=True):
            for rec in s.list_images(order="name"):
                if rec.file_name in seen:
                    raise ValueError(f"image {rec.file_name} is in two shards: {seen[rec.file_name]} and {d}")
                seen[rec.file_name] = str(d)
                records.append((rec.file_name, s, rec))
        records.sort(key=lambda r: r[0])
        check_shards(shard_dirs, allow_partial=allow_partial)
        unfinished = [name for name, _, rec in records if rec.status == "new"]
        if unfinished:
            warnings.warn(
                f"{len(unfinished)} image(s) not labelled yet in their shard: {unfinished[:10]}", stacklevel=2
            )
        store = open_project(out, classes)
        try:
            for name, shard, rec in tqdm(records, desc="merge", unit="img", disable=not progress):
                if store.find_image(name) is not None:
                    raise ValueError(f"{out} already holds image {name}; merge into an empty folder")
                dataset_name = source_name(name)
                image_id = store.add_image(shard.image_path(rec.id), list(rec.tags), dest_name=dataset_name)
                mask = mask_path(shard.root, dataset_name)
                if mask.is_file():
                    atomic_copy(mask, mask_path(store.root, dataset_name))
                if rec.status == "new":
                    continue
                instances = [i.to_new() for i in shard.instances(rec.id)]
                store.save_labels(
                    image_id, instances, user="merge", status=rec.status, confidence=rec.confidence
                )
            classifier = shards[0].root / CLASSIFIER_FILE
            if classifier.is_file() and not (out / CLASSIFIER_FILE).exists():
                atomic_copy(classifier, out / CLASSIFIER_FILE)
            return export_outputs(store)
        finally:
            store.close()
    finally:
        for s in shards:
            s.close()


__all__ = ["check_shards", "merge_shards", "parse_shard", "shard_entries", "shard_of"]
