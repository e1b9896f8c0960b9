"""Errors meant for the user are one line (exit code 2); any other error keeps its traceback."""

from __future__ import annotations

import argparse

import pytest

from annotate.dataset import DatasetError
from annotate.store import VersionConflict
from annotate.store.health import DamagedProject
from application import cli
from core.errors import UserError
from models.weights import WeightsNotFoundError


@pytest.mark.parametrize("kind", [DatasetError, WeightsNotFoundError, DamagedProject])
def test_project_errors_share_the_user_error_base(kind):
    assert issubclass(kind, UserError)
    assert issubclass(VersionConflict, UserError) and issubclass(VersionConflict, RuntimeError)


def _run_with(monkeypatch, error: BaseException) -> int:
    def build_parser(command=None):
        parser = argparse.ArgumentParser()
        parser.add_argument("-v", "--verbose", action="store_true")
        parser.set_defaults(func=lambda args: (_ for _ in ()).throw(error))
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    return cli.main([])


def test_a_user_error_is_one_line_and_exit_code_2(monkeypatch, caplog):
    assert _run_with(monkeypatch, UserError("the project is busy")) == 2
    assert "the project is busy" in caplog.text


def test_a_library_runtime_error_keeps_its_traceback(monkeypatch):
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        _run_with(monkeypatch, RuntimeError("CUDA out of memory"))
