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
