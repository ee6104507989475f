"""The commands the README and the docs show run as written, and the commands they name exist.

Every command line of a code block (fenced or indented) in the README, docs/ and reports/gpu/README.md is parsed the
way it would be run, without running it: `tocsr` lines by the CLI (commands, options, arguments, choices),
`python -m <project module>` lines by that tool's `build_parser()`, `nox -s` against the noxfile's sessions. Every
`tocsr ...` and `python -m ...` named inline must name a command and options that exist. docs/status.md is the
journal, its commands as they were that day, and is not checked. A renamed option or command fails here, not on a
user's first try of a line they copied (or on a GPU lease of a few minutes)."""

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
DOCS = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "status.md"),
        REPO / "reports" / "gpu" / "README.md"]
PROJECT_MODULE = r"(?:tocsr|bench|search|reports)\.[\w.]+"
SKETCH = ("...", "…")                  # a command elided on purpose is a sketch, not a command


# --- what the docs show --------------------------------------------------------------------------------------------

def code_lines(markdown: str) -> list[str]:
    """The lines of fenced blocks and of indented (4-space) blocks, continuation lines joined."""
    lines, fenced = [], False
    for line in re.sub(r"\\\n\s*", " ", markdown).splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
    return lines


def commands(line: str) -> list[str]:
    """The commands of a shell line: comments dropped, split at `&&`, `||` and `;`, a `timeout` wrapper and a venv's
    path before `python` taken off. A line of a data-flow diagram (`tocsr costs -> <table>`) holds none."""
    if " -> " in line:
        return []
    line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
    out = []
    for part in re.split(r"&&|\|\||;", line):
        part = re.sub(r"^timeout(?: -s \w+)? \d+ ", "", part.strip())
        out.append(re.sub(r"^\S*/bin/(python3?) ", r"\1 ", part))
    return [c for c in out if c]


def shown(kind: str) -> list[tuple[str, str]]:
    """(doc, command) for each `tocsr` ("tocsr") or `python -m` ("python") command of the docs' code blocks."""
    start = r"tocsr " if kind == "tocsr" else r"python3? -m "
    return [(p.relative_to(REPO).as_posix(), c) for p in DOCS for line in code_lines(p.read_text())
            for c in commands(line) if re.match(start, c) and not any(s in c for s in SKETCH)]


def named_inline(kind: str) -> list[tuple[str, str]]:
    """(doc, span) for each inline `tocsr ...` or `python -m <project module> ...` span of the docs."""
    pattern = r"`(tocsr [^`]+)`" if kind == "tocsr" else rf"`(python3? -m {PROJECT_MODULE}[^`]*)`"
    return [(p.relative_to(REPO).as_posix(), s) for p in DOCS for s in re.findall(pattern, p.read_text())
            if not any(x in s for x in SKETCH)]


# --- what the code accepts -----------------------------------------------------------------------------------------

def resolve(tokens: list[str]) -> tuple[object, list[str]]:
    """The CLI command that `tokens` (after `tocsr`) name, and the tokens left for it. A group's own options come
    before its subcommand (`tocsr costs --teacher T -p P` runs the group itself); a token in a subcommand's place that
    is not one of its group's commands fails the test."""
    cmd, rest = typer.main.get_command(app), list(tokens)
    while getattr(cmd, "commands", None) is not None:
        takes_value = {o for p in cmd.params if not getattr(p, "is_flag", True) for o in p.opts}
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            i += 2 if rest[i] in takes_value else 1
        if i >= len(rest):
            break
        assert rest[i] in cmd.commands, (f"`{rest[i]}` is not a command of `{cmd.name}` "
                                         f"(it has: {', '.join(sorted(cmd.commands))})")
        cmd, rest = cmd.commands[rest[i]], rest[:i] + rest[i + 1:]
    return cmd, rest


def parse_tocsr(line: str) -> None:
    """Parse a whole `tocsr` command line as the CLI would, without running it."""
    cmd, rest = resolve(shlex.split(line)[1:])
    cmd.make_context(cmd.name, rest)


def tocsr_options(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))} | {"--help"}


def tool_parser(module: str):
    mod = importlib.import_module(module)
    assert hasattr(mod, "build_parser"), (f"`python -m {module}` is shown in the docs: give it a build_parser() "
                                          "that its main parses with, so that these tests can check its lines")
    return mod.build_parser()


