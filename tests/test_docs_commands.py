"""The commands the README shows run as written, and the commands the docs name exist.

Every `tocsr` line of the README's shell blocks parses against the CLI (commands, options, arguments, choices),
every `python -m <project module>` line against that tool's `build_parser()`, and every `nox -s` names a session of
the noxfile. Every `tocsr ...` the README and docs/ name inline names a command that exists and only options it has
(docs/status.md is the journal: its commands are as they were that day, and are not checked). A renamed option or
command fails here, not on a user's first try of the line that names it."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest
import typer

from tocsr.app.cli import app

REPO = Path(__file__).resolve().parent.parent
PROJECT_MODULES = ("tocsr.", "bench.", "search.", "reports.")
NOT_CHECKED = {"pip", "venv"}          # other programs' command lines


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```bash blocks: continuation lines joined, comments dropped, `a && b` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.split(r"\s#", " " + line, maxsplit=1)[0].strip()
            commands += [c.strip() for c in line.split("&&") if c.strip()]
    return commands


def inline_tocsr(markdown: str) -> list[str]:
    """`tocsr ...` spans named inline; spans elided with "..." are sketches, not commands."""
    return [s for s in re.findall(r"`(tocsr [^`]+)`", markdown) if "..." not in s and "…" not in s]


def resolve(tokens: list[str]) -> tuple[object, list[str], list[list[str]]]:
    """The CLI command `tokens` (after `tocsr`) name, the tokens left for it, and each group's own tokens on the way
    (a group's options come before its subcommand: `tocsr costs --teacher T -p P`). A name that is no command of
    its group fails the test."""
    cmd, rest, groups = typer.main.get_command(app), list(tokens), []
    while getattr(cmd, "commands", None) is not None:
        subs, i = cmd.commands, 0
        takes_value = {o for p in cmd.params if not getattr(p, "is_flag", True) for o in p.opts}
        while i < len(rest) and rest[i].startswith("-"):        # the group's own options, and their values
            i += 2 if rest[i] in takes_value else 1
        if i >= len(rest):
            break                                   # the group's own command (`tocsr costs --teacher T -p P`)
        assert rest[i] in subs, f"`{rest[i]}` is not a command of `{cmd.name}` (it has: {', '.join(sorted(subs))})"
        groups.append(rest[:i])
        cmd, rest = subs[rest[i]], rest[i + 1:]
    return cmd, rest, groups


def parse_tocsr(line: str) -> None:
    """Parse a whole `tocsr` command line the way the CLI would, without running it."""
    cmd, rest, groups = resolve(shlex.split(line)[1:])
    for own in groups:
        assert not own, f"{line}: options before a subcommand ({own}) are not read by this CLI"
    cmd.make_context(cmd.name, rest)


def option_names(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))} | {"--help"}


def nox_sessions() -> set[str]:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    return {f.name for f in tree.body if isinstance(f, ast.FunctionDef)
            and any("nox.session" in ast.unparse(d) for d in f.decorator_list)}


README = (REPO / "README.md").read_text()
SHELL = shell_commands(README)
TOCSR_LINES = [c for c in SHELL if c.startswith("tocsr ")]
MODULE_LINES = [c for c in SHELL if re.match(r"python3? -m ", c)]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "reports" / "gpu" / "README.md"]
INLINE = [(p.relative_to(REPO).as_posix(), s) for p in DOCS if p.name != "status.md"
          for s in inline_tocsr(p.read_text())]


def test_the_readme_shows_the_commands_these_tests_check():
    # a README whose blocks moved or changed fence would otherwise leave every test below with nothing to check
    assert len(TOCSR_LINES) >= 20 and len(MODULE_LINES) >= 5 and len(INLINE) >= 20
    assert "python3 -m nox -s main" in SHELL and "python3 -m nox -s tests" in SHELL


@pytest.mark.parametrize("line", TOCSR_LINES, ids=[c[:80] for c in TOCSR_LINES])
def test_each_tocsr_line_of_the_readme_parses_against_the_cli(line):
    parse_tocsr(line)


@pytest.mark.parametrize("line", MODULE_LINES, ids=[c[:80] for c in MODULE_LINES])
def test_each_python_module_line_of_the_readme_parses_against_its_tool(line):
    argv = shlex.split(line)
    module, args = argv[2], argv[3:]
    if module == "nox":
        sessions = [args[i + 1] for i, a in enumerate(args) if a == "-s"]
        assert sessions and set(sessions) <= nox_sessions(), f"{line}: no such nox session ({sorted(nox_sessions())})"
        return
    if module in NOT_CHECKED:
        return
    assert module.startswith(PROJECT_MODULES), f"{line}: {module} is no module of this project"
    parser = importlib.import_module(module).build_parser()
    try:
        parser.parse_args(args)
    except SystemExit as err:
        pytest.fail(f"{line}: `python -m {module}` refuses these arguments (exit {err.code}; its error is above)")


@pytest.mark.parametrize(("doc", "span"), INLINE, ids=[f"{d}:{s}" for d, s in INLINE])
def test_each_command_the_docs_name_exists_with_the_options_they_name(doc, span):
    cmd, rest, groups = resolve(shlex.split(span)[1:])
    named = {t.strip("[]").split("=")[0] for t in rest + [t for g in groups for t in g] if t.strip("[").startswith("-")}
    unknown = named - option_names(cmd)
    assert not unknown, f"{doc} names `{span}`: `tocsr {cmd.name}` has no {sorted(unknown)}"


def test_a_renamed_option_or_command_fails_these_checks():
    with pytest.raises(Exception, match="No such option"):
        parse_tocsr("tocsr run --fixed-step --out runs/x")
    with pytest.raises(AssertionError, match="not a command of"):
        resolve(["costs", "exprt", "-p", "cpu-2core"])
    cmd, _, _ = resolve(["sr", "--encoder", "lr"])
    assert "--encoder" in option_names(cmd) and "--encodr" not in option_names(cmd)
