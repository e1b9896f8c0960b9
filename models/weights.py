"""Pretrained checkpoints: official URLs, SHA-256 checks, a download cache folder, safe loading.

Every checkpoint the product can use is one ``Checkpoint`` entry in ``CHECKPOINTS``. Files live in one folder,
chosen by ``default_weights_dir``: the ``--weights-dir`` option, else ``$DHR_WEIGHTS_DIR``, else
``~/.cache/dhr-label/weights``. ``checkpoint_path`` finds (or downloads) a file and verifies its hash;
``load_state_dict`` reads it with ``torch.load(..., weights_only=True)``.

How the hash is verified depends on what the publisher released (``Checkpoint.sha256``):

- a full 64-hex SHA-256 (the three Segment Anything v1 checkpoints): the file's digest must equal it;
- a hex prefix (torchvision's ImageNet ResNets, whose file names carry the first 8 hex digits of the
  SHA-256, the rule ``torch.hub`` itself checks): the file's digest must start with it;
- ``None`` (DINO, SAM 2.1 and HQ-SAM: their publishers give no hash): nothing to compare, so the file is
  accepted; ``verify_checkpoint`` warns that the file could not be checked and names its digest, and
  ``dhr weights download`` / ``verify`` print it. Models built from such a file carry the digest in their id.

A file is hashed on its first use in a process; later uses in the same process skip re-hashing gigabytes
while the file keeps its device, inode, size, mtime and ctime (the ctime cannot be set back by whoever can
write the folder, so a replaced file is always hashed again). Nothing beside the checkpoint is trusted: a
``<file>.sha256`` note left by older releases is ignored.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import atomic_write, file_sha256, load_torch

if TYPE_CHECKING:  # torch itself is imported where a checkpoint is read: listing weights needs no torch
    import torch
from core.errors import UserError

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "DHR_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/dhr-label/weights")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    """One downloadable checkpoint.

    ``sha256`` is the published SHA-256 (lowercase hex), a known prefix of it, or None when none is published.
    ``size_bytes`` is the exact file size where known; ``parameters`` the parameter count of the architecture
    the file fits (counted on the package's own builder), from which :meth:`approx_bytes` estimates the size.
    """

    name: str
    url: str
    sha256: str | None
    filename: str
    description: str = ""
    size_bytes: int | None = None
    parameters: int | None = None

    def approx_bytes(self) -> int | None:
        """The file size: exact when known, else 4 bytes per parameter (float32 weights), else None."""
        if self.size_bytes is not None:
            return self.size_bytes
        return 4 * self.parameters if self.parameters is not None else None


def _entries(*items: Checkpoint) -> dict[str, Checkpoint]:
    return {item.name: item for item in items}


_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
_TORCHVISION = "https://download.pytorch.org/models/"
_DINO = "https://dl.fbaipublicfiles.com/dino/"
_SAM2 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_HQ = "https://huggingface.co/lkeab/hq-sam/resolve/main/"  # the publisher's download page for every HQ-SAM

CHECKPOINTS: dict[str, Checkpoint] = _entries(
    # Segment Anything (Kirillov et al., 2023), Apache-2.0; full SHA-256 of the released files.
    Checkpoint(
        "sam_vit_b",
        _SAM + "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        "sam_vit_b_01ec64.pth",
        "Segment Anything ViT-B (91M parameters)",
        375_042_383,
    ),
    Checkpoint(
        "sam_vit_l",
        _SAM + "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        "sam_vit_l_0b3195.pth",
        "Segment Anything ViT-L (308M parameters)",
    ),
    Checkpoint(
        "sam_vit_h",
        _SAM + "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        "sam_vit_h_4b8939.pth",
        "Segment Anything ViT-H (636M parameters)",
        2_564_550_879,
    ),
    # SAM 2.1 (Ravi et al., 2024), Apache-2.0; released 2024-09-29 without a published hash.
    Checkpoint("sam2.1_hiera_tiny", _SAM2 + "sam2.1_hiera_tiny.pt", None, "sam2.1_hiera_tiny.pt",
               "SAM 2.1 Hiera-T", parameters=38_962_754),
    Checkpoint("sam2.1_hiera_small", _SAM2 + "sam2.1_hiera_small.pt", None, "sam2.1_hiera_small.pt",
               "SAM 2.1 Hiera-S", parameters=46_060_610),
    Checkpoint("sam2.1_hiera_base_plus", _SAM2 + "sam2.1_hiera_base_plus.pt", None, "sam2.1_hiera_base_plus.pt",
               "SAM 2.1 Hiera-B+", parameters=80_850_434),
    Checkpoint("sam2.1_hiera_large", _SAM2 + "sam2.1_hiera_large.pt", None, "sam2.1_hiera_large.pt",
               "SAM 2.1 Hiera-L", parameters=224_446_898),
    # HQ-SAM (Ke et al., 2023), Apache-2.0; no published hash. vit_tiny is Light HQ-SAM (MobileSAM's TinyViT).
    Checkpoint("sam_hq_vit_tiny", _HQ + "sam_hq_vit_tiny.pth", None, "sam_hq_vit_tiny.pth",
               "Light HQ-SAM TinyViT", parameters=10_588_743),
    Checkpoint("sam_hq_vit_b", _HQ + "sam_hq_vit_b.pth", None, "sam_hq_vit_b.pth", "HQ-SAM ViT-B",
               parameters=94_806_832),
    Checkpoint("sam_hq_vit_l", _HQ + "sam_hq_vit_l.pth", None, "sam_hq_vit_l.pth", "HQ-SAM ViT-L",
               parameters=313_676_336),
    Checkpoint("sam_hq_vit_h", _HQ + "sam_hq_vit_h.pth", None, "sam_hq_vit_h.pth", "HQ-SAM ViT-H",
               parameters=642_686_256),
    # torchvision ImageNet ResNets; the file name carries the SHA-256 prefix (checked as a prefix).
    Checkpoint(
        "resnet50",
        _TORCHVISION + "resnet50-0676ba61.pth",
        "0676ba61",
        "resnet50-0676ba61.pth",
        "ResNet-50 ImageNet (torchvision IMAGENET1K_V1)",
    ),
    Checkpoint(
        "resnet50_v2",
        _TORCHVISION + "resnet50-11ad3fa6.pth",
        "11ad3fa6",
        "resnet50-11ad3fa6.pth",
        "ResNet-50 ImageNet (torchvision IMAGENET1K_V2)",
    ),
    Checkpoint(
        "resnet101",
        _TORCHVISION + "resnet101-63fe2227.pth",
        "63fe2227",
        "resnet101-63fe2227.pth",
        "ResNet-101 ImageNet (torchvision IMAGENET1K_V1)",
    ),
    Checkpoint(
        "resnet101_v2",
        _TORCHVISION + "resnet101-cd907fc2.pth",
        "cd907fc2",
        "resnet101-cd907fc2.pth",
        "ResNet-101 ImageNet (torchvision IMAGENET1K_V2)",
    ),
    # DINO (Caron et al., 2021) backbone-only checkpoints; no published hash (see the module docstring).
    Checkpoint(
        "dino_vits16",
        _DINO + "dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
        None,
        "dino_deitsmall16_pretrain.pth",
        "DINO ViT-S/16",
    ),
    Checkpoint(
        "dino_vits8",
        _DINO + "dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
        None,
        "dino_deitsmall8_pretrain.pth",
        "DINO ViT-S/8",
    ),
    Checkpoint(
        "dino_vitb16",
        _DINO + "dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        None,
        "dino_vitbase16_pretrain.pth",
        "DINO ViT-B/16",
    ),
    Checkpoint(
        "dino_vitb8",
        _DINO + "dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
        None,
        "dino_vitbase8_pretrain.pth",
        "DINO ViT-B/8",
    ),
)


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A checkpoint is neither in the weights folder nor downloadable (offline or ``download=False``)."""


class ChecksumError(UserError, ValueError):
    """A checkpoint file's SHA-256 differs from the published one."""


Downloader = Callable[[str, Path], None]  # (url, destination file) -> None; raises OSError on failure


def get_checkpoint(name: str | Checkpoint) -> Checkpoint:
    """The ``CHECKPOINTS`` entry called ``name`` (a ``Checkpoint`` is returned as is)."""
    if isinstance(name, Checkpoint):
        return name
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {', '.join(sorted(CHECKPOINTS))}")
    return CHECKPOINTS[name]


def default_weights_dir(override: str | Path | None = None) -> Path:
    """The weights folder: ``override`` (``--weights-dir``) > ``$DHR_WEIGHTS_DIR`` > ``~/.cache/dhr-label/weights``."""
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(WEIGHTS_ENV, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_WEIGHTS_DIR.expanduser()


_VERIFIED: dict[tuple[str, int, int, int, int, int], str] = {}
"""Digests hashed by this process, by (path, device, inode, size, mtime, ctime) of the file when hashed."""


def _identity(path: Path) -> tuple[str, int, int, int, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _known_digest(path: Path) -> str | None:
    """The digest this process computed for ``path`` if the file is unchanged since (None otherwise)."""
    try:
        return _VERIFIED.get(_identity(path))
    except OSError:
        return None


def _remember(path: Path, digest: str) -> None:
    try:
        _VERIFIED[_identity(path)] = digest
    except OSError:
        pass


def _digest_matches(digest: str, expected: str | None) -> bool:
    return expected is None or digest.startswith(expected.lower())


def verify_checkpoint(name: str | Checkpoint, path: str | Path, *, use_note: bool = True) -> str:
    """Check the SHA-256 of ``path`` against checkpoint ``name``; return the file's digest.

    Raises ChecksumError naming the file, both digests and the URL when they differ. A checkpoint without a
    published hash passes, with a warning each time the file is hashed. The file is hashed on its first use in
    this process; ``use_note=False`` re-hashes even when this process hashed the unchanged file before.
    """
    ckpt = get_checkpoint(name)
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(_missing_message(ckpt, path.parent, "cannot be verified"))
    digest = _known_digest(path) if use_note else None
    fresh = digest is None
    if fresh:
        logger.info("hashing %s", path)
        digest = file_sha256(path)
    if not _digest_matches(digest, ckpt.sha256):
        kind = "SHA-256" if ckpt.sha256 and len(ckpt.sha256) == 64 else "SHA-256 prefix"
        raise ChecksumError(
            f"checkpoint file {path} is corrupt or not {ckpt.name}: its SHA-256 is {digest}, expected {kind} "
            f"{ckpt.sha256}. Delete it and download it again from {ckpt.url} "
            f"(dhr weights download {ckpt.name} --weights-dir {path.parent})."
        )
    if ckpt.sha256 is None and fresh:
        warnings.warn(
            f"{ckpt.name} has no published SHA-256; {path} could not be verified (its SHA-256 is {digest})",
            stacklevel=2,
        )
    _remember(path, digest)
    return digest


def _missing_message(ckpt: Checkpoint, folder: Path, reason: str) -> str:
    return (
        f"checkpoint {ckpt.filename} ({ckpt.description or ckpt.name}) is not in {folder} and {reason}. "
        f"Download it from {ckpt.url} and put it at {folder / ckpt.filename} "
        f"(or `dhr weights download {ckpt.name} --from FILE` to install a copy; "
        f"--weights-dir or {WEIGHTS_ENV} select another folder)."
    )


def urllib_download(url: str, destination: Path, *, progress: bool = True, desc: str | None = None) -> None:
    """Stream ``url`` (http(s):// or file://) into ``destination`` with a tqdm progress bar."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (official URLs and file://)
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(destination, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc or destination.name,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def download_checkpoint(
    name: str | Checkpoint,
    weights_dir: str | Path | None = None,
    *,
    downloader: Downloader | None = None,
    force: bool = False,
) -> Path:
    """Download checkpoint ``name`` into the weights folder, verify it, and return its path.

    The file is written to a temporary name in the same folder and moved into place (``os.replace``) only
    after its hash matches, so an interrupted or corrupt download never leaves a bad file under the real
    name. ``downloader(url, destination)`` replaces the urllib downloader (tests pass a local copier).
    An existing verified file is kept unless ``force``. Offline -> WeightsNotFoundError.
    """
    ckpt = get_checkpoint(name)
    folder = default_weights_dir(weights_dir)
    target = folder / ckpt.filename
    if target.is_file() and not force:
        verify_checkpoint(ckpt, target)
        return target
    digest = ""

    def fetch_and_verify(tmp: Path) -> None:
        nonlocal digest
        logger.debug("fetching %s from %s", ckpt.filename, ckpt.url)  # offline: the error says it, not a log
        try:
            if downloader is None:
                urllib_download(ckpt.url, tmp, desc=ckpt.filename)
            else:
                downloader(ckpt.url, tmp)
        except (urllib.error.URLError, OSError) as error:
            raise WeightsNotFoundError(
                _missing_message(ckpt, folder, f"could not be downloaded ({error})")
            ) from error
        digest = file_sha256(tmp)
        if not _digest_matches(digest, ckpt.sha256):
            raise ChecksumError(
                f"download of {ckpt.filename} from {ckpt.url} is corrupt: SHA-256 {digest}, "
                f"expected {ckpt.sha256}; nothing was saved in {folder}"
            )

    atomic_write(target, fetch_and_verify)
    logger.info("downloaded %s from %s", ckpt.filename, ckpt.url)
    if ckpt.sha256 is None:
        verify_checkpoint(ckpt, target)  # warns that there was nothing to compare with
    else:
        _remember(target, digest)
    return target


def checkpoint_path(
    name: str | Checkpoint,
    weights_dir: str | Path | None = None,
    download: bool = True,
    *,
    downloader: Downloader | None = None,
) -> Path:
    """Path of the verified checkpoint file, downloading it first if missing and ``download`` is True.

    Raises WeightsNotFoundError (a FileNotFoundError) naming the file, its URL and the folder to put it in
    when it is missing and cannot be downloaded, and ChecksumError when the file's hash is wrong.
    """
    ckpt = get_checkpoint(name)
    folder = default_weights_dir(weights_dir)
    target = folder / ckpt.filename
    if target.is_file():
        verify_checkpoint(ckpt, target)
        return target
    if not download:
        raise WeightsNotFoundError(_missing_message(ckpt, folder, "downloading is off"))
    return download_checkpoint(ckpt, folder, downloader=downloader)


def checkpoint_with_id(
    name: str | Checkpoint, weights_dir: str | Path | None = None, download: bool = True
) -> tuple[Path, str]:
    """The verified checkpoint file (see :func:`checkpoint_path`) and the id of a model built from it,
    ``"<name>@<first 12 hex digits of the file's SHA-256>"`` (the file's own digest: a checkpoint without a
    published hash is named by what was downloaded)."""
    ckpt = get_checkpoint(name)
    path = checkpoint_path(ckpt, weights_dir, download)
    return path, f"{ckpt.name}@{verify_checkpoint(ckpt, path)[:12]}"


def sam_fallback_message(weights_dir: str | Path | None = None, name: str = "sam_vit_b", detail: str = "") -> str:
    """The sentence shown when checkpoint ``name`` (the one ``auto`` wants) is missing and GrabCut runs instead;
    ``detail`` (e.g. why downloading failed) follows the folder."""
    ckpt = CHECKPOINTS[name]
    folder = default_weights_dir(weights_dir)
    detail = f" ({detail})" if detail else ""
    return (
        f"Segment Anything checkpoint {ckpt.filename} not found in {folder}{detail}: using the GrabCut fallback "
        f"(lower quality). Run `dhr weights download {name}` or put the file from {ckpt.url} in that folder."
    )


def is_present(name: str | Checkpoint, weights_dir: str | Path | None = None) -> bool:
    """Whether the checkpoint file exists in the weights folder (its hash is not checked here)."""
    ckpt = get_checkpoint(name)
    return (default_weights_dir(weights_dir) / ckpt.filename).is_file()


def load_state_dict(
    name: str | Checkpoint,
    weights_dir: str | Path | None = None,
    download: bool = True,
    *,
    map_location: str | torch.device = "cpu",
    downloader: Downloader | None = None,
) -> dict[str, Any]:
    """The checkpoint's state dict, read with ``torch.load(..., weights_only=True)`` after the hash check.

    Checkpoints that wrap their weights (``{"model": ...}`` or ``{"state_dict": ...}``) are unwrapped.
    """
    path = checkpoint_path(name, weights_dir, download, downloader=downloader)
    state = load_torch(path, what="checkpoint file", map_location=map_location)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint file {path} does not hold a state dict (found {type(state).__name__})")
    return state


def copy_file(url_or_path: str, destination: Path) -> None:
    """A ``Downloader`` that copies a local file (``file://`` URL or plain path), for offline installs."""
    source = url_or_path[len("file://") :] if url_or_path.startswith("file://") else url_or_path
    shutil.copyfile(source, destination)


def load_exact_state_dict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str,
                          drop_prefix: str = "") -> None:
    """Load ``state_dict`` into ``module``, all of it and nothing else (entries under ``drop_prefix``, e.g. a
    classification head the module lacks, are dropped first); a shape mismatch, a missing or an unexpected key
    raises ValueError naming ``what``."""
    own = {k: v for k, v in state_dict.items() if not (drop_prefix and k.startswith(drop_prefix))}
    try:
        missing, unexpected = module.load_state_dict(own, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"state dict does not fit {what}: {error}") from error
    if missing or unexpected:
        raise ValueError(
            f"state dict does not fit {what}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
