"""A 2-process accelerate run of a training stage on this machine (`nox -s scaleout`; needs no Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_two_process_accelerate_training_loads_in_one_process(tmp_path):
    pytest.importorskip("accelerate")
    out = tmp_path / "teacher"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tocsr", "teacher", "train", "--preset", "smoke",
           "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    from tocsr.core.teacher.train import load_teacher

    teacher = load_teacher(out)
    import torch

    z = torch.randn(2, 16, 16, 16)
    with torch.no_grad():
        assert torch.isfinite(teacher.denoiser(z, torch.tensor([10, 500]))).all()
