"""Fault injection: SIGKILL at seeded progress points, restart, and check nothing finished was lost.

Kill points are chosen by what the child has written (after trial K, after checkpoint N, after
artifact write k), never by a wall-clock window, so the tests mean the same on a slow or a fast
machine. Slow (each kill restarts a Python process that imports torch): run by `nox -s faults`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from search.trials import TrialLog
from tocsr.core.artifacts import read_artifact
from tocsr.core.errors import ArtifactError
from tocsr.core.training import Checkpointer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
GIVE_UP_S = 300        # a child that shows no progress for this long is a failure, not a timing window


def start(kind: str, folder: Path, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.drivers", kind, str(folder), str(n)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(proc: subprocess.Popen, reached: Callable[[], bool]) -> bool:
    """SIGKILL the process as soon as `reached()` holds; False if it finished first."""
    deadline = time.monotonic() + GIVE_UP_S
    while proc.poll() is None:
        if reached():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no progress in {GIVE_UP_S} s: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.005)
    return False


def finish(kind: str, folder: Path, n: int) -> None:
    proc = start(kind, folder, n)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_search_killed_repeatedly_loses_no_completed_trial(tmp_path):
    rng = random.Random(1)
    folder, budget, kills = tmp_path / "search", 60, 0
    log = folder / "trials.jsonl"
    seen: list[str] = []
    for _ in range(8):
        target = len(seen) + rng.randint(1, 6)          # kill once trial `target` is on disk
        killed = kill_when(start("search", folder, budget), lambda t=target: _lines(log) >= t)
        trials = TrialLog(log).read()    # also drops a line cut short by the kill
        keys = [t.key for t in trials]
        assert keys[:len(seen)] == seen, "a completed trial was lost or reordered"
        assert len(set(keys)) == len(keys), "an evaluation was repeated"
        seen = keys
        kills += killed
        if not killed:
            break
    finish("search", folder, budget)
    final = [t.key for t in TrialLog(log).read()]
    assert final[:len(seen)] == seen and len(final) == budget == len(set(final))
    assert kills == 8


def test_training_killed_repeatedly_keeps_its_checkpoints(tmp_path):
    rng = random.Random(2)
    folder, steps, kills = tmp_path / "teacher", 60, 0        # a checkpoint every 3 steps (drivers.train)
    best_step = 0
    for _ in range(6):
        target = best_step + 3 * rng.randint(1, 3)              # kill once checkpoint `target` is complete

        def reached(t=target) -> bool:
            meta = Checkpointer(folder / "checkpoints" / "unet").latest_meta() \
                if (folder / "checkpoints" / "unet").is_dir() else None
            return meta is not None and int(meta["step"]) >= t

        killed = kill_when(start("train", folder, steps), reached)
        meta = Checkpointer(folder / "checkpoints" / "unet").latest_meta()
        step = int(meta["step"]) if meta else 0
        assert step >= best_step, f"the newest complete checkpoint went back from {best_step} to {step}"
        best_step = step
        for d in (folder / "checkpoints").rglob("step-*"):
            assert (d / "meta.json").is_file(), f"{d} is a checkpoint without its completion marker"
        kills += killed
        if not killed:
            break
    finish("train", folder, steps)
    from tocsr.core.teacher.record import TeacherRecord

    assert TeacherRecord.load(folder).diffusion.steps == steps
    assert kills == 6


def test_artifact_writes_are_never_half_written(tmp_path):
    rng = random.Random(3)
    folder = tmp_path / "art"
    path = folder / "result.json"
    done = -1
    for _ in range(8):
        target = done + rng.randint(5, 50)                # kill once write `target` has landed

        def reached(t=target) -> bool:
            try:
                return json.loads(path.read_text())["i"] >= t
            except (OSError, ValueError, KeyError):
                return False

        assert kill_when(start("artifacts", folder, 100000), reached)
        try:
            doc = read_artifact(path, "tocsr.test", 1)      # raises on a truncated file
        except ArtifactError as err:
            pytest.fail(f"a killed writer left a broken file: {err}")
        assert len(doc["payload"]) == 20000 and doc["i"] >= target
        done = doc["i"]
