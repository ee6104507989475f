"""Timings the project keeps: forward passes at the default profile's size, and the counters' cost.

Run by `nox -s bench` (JSON under reports/benchmarks/); never part of the default test run.
"""

from __future__ import annotations

import pytest
import torch

from bench.counting import count_macs
from bench.profile import load_profile
from bench.workloads import resolve_workload

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("name", ["unet-tiny", "unet-base"])
def test_unet_forward_cpu_default_profile(benchmark, provenance, name):
    profile = load_profile("cpu-2core")
    torch.set_num_threads(profile.device.threads or 2)
    w = resolve_workload(name, profile)
    w.module.eval()
    provenance.update(profile=profile.name, profile_sha256=profile.sha256, workload=name)

    def step():
        with torch.inference_mode():
            return w.module(*w.args, **w.kwargs)

    out = benchmark.pedantic(step, rounds=30, warmup_rounds=5, iterations=1)
    assert out[0].shape == w.args[0].shape


def test_mac_count_of_paper_scale_unet_on_meta(benchmark, provenance):
    profile = load_profile("h200-bf16")
    w = resolve_workload("unet-sd21", profile)
    module = torch.nn.Module.to(w.module, "meta")
    args = tuple(a.to("meta") for a in w.args)
    kwargs = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in w.kwargs.items()}
    provenance.update(workload="unet-sd21", where="meta")
    count = benchmark.pedantic(lambda: count_macs(module, args, kwargs), rounds=5, iterations=1)
    assert 400e9 < count.total_macs < 405e9
