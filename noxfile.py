"""Sessions: tests (default), lint, slow, faults, scaleout, bench, gpu, nightly, main.

Every session that needs torch installs the torch/torchvision pair pinned in constraints.txt
first: an unpinned torchvision (pulled by pyiqa, spandrel, timm) would swap torch for a multi-GB
download. Environments are made with uv where it is installed (`pip install "nox[uv]"`: several times faster than
pip at unpacking the pair's CUDA libraries; measured in docs/install.md), with venv and pip otherwise. uv does not
read pip's configuration, which is where a machine says where its local wheels and indexes are, so the noxfile
hands pip's settings to uv (`uv_env_from_pip_config`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# pip setting -> (uv's environment variable, how uv separates several values)
PIP_TO_UV = {
    "index-url": ("UV_DEFAULT_INDEX", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
}


def uv_env_from_pip_config(pip_config_list: str) -> dict[str, str]:
    """uv's environment variables for the settings `pip install` would use, from `pip config list` output
    (`section.key='value'` lines; PIP_* environment variables show as `:env:.key`). pip's precedence: environment
    over the `install` section over `global`; other commands' sections do not apply. uv takes pip's rule of the
    best version across every index (`unsafe-best-match`) so both installers resolve the same versions."""
    precedence = {":env:": 0, "install": 1, "global": 2}
    chosen: dict[str, tuple[int, str]] = {}
    for line in pip_config_list.splitlines():
        match = re.fullmatch(r"(:env:|[\w-]+)\.([\w-]+)='(.*)'", line.strip())
        if match is None or match.group(1) not in precedence or match.group(2) not in PIP_TO_UV:
            continue
        section, key, value = match.groups()
        if key not in chosen or precedence[section] < chosen[key][0]:
            chosen[key] = (precedence[section], value)
    env = {PIP_TO_UV[key][0]: PIP_TO_UV[key][1].join(value.split()) for key, (_, value) in chosen.items()}
    if env:
        env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    return env


def hand_pip_config_to_uv(session: nox.Session) -> None:
    """Called before a session installs anything (uv makes the environment without an index)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    if listed.returncode != 0:
        # Said aloud: on a machine whose torch wheels are local, uv on its defaults would download another build.
        session.warn(f"could not read pip's configuration ({sys.executable} -m pip config list: "
                     f"{listed.stderr.strip()[-200:]}); uv installs from its own defaults (set UV_FIND_LINKS / "
                     "UV_EXTRA_INDEX_URL to point it at local wheels)")
        return
    for name, value in uv_env_from_pip_config(listed.stdout).items():
        os.environ.setdefault(name, value)      # what the caller set for uv wins


TORCH_PAIR = [line.strip() for line in open("constraints.txt") if line.strip() and not line.startswith("#")]


PYIQA = "pyiqa==0.1.16"   # --no-deps: its declared dependencies are ~1.7 GB the suite does not use


