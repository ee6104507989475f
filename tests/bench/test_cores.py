"""bench.cores: the probe of how many cores a CPU timing had, on a virtual clock whose speed follows the thread
count and the cores the test leaves free; and its place beside each attempt of a paired reading."""

import pytest
import torch

from bench.cores import attempt_readings, cores_summary, cores_text, effective_cores, had_fewer_cores
from bench.profile import TimingPolicy
from bench.timing import measure_paired

CPU = torch.device("cpu")


def _machine(free_cores: float):
    """A clock and a parallel workload of 12 ms of work: on n threads it takes 12 / min(n, free_cores) ms, and
    on more threads than free cores the threads also wait on each other at its barrier (+2 ms)."""
    t = {"ns": 0}

    def work():
        n = torch.get_num_threads()
        ms = 12.0 / min(n, free_cores) + (2.0 if n > free_cores else 0.0)
        t["ns"] += int(ms * 1e6)

    return work, lambda: t["ns"]


def test_the_probe_reads_the_cores_left_free_and_leaves_torchs_thread_count_as_it_was():
    before = torch.get_num_threads()
    work, clock = _machine(free_cores=2)
    assert effective_cores(2, work, clock) == pytest.approx(2.0)
    work, clock = _machine(free_cores=1)
    assert effective_cores(2, work, clock) == pytest.approx(12 / 14)       # a core taken: below one
    work, clock = _machine(free_cores=4)
    assert effective_cores(4, work, clock) == pytest.approx(4.0)
    assert effective_cores(1, work, clock) is None                         # nothing to compare on one thread
    assert torch.get_num_threads() == before


def test_a_real_probe_on_this_cpu_gives_a_finite_positive_reading():
    threads = max(2, torch.get_num_threads())
    reading = effective_cores(threads, calls=2)
    assert reading is not None and 0 < reading < 2 * threads


def test_each_attempt_of_a_paired_reading_records_the_cores_before_and_after_it():
    policy = TimingPolicy(warmup_min_iters=2, warmup_max_iters=2, repeats=8, max_cv=1e-9, max_retries=1,
                          paired_rounds=4)
    readings = iter([1.9, 1.8, 1.1, 1.2])
    t = {"ns": 0, "calls": 0}

    def target():                    # 5 and 6 ms in turn: every attempt misses max_cv, so both are made
        t["calls"] += 1
        t["ns"] += 5_000_000 + 1_000_000 * (t["calls"] % 2)

    def reference():
        t["ns"] += 10_000_000

    paired = measure_paired(target, reference, policy, CPU, lambda: t["ns"], core_probe=lambda: next(readings))
    assert len(paired.attempts) == 2
    assert [(a["effective_cores_before"], a["effective_cores_after"]) for a in paired.attempts] == [(1.9, 1.8),
                                                                                                  (1.1, 1.2)]
    summary = cores_summary(attempt_readings(paired.attempts), 2)
    assert summary == {"min": 1.1, "max": 1.9, "threads": 2, "probes": 4}
    assert cores_text(summary) == "1.1-1.9 of 2 cores"
    assert cores_text({"min": 1.94, "max": 1.96, "threads": 2}) == "1.9-2.0 of 2 cores"
    assert cores_text({"min": 1.91, "max": 1.94, "threads": 2}) == "1.9 of 2 cores" and cores_text(None) == ""
    unprobed = measure_paired(target, reference, policy, CPU, lambda: t["ns"])
    assert "effective_cores_before" not in unprobed.attempts[0] and cores_summary(attempt_readings(unprobed.attempts), 2) is None


def test_fewer_cores_means_fewer_by_more_than_the_probes_spread():
    full, busy = {"min": 1.95, "max": 2.0, "threads": 2}, {"min": 1.2, "max": 1.9, "threads": 2}
    assert had_fewer_cores(busy, full) and not had_fewer_cores(full, busy)
    assert not had_fewer_cores({"min": 1.8, "max": 2.0, "threads": 2}, full)     # within the probe's spread
    assert not had_fewer_cores(busy, None) and not had_fewer_cores(None, full)    # one side not probed
