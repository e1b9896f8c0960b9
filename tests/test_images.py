"""annotate.images: every kind of image file a user may bring, decoded to HWC uint8 RGB or refused clearly."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.images import ImageError, image_sha256, image_size, load_image


def _quadrants(width: int = 40, height: int = 20) -> np.ndarray:
    """(H, W, 3) uint8 with four flat colours: red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = (255, 0, 0)
    image[:h, w:] = (0, 255, 0)
    image[h:, :w] = (0, 0, 255)
    image[h:, w:] = (255, 255, 255)
    return image


def test_rgb_png_exact(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (13, 17, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, array)
    assert image_size(tmp_path / "a.png") == (17, 13)


def test_exif_orientation_6_rotates_clockwise(tmp_path: Path) -> None:
    stored = _quadrants(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=100, exif=exif.tobytes())
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)
    assert image_size(tmp_path / "r.jpg") == (20, 40)
    expected = np.rot90(stored, k=-1)  # clockwise
    # flat regions away from JPEG block edges are exact within a few levels
    for y, x in [(5, 5), (5, 15), (35, 5), (35, 15)]:
        np.testing.assert_allclose(out[y, x].astype(int), expected[y, x].astype(int), atol=8)
    assert out[5, 15, 0] > 240 and out[5, 15, 1] < 15  # stored top-left red is now top-right


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (16, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    Image.fromarray(gray > 127).save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[:, :, 1], np.where(gray > 127, 255, 0))


def test_16bit_png_scaled_to_8bit(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_float_tiff_in_unit_range(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tiff")
    np.testing.assert_array_equal(load_image(tmp_path / "f.tiff")[0, :, 1], [0, 128, 255])


def test_cmyk_jpeg_converted(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red in CMYK
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[8, 8].astype(int), [255, 0, 0], atol=6)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)  # opaque black stays black
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent becomes white
    rgba[1, 0] = (255, 0, 0, 128)  # half red over white
    rgba[1, 1] = (10, 20, 30, 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png").astype(int)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    np.testing.assert_allclose(out[1, 0], [255, 127, 127], atol=1)
    np.testing.assert_array_equal(out[1, 1], [10, 20, 30])


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png")[1, 0], [0, 0, 255])
    image.save(tmp_path / "pt.png", transparency=1)
    out = load_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])  # transparent index 1 -> white
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])


def test_truncated_jpeg_refused(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*(truncated|corrupt)"):
        load_image(tmp_path / "cut.jpg")


def test_random_bytes_and_empty_file_refused(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(
        np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("noise.png", "empty.jpg"):
        with pytest.raises(ImageError, match=name.replace(".", r"\.")):
            load_image(tmp_path / name)
        with pytest.raises(ImageError, match=name.replace(".", r"\.")):
            image_size(tmp_path / name)
    assert issubclass(ImageError, ValueError)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (8-bit gray) with a tiny, incomplete data stream."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_pixel_limit(tmp_path: Path) -> None:
    (tmp_path / "huge.png").write_bytes(_png_header_only(12_000, 10_000))  # 120 MP > default 100 MP
    with pytest.raises(ImageError, match=r"huge\.png.*too large.*120000000"):
        load_image(tmp_path / "huge.png")
    with pytest.raises(ImageError, match="too large"):
        image_size(tmp_path / "huge.png")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(30_000, 30_000))  # beyond Pillow's own bomb limit
    with pytest.raises(ImageError, match=r"bomb\.png.*too large"):
        load_image(tmp_path / "bomb.png", max_pixels=10**10)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match="400 pixels, the limit is 399"):
        load_image(tmp_path / "small.png", max_pixels=399)
    assert load_image(tmp_path / "small.png", max_pixels=400).shape == (20, 20, 3)


def test_sha256_is_content_hash(tmp_path: Path) -> None:
    Image.fromarray(np.full((5, 5, 3), 7, np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "y.png").write_bytes((tmp_path / "x.png").read_bytes())
    expected = hashlib.sha256((tmp_path / "x.png").read_bytes()).hexdigest()
    assert image_sha256(tmp_path / "x.png") == expected == image_sha256(tmp_path / "y.png", chunk_size=7)
    Image.fromarray(np.full((5, 5, 3), 8, np.uint8)).save(tmp_path / "y.png")
    assert image_sha256(tmp_path / "y.png") != expected


def test_png_size_with_exif_before_and_after_data(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_quadrants(40, 20)).save(tmp_path / "early.png", exif=exif.tobytes())
    assert image_size(tmp_path / "early.png") == (20, 40)
    # move the eXIf chunk after IDAT (allowed by the PNG spec): size still follows the rotation, no decoding
    data = (tmp_path / "early.png").read_bytes()
    start = data.index(b"eXIf") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    chunk = data[start : start + 12 + length]
    rest = data[:start] + data[start + 12 + length :]
    end = rest.index(b"IEND") - 4
    (tmp_path / "late.png").write_bytes(rest[:end] + chunk + rest[end:])
    assert image_size(tmp_path / "late.png") == (20, 40)
    assert load_image(tmp_path / "late.png").shape == (40, 20, 3)
    np.testing.assert_array_equal(load_image(tmp_path / "late.png"), load_image(tmp_path / "early.png"))
