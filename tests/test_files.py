"""core.files: atomic writes (never a half file, no temporary left behind) and safe torch files."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from core.files import (
    atomic_copy,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    load_torch,
    save_torch,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_text_bytes_copy_round_trip_and_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "deeper" / "a.json"  # folders are created
    assert atomic_write_text(target, "first é") == target
    assert target.read_text(encoding="utf-8") == "first é"
    atomic_write_text(target, "second", fsync=False)
    assert target.read_text(encoding="utf-8") == "second"

    data = bytes(range(256)) * 1000
    atomic_write_bytes(tmp_path / "b.bin", data)
    assert (tmp_path / "b.bin").read_bytes() == data
    assert atomic_copy(tmp_path / "b.bin", tmp_path / "c.bin") == tmp_path / "c.bin"
    assert (tmp_path / "c.bin").read_bytes() == data
    assert _names(tmp_path) == ["b.bin", "c.bin", "sub"]
    assert _names(tmp_path / "sub" / "deeper") == ["a.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.json", "{}")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "coco.json"
    target.write_text("old")
    seen: list[Path] = []

    def half_then_fail(temporary: Path) -> None:
        seen.append(temporary)
        assert temporary.parent == tmp_path and temporary.name.startswith(".coco.json.")
        temporary.write_text("ne")  # half of the new content ...
        assert target.read_text() == "old"  # ... is never visible under the real name
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["coco.json"]
    assert not seen[0].exists()

    with pytest.raises(FileNotFoundError):  # a missing source: nothing at all is created
        atomic_copy(tmp_path / "missing.png", tmp_path / "copy.png")
    assert _names(tmp_path) == ["coco.json"]


def test_concurrent_writers_leave_one_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "entry.bin"
    size = 200_000

    def write(value: int) -> None:
        atomic_write_bytes(target, bytes([value]) * size, fsync=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(12)))
    data = target.read_bytes()
    assert len(data) == size and len(set(data)) == 1 and data[0] < 12  # one writer's whole file
    assert _names(tmp_path) == ["entry.bin"]


def test_torch_round_trip_is_exact(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    payload = {
        "format": 1,
        "classes": ["cat", "dog"],
        "scale": 0.125,
        "state_dict": {
            "w": torch.randn(3, 4, generator=generator, dtype=torch.float64),
            "h": torch.randn(5, generator=generator).half(),
            "idx": torch.arange(7, dtype=torch.int64),
            "mask": torch.tensor([True, False, True]),
        },
        "nested": [(1, 2), {"a": None}],
    }
    path = save_torch(payload, tmp_path / "ckpt" / "model.pt")
    loaded = load_torch(path, what="model file")
    assert loaded.keys() == payload.keys()
    assert loaded["classes"] == ["cat", "dog"] and loaded["scale"] == 0.125 and loaded["format"] == 1
    assert loaded["nested"] == [(1, 2), {"a": None}]
    for key, tensor in payload["state_dict"].items():
        got = loaded["state_dict"][key]
        assert got.dtype == tensor.dtype and got.device.type == "cpu" and torch.equal(got, tensor)
    assert _names(tmp_path / "ckpt") == ["model.pt"]


class _NotAWeight:
    pass


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "object": _NotAWeight()}, path)  # a plain (unsafe) torch.save
    message = r"cannot read classifier checkpoint .*evil\.pt as a weights-only"
    with pytest.raises(ValueError, match=message) as error:
        load_torch(path, what="classifier checkpoint")
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def test_load_missing_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^model file not found: .*none\.pt$"):
        load_torch(tmp_path / "none.pt", what="model file")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_torch(tmp_path)  # a folder is not a checkpoint file
    path = save_torch({"w": torch.ones(1000)}, tmp_path / "ok.pt")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*ok\.pt"):
        load_torch(path)
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match=r"cannot read training checkpoint .*text\.pt"):
        load_torch(tmp_path / "text.pt", what="training checkpoint")


def test_failed_torch_save_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    save_torch({"w": torch.zeros(2)}, target)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_torch({"w": torch.ones(2), "fn": lambda x: x}, target)  # a lambda cannot be pickled
    assert _names(tmp_path) == ["model.pt"]
    assert torch.equal(load_torch(target)["w"], torch.zeros(2))
