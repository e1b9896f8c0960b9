"""Reading images from disk into HWC uint8 RGB arrays, with one clear error for every bad file.

Conversions applied by :func:`load_image` (in this order):

- EXIF orientation (tags 2-8) is applied, so the array is what a viewer shows;
- multi-frame files (GIF, TIFF) give their first frame;
- 1-bit, grayscale ("L") and palette ("P") images become RGB;
- images with transparency ("RGBA", "LA", "PA", "P" with a transparent colour) are composited on white:
  transparent pixels become white, half-transparent ones are blended, so the annotator sees the same picture
  as a browser on a white page;
- 16-bit grayscale ("I;16*") is scaled to 8 bits as ``round(v / 257)`` (0 -> 0, 65535 -> 255); 32-bit integer
  ("I") images are treated as 16-bit when every value lies in [0, 65535], otherwise min-max scaled; float ("F")
  images in [0, 1] are scaled by 255, otherwise min-max scaled; 16-bit RGB PNGs are read by Pillow as 8-bit RGB;
- CMYK (including Adobe inverted CMYK JPEGs), YCbCr and other colour spaces are converted to RGB by Pillow.

A missing file raises ``FileNotFoundError``; an unreadable, corrupt or truncated file, or one with more pixels
than ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, 100 megapixels), raises :class:`ImageError`, a
``ValueError`` whose message names the file and the problem. Decompression bombs beyond Pillow's own hard limit
(about 179 megapixels) are refused whatever ``max_pixels`` says. Given the SHA-256 the file must have,
:func:`load_image` reads its bytes once, checks them and decodes those very bytes (:class:`ImageChanged`,
naming the file, when they differ).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.files import file_sha256

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image (width * height) :func:`load_image` decodes unless told otherwise."""

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # orientations that swap width and height


class ImageError(UserError, ValueError):
    """An image file that cannot be used: unreadable, corrupt, truncated, or too large."""


class ImageChanged(ImageError):
    """An image file whose bytes no longer match the SHA-256 recorded for it."""


def _open(path: Path, max_pixels: int, data: bytes | None = None):
    """Open ``path`` lazily with Pillow (header only) and check its pixel count.

    With ``data`` (the file's bytes, already read) the image is opened from them instead of the file.
    """
    from PIL import Image, UnidentifiedImageError

    if data is None:
        if not path.exists():
            raise FileNotFoundError(f"{path}: image file not found")
        if not path.is_file():
            raise ImageError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path if data is None else io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ImageError(f"{path}: not a readable image (unknown or corrupt format)") from error
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: image too large ({error})") from error
    except OSError as error:
        raise ImageError(f"{path}: cannot read image: {error}") from error
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ImageError(f"{path}: image has an empty size {width}x{height}")
    if width * height > max_pixels:
        image.close()
        raise ImageError(
            f"{path}: image too large: {width}x{height} = {width * height} pixels, the limit is {max_pixels}"
        )
    return image


def _png_exif_after_data(path: Path) -> bytes | None:
    """Payload of an ``eXIf`` chunk stored after the image data of a PNG, found by skipping chunk bodies.

    Pillow reads chunks before IDAT when opening; a later eXIf chunk would make it decode the whole image.
    """
    with path.open("rb") as handle:
        handle.seek(8)
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return None
            length, kind = struct.unpack(">I4s", header)
            if kind == b"eXIf":
                return handle.read(length)
            if kind == b"IEND":
                return None
            handle.seek(length + 4, os.SEEK_CUR)


def _orientation(image, path: Path | None = None) -> int:
    """EXIF orientation tag of a Pillow image (1 when absent or unreadable), without decoding pixels."""
    from PIL import Image

    try:
        if image.format == "PNG" and "exif" not in image.info and path is not None:
            payload = _png_exif_after_data(path)
            exif = Image.Exif()
            if payload:
                exif.load(payload)
        else:
            exif = image.getexif()
        value = exif.get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, struct.error):  # malformed EXIF blocks: treat as no rotation
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(image, path: Path) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to an (H, W, 3) uint8 RGB array (see module docstring)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode.startswith("I;16"):
        values = np.asarray(image).astype(np.float64)
        gray = np.rint(values / 257.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ImageError(f"{path}: image contains NaN or infinite values")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if mode == "I" and low >= 0 and high <= 65535:
            gray = np.rint(values / 257.0)
        elif mode == "F" and low >= 0 and high <= 1:
            gray = np.rint(values * 255.0)
        else:
            gray = np.rint((values - low) / (high - low) * 255.0) if high > low else np.zeros_like(values)
        gray = gray.astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8).copy()
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except ValueError as error:
        raise ImageError(f"{path}: cannot convert image mode {mode!r} to RGB: {error}") from error


def read_verified(path: Path, sha256: str) -> bytes:
    """The bytes of ``path``, read once; :class:`ImageChanged` when their SHA-256 is not ``sha256``."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: image file not found")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ImageChanged(
            f"{path}: the file changed since it was added to the project (SHA-256 {actual[:12]}..., "
            f"recorded {sha256[:12]}...); restore the original file or remove the image from the project"
        )
    return data


def load_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, sha256: str | None = None
) -> np.ndarray:
    """Read an image file as it is displayed.

    Args:
        path: image file (any format Pillow reads: JPEG, PNG, TIFF, WebP, BMP, GIF, ...).
        max_pixels: refuse images with more than this many pixels (width * height).
        sha256: the hex SHA-256 the file must have; the bytes are read once, checked, then decoded, so what
            is decoded is what was checked.

    Returns:
        (H, W, 3) uint8 RGB array, C-contiguous, EXIF rotation applied (H, W are the displayed height and width).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageError: unreadable, corrupt or truncated file, unsupported mode, or too many pixels.
        ImageChanged: ``sha256`` given and the file's bytes do not match it.
    """
    from PIL import ImageOps

    path = Path(path)
    data = read_verified(path, sha256) if sha256 is not None else None
    image = _open(path, max_pixels, data)
    try:
        with image:
            image.load()
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            try:
                upright = ImageOps.exif_transpose(image)
            except (OSError, ValueError, SyntaxError):  # malformed EXIF: keep the stored orientation
                upright = image
            return np.ascontiguousarray(_to_rgb(upright, path))
    except ImageError:
        raise
    except (OSError, SyntaxError, EOFError) as error:  # Pillow's errors for corrupt or truncated data
        raise ImageError(f"{path}: corrupt or truncated image: {error}") from error


def image_size(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of the image as displayed (EXIF rotation applied), read from the header only.

    Raises FileNotFoundError for a missing file and :class:`ImageError` for an unreadable or too large one.
    The pixel data is not decoded, so a truncated file may pass here and fail in :func:`load_image`.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        width, height = image.size
        if _orientation(image, path) in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
    return int(width), int(height)


def has_transparency(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    """Whether the image has an alpha channel or a transparent colour (read from the header only): such images
    are composited over white by :func:`load_image`."""
    with _open(Path(path), max_pixels) as image:
        return _has_alpha(image)


def _has_alpha(image) -> bool:
    mode = image.mode
    return mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)


def image_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes (a content hash: identical files give identical hashes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    return file_sha256(path, chunk_size)
