"""The ``dhr`` command line: one entry, one subcommand per thing a GUI user can do.

Each subcommand lives beside the code it drives, in a module exposing ``register(subparsers)``; the
module adds its parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sqlite3
import sys
from pathlib import Path

COMMAND_MODULES = (
    "annotate.cli_weights",  # dhr weights: list / download / verify checkpoints
    "annotate.cli_project",  # dhr init / import-coco / export
    "annotate.cli_bootstrap",  # dhr bootstrap / merge-shards
    "training.cli",  # dhr train / eval
    "annotate.cli_gui",  # dhr gui
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dhr", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as error:
        logging.getLogger("dhr").error("%s", error)
        return 2
    except sqlite3.Error as error:  # met after opening: name the project's database
        project = getattr(args, "project", None)
        where = f"{Path(project) / 'project.db'}: " if project else ""
        reason = "the project is busy (another process is writing to it)" if "locked" in str(error) else "damaged project database"
        logging.getLogger("dhr").error("%s%s: %s", where, reason, error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
