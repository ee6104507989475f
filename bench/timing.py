"""Timers: perf_counter on CPU, CUDA events on GPU, with warm-up until the latency is stable.

On a GPU the timed loop records one start/end event pair per iteration and synchronises once at
the end, so the host never stalls the queue between iterations (the asynchronous launch overlap a
real inference loop has is kept) and each pair still brackets exactly one inference.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from bench.profile import TimingPolicy
from bench.stats import LatencyStats

_WINDOW = 5  # iterations per warm-up window


def _cpu_run_ms(fn: Callable[[], object], iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def _cuda_run_ms(fn: Callable[[], object], iters: int, device: torch.device) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    stream = torch.cuda.current_stream(device)
    for start, end in zip(starts, ends, strict=True):
        start.record(stream)
        fn()
        end.record(stream)
    torch.cuda.synchronize(device)
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]


def run_timed(fn: Callable[[], object], iters: int, device: torch.device) -> list[float]:
    """Latency in ms of `iters` consecutive calls of `fn` on `device`."""
    if device.type == "cuda":
        return _cuda_run_ms(fn, iters, device)
    return _cpu_run_ms(fn, iters)


def warm_up(fn: Callable[[], object], policy: TimingPolicy, device: torch.device) -> int:
    """Run `fn` until two consecutive windows agree within `warmup_stable_rel`; return iterations spent.

    Compilation, cudnn autotuning, allocator growth and clock ramp-up all happen here, not in samples.
    """
    done = 0
    first = run_timed(fn, policy.warmup_min_iters, device)
    done += len(first)
    previous = float(np.median(first[-_WINDOW:]))
    while done < policy.warmup_max_iters:
        window = run_timed(fn, min(_WINDOW, policy.warmup_max_iters - done), device)
        done += len(window)
        current = float(np.median(window))
        if previous > 0 and abs(current - previous) / previous <= policy.warmup_stable_rel:
            break
        previous = current
    return done


def cpu_steal_fraction_since(snapshot: tuple[int, int] | None) -> tuple[float | None, tuple[int, int] | None]:
    """Share of CPU time the hypervisor gave to other guests since `snapshot` (Linux /proc/stat).

    Returns (fraction or None, new snapshot). Steal is the usual cause of run-to-run shifts on VMs.
    """
    try:
        fields = open("/proc/stat").readline().split()[1:]
        values = [int(v) for v in fields[:8]]
    except (OSError, ValueError, IndexError):
        return None, None
    now = (values[7], sum(values))
    if snapshot is None:
        return None, now
    d_total = now[1] - snapshot[1]
    return ((now[0] - snapshot[0]) / d_total if d_total > 0 else 0.0), now


def measure_latency(fn: Callable[[], object], policy: TimingPolicy, device: torch.device) -> LatencyStats:
    """Warm up, then time `policy.repeats` calls; every sample is kept in the result."""
    warmup_iters = warm_up(fn, policy, device)
    samples = run_timed(fn, policy.repeats, device)
    return LatencyStats.from_samples(samples, "cuda_event" if device.type == "cuda" else "perf_counter", warmup_iters)
