"""Spread for figures over a set of images: bootstrap intervals of a mean and of a paired difference.

Images are the unit that is resampled (a benchmark's images are a sample of the photographs a user
cares about). A paired difference resamples the per-image differences, so two methods scored on the
same images are compared image by image, which is far tighter than comparing two separate intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean over images with its percentile-bootstrap interval (level, e.g. 0.95)."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "level": self.level}

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_mean(values, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """The mean of `values` with a percentile-bootstrap interval; one value gives a zero-width interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"bootstrap_mean needs a non-empty 1-D list of values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"bootstrap_mean: {int((~np.isfinite(x)).sum())} of {len(x)} values are not finite")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return Interval(float(x.mean()), float(lo), float(hi), len(x), level)


def paired_difference(a, b, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean of a - b over the same images, with the bootstrap interval of the per-image differences."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs scores on the same images: {a.shape} vs {b.shape}")
    return bootstrap_mean(a - b, level, resamples, seed)


@dataclass(frozen=True)
class LogTrend:
    """A learning curve's trend: the score gained per doubling of seconds (least squares on log2 seconds) with its
    bootstrap interval, and where the fitted line reaches a target. Reaching the target is an extrapolation beyond
    the measured seconds, a prediction: it assumes the curve keeps its recent slope, which curves rarely do for
    long (they flatten), so `reach_s` is a lower bound more often than not."""

    per_doubling: Interval
    fitted_at_last: float                 # the line's value at the last measured point
    last_s: float
    target: float
    reach_s: float | None                 # seconds at which the line reaches `target`; None if it never does
    reach_low_s: float | None             # the bootstrap's interval of those seconds (None: unbounded)
    reach_high_s: float | None
    fitted_points: int

    def to_dict(self) -> dict[str, float | int | None | dict[str, float]]:
        return {"per_doubling": self.per_doubling.to_dict(), "fitted_at_last": self.fitted_at_last,
                "last_s": self.last_s, "target": self.target, "reach_s": self.reach_s,
                "reach_low_s": self.reach_low_s, "reach_high_s": self.reach_high_s,
                "fitted_points": self.fitted_points, "reach": "extrapolated (predicted), not measured"}


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of y (..., points) against x (points)."""
    xc = x - x.mean()
    slope = (y * xc).sum(axis=-1) / (xc ** 2).sum()
    return slope, y.mean(axis=-1) - slope * x.mean()


def log_trend(seconds, scores, target: float, level: float = 0.95, resamples: int = RESAMPLES,
              seed: int = 0) -> LogTrend:
    """The trend of a learning curve: `scores` (points, images) are per-image scores (e.g. PSNR-Y minus bicubic) of
    the same images at each of `seconds` (points). The images are resampled together at every point, so the interval
    keeps each image's pairing along the curve."""
    x = np.log2(np.asarray(seconds, dtype=np.float64))
    y = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != len(x) or len(x) < 2 or y.shape[1] == 0:
        raise ValueError(f"log_trend needs scores of shape (points, images) with 2 or more points, one per second "
                         f"count: {len(x)} seconds, scores of shape {y.shape}")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"log_trend needs increasing seconds, got {list(np.round(2 ** x, 1))}")
    rng = np.random.default_rng(seed)
    means = y[:, rng.integers(0, y.shape[1], size=(resamples, y.shape[1]))].mean(axis=2).T   # (resamples, points)
    slope, icept = _line(x, y.mean(axis=1))
    slopes, icepts = _line(x, means)
    tail = (1 - level) / 2 * 100

    def reach(s, c):
        with np.errstate(over="ignore"):          # a slope near zero reaches the target never: inf
            return np.where(s > 0, 2.0 ** ((target - c) / np.where(s > 0, s, 1.0)), np.inf)

    # no interpolation between resamples: some reach the target never (inf)
    lo, hi = np.percentile(reach(slopes, icepts), [tail, 100 - tail], method="inverted_cdf")
    s_lo, s_hi = np.percentile(slopes, [tail, 100 - tail])
    point = float(reach(np.array(slope), np.array(icept)))
    finite = lambda v: float(v) if np.isfinite(v) else None        # noqa: E731
    return LogTrend(Interval(float(slope), float(s_lo), float(s_hi), y.shape[1], level),
                    float(slope * x[-1] + icept), float(2 ** x[-1]), target, finite(point), finite(lo), finite(hi),
                    len(x))
