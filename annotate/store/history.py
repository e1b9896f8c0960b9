"""Per-image undo/redo history of a project database (the ``history`` table).

A *state* is what an edit replaces, as a JSON-able dict: ``{"kind", "status", "confidence"}`` plus
``"instances"`` (rows of the ``instances`` table without ids) for kind "labels", or ``"tags"`` (class ids) for
kind "tags"; kind "status" holds status and confidence only. Each image has two stacks, "undo" and "redo";
an edit pushes the state it replaces onto "undo" and clears "redo"; undo and redo pop one stack and push the
current state onto the other. The undo stack keeps the newest ``limit`` states per image. Undo and redo may be
limited to some kinds (the review GUI undoes label edits only): the newest state of those kinds moves, the others
stay on their stack.

The functions run SQL on an open connection and never commit: callers wrap them in a transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from annotate.store.records import utc_now

STACKS = ("undo", "redo")
_STATE_INSTANCE_COLUMNS = "class_id, counts, score, source, needs_review, reason, area, bbox, iscrowd, predicted_iou"
_STATE_DEFAULTS = (0, None)  # values of columns added later, for states saved before them (iscrowd, predicted_iou)


def capture_state(
    db: sqlite3.Connection, image_id: int, status: str, confidence: float | None, kind: str
) -> dict[str, Any]:
    """The current state of an image for the history: status + confidence (+ instances or tags by ``kind``)."""
    state: dict[str, Any] = {"kind": kind, "status": status, "confidence": confidence}
    if kind == "labels":
        state["instances"] = [
            list(r)
            for r in db.execute(
                f"SELECT {_STATE_INSTANCE_COLUMNS} FROM instances WHERE image_id = ? ORDER BY id", (image_id,)
            )
        ]
    elif kind == "tags":
        state["tags"] = [
            r[0] for r in db.execute("SELECT class_id FROM image_tags WHERE image_id = ?", (image_id,))
        ]
    return state


def apply_state(db: sqlite3.Connection, image_id: int, state: dict[str, Any]) -> None:
    """Write a state over an image: status, confidence, and its instances or tags by ``state["kind"]``."""
    db.execute(
        "UPDATE images SET status = ?, confidence = ? WHERE id = ?",
        (state["status"], state["confidence"], image_id),
    )
    if state["kind"] == "labels":
        db.execute("DELETE FROM instances WHERE image_id = ?", (image_id,))
        width = len(_STATE_INSTANCE_COLUMNS.split(","))
        rows = [_padded(image_id, values, width) for values in state["instances"]]
        db.executemany(
            f"INSERT INTO instances (image_id, {_STATE_INSTANCE_COLUMNS}) VALUES (?{', ?' * width})", rows
        )
    elif state["kind"] == "tags":
        db.execute("DELETE FROM image_tags WHERE image_id = ?", (image_id,))
        db.executemany(
            "INSERT INTO image_tags (image_id, class_id) VALUES (?, ?)",
            [(image_id, c) for c in state["tags"]],
        )


def _padded(image_id: int, values: list, width: int) -> tuple:
    """An instances row of a state: ``values`` completed with the defaults of columns added since it was saved."""
    missing = width - len(values)
    return (image_id, *values, *(_STATE_DEFAULTS[len(_STATE_DEFAULTS) - missing :] if missing > 0 else ()))


def push_state(db: sqlite3.Connection, image_id: int, stack: str, state: dict[str, Any], limit: int) -> None:
    """Push ``state`` onto a stack of an image; the undo stack is trimmed to its newest ``limit`` states."""
    db.execute(
        "INSERT INTO history (image_id, stack, state, created_at) VALUES (?, ?, ?, ?)",
        (image_id, stack, json.dumps(state), utc_now()),
    )
    if stack == "undo":
        db.execute(
            "DELETE FROM history WHERE image_id = ? AND stack = 'undo' AND id NOT IN "
            "(SELECT id FROM history WHERE image_id = ? AND stack = 'undo' ORDER BY id DESC LIMIT ?)",
            (image_id, image_id, limit),
        )


def pop_state(
    db: sqlite3.Connection, image_id: int, stack: str, kinds: Collection[str] | None = None
) -> dict[str, Any] | None:
    """Remove and return the newest state of a stack of an image (None when the stack is empty); with ``kinds``,
    the newest state of one of those kinds (states of other kinds stay where they are)."""
    for entry_id, text in db.execute(
        "SELECT id, state FROM history WHERE image_id = ? AND stack = ? ORDER BY id DESC", (image_id, stack)
    ).fetchall():
        state = json.loads(text)
        if kinds is None or state["kind"] in kinds:
            db.execute("DELETE FROM history WHERE id = ?", (entry_id,))
            return state
    return None


def record_edit(
    db: sqlite3.Connection, image_id: int, status: str, confidence: float | None, kind: str, limit: int
) -> None:
    """Before an edit of ``kind``: push the current state onto the undo stack and clear the redo stack."""
    push_state(db, image_id, "undo", capture_state(db, image_id, status, confidence, kind), limit)
    db.execute("DELETE FROM history WHERE image_id = ? AND stack = 'redo'", (image_id,))


def has_state(db: sqlite3.Connection, image_id: int, stack: str, kinds: Collection[str] | None = None) -> bool:
    """Whether a stack of an image holds at least one state (of one of ``kinds``, when given)."""
    rows = db.execute(
        "SELECT state FROM history WHERE image_id = ? AND stack = ?", (int(image_id), stack)
    ).fetchall()
    return any(kinds is None or json.loads(text)["kind"] in kinds for (text,) in rows)
