"""The noxfile hands pip's configuration to uv: without it uv would not see a machine's local wheels and indexes
(where this machine class keeps the pinned torch pair) and would fetch or fail instead."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("nox")


@functools.cache
def load_noxfile():
    """The noxfile as a module, loaded once: each load registers its sessions with nox again, which nox warns is
    to become an error."""
    path = Path(__file__).resolve().parents[1] / "noxfile.py"
    spec = importlib.util.spec_from_file_location("tocsr_noxfile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# `pip config list` as this machine class prints it (sorted; PIP_* environment variables under `:env:`)
MACHINE_CONFIG = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
"""


def test_local_indexes_wheels_and_constraints_reach_uv():
    env = load_noxfile().uv_env_from_pip_config(MACHINE_CONFIG)
    assert env == {
        "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
        "UV_FIND_LINKS": "/opt/wheels",
        "UV_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_INDEX_STRATEGY": "unsafe-best-match",     # pip's rule: the best version across every index
    }


def test_pip_precedence_environment_over_install_over_global():
    listed = "\n".join([      # sorted, as pip prints it
        ":env:.find-links='/env/wheels /more/wheels'",
        "download.extra-index-url='https://download-only.example/simple'",   # not read by `pip install`
        "global.find-links='/global/wheels'",
        "global.index-url='https://global.example/simple'",
        "install.index-url='https://install.example/simple'",
    ])
    env = load_noxfile().uv_env_from_pip_config(listed)
    assert env["UV_DEFAULT_INDEX"] == "https://install.example/simple"
    assert env["UV_FIND_LINKS"] == "/env/wheels,/more/wheels"      # uv separates find-links with commas
    assert "UV_EXTRA_INDEX_URL" not in env


def test_no_pip_configuration_leaves_uv_on_its_defaults():
    assert load_noxfile().uv_env_from_pip_config("") == {}
    assert load_noxfile().uv_env_from_pip_config(":env:.default-timeout='180'\n") == {}


def test_caller_settings_for_uv_win(monkeypatch):
    """`pip config list` is stubbed: the test runs in environments uv made, which have no pip."""
    noxfile = load_noxfile()
    environ = {"UV_FIND_LINKS": "/mine"}
    monkeypatch.setattr(noxfile.os, "environ", environ)
    listed = "global.find-links='/machine'\n"
    monkeypatch.setattr(noxfile.subprocess, "run", lambda *a, **k: FakeCompleted(0, listed, ""))
    session = FakeSession()
    noxfile.hand_pip_config_to_uv(session)
    assert environ == {"UV_FIND_LINKS": "/mine", "UV_INDEX_STRATEGY": "unsafe-best-match"}
    assert session.warnings == []


def test_unreadable_pip_configuration_is_said_and_sets_nothing(monkeypatch):
    noxfile = load_noxfile()
    environ: dict[str, str] = {}
    monkeypatch.setattr(noxfile.os, "environ", environ)
    session = FakeSession()
    monkeypatch.setattr(noxfile.subprocess, "run", lambda *a, **k: FakeCompleted(1, "", "No module named pip"))
    noxfile.hand_pip_config_to_uv(session)
    assert environ == {}
    assert len(session.warnings) == 1 and "No module named pip" in session.warnings[0]
    assert "UV_FIND_LINKS" in session.warnings[0]


class FakeSession:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class FakeCompleted:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
