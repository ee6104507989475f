"""Sessions: tests (default), lint, slow, faults, scaleout, bench, gpu, nightly, main.

Every session that needs torch installs the torch/torchvision pair pinned in constraints.txt
first: an unpinned torchvision (pulled by pyiqa, spandrel, timm) would swap torch for a multi-GB
download. nox stays on the plain `venv` backend: uv and conda do not see the local torch files.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH_PAIR = [line.strip() for line in open("constraints.txt") if line.strip() and not line.startswith("#")]


PYIQA = "pyiqa==0.1.16"   # --no-deps: its declared dependencies are ~1.7 GB the suite does not use


def install_project(session: nox.Session, extras: str = "dev") -> None:
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