def options_named(tokens: list[str]) -> set[str]:
    return {t.strip("[]").split("=")[0] for t in tokens if t.strip("[").startswith("-") and t.strip("[]") != "-"}


def nox_sessions() -> set[str]:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    return {f.name for f in tree.body if isinstance(f, ast.FunctionDef)
            and any("nox.session" in ast.unparse(d) for d in f.decorator_list)}


# --- the tests -----------------------------------------------------------------------------------------------------

TOCSR_SHOWN, PYTHON_SHOWN = shown("tocsr"), shown("python")
TOCSR_NAMED, PYTHON_NAMED = named_inline("tocsr"), named_inline("python")


def ids(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{doc}:{c[:70]}" for doc, c in pairs]


def test_the_docs_show_the_commands_these_tests_check():
    # docs whose blocks moved or changed their fences would otherwise leave every test below nothing to check
    assert len(TOCSR_SHOWN) >= 25 and len(PYTHON_SHOWN) >= 8 and len(TOCSR_NAMED) >= 30 and len(PYTHON_NAMED) >= 4
    readme = [c for doc, c in PYTHON_SHOWN if doc == "README.md"]
    assert "python3 -m nox -s main" in readme and "python3 -m nox -s tests" in readme
    assert any("tocsr.app.gpu_check" in c for doc, c in PYTHON_SHOWN if doc == "reports/gpu/README.md")


@pytest.mark.parametrize(("doc", "line"), TOCSR_SHOWN, ids=ids(TOCSR_SHOWN))
def test_each_tocsr_line_the_docs_show_parses_against_the_cli(doc, line):
    parse_tocsr(line)


@pytest.mark.parametrize(("doc", "line"), PYTHON_SHOWN, ids=ids(PYTHON_SHOWN))
def test_each_python_module_line_the_docs_show_parses_against_its_tool(doc, line):
    argv = shlex.split(line)
    module, args = argv[2], argv[3:]
    if module == "nox":
        sessions = [args[i + 1] for i, a in enumerate(args) if a == "-s"]
        assert sessions and set(sessions) <= nox_sessions(), f"{doc}: `{line}`: no such nox session"
        return
    if not re.fullmatch(PROJECT_MODULE, module):
        return                                      # another program's command line (pip, venv)
    try:
        tool_parser(module).parse_args(args)
    except SystemExit as err:
        pytest.fail(f"{doc}: `{line}`: `python -m {module}` refuses these arguments (exit {err.code}; why is above)")


@pytest.mark.parametrize(("doc", "span"), TOCSR_NAMED, ids=ids(TOCSR_NAMED))
def test_each_tocsr_command_the_docs_name_exists_with_the_options_they_name(doc, span):
    cmd, rest = resolve(shlex.split(span)[1:])
    unknown = options_named(rest) - tocsr_options(cmd)
    assert not unknown, f"{doc} names `{span}`: `tocsr {cmd.name}` has no {sorted(unknown)}"


@pytest.mark.parametrize(("doc", "span"), PYTHON_NAMED, ids=ids(PYTHON_NAMED))
def test_each_python_module_the_docs_name_exists_with_the_options_they_name(doc, span):
    argv = shlex.split(span)
    usage = tool_parser(argv[2]).format_help()
    unknown = {o for o in options_named(argv[3:]) if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", usage)}
    assert not unknown, f"{doc} names `{span}`: `python -m {argv[2]}` has no {sorted(unknown)}"


def test_a_renamed_option_or_command_fails_these_checks():
    with pytest.raises(Exception, match="No such option"):
        parse_tocsr("tocsr run --fixed-step --out runs/x")
    with pytest.raises(AssertionError, match="not a command of"):
        resolve(["costs", "exprt", "-p", "cpu-2core"])
    assert options_named(["--encodr", "lr"]) - tocsr_options(resolve(["sr"])[0]) == {"--encodr"}
    with pytest.raises(SystemExit):
        tool_parser("tocsr.app.gpu_check").parse_args(["--out", "x", "--skp", "run"])
    assert commands("timeout -s TERM 500 .venv/bin/python3 -m a.b --x 1 || exit 3  # why") == ["python3 -m a.b --x 1",
                                                                                          "exit 3"]
