"""Checkpoint registry, download, hash verification and safe loading (never touches the network)."""

from __future__ import annotations

import hashlib
import re
import urllib.error
from pathlib import Path

import pytest
import torch

from application import cli
from models import weights
from models.weights import Checkpoint, ChecksumError, WeightsNotFoundError


def _fake_checkpoint(tmp_path: Path, name: str = "tiny_fake") -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """A tiny state dict in a 'remote' folder, registered with its real SHA-256 and a file:// URL."""
    state = {"layer.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "layer.bias": torch.ones(3)}
    remote = tmp_path / "remote"
    remote.mkdir()
    source = remote / f"{name}.pth"
    torch.save(state, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return Checkpoint(name, source.as_uri(), digest, f"{name}.pth", "test checkpoint"), state


def test_registry_has_official_entries() -> None:
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        ckpt = weights.CHECKPOINTS[name]
        assert re.fullmatch(r"[0-9a-f]{64}", ckpt.sha256)
        assert ckpt.url == f"https://dl.fbaipublicfiles.com/segment_anything/{ckpt.filename}"
    assert weights.CHECKPOINTS["sam_vit_b"].sha256.startswith("ec2df627")
    for name in ("resnet50", "resnet101", "resnet50_v2", "resnet101_v2"):
        ckpt = weights.CHECKPOINTS[name]
        assert ckpt.url.startswith("https://download.pytorch.org/models/")
        # torchvision's file names carry the SHA-256 prefix: it is what gets verified.
        assert ckpt.filename == f"{name.split('_')[0]}-{ckpt.sha256}.pth"
    for name in ("dino_vits8", "dino_vits16", "dino_vitb8", "dino_vitb16"):
        ckpt = weights.CHECKPOINTS[name]
        assert ckpt.url.startswith("https://dl.fbaipublicfiles.com/dino/") and ckpt.url.endswith(
            ckpt.filename
        )


def test_weights_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    assert weights.default_weights_dir() == tmp_path / "home" / ".cache" / "dhr-label" / "weights"
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "env"))
    assert weights.default_weights_dir() == tmp_path / "env"
    assert weights.default_weights_dir(tmp_path / "option") == tmp_path / "option"


def test_download_verify_and_load(tmp_path: Path) -> None:
    ckpt, state = _fake_checkpoint(tmp_path)
    folder = tmp_path / "weights"
    path = weights.checkpoint_path(ckpt, folder)
    assert path == folder / ckpt.filename
    assert weights.file_sha256(path) == ckpt.sha256
    loaded = weights.load_state_dict(ckpt, folder, download=False)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert sorted(p.name for p in folder.iterdir()) == [ckpt.filename]  # nothing beside it to forge


def test_a_forged_note_beside_a_replaced_checkpoint_is_not_trusted(tmp_path: Path) -> None:
    """Other bytes of the same size and mtime, with a note claiming the published digest: hashed, refused."""
    import json
    import os

    ckpt, _ = _fake_checkpoint(tmp_path)
    folder = tmp_path / "weights"
    path = weights.checkpoint_path(ckpt, folder)
    assert weights.verify_checkpoint(ckpt, path) == ckpt.sha256
    stat = path.stat()
    forged = bytes(b ^ 0xFF for b in path.read_bytes()[:64]) + path.read_bytes()[64:]
    path.write_bytes(forged)  # same size, in place (same inode)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    note = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": ckpt.sha256}
    path.with_name(path.name + ".sha256").write_text(json.dumps(note))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(weights.ChecksumError, match="is corrupt or not"):
        weights.verify_checkpoint(ckpt, path)
    with pytest.raises(weights.ChecksumError):
        weights.load_state_dict(ckpt, folder, download=False)


def test_corrupted_checkpoint_fails_hash_check(tmp_path: Path) -> None:
    ckpt, _ = _fake_checkpoint(tmp_path)
    folder = tmp_path / "weights"
    path = weights.checkpoint_path(ckpt, folder)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as error:
        weights.checkpoint_path(ckpt, folder, download=False)
    message = str(error.value)
    assert str(path) in message and "corrupt" in message
    assert ckpt.sha256 in message and hashlib.sha256(bytes(data)).hexdigest() in message
    assert ckpt.url in message
    with pytest.raises(ChecksumError):
        weights.load_state_dict(ckpt, folder)


