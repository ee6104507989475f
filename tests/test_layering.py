"""Imports point downward only, for every file, nothing exempt:
tocsr.core -> bench -> search -> reports -> tocsr.app (lowest first). `tocsr/__main__.py` is the
`python -m tocsr` entry and belongs to tocsr.app; `tocsr/__init__.py` holds only the version and
belongs to tocsr.core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["tocsr.core", "bench", "search", "reports", "tocsr.app"]     # lowest first
PACKAGES = ["tocsr", "bench", "search", "reports"]


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to; None for anything not first-party."""
    if module == "tocsr.__main__" or module == "tocsr.app" or module.startswith("tocsr.app."):
        return "tocsr.app"
    if module == "tocsr" or module.startswith("tocsr."):
        return "tocsr.core"
    top = module.split(".")[0]
    return top if top in LAYERS else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module a file imports (relative imports resolved), at any depth of the file."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from tocsr import app` imports tocsr.app: count the names too
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def upward_imports(root: Path) -> list[str]:
    """`file imports module (layer X, above layer Y)` for every import that points upward."""
    bad = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            mine = layer_of(module_name(path, root))
            for mod in sorted(imported_modules(path, root)):
                theirs = layer_of(mod)
                if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                    bad.append(f"{path.relative_to(root)} imports {mod} ({theirs}, above {mine})")
    return bad


def test_every_import_in_the_project_points_downward():
    bad = upward_imports(REPO)
    assert not bad, "\n".join(bad)


def test_nothing_below_the_app_imports_it():
    # The wiring on top: a lower layer that reached up into tocsr.app would make the layers a cycle again.
    bad = [line for line in upward_imports(REPO) if "(tocsr.app, above" in line]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("file, source, expected", [
    ("bench/x.py", "from search.problem import Constraints\n", "bench/x.py imports search.problem (search, above bench)"),
    ("tocsr/core/x.py", "def f():\n    import bench.profile\n", "tocsr/core/x.py imports bench.profile (bench, above"),
    ("reports/x.py", "from tocsr.app.stages import stage_sr\n", "reports/x.py imports tocsr.app.stages (tocsr.app"),
    ("search/x.py", "from tocsr import app\n", "search/x.py imports tocsr.app (tocsr.app, above search)"),
    ("tocsr/core/sr/x.py", "from ...app import cli\n", "imports tocsr.app.cli (tocsr.app, above tocsr.core)"),
])
def test_the_check_catches_an_upward_import_fed_to_it(tmp_path, file, source, expected):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "tocsr" / "core" / "sr").mkdir(parents=True)
    (tmp_path / file).write_text(source)
    assert any(expected in line for line in upward_imports(tmp_path)), upward_imports(tmp_path)


def test_the_check_lets_downward_imports_through(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "tocsr" / "app").mkdir()
    (tmp_path / "tocsr" / "app" / "x.py").write_text("import reports.build\nfrom tocsr.core.space import ArchSpec\n")
    (tmp_path / "reports" / "x.py").write_text("from search.run import run_search\nimport tocsr\n")
    assert upward_imports(tmp_path) == []


def test_first_party_packages_shadow_pypi_namesakes():
    # PyPI has distributions called `bench` and `reports`; ours must be the ones imported.
    import bench
    import reports
    import search

    for mod in (bench, reports, search):
        assert Path(mod.__file__).resolve().is_relative_to(REPO), mod.__file__
