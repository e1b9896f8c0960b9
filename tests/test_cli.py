"""The ``dhr`` command: every subcommand is registered and answers --help; errors exit with code 2."""

import subprocess
import sys

import pytest

import cli

SUBCOMMANDS = ["weights", "init", "import-coco", "export", "status", "remove", "bootstrap", "merge-shards", "train", "eval", "gui"]


def test_every_module_registers_its_commands():
    parser = cli.build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert sorted(actions[0].choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: dhr {command}" in capsys.readouterr().out


def test_a_user_error_exits_with_code_2_and_a_message(tmp_path, caplog):
    missing = tmp_path / "no-such-project"
    assert cli.main(["status", str(missing)]) == 2
    assert str(missing) in caplog.text


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "bootstrap" in result.stdout
