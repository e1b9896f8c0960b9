"""The ``dhr`` command line: one entry, one subcommand per thing a GUI user can do.

Each subcommand lives beside the code it drives, in a module exposing ``register(subparsers)``; the
module adds its parser and sets ``func`` (called with the parsed namespace, returning an exit code).
A command imports only its own module (:data:`COMMANDS`), and no module imports torch to build its parser,
so ``dhr --help``, ``dhr status`` or ``dhr weights list`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sqlite3
import sys
from pathlib import Path

from core.errors import UserError

COMMAND_MODULES = (
    "application.commands.weights",  # dhr weights: list / download / verify checkpoints
    "application.commands.project",  # dhr init / import-coco / export
    "application.commands.review",  # dhr accept / reject / review
    "application.commands.bootstrap",  # dhr bootstrap / merge-shards
    "application.commands.train",  # dhr train / eval
    "application.commands.gui",  # dhr gui
)


COMMANDS = {
    "weights": "application.commands.weights",
    "init": "application.commands.project",
    "import-coco": "application.commands.project",
    "export": "application.commands.project",
    "status": "application.commands.project",
    "remove": "application.commands.project",
    "accept": "application.commands.review",
    "reject": "application.commands.review",
    "review": "application.commands.review",
    "bootstrap": "application.commands.bootstrap",
    "merge-shards": "application.commands.bootstrap",
    "train": "application.commands.train",
    "eval": "application.commands.train",
    "gui": "application.commands.gui",
}
"""Subcommand -> the module that registers it (checked against the modules by the tests)."""


def _command_word(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), if it is a known one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


DESCRIPTION = "The dhr command line: image tags -> pseudo-labels -> review -> COCO (dhr COMMAND --help for more)."


def version() -> str:
    """The installed dhr-label version ("unknown" when run from a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("dhr-label")
    except PackageNotFoundError:
        return "unknown"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``dhr`` parser: every subcommand, or only the module of ``command`` (a :data:`COMMANDS` key)."""
    parser = argparse.ArgumentParser(prog="dhr", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"dhr-label {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = COMMAND_MODULES if command is None else (COMMANDS[command],)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_word(words))
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError) as error:  # bad input, missing files: one line; the rest a traceback
        logging.getLogger("dhr").error("%s", error)
        return 2
    except sqlite3.Error as error:  # met after opening: name the project's database
        project = getattr(args, "project", None)
        where = f"{Path(project) / 'project.db'}: " if project else ""
        reason = (
            "the project is busy (another process is writing to it)"
            if "locked" in str(error)
            else ("damaged project database")
        )
        logging.getLogger("dhr").error("%s%s: %s", where, reason, error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
