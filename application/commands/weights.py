"""``dhr weights list | download NAME | verify NAME``: the checkpoints in the weights folder."""

from __future__ import annotations

import argparse
import functools

from models import weights


def _add_weights_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights-dir",
        default=None,
        help=f"checkpoint folder (default: ${weights.WEIGHTS_ENV} or ~/.cache/dhr-label/weights)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dhr weights`` and its three subcommands."""
    parser = subparsers.add_parser("weights", help="list, download or verify pretrained checkpoints")
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="checkpoints, where they go and whether they are present")
    _add_weights_dir(listing)
    listing.set_defaults(func=run_list)

    download = actions.add_parser("download", help="download a checkpoint and verify its SHA-256")
    download.add_argument("name", choices=sorted(weights.CHECKPOINTS))
    download.add_argument(
        "--from", dest="source", default=None, help="install from a local file instead of the URL (offline)"
    )
    download.add_argument(
        "--force", action="store_true", help="download again even if a verified file exists"
    )
    _add_weights_dir(download)
    download.set_defaults(func=run_download)

    verify = actions.add_parser("verify", help="check the SHA-256 of a checkpoint in the weights folder")
    verify.add_argument("name", choices=sorted(weights.CHECKPOINTS))
    _add_weights_dir(verify)
    verify.set_defaults(func=run_verify)


def _size(ckpt: weights.Checkpoint, path) -> str:
    """The file's size when present, else its known or estimated size (``~``: 4 bytes per parameter)."""
    if path.is_file():
        return f"{path.stat().st_size / 1e6:.0f} MB"
    if ckpt.size_bytes is not None:
        return f"{ckpt.size_bytes / 1e6:.0f} MB"
    estimate = ckpt.approx_bytes()
    return f"~{estimate / 1e6:.0f} MB" if estimate is not None else "?"


def run_list(args: argparse.Namespace) -> int:
    """Print a table of the checkpoints (size, presence, file, URL) and which segmenter ``auto`` picks."""
    from application.commands.choices import SEGMENTER_NAMES

    folder = weights.default_weights_dir(args.weights_dir)
    print(f"weights folder: {folder}")
    print(f"{'name':<23} {'present':<8} {'size':>8}  {'file':<30} url")
    for name, ckpt in weights.CHECKPOINTS.items():
        path = folder / ckpt.filename
        present = "yes" if path.is_file() else "no"
        print(f"{name:<23} {present:<8} {_size(ckpt, path):>8}  {ckpt.filename:<30} {ckpt.url}")
    segmenters = [name for name in SEGMENTER_NAMES if name in weights.CHECKPOINTS]
    if not any(weights.is_present(name, folder) for name in segmenters):
        print(f"\nnote: {weights.sam_fallback_message(folder, 'sam_hq_vit_tiny')}")
    print("\n`--segmenter auto` runs Light SAM (light_sam, from the sam_hq_vit_tiny file) on the CPU and SAM 2.1 Hiera-L or B+ on CUDA, "
          "downloading it when missing; offline, another checkpoint present here, else GrabCut.")
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Download (or install from ``--from``) one checkpoint into the weights folder."""
    downloader = functools.partial(_copy_from, args.source) if args.source else None
    path = weights.download_checkpoint(args.name, args.weights_dir, downloader=downloader, force=args.force)
    digest = weights.verify_checkpoint(args.name, path)
    if weights.get_checkpoint(args.name).sha256 is None:
        print(f"{args.name}: {path} (no published SHA-256 to compare; its SHA-256 is {digest})")
    else:
        print(f"{args.name}: {path} (verified, SHA-256 {digest})")
    return 0


def _copy_from(source: str, url: str, destination) -> None:
    weights.copy_file(source, destination)


def run_verify(args: argparse.Namespace) -> int:
    """Re-hash one checkpoint file; exit 0 when it matches, 2 (with the reason) when not."""
    ckpt = weights.get_checkpoint(args.name)
    path = weights.default_weights_dir(args.weights_dir) / ckpt.filename
    digest = weights.verify_checkpoint(ckpt, path, use_note=False)
    status = "no published SHA-256 to compare" if ckpt.sha256 is None else "SHA-256 matches"
    print(f"{args.name}: {path} {status} ({digest})")
    return 0
