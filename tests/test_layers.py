"""The layers import one way: the import-linter contracts of pyproject.toml hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_layer_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (requirements-dev.txt)")
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") >= 2


def test_every_registry_entry_names_a_builder_and_a_known_checkpoint():
    from models.registry import FAMILIES, REGISTRY, entries
    from models.weights import CHECKPOINTS

    assert {e.family for e in REGISTRY.values()} == set(FAMILIES)
    for entry in REGISTRY.values():
        assert entry.checkpoint is None or entry.checkpoint in CHECKPOINTS, entry.name
        if not entry.has("from_segmenter"):
            assert callable(entry.build_function()), entry.name
    assert all(e.has("embedding") for e in entries("segmenter").values() if e.name.startswith("sam_"))


def test_the_installed_environment_imports_this_projects_packages(tmp_path) -> None:
    """Run from another folder (as the ``dhr`` command is), every top-level package of the project resolves to this
    checkout: no dependency's wheel shadows one (sam2 ships a top-level ``training``; the installer removes it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import importlib; print('\\n'.join(importlib.import_module(n).__file__ for n in "
            "('dhr', 'core', 'models', 'annotate', 'training', 'application')))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.split()]
    assert len(files) == 6 and all(root in f.parents for f in files), files
