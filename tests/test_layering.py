"""Imports point downward only: reports -> search -> bench -> tocsr. tocsr.cli is the one place that
wires stages together, so it (with `python -m tocsr` and the main job in tocsr.pipeline) may
import any of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORDER = ["tocsr", "bench", "search", "reports"]     # lowest first
WIRING = {"tocsr/cli.py", "tocsr/__main__.py", "tocsr/pipeline.py", "tocsr/stages.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ORDER)
def test_no_upward_imports(package):
    forbidden = set(ORDER[ORDER.index(package) + 1:])
    for path in (REPO / package).rglob("*.py"):
        rel = str(path.relative_to(REPO))
        if rel in WIRING:
            continue
        bad = _imports(path) & forbidden
        assert not bad, f"{rel} imports {sorted(bad)}, a layer above {package}"


def test_first_party_packages_shadow_pypi_namesakes():
    # PyPI has distributions called `bench` and `reports`; ours must be the ones imported.
    import bench
    import reports
    import search

    for mod in (bench, reports, search):
        assert Path(mod.__file__).resolve().is_relative_to(REPO), mod.__file__
