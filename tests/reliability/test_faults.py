"""Fault injection: SIGKILL at random moments (seeded), restart, and check nothing finished was lost.

Slow (each kill restarts a Python process that imports torch): run by `nox -s faults`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.trials import TrialLog
from tocsr.artifacts import read_artifact
from tocsr.training import Checkpointer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def start(kind: str, folder: Path, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.drivers", kind, str(folder), str(n)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL the process after `seconds`; False if it had already finished."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def finish(kind: str, folder: Path, n: int) -> None:
    proc = start(kind, folder, n)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_search_killed_repeatedly_loses_no_completed_trial(tmp_path):
    rng = random.Random(1)
    folder, budget, kills = tmp_path / "search", 60, 0
    seen: list[str] = []
    while kills < 8:
        killed = kill_after(start("search", folder, budget), rng.uniform(3.0, 6.0))
        trials = TrialLog(folder / "trials.jsonl").read()    # also drops a line cut short by the kill
        keys = [t.key for t in trials]
        assert keys[:len(seen)] == seen, "a completed trial was lost or reordered"
        assert len(set(keys)) == len(keys), "an evaluation was repeated"
        seen = keys
        kills += killed
        if not killed:
            break
    finish("search", folder, budget)
    final = [t.key for t in TrialLog(folder / "trials.jsonl").read()]
    assert final[:len(seen)] == seen and len(final) == budget == len(set(final))
    assert kills >= 6


def test_training_killed_repeatedly_keeps_its_checkpoints(tmp_path):
    rng = random.Random(2)
    # ~0.13 s per step after ~8 s of start-up (imports, cached latents): 300 steps outlast 7 kill windows,
    # so every window ends in a kill (with 30 steps a restart finished before its kill and left 1 kill).
    folder, steps, kills = tmp_path / "teacher", 300, 0
    best_step = 0
    for _ in range(7):
        killed = kill_after(start("train", folder, steps), rng.uniform(5.0, 15.0))
        ck = Checkpointer(folder / "checkpoints" / "unet")
        meta = ck.latest_meta()
        step = int(meta["step"]) if meta else 0
        assert step >= best_step, f"the newest complete checkpoint went back from {best_step} to {step}"
        best_step = step
        for d in (folder / "checkpoints").rglob("step-*"):
            assert (d / "meta.json").is_file(), f"{d} is a checkpoint without its completion marker"
        kills += killed
        if not killed:
            break
    finish("train", folder, steps)
    doc = read_artifact(folder / "teacher.json", "tocsr.teacher", 1)
    assert doc["diffusion"]["steps"] == steps
    assert kills >= 5


def test_artifact_writes_are_never_half_written(tmp_path):
    rng = random.Random(3)
    folder = tmp_path / "art"
    for _ in range(8):
        kill_after(start("artifacts", folder, 100000), rng.uniform(2.5, 4.0))
        path = folder / "result.json"
        if path.exists():
            doc = read_artifact(path, "tocsr.test", 1)      # raises on a truncated file
            assert len(doc["payload"]) == 20000


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    code = ("import time,sys; from tocsr.locking import folder_lock\n"
            f"with folder_lock({str(tmp_path)!r}, 'holder'):\n    print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == b"locked"
    from tocsr.locking import FolderLocked, folder_lock

    with pytest.raises(FolderLocked, match="in use by another tocsr process"):
        with folder_lock(tmp_path):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)
    with folder_lock(tmp_path):
        pass
