from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from bench.allocator import GLIBC_MMAP_THRESHOLD_MAX_BYTES, current_state, settle_cpu_allocator
from bench.profile import parse_profile
from bench.timing import warm_up
from tests.conftest import CPU_PROFILE_YAML
from tocsr.core.provenance import REPO_ROOT, environment

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the state is set on glibc only")

# In a fresh process, time the same call (eight blocks of 4 MiB alive at once, as a model's activations) with and
# without the suite's state: the median of eleven calls' minor page faults, after two calls of warm-up. Both processes start with glibc's
# thresholds at their initial values and frozen there (its environment variables), so the control maps every block
# anew on every call: left to adapt, a fresh process's faults per call varied widely from one run to the next
# (docs/status.md, sixty-sixth session), and a control must not depend on that.
_FAULTS = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
if sys.argv[1] == "settled":
    from bench.allocator import settle_cpu_allocator
    settle_cpu_allocator()
def call():
    blocks = [torch.ones(2**20) for _ in range(8)]
    return float(sum(b[0] for b in blocks))
call(); call()
faults = []
for _ in range(11):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps(sorted(faults)[5]))
"""


def _faults_per_call(mode: str) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
    r = subprocess.run([sys.executable, "-c", _FAULTS.format(root=str(REPO_ROOT)), mode], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@glibc_only
def test_settling_makes_a_process_reuse_freed_activations_where_it_faulted_them_in_on_every_call():
    control, settled = _faults_per_call("fresh"), _faults_per_call("settled")
    # 32 MiB of 4 KiB pages is 8192 faults when every block is mapped anew
    assert control > 4000, control
    assert settled < 100, settled


@glibc_only
def test_the_state_is_set_once_before_cpu_timing_and_recorded_in_every_artifacts_provenance():
    warm_up(lambda: torch.ones(8).sum(), parse_profile(CPU_PROFILE_YAML).timing, torch.device("cpu"))
    state = current_state()
    assert state is not None and state.is_set and state is settle_cpu_allocator()
    assert state.mmap_threshold_bytes == GLIBC_MMAP_THRESHOLD_MAX_BYTES
    assert state.trim_threshold_bytes == 2 * GLIBC_MMAP_THRESHOLD_MAX_BYTES
    assert state.allocator.startswith("glibc ") and "mmap threshold 32 MiB" in state.text()
    assert environment()["cpu_allocator"] == state.to_dict()
    assert state.to_dict()["kind"] == "tocsr.bench.allocator_state"
