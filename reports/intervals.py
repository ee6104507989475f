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
