"""Who made an image's current labels: a person, or one of the automatic writers (bootstrap, training rounds).

Read from the store's change log (``changes``): an image counts as **edited by hand** when a user other than
the automatic writers changed its labels (saved instances, or undid / redid a labels edit) after the last
save of an automatic writer. Status and tag changes alone do not count: they leave the instances as they
were. Imported labels count as hand-made (their user is not an automatic writer).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from annotate.store.catalog import ProjectCatalog
from annotate.store.records import Change

TRAINING_USER = "dhr-train"
"""The user the training rounds save their labels as (``training.rounds.RoundsConfig.user``)."""
LABEL_ACTIONS = ("save_labels", "undo", "redo")
"""Change-log actions that can replace an image's instances (undo / redo only when their kind is labels)."""


def is_label_change(change: Change) -> bool:
    """Whether ``change`` replaced the image's instances (a save, or an undo / redo of a labels edit)."""
    if change.action == "save_labels":
        return True
    return change.action in ("undo", "redo") and change.detail.get("kind") == "labels"


def hand_edits(
    store: ProjectCatalog, automatic: Collection[str], image_ids: Iterable[int] | None = None
) -> dict[int, Change]:
    """Images whose labels a person changed since the last automatic save -> that person's newest change.

    ``automatic`` names the automatic writers (e.g. ``annotate.bootstrap.USER`` and the rounds' user);
    ``image_ids`` None means every image (one pass over the whole change log), else the log of each one.
    """
    automatic = set(automatic)
    if image_ids is None:
        log: Iterable[Change] = store.changes()
    else:  # per image: the log is indexed by image
        log = (change for image_id in dict.fromkeys(int(i) for i in image_ids) for change in store.changes(image_id))
    found: dict[int, Change] = {}
    judged: set[int] = set()  # images whose newest label change has been seen
    for change in log:  # newest first (per image): an image's first label change decides
        image_id = change.image_id
        if image_id is None or image_id in judged:
            continue
        if is_label_change(change):
            judged.add(image_id)
            if change.user not in automatic:
                found[image_id] = change
    return found


__all__ = ["LABEL_ACTIONS", "TRAINING_USER", "hand_edits", "is_label_change"]
