"""The base of every error meant for the person running the program.

A :class:`UserError` carries a message that says what went wrong and what to do; the command line and the GUI
show it in one line. Project errors derive from it as well as from the built-in class they refine
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so callers may catch either. Any other exception is a
bug or a failure of a library underneath (torch's ``RuntimeError`` included) and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error whose message is meant for the user (shown in one line, without a traceback)."""
