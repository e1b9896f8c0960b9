"""``dhr gui``: open the review GUI; the argument definitions shared with ``python app.py``.

The GUI itself (``app.py``, Gradio) runs in its own process, so this package never imports Gradio; the settings
``app.py`` needs from the command line (segmenter, ``Blocks.launch`` keywords) are built here.
"""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_UPLOAD = "64mb"
"""Largest file the page accepts as an upload."""

_VALUE_OPTIONS = (
    "project",
    "host",
    "port",
    "auth",
    "auth_file",
    "segmenter",
    "weights_dir",
    "device",
    "user",
)


def add_gui_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the GUI's options to ``parser`` (used by ``dhr gui`` and ``python app.py``)."""
    parser.add_argument(
        "--project",
        metavar="DIR",
        help="project folder to open (holds project.db); without it the bundled demo project is opened, "
        "created on first use in ~/.cache/dhr-label/demo-project",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="create the demo project in --project DIR (a new or empty folder) if it is not there yet",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    login = parser.add_mutually_exclusive_group()
    login.add_argument(
        "--auth",
        metavar="USER:PASS",
        help="require this login (use when --host is shared; visible to other local users in the process list, "
        f"--auth-file and ${AUTH_ENV} are not)",
    )
    login.add_argument(
        "--auth-file",
        metavar="FILE",
        help="require a login from FILE: one 'user:password' a line, '#' starts a comment",
    )
    parser.add_argument(
        "--segmenter",
        default="auto",
        help="auto (SAM ViT-B if its checkpoint is present, else GrabCut), sam_vit_b, sam_vit_l, sam_vit_h, grabcut",
    )
    parser.add_argument(
        "--weights-dir",
        metavar="DIR",
        help="checkpoint folder (default $DHR_WEIGHTS_DIR or ~/.cache/dhr-label/weights)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the segmenter, e.g. cpu or cuda")
    parser.add_argument(
        "--user", help="name recorded with each edit when there is no login (default: the OS user)"
    )
    return parser


def build_gui_parser(prog: str = "app.py") -> argparse.ArgumentParser:
    """The stand-alone parser of ``python app.py``."""
    parser = argparse.ArgumentParser(prog=prog, description="dhr-label review GUI")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return add_gui_arguments(parser)


def parse_auth(value: str) -> tuple[str, str]:
    """``"user:pass"`` -> ``("user", "pass")``; the password may itself contain ':'."""
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise ValueError(f"login {value!r} must look like user:password (both non-empty)")
    return user.strip(), password


def read_auth_file(path: str | Path) -> list[tuple[str, str]]:
    """Logins from a file: one ``user:password`` a line; blank lines and lines starting with '#' are skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: login file not found")
    logins = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            logins.append(parse_auth(line))
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected user:password") from None
    if not logins:
        raise ValueError(f"{path}: holds no login (expected lines like user:password)")
    return logins


AUTH_ENV = "DHR_GUI_AUTH"
"""Environment variable holding one ``user:password`` login (kept out of the process list, unlike ``--auth``)."""


def logins_from_args(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """The logins asked for by ``--auth`` / ``--auth-file`` / ``$DHR_GUI_AUTH``, or None for an open GUI."""
    if getattr(args, "auth", None):
        return [parse_auth(args.auth)]
    if getattr(args, "auth_file", None):
        return read_auth_file(args.auth_file)
    if os.environ.get(AUTH_ENV):
        try:
            return [parse_auth(os.environ[AUTH_ENV])]
        except ValueError:
            raise ValueError(f"${AUTH_ENV} must look like user:password (both non-empty)") from None
    return None


def default_user(args: argparse.Namespace) -> str:
    """Name written with edits when no login is used."""
    if getattr(args, "user", None):
        return str(args.user)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def open_project(args: argparse.Namespace):
    """The :class:`annotate.store.ProjectStore` the GUI should open, per ``--project`` / ``--demo``."""
    from annotate.review.demo import ensure_demo_project
    from annotate.store import DB_NAME, ProjectStore

    if args.project is None:
        return ensure_demo_project(None)
    root = Path(args.project).expanduser()
    if args.demo:
        return ensure_demo_project(root)
    if not (root / DB_NAME).is_file():
        raise FileNotFoundError(
            f"{root}: no project here ({DB_NAME} missing); create one with 'dhr init', or pass --demo to "
            "create the demo project in this folder"
        )
    return ProjectStore.open(root)


def model_settings(args: argparse.Namespace) -> Any:
    """The :class:`models.ModelSettings` of ``--device`` / ``--weights-dir`` / ``--segmenter``: the GUI's
    segmenter and every job it starts run with these."""
    from models.settings import ModelSettings

    return ModelSettings(device=args.device, weights_dir=args.weights_dir, segmenter=args.segmenter)


def build_segmenter_for(settings: Any, store: Any) -> Any:
    """The :class:`annotate.review.refine.SharedSegmenter` of ``settings`` (a :class:`models.ModelSettings`),
    with its embedding cache where the project keeps it (:attr:`ProjectLayout.embeddings_dir`)."""
    from annotate.review.refine import SharedSegmenter
    from models.embedding_cache import EmbeddingCache
    from models.segmenters import build_segmenter

    cache = EmbeddingCache(store.layout.embeddings_dir)
    seg = build_segmenter(
        name=settings.segmenter, weights_dir=settings.weights_dir, device=settings.device, cache=cache,
        download=settings.download,
    )
    return SharedSegmenter(seg)


def page_options() -> dict[str, Any]:
    """The page's own ``Blocks.launch`` options: its key bindings and CSS, no footer, no server-side rendering,
    and no run history (Gradio would copy every event's inputs and outputs into the browser's storage, several
    times per click)."""
    from annotate.review.assets import CSS, SHORTCUTS_JS

    return {"js": SHORTCUTS_JS, "css": CSS, "footer_links": [], "ssr_mode": False, "run_history": False}


def launch_kwargs(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    """Keyword arguments of Gradio's ``Blocks.launch`` for the parsed command line (creates ``PROJECT/exports``,
    the one folder the page may serve files from). Logins go through a throttling
    :class:`application.gui.login_gate.LoginGate`."""
    exports = store.layout.exports_dir
    exports.mkdir(parents=True, exist_ok=True)
    from application.gui.login_gate import LoginGate

    logins = logins_from_args(args)
    return {
        "server_name": args.host,
        "server_port": args.port,
        "auth": LoginGate(logins) if logins else None,
        "auth_message": "dhr-label: log in to review" if logins else None,
        "allowed_paths": [str(exports)],
        **page_options(),
        "show_error": True,
        "max_file_size": MAX_UPLOAD,
    }


def to_argv(args: argparse.Namespace) -> list[str]:
    """The GUI options of a parsed namespace as command-line words (to start ``app.py``)."""
    argv: list[str] = []
    for name in _VALUE_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    if getattr(args, "demo", False):
        argv.append("--demo")
    if getattr(args, "verbose", False):
        argv.append("--verbose")
    return argv


def _run_gui(args: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "application.gui.app"]
    return subprocess.call(command + to_argv(args), env=dict(os.environ))


def register(subparsers) -> None:
    """Add ``dhr gui``."""
    parser = subparsers.add_parser(
        "gui", help="open the review GUI in the browser (the demo project by default)"
    )
    add_gui_arguments(parser)
    parser.set_defaults(func=_run_gui)
