"""Latency statistics: every sample kept, never a single number."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-inference latency samples (milliseconds).

    `cv` is std/mean; `iqr_ms` the 75th minus 25th percentile. `timer` names the clock that produced
    the samples (`perf_counter` on CPU, `cuda_event` on GPU) and `warmup_iters` how many un-timed runs
    preceded them.
    """

    samples_ms: tuple[float, ...]
    timer: str
    warmup_iters: int

    @classmethod
    def from_samples(cls, samples_ms, timer: str, warmup_iters: int) -> LatencyStats:
        samples = tuple(float(s) for s in samples_ms)
        if len(samples) < 2:
            raise ValueError(f"need at least 2 latency samples for statistics, got {len(samples)}")
        if any(not np.isfinite(s) or s < 0 for s in samples):
            raise ValueError("latency samples must be finite and non-negative")
        return cls(samples, timer, warmup_iters)

    def _arr(self) -> np.ndarray:
        return np.asarray(self.samples_ms, dtype=np.float64)

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return float(np.median(self._arr()))

    @property
    def mean_ms(self) -> float:
        return float(self._arr().mean())

    @property
    def std_ms(self) -> float:
        return float(self._arr().std(ddof=1))

    @property
    def min_ms(self) -> float:
        return float(self._arr().min())

    @property
    def max_ms(self) -> float:
        return float(self._arr().max())

    @property
    def iqr_ms(self) -> float:
        q75, q25 = np.percentile(self._arr(), [75, 25])
        return float(q75 - q25)

    @property
    def cv(self) -> float:
        mean = self.mean_ms
        return float(self.std_ms / mean) if mean > 0 else float("inf")

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self._arr(), q))

    @property
    def p90_ms(self) -> float:
        return self.percentile_ms(90)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    def summary(self) -> dict[str, float | int | str]:
        return {
            "n": self.n, "median_ms": self.median_ms, "mean_ms": self.mean_ms, "std_ms": self.std_ms,
            "p90_ms": self.p90_ms, "p99_ms": self.p99_ms, "iqr_ms": self.iqr_ms, "cv": self.cv,
            "min_ms": self.min_ms, "max_ms": self.max_ms, "timer": self.timer, "warmup_iters": self.warmup_iters,
        }

    def to_dict(self) -> dict:
        return {**self.summary(), "samples_ms": list(self.samples_ms)}

    @classmethod
    def from_dict(cls, data: dict) -> LatencyStats:
        return cls.from_samples(data["samples_ms"], data["timer"], int(data["warmup_iters"]))
