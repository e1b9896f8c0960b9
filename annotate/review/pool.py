"""The review sessions of the GUI's open tabs, with a bound on how many keep their image in memory.

Each browser tab has a :class:`annotate.review.view.Ui` whose session holds the open image and one mask per
instance, hundreds of megabytes for a large photo. :class:`SessionPool` keeps the pixels of the
``max_loaded`` most recently used tabs only: an older tab's session is released
(:meth:`annotate.review.session.ReviewSession.release`) and reads its image again when it is next used. A
session in the middle of a handler is never released (the bound is restored when it finishes). A closed tab's
session is released at once (Gradio keeps a closed tab's state for an hour, in case it is reopened).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_MAX_LOADED = 4
"""Tabs whose image stays in memory at once."""


class SessionPool:
    """Tabs' :class:`Ui` objects; at most ``max_loaded`` of them hold their image in memory."""

    def __init__(self, max_loaded: int = DEFAULT_MAX_LOADED) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self.max_loaded = int(max_loaded)
        self._lock = threading.Lock()
        self._recent: OrderedDict[int, Any] = OrderedDict()
        self._tabs: dict[str, Any] = {}
        self._busy: Counter[int] = Counter()

    def opened(self, ui: Any, tab: str | None) -> None:
        """A tab was loaded with ``ui`` (``tab``: Gradio's session hash, to release it when the tab closes)."""
        with self._lock:
            if tab:
                self._tabs[tab] = ui
        self.use(ui)

    def use(self, ui: Any) -> None:
        """``ui`` is about to be used: bring its image back if it was released, release the least recent ones."""
        with self.using(ui):
            pass

    @contextmanager
    def using(self, ui: Any) -> Iterator[None]:
        """Around a handler of ``ui``: its image is in memory, and no other handler releases it meanwhile."""
        with self._lock:
            self._recent[id(ui)] = ui
            self._recent.move_to_end(id(ui))
            self._busy[id(ui)] += 1
            evicted = self._evict()
        try:
            for old in evicted:
                old.session.release()
            ui.session.restore()
            yield
        finally:
            with self._lock:
                self._busy[id(ui)] -= 1
                if self._busy[id(ui)] <= 0:
                    del self._busy[id(ui)]
                evicted = self._evict()
            for old in evicted:
                old.session.release()

    def _evict(self) -> list[Any]:
        """Take the least recently used idle sessions out while more than ``max_loaded`` are in (under the lock);
        the most recently used one always stays."""
        evicted = []
        for key in list(self._recent)[:-1]:
            if len(self._recent) <= self.max_loaded:
                break
            if not self._busy.get(key):
                evicted.append(self._recent.pop(key))
        return evicted

    def closed(self, tab: str | None) -> None:
        """The tab ``tab`` was closed: release its session now."""
        with self._lock:
            ui = self._tabs.pop(tab, None) if tab else None
            if ui is not None and not self._busy.get(id(ui)):
                self._recent.pop(id(ui), None)
            else:
                ui = None
        if ui is not None:
            ui.session.release()

    @property
    def loaded(self) -> int:
        """How many sessions may hold an image in memory now."""
        with self._lock:
            return len(self._recent)


__all__ = ["DEFAULT_MAX_LOADED", "SessionPool"]