def test_corrupt_download_leaves_nothing(tmp_path: Path) -> None:
    ckpt, _ = _fake_checkpoint(tmp_path)
    wrong = Checkpoint(ckpt.name, ckpt.url, "0" * 64, ckpt.filename)
    folder = tmp_path / "weights"
    with pytest.raises(ChecksumError, match="expected 0000"):
        weights.download_checkpoint(wrong, folder)
    assert list(folder.iterdir()) == []


def test_offline_message_names_file_url_and_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    ckpt = weights.CHECKPOINTS["sam_vit_b"]
    folder = tmp_path / "weights"

    def offline(url: str, destination: Path) -> None:
        raise urllib.error.URLError("no network")

    with pytest.raises(WeightsNotFoundError) as error:
        weights.checkpoint_path("sam_vit_b", folder, downloader=offline)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert ckpt.filename in message and ckpt.url in message and str(folder) in message
    assert list(folder.iterdir()) == []  # no partial file left
    assert "download" not in caplog.text  # offline, no log line says a download happens
    with pytest.raises(WeightsNotFoundError, match="downloading is off"):
        weights.checkpoint_path("sam_vit_b", folder, download=False)


def test_prefix_and_unpublished_hashes(tmp_path: Path) -> None:
    ckpt, _ = _fake_checkpoint(tmp_path)
    folder = tmp_path / "weights"
    prefix = Checkpoint(ckpt.name, ckpt.url, ckpt.sha256[:8], ckpt.filename)
    assert weights.checkpoint_path(prefix, folder).is_file()
    other = "f" if ckpt.sha256[0] != "f" else "e"
    with pytest.raises(ChecksumError, match="SHA-256 prefix"):
        weights.verify_checkpoint(
            Checkpoint(ckpt.name, ckpt.url, other + ckpt.sha256[1:8], ckpt.filename), folder / ckpt.filename
        )
    with pytest.warns(UserWarning, match="no published SHA-256"):
        digest = weights.verify_checkpoint(
            Checkpoint(ckpt.name, ckpt.url, None, ckpt.filename), folder / ckpt.filename, use_note=False
        )
    assert digest == ckpt.sha256


class _NotAWeight:
    pass


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    source = remote / "evil.pth"
    torch.save({"object": _NotAWeight()}, source)
    ckpt = Checkpoint("evil", source.as_uri(), weights.file_sha256(source), "evil.pth")
    with pytest.raises(ValueError, match="weights-only"):
        weights.load_state_dict(ckpt, tmp_path / "weights")


def test_cli_list_download_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ckpt, _ = _fake_checkpoint(tmp_path)
    monkeypatch.setitem(weights.CHECKPOINTS, ckpt.name, ckpt)
    folder = tmp_path / "weights"

    assert cli.main(["weights", "list", "--weights-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "sam_vit_b_01ec64.pth" in out and "GrabCut fallback" in out

    assert cli.main(["weights", "verify", ckpt.name, "--weights-dir", str(folder)]) == 2  # missing
    assert cli.main(["weights", "download", ckpt.name, "--weights-dir", str(folder)]) == 0
    assert cli.main(["weights", "verify", ckpt.name, "--weights-dir", str(folder)]) == 0
    assert "SHA-256 matches" in capsys.readouterr().out

    (folder / ckpt.filename).write_bytes(b"not a checkpoint")
    assert cli.main(["weights", "verify", ckpt.name, "--weights-dir", str(folder)]) == 2

    # Offline install from a local file: a wrong file is refused, the right one accepted.
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"bogus")
    args = ["weights", "download", ckpt.name, "--force", "--weights-dir", str(folder)]
    assert cli.main([*args, "--from", str(bogus)]) == 2
    assert cli.main([*args, "--from", ckpt.url[len("file://") :]]) == 0
    assert weights.file_sha256(folder / ckpt.filename) == ckpt.sha256
