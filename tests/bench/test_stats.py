import numpy as np
import pytest

from bench.stats import LatencyStats


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    samples = rng.gamma(4.0, 2.0, size=200)
    s = LatencyStats.from_samples(samples, "perf_counter", 7)
    assert s.n == 200 and s.warmup_iters == 7
    assert s.median_ms == pytest.approx(np.median(samples))
    assert s.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert s.iqr_ms == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25))
    assert s.cv == pytest.approx(samples.std(ddof=1) / samples.mean())
    assert LatencyStats.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("bad", [[1.0], [1.0, float("nan")], [1.0, -2.0]])
def test_rejects_unusable_samples(bad):
    with pytest.raises(ValueError):
        LatencyStats.from_samples(bad, "perf_counter", 0)


def _paired(target, reference, rel):
    from bench.stats import PairedLatency

    return PairedLatency(LatencyStats.from_samples(target, "perf_counter", 0),
                         LatencyStats.from_samples(reference, "perf_counter", 0), tuple(rel), 2)


def test_rebased_to_a_reference_four_times_cheaper_reads_four_times_the_ratio_and_keeps_the_target():
    p = _paired([3.0, 3.3, 3.6], [10.0, 11.0, 12.0], [0.3, 0.3, 0.33])
    r = p.rebased(4.0)
    assert r.relative_samples == pytest.approx((1.2, 1.2, 1.32))
    assert r.reference.samples_ms == pytest.approx((2.5, 2.75, 3.0)) and r.reference_ms == pytest.approx(2.75)
    assert r.target == p.target
    # its milliseconds at a speed are the same either way: ratio to the new reference x the new reference's ms
    assert r.ms_at(90, p.reference_ms / 4) == pytest.approx(p.ms_at(90, p.reference_ms))
    with pytest.raises(ValueError, match="reference ratio"):
        p.rebased(0.0)