def install_project(session: nox.Session, extras: str = "dev") -> None:
    hand_pip_config_to_uv(session)
    session.install(*TORCH_PAIR)
    session.install("-c", "constraints.txt", "-e", f".[{extras}]")
    session.install("--no-deps", PYIQA)


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run: everything not marked slow, extended, mainjob or benchmark (pyproject's addopts);
    under 15 min on 2 cores."""
    install_project(session)
    # the slowest tests printed at the end: what to move to `extended` when the run nears its 15 minutes
    session.run("pytest", *(session.posargs or ["-q", "--durations=15"]), env={"HF_HUB_OFFLINE": "1"})


@nox.session
def extended(session: nox.Session) -> None:
    """The main job end to end at the smoke preset with the commands run on its outputs (`mainjob`), and the other
    tests marked extended (tens of seconds each): CI runs them after `tests`; kept out of the default run so that
    it stays well under 15 minutes on a slow day of a 2-core machine."""
    install_project(session)
    session.run("pytest", "-m", "(extended or mainjob) and not slow",
                *(session.posargs or ["-q", "--durations=15"]), env={"HF_HUB_OFFLINE": "1"})


@nox.session
def mutants(session: nox.Session) -> None:
    """Break each of the suite's key decisions once (tests/mutations.py) and fail unless a test catches every one:
    what keeps the tests looking at what users rely on. About 5 min on 2 cores; CI runs it after `extended`."""
    install_project(session)
    session.run("python", "tests/mutations.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


RAY = "ray[default]==2.*"


@nox.session
def slow(session: nox.Session) -> None:
    """Tests marked slow (end-to-end trainings, fault injection, Ray scale-out): minutes each."""
    install_project(session)
    session.install("-c", "constraints.txt", RAY)      # the Ray test is one of them: never skipped here
    session.run("pytest", "-m", "slow", *(session.posargs or ["-q"]), env={"HF_HUB_OFFLINE": "1"})


@nox.session
def faults(session: nox.Session) -> None:
    """Fault injection: SIGKILL search, training and writers at >= 20 random points; nothing finished is lost."""
    install_project(session)
    session.run("pytest", "tests/reliability", "-m", "slow", "-q", env={"HF_HUB_OFFLINE": "1"})


@nox.session
def scaleout(session: nox.Session) -> None:
    """Ray (2 local workers) and a 2-process accelerate run, on this machine."""
    install_project(session)
    session.install("-c", "constraints.txt", RAY)
    session.run("pytest", "tests/scaleout", "-m", "slow", "-q", "-s", env={"HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, plus the layering rule (imports point downward only)."""
    hand_pip_config_to_uv(session)
    session.install("ruff>=0.6", "pytest>=8")
    session.run("ruff", "check", ".")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "tests/test_layering.py",
                "-k", "upward", env={"PYTHONPATH": os.getcwd()})


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark suite (never part of the default run); JSON with provenance under reports/benchmarks/."""
    install_project(session)
    out = session.posargs[0] if session.posargs else "reports/benchmarks/cpu-latest.json"
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    session.run("pytest", "tests/benchmarks", "-m", "benchmark", "-q", f"--benchmark-json={out}",
                "--benchmark-columns=min,median,iqr,mean,stddev,rounds", env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """The GPU evidence script, run with the machine's own Python (the GPU images carry torch)."""
    out = session.posargs[0] if session.posargs else "reports/gpu"
    session.run("python3", "-m", "bench.gpu_evidence", "--out", out, env={"PYTHONPATH": os.getcwd()})


@nox.session(python=False)
def gpu_preset(session: nox.Session) -> None:
    """The `gpu` run preset at full shape with every stage capped (tocsr.app.gpu_check), the machine's own Python:
    reference throughput, the stage-time estimate, whether every stage completes. Extra args go to the script."""
    session.run("python3", "-m", "tocsr.app.gpu_check", "--out", "reports/gpu", *session.posargs,
                env={"PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1"})


@nox.session
def nightly(session: nox.Session) -> None:
    """The nightly matrix (profiles x models): measure, append to the history, flag regressions, render.
    After the main job (runs/quick), its selected model and trained baselines are tracked too, with quality.
    Fails when a regression is flagged (exit 3) or something could not be measured (exit 1)."""
    install_project(session)
    run = ["--run", "runs/quick"] if os.path.isdir("runs/quick/search-cpu-2core") else []
    session.run("tocsr", "nightly", "--profile", "hw_profiles/cpu-2core.yaml", *run, *session.posargs,
                env={"HF_HUB_OFFLINE": "1"})


@nox.session
def main(session: nox.Session) -> None:
    """The main job on the embedded default data and the default device profile."""
    install_project(session)
    session.run("tocsr", "run", "--profile", "hw_profiles/cpu-2core.yaml", "--preset", "quick",
                "--out", "runs/quick", *session.posargs, env={"HF_HUB_OFFLINE": "1"})
