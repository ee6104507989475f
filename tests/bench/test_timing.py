"""bench.timing: paired measurement on a virtual clock whose per-call times the test sets."""

import pytest
import torch

from bench.profile import TimingPolicy
from bench.timing import measure_paired

CPU = torch.device("cpu")


def _device(target_ms):
    """A clock and two workloads: the reference always takes 10 ms, the target `target_ms(call_number)`."""
    t = {"ns": 0, "calls": 0}

    def target():
        t["calls"] += 1
        t["ns"] += int(target_ms(t["calls"]) * 1e6)

    def reference():
        t["ns"] += int(10e6)

    return target, reference, lambda: t["ns"]


def test_noisy_attempts_are_pooled_not_the_steadiest_kept():
    """Every attempt misses max_cv: the result holds every timed call, not the calmest attempt's. The steadiest
    attempt's p90 would be the calm stretch's (10 ms); the pooled one sees the bursts the device had."""
    policy = TimingPolicy(warmup_min_iters=2, warmup_max_iters=2, repeats=40, max_cv=0.01, max_retries=2,
                          paired_rounds=8)
    warm = policy.warmup_min_iters
    # after the warm-up, 40 target calls per attempt: the first and third attempts bursty (every other call three
    # times the reference), the second calm but for one call in ten
    def ms(call):
        i = call - warm - 1
        if i < 0:
            return 10.0
        attempt, k = divmod(i, 40)
        if attempt == 1:
            return 10.0 if k % 10 else 11.0
        return 30.0 if k % 2 else 10.0

    target, reference, clock = _device(ms)
    paired = measure_paired(target, reference, policy, CPU, clock)
    assert len(paired.attempts) == 3
    assert paired.target.n == 120 and len(paired.relative_samples) == 120 and paired.rounds == 24
    steadiest = min(paired.attempts, key=lambda a: a["relative_cv"])
    assert steadiest["ratio"] == pytest.approx(1.0)
    assert paired.ratio_at(90) == pytest.approx(3.0)           # two of three attempts had their bursts
    assert paired.target.max_ms == pytest.approx(30.0)          # the bursts are in the samples, not dropped


def test_a_steady_first_attempt_is_the_whole_measurement():
    policy = TimingPolicy(warmup_min_iters=2, warmup_max_iters=2, repeats=40, max_cv=0.05, max_retries=2,
                          paired_rounds=8)
    target, reference, clock = _device(lambda call: 5.0)
    paired = measure_paired(target, reference, policy, CPU, clock)
    assert len(paired.attempts) == 1 and paired.target.n == 40 and paired.rounds == 8
    assert paired.ratio == pytest.approx(0.5)


def test_a_machine_that_slows_between_rounds_moves_the_reference_alike_and_the_ratio_keeps():
    """Each target sample is divided by its own round's reference: halfway through, everything runs twice as slow,
    and the ratio and its spread are as if nothing had happened."""
    policy = TimingPolicy(warmup_min_iters=2, warmup_max_iters=2, repeats=40, max_cv=0.05, max_retries=0,
                          paired_rounds=8)
    t = {"ns": 0, "calls": 0}

    def speed():        # 4 warm-up calls, then rounds of 5 target and 3 reference calls: slow from the fifth round
        return 2.0 if t["calls"] > 4 + 4 * 8 else 1.0

    def target():
        t["calls"] += 1
        t["ns"] += int(5e6 * speed())

    def reference():
        t["calls"] += 1
        t["ns"] += int(10e6 * speed())

    paired = measure_paired(target, reference, policy, CPU, lambda: t["ns"])
    assert paired.target.max_ms == pytest.approx(2 * paired.target.min_ms)    # the machine did slow down
    assert paired.ratio == pytest.approx(0.5) and paired.ratio_at(90) == pytest.approx(0.5, rel=1e-6)
    assert paired.relative_cv == pytest.approx(0.0, abs=1e-6)
