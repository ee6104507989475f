"""How many of its cores a CPU timing had: a short probe taken beside a paired reading.

Two timings of one pipeline minutes apart disagree on a shared virtual machine by more than their own spread
(reports/evidence/latency-agreement/). The cause found there, in kind: the host's other tenants take part of
the second vCPU now and then, without the guest's steal counter showing it. Pairing with the reference does
not cancel that: with one core the HR-resolution parts slow far more than the reference UNet, and with a core
shared the UNet slows most, so a pipeline's ratio moves in either direction. This probe measures it directly:
the same matrix product timed on one thread and on the reading's thread count. On cores the process has to
itself the ratio is close to the thread count; where a core is taken it falls toward 1, and below 1 where the
threads wait on each other at a barrier.

Recorded beside each attempt of a paired reading (bench.timing.measure_paired), it says which of two
disagreeing readings had less of the machine, so a user can tell a slow model from a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from bench.timing import Clock

PROBE_SIDE = 768     # a square matrix product large enough to split evenly across threads, short enough to repeat
PROBE_CALLS = 5      # timed calls per thread count; the median is kept


def _median_ms(work: Callable[[], object], calls: int, clock: Clock) -> float:
    work()   # a pool that was just resized spins its threads up on the first call
    out = []
    for _ in range(calls):
        t0 = clock()
        work()
        out.append((clock() - t0) / 1e6)
    return float(np.median(out))


def effective_cores(threads: int | None = None, work: Callable[[], object] | None = None,
                    clock: Clock | None = None, calls: int = PROBE_CALLS) -> float | None:
    """The one-thread time of a fixed parallel workload over its time on `threads` threads (default: torch's
    current count): about `threads` on an idle machine, less when other processes take cores. None where there
    is nothing to compare (one thread). Torch's thread count is left as it was found."""
    threads = torch.get_num_threads() if threads is None else int(threads)
    if threads < 2:
        return None
    if work is None:
        a = torch.randn(PROBE_SIDE, PROBE_SIDE)

        def work() -> object:
            return a @ a
    clock = clock or time.perf_counter_ns
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = _median_ms(work, calls, clock)
            torch.set_num_threads(threads)
            many = _median_ms(work, calls, clock)     # last, so the pool is at the reading's size again
    finally:
        torch.set_num_threads(before)
    if many <= 0:
        raise ValueError(f"the core probe's workload took {many} ms on {threads} threads: it must take measurable time")
    return one / many


FEWER_CORES = 0.3    # a gap between two readings' fewest cores wider than the probe's own spread on an idle machine


def attempt_readings(attempts: list[dict] | tuple[dict, ...]) -> list[float]:
    """The probe readings a paired reading's attempts carry (`effective_cores_before/after`), in order."""
    return [a[k] for a in attempts for k in ("effective_cores_before", "effective_cores_after")
            if a.get(k) is not None]


def cores_summary(readings: list[float], threads: int) -> dict[str, float | int] | None:
    """The fewest and most cores of a timing's probe readings, with the thread count they are out of; None where
    there are none."""
    if not readings:
        return None
    return {"min": float(min(readings)), "max": float(max(readings)), "threads": int(threads),
            "probes": len(readings)}


def had_fewer_cores(now: dict[str, float | int] | None, before: dict[str, float | int] | None) -> bool:
    """Whether timing `now` had fewer cores to itself than timing `before` (their `cores_summary`), by more than
    the probe's spread: then a busy machine, not a slower model, may be what moved `now`."""
    return bool(now and before and float(now["min"]) < float(before["min"]) - FEWER_CORES)


def cores_text(summary: dict[str, float | int] | None) -> str:
    """"1.2-1.9 of 2 cores" (or "1.9 of 2 cores"), "" without a summary."""
    if not summary:
        return ""
    lo, hi = float(summary["min"]), float(summary["max"])
    span = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}"
    return f"{span} of {summary['threads']} cores"
