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

from bench.allocator import settle_cpu_allocator
from bench.profile import TimingPolicy
from bench.stats import LatencyStats, PairedLatency

_WINDOW = 5  # iterations per warm-up window

Clock = Callable[[], int]
"""A monotonic clock in nanoseconds. perf_counter_ns on a CPU; tests pass the virtual clock of a
simulated device, so timing code runs unchanged on a device whose speed they control."""


def _cpu_run_ms(fn: Callable[[], object], iters: int, clock: Clock) -> list[float]:
    out = []
    for _ in range(iters):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1e6)
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


def run_timed(fn: Callable[[], object], iters: int, device: torch.device, clock: Clock | None = None) -> list[float]:
    """Latency in ms of `iters` consecutive calls of `fn` on `device` (CUDA events on a GPU, else `clock`)."""
    if device.type == "cuda":
        return _cuda_run_ms(fn, iters, device)
    return _cpu_run_ms(fn, iters, clock or time.perf_counter_ns)


def warm_up(fn: Callable[[], object], policy: TimingPolicy, device: torch.device, clock: Clock | None = None) -> int:
    """Run `fn` until two consecutive windows agree within `warmup_stable_rel`; return iterations spent.

    Compilation, cudnn autotuning, allocator growth and clock ramp-up all happen here, not in samples. On a CPU
    the process's allocator is first put in its one stated state (bench.allocator), before any call.
    """
    if device.type == "cpu":
        settle_cpu_allocator()
    done = 0
    first = run_timed(fn, policy.warmup_min_iters, device, clock)
    done += len(first)
    previous = float(np.median(first[-_WINDOW:]))
    while done < policy.warmup_max_iters:
        window = run_timed(fn, min(_WINDOW, policy.warmup_max_iters - done), device, clock)
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


REFERENCE_ITERS = 3        # reference calls per round; its median is that round's yardstick


def measure_paired(target: Callable[[], object], reference: Callable[[], object], policy: TimingPolicy,
                   device: torch.device, clock: Clock | None = None, reference_iters: int = REFERENCE_ITERS, retries: int | None = None,
                   warm_reference: bool = True, core_probe: Callable[[], float | None] | None = None) -> PairedLatency:
    """Time `target` in `policy.paired_rounds` short bursts, each beside a burst of `reference`, and keep
    every target sample relative to its own round's reference median (see bench.stats.PairedLatency).

    Rounds alternate the order (reference first, then target first) so a speed that changes
    steadily within a round biases neither side. `policy.repeats` target samples are spread over
    the rounds. While an attempt's relative samples have a CV above `policy.max_cv`, another attempt is
    made (up to `retries`, by default `policy.max_retries`); the result pools the samples of every attempt,
    each summarised in `attempts`. Pooled, not the steadiest attempt: on a shared machine whose per-call
    spread never falls under max_cv, the steadiest of three repeated no better than one attempt and put the
    p90 a few percent low (it keeps the calmest stretch), where the pooled median repeated markedly better
    (docs/bench.md, "Attempts are pooled"). A caller that pairs many targets with one reference warms the
    reference once and passes `warm_reference=False`. With `core_probe` (bench.cores.effective_cores), each attempt
    records how many cores the process had just before and just after it (`effective_cores_before/after`).

    Example:
        >>> paired = measure_paired(lambda: block(x), lambda: teacher(z), profile.timing, torch.device("cpu"))
        >>> paired.ratio          # block latency in units of the teacher's, drift removed
    """
    warm = warm_up(target, policy, device, clock)
    if warm_reference:
        warm_up(reference, policy, device, clock)
    rounds = policy.paired_rounds
    per_round = max(2, -(-policy.repeats // rounds))
    # A clock may name itself (bench.predicted.RooflineClock: "roofline"): samples say what produced them.
    timer = "cuda_event" if device.type == "cuda" else getattr(clock, "timer", "perf_counter")
    tgt: list[float] = []
    ref: list[float] = []
    rel: list[float] = []
    attempts: list[dict] = []
    for _ in range(1 + (policy.max_retries if retries is None else retries)):
        _, snap = cpu_steal_fraction_since(None)
        cores_before = core_probe() if core_probe is not None else None
        first = len(tgt), len(ref)
        for r in range(rounds):
            if r % 2 == 0:
                ref_r = run_timed(reference, reference_iters, device, clock)
                tgt_r = run_timed(target, per_round, device, clock)
            else:
                tgt_r = run_timed(target, per_round, device, clock)
                ref_r = run_timed(reference, reference_iters, device, clock)
            yardstick = float(np.median(ref_r))
            if yardstick <= 0:
                raise ValueError(f"the reference workload took {yardstick} ms per call: it must take measurable time")
            tgt += tgt_r
            ref += ref_r
            rel += [t / yardstick for t in tgt_r]
        steal, _ = cpu_steal_fraction_since(snap)
        cores_after = core_probe() if core_probe is not None else None
        attempt = PairedLatency(LatencyStats.from_samples(tgt[first[0]:], timer, warm),
                                LatencyStats.from_samples(ref[first[1]:], timer, 0), tuple(rel[first[0]:]), rounds)
        attempts.append({"ratio": attempt.ratio, "relative_cv": attempt.relative_cv, "target_median_ms":
                         attempt.target.median_ms, "reference_median_ms": attempt.reference_ms,
                         "cpu_steal_fraction": steal,
                         **({"effective_cores_before": cores_before, "effective_cores_after": cores_after}
                            if core_probe is not None else {})})
        if attempt.relative_cv <= policy.max_cv:
            break
    return PairedLatency(LatencyStats.from_samples(tgt, timer, warm), LatencyStats.from_samples(ref, timer, 0),
                         tuple(rel), rounds * len(attempts), tuple(attempts))
