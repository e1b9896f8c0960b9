"""The ``dhr`` command: every subcommand is registered and answers --help; errors exit with code 2."""

import subprocess
import sys

import pytest

from application import cli

SUBCOMMANDS = [
    "weights", "init", "import-coco", "export", "status", "remove", "accept", "reject", "review", "bootstrap",
    "merge-shards", "train", "eval", "gui",
]


def test_every_module_registers_its_commands():
    parser = cli.build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert sorted(actions[0].choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: dhr {command}" in out
    assert "``" not in out and ":class:" not in out  # no raw markup in help texts


def test_each_command_builds_from_its_own_module_alone():
    for command, module in cli.COMMANDS.items():
        parser = cli.build_parser(command)
        actions = [a for a in parser._actions if a.dest == "command"]
        assert command in actions[0].choices, (command, module)
    assert sorted(cli.COMMANDS) == sorted(SUBCOMMANDS)


def test_status_does_not_import_torch(tmp_path):
    code = (
        "import sys; from application import cli; rc = cli.main(['status', sys.argv[1]]); "
        "print('torch' in sys.modules, rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["False", "2"], result.stderr


def test_a_user_error_exits_with_code_2_and_a_message(tmp_path, caplog):
    missing = tmp_path / "no-such-project"
    assert cli.main(["status", str(missing)]) == 2
    assert str(missing) in caplog.text


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "application.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "bootstrap" in result.stdout


def test_version_and_top_level_help_without_markup(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("dhr-label ")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_model_choices_offered_without_importing_models_match_the_registries():
    from application.commands.choices import BACKBONE_NAMES, SEGMENTER_NAMES, USS_NAMES
    from models.backbone import BACKBONES
    from models.segmenters import SEGMENTERS
    from models.uss import uss_names

    assert SEGMENTER_NAMES == tuple(SEGMENTERS)
    assert USS_NAMES == tuple(uss_names())
    assert BACKBONE_NAMES == tuple(sorted(BACKBONES))


def test_the_whole_parser_builds_without_torch():
    code = "import sys; from application import cli; cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False"], result.stderr


def test_commands_that_need_no_model_do_not_import_torch(tmp_path):
    import numpy as np
    from PIL import Image

    from annotate.store import ProjectStore

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    with ProjectStore.create(tmp_path / "p", ["cat"]) as store:
        store.add_image(tmp_path / "a.png", ["cat"])
    project = str(tmp_path / "p")
    for argv in (
        ["weights", "list", "--weights-dir", str(tmp_path / "w")],
        ["status", project],
        ["review", project],
        ["accept", project, "a.png"],
        ["export", project, str(tmp_path / "out.json")],
    ):
        code = "import sys; from application import cli; rc = cli.main(sys.argv[1:]); print('torch' in sys.modules, rc)"
        result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
        assert result.stdout.split()[-2:] == ["False", "0"], (argv, result.stdout, result.stderr)
