from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn

from bench.measure import DeviceUnavailableError, measure_workload
from bench.memory import CPU_METHOD, measure_cpu_peak
from bench.profile import parse_profile, replace
from bench.roofline import estimate
from bench.timing import measure_latency
from bench.workloads import Workload, resolve_workload
from tests.conftest import CPU_PROFILE_YAML


def test_measures_tiny_unet_on_cpu(cpu_profile, tmp_path, monkeypatch):
    import bench.rapl

    monkeypatch.setattr(bench.rapl, "POWERCAP", tmp_path / "no-powercap")     # as on these VMs, on any machine
    m = measure_workload(resolve_workload("unet-tiny", cpu_profile), cpu_profile)
    assert m.status in ("ok", "unstable")
    # one attempt's repeats, or, on a loaded machine whose first attempt was too noisy, every attempt's pooled
    attempts = m.extra["attempts"]
    assert m.latency is not None and m.latency.n == cpu_profile.timing.repeats * len(attempts)
    assert len(attempts) <= 1 + cpu_profile.timing.max_retries
    assert m.latency.warmup_iters >= cpu_profile.timing.warmup_min_iters
    assert m.latency.median_ms > 0 and m.latency.timer == "perf_counter"
    assert m.params == sum(p.numel() for p in resolve_workload("unet-tiny", cpu_profile).module.parameters())
    assert m.macs is not None and m.macs.total_macs > 0
    assert m.memory.peak_mib >= m.memory.weights_mib > 0
    assert m.energy_mj_per_inference is None and "RAPL" in m.energy_note


def test_timer_measures_the_call():
    fn = lambda: time.sleep(0.002)  # noqa: E731
    policy = parse_profile(CPU_PROFILE_YAML).timing
    stats = measure_latency(fn, policy, torch.device("cpu"))
    assert stats.n == policy.repeats and stats.min_ms >= 2.0


