"""How the command line answers a command line it cannot run: one error line that says what to do."""

from __future__ import annotations

import pytest

from tocsr.app.cli import main


@pytest.mark.parametrize(("argv", "path", "commands"), [
    ([], "tocsr", ("run", "costs", "profiles")),
    (["profiles"], "tocsr profiles", ("list", "check")),
    (["teacher"], "tocsr teacher", ("train", "import", "expand", "sample")),
])
def test_a_group_called_without_a_command_prints_its_help_then_names_its_commands(argv, path, commands, capsys):
    with pytest.raises(SystemExit) as code:
        main(argv)
    out, err = capsys.readouterr()
    assert code.value.code == 1
    assert "Commands" in out                                   # click has printed the group's help
    line = err.strip()
    assert line.count("\n") == 0 and line.startswith(f"error: `{path}` needs one of its commands: "), line
    assert all(c in line for c in commands), line
    assert line.endswith(f"(see `{path} --help`)"), line


def test_a_usage_error_points_at_the_help_of_the_command_it_came_from(capsys):
    with pytest.raises(SystemExit) as code:
        main(["profiles", "check", "--nope"])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 1
    assert err == "error: No such option: --nope (see `tocsr profiles check --help`)"


@pytest.mark.parametrize(("argv", "named"), [
    (["report", "{tmp}/nope"], "{tmp}/nope: no such folder; give a run folder"),
    (["costs", "confirm", "{tmp}/results.json"], "{tmp}/results.json: file not found"),
    (["costs", "import", "{tmp}/results.json", "-o", "{tmp}/costs.json"], "{tmp}/results.json: file not found"),
])
def test_a_mistyped_path_is_the_path_the_error_names(argv, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 1 and err.startswith("error: " + named.format(tmp=tmp_path)), err
