"""Shared fixtures: tiny profiles built in code, so tests never depend on the shipped budgets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests are small; two threads matches the CI machine and keeps timings comparable.
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

CPU_PROFILE_YAML = """
schema_version: 2
name: test-cpu
device: {kind: cpu, threads: 2}
precision: fp32
batch: 1
resolution: {output_px: 64, scale: 4, vae_factor: 8}
execution_mode: eager
timing: {warmup_min_iters: 2, warmup_max_iters: 6, repeats: 5, percentile: 90, max_cv: 0.5}
budgets: {latency_ms: 100, peak_memory_mib: 1024, scope: backbone}
"""

PREDICTED_PROFILE_YAML = """
schema_version: 2
name: test-edge
device: {kind: predicted, name: test edge}
precision: fp16
resolution: {output_px: 64, scale: 4}
budgets: {latency_ms: 100, peak_memory_mib: 1024, scope: backbone}
predicted: {peak_tflops: {fp16: 10.0}, memory_bandwidth_gbps: 100.0, launch_overhead_us: 10.0}
"""


@pytest.fixture
def cpu_profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "test-cpu.yaml"
    path.write_text(CPU_PROFILE_YAML)
    return path


@pytest.fixture
def cpu_profile(cpu_profile_path: Path):
    from bench.profile import load_profile

    return load_profile(cpu_profile_path)


@pytest.fixture
def predicted_profile():
    from bench.profile import parse_profile

    return parse_profile(PREDICTED_PROFILE_YAML, "test-edge.yaml")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