def _alloc_64_mib() -> float:
    x = torch.ones(64 * 2**20 // 4)
    return float(x[0])


def _eight_blocks_of_4_mib() -> float:
    # blocks below glibc's largest mmap threshold, as a model's activations are: whether they fault in again
    # depends on what the process freed before
    blocks = [torch.ones(2**20) for _ in range(8)]
    return float(sum(b[0] for b in blocks))


def test_cpu_peak_memory_reads_a_transient_allocation_whatever_the_process_did_before():
    # Resident-set growth read this call at its size in a fresh process and at zero once the process had freed
    # larger blocks (glibc then keeps freed blocks resident): the budget must not depend on history.
    first = measure_cpu_peak(_eight_blocks_of_4_mib, weights=2.0)
    for _ in range(3):
        big = [torch.ones(2 * 2**20) for _ in range(8)]
        del big
    again = measure_cpu_peak(_eight_blocks_of_4_mib, weights=2.0)
    assert first.method == again.method == CPU_METHOD
    assert 31.9 <= first.transient_peak_mib <= 32.5, first
    assert abs(again.transient_peak_mib - first.transient_peak_mib) < 0.01 and again.peak_mib == pytest.approx(
        again.transient_peak_mib + 2.0)


def test_cpu_peak_memory_leaves_a_running_profiler_alone_and_says_its_figure_is_resident_growth():
    with torch.autograd.profiler.profile(profile_memory=True) as outer:
        stats = measure_cpu_peak(_alloc_64_mib, weights=0.0)
        torch.ones(1000)
    assert stats.method != CPU_METHOD and stats.method.endswith("_plus_weights")
    assert any(e.name() == "[memory]" for e in outer.kineto_results.events())   # the caller's session survived


def test_the_profilers_own_log_lines_are_dropped_and_everything_else_on_stderr_is_kept(capfd):
    def noisy() -> None:
        os.write(2, b"USDT:2026-12-07 08:51:58 1464:1464 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
        os.write(2, b"warning from the model: something the user must see\n")
        _alloc_64_mib()

    measure_cpu_peak(noisy, weights=0.0)
    err = capfd.readouterr().err
    assert "something the user must see" in err and "SyncActivityProfilerHandler" not in err


class _Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("shape mismatch in block 3")


def test_a_failing_model_is_recorded_as_error(cpu_profile):
    m = measure_workload(Workload("broken", _Broken(), (torch.randn(1, 3),)), cpu_profile)
    assert m.status == "error" and "shape mismatch in block 3" in m.error


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_cuda_profile_without_gpu_says_so(cpu_profile):
    gpu = replace(cpu_profile, device={"kind": "cuda", "name": "H100"}, precision="bf16")
    with pytest.raises(DeviceUnavailableError, match="has none"):
        measure_workload(resolve_workload("toy-conv-attn", gpu), gpu)


def test_predicted_device_is_labelled_and_scales_with_work(predicted_profile):
    m = measure_workload(resolve_workload("unet-tiny", predicted_profile), predicted_profile)
    assert m.status == "predicted" and m.latency is None
    assert m.prediction.latency_ms > 0 and m.latency_at_ms(90) == m.prediction.latency_ms
    bigger = replace(predicted_profile, batch=8)
    m8 = measure_workload(resolve_workload("unet-tiny", bigger), bigger)
    assert m8.prediction.flops == pytest.approx(8 * m.prediction.flops, rel=0.05)


def test_roofline_of_a_large_matmul_is_compute_bound(predicted_profile):
    lin = nn.Linear(4096, 4096, bias=False)
    x = torch.empty(4096, 4096, device="meta")
    est = estimate(lin, (x,), {}, predicted_profile.predicted, "fp16")
    flops = 2 * 4096**3
    assert est.flops == flops
    expected_ms = flops / 10e12 * 1e3 + 0.01
    assert est.latency_ms == pytest.approx(expected_ms, rel=1e-6)


def test_unsteady_loops_are_retried_and_every_attempt_pooled(cpu_profile):
    strict = replace(cpu_profile, timing={**cpu_profile.to_dict()["timing"], "max_cv": 1e-9, "max_retries": 2})
    m = measure_workload(resolve_workload("toy-conv-attn", strict), strict)
    assert m.status == "unstable" and len(m.extra["attempts"]) == 3
    assert m.latency.n == 3 * strict.timing.repeats          # every timed call, not the steadiest attempt's
    assert any("3 timed attempts" in n and "pooled" in n for n in m.notes)


def test_workloads_are_built_with_the_same_weights_every_time(cpu_profile):
    a = resolve_workload("unet-tiny", cpu_profile).module.conv_in.weight
    b = resolve_workload("unet-tiny", cpu_profile).module.conv_in.weight
    assert torch.equal(a, b)


def test_a_cuda_graph_keeps_the_module_and_inputs_it_replays_alive(monkeypatch):
    """A graph replays the memory it was captured on. A caller that hands over a temporary module or input (the
    pipeline probe's reference UNet was one) must not free it under the graph: on an H200 that crashed the cost
    stage with an illegal memory access. CUDA's graph primitives are faked so the test runs on CPU."""
    import contextlib
    import gc
    import weakref

    import bench.measure as measure

    class FakeStream:
        def wait_stream(self, other):
            pass

    class FakeGraph:
        replays = 0

        def replay(self):
            FakeGraph.replays += 1

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())

    def captured():
        module, x = nn.Linear(4, 4), torch.ones(1, 4)
        call = measure.prepare_callable(module, (x,), {}, "cuda_graphs")
        return call, weakref.ref(module), weakref.ref(x), module(x).detach()

    call, module, x, expected = captured()
    gc.collect()
    assert module() is not None and x() is not None          # the graph's memory lives as long as the graph
    assert torch.equal(call(), expected) and FakeGraph.replays == 1
    del call
    gc.collect()
    assert module() is None and x() is None                  # and no longer


def test_an_error_of_the_measured_call_is_not_taken_for_a_profiler_that_could_not_run(caplog):
    def broken() -> None:
        raise RuntimeError("shape mismatch in block 3")

    with caplog.at_level("WARNING", logger="bench.memory"), pytest.raises(RuntimeError, match="shape mismatch"):
        measure_cpu_peak(broken, weights=0.0)
    assert "resident growth" not in caplog.text       # no fallback reading, no warning blaming the profiler
