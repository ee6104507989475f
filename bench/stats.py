"""Latency statistics: every sample kept, never a single number."""

from __future__ import annotations

import dataclasses
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


@dataclass(frozen=True)
class PairedLatency:
    """A latency measured in rounds interleaved with a reference workload on the same device.

    `relative_samples` are each target sample divided by the median of the reference samples of its
    own round. A machine that slows down between rounds (a neighbour's burst, boost budget spent)
    moves the reference as much as the target, so the ratio keeps what the target costs at one speed,
    the way asv and pytest-benchmark compare within one run. `target` and `reference` keep the raw
    milliseconds; `ms_at(q, reference_ms)` converts to milliseconds at another speed of the machine
    (the reference measured when a decision is made).
    """

    target: LatencyStats
    reference: LatencyStats
    relative_samples: tuple[float, ...]
    rounds: int
    attempts: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        if len(self.relative_samples) < 2:
            raise ValueError(f"need at least 2 relative samples, got {len(self.relative_samples)}")
        if any(not np.isfinite(s) or s < 0 for s in self.relative_samples):
            raise ValueError("relative samples must be finite and non-negative")

    def _rel(self) -> np.ndarray:
        return np.asarray(self.relative_samples, dtype=np.float64)

    @property
    def ratio(self) -> float:
        """Median latency in units of the reference's median latency."""
        return float(np.median(self._rel()))

    def ratio_at(self, q: float) -> float:
        return float(np.percentile(self._rel(), q))

    @property
    def relative_cv(self) -> float:
        rel = self._rel()
        return float(rel.std(ddof=1) / rel.mean()) if rel.mean() > 0 else float("inf")

    @property
    def reference_ms(self) -> float:
        return self.reference.median_ms

    def ms_at(self, q: float, reference_ms: float) -> float:
        """Latency at percentile `q` in ms, at the machine speed where the reference takes `reference_ms`."""
        return self.ratio_at(q) * reference_ms

    def scaled(self, factor: float) -> PairedLatency:
        """The same measurement in the units of a reference that now runs `factor` times faster relative to
        the target (every relative sample times `factor`; the raw milliseconds are kept as measured)."""
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor {factor!r}: expected a positive finite number")
        return dataclasses.replace(self, relative_samples=tuple(factor * r for r in self.relative_samples))

    def rebased(self, reference_ratio: float) -> PairedLatency:
        """The same measurement in units of another reference that this one's reference costs `reference_ratio`
        of (the teacher as shipped is about four teacher UNets): every relative sample times the ratio, and the
        reference's samples divided by it (the other reference's implied milliseconds). The target's milliseconds
        are kept as measured."""
        if not (np.isfinite(reference_ratio) and reference_ratio > 0):
            raise ValueError(f"reference ratio {reference_ratio!r}: expected a positive finite number")
        ref = self.reference
        implied = LatencyStats.from_samples([s / reference_ratio for s in ref.samples_ms], ref.timer, ref.warmup_iters)
        return dataclasses.replace(self, reference=implied,
                                   relative_samples=tuple(reference_ratio * r for r in self.relative_samples))

    def summary(self) -> dict[str, float | int]:
        return {"ratio": self.ratio, "ratio_p90": self.ratio_at(90), "relative_cv": self.relative_cv,
                "reference_median_ms": self.reference_ms, "reference_cv": self.reference.cv, "rounds": self.rounds}

    def to_dict(self) -> dict:
        return {**self.summary(), "target": self.target.to_dict(), "reference": self.reference.to_dict(),
                "relative_samples": list(self.relative_samples), "attempts": list(self.attempts)}

    @classmethod
    def from_dict(cls, data: dict) -> PairedLatency:
        return cls(LatencyStats.from_dict(data["target"]), LatencyStats.from_dict(data["reference"]),
                   tuple(float(x) for x in data["relative_samples"]), int(data["rounds"]),
                   tuple(data.get("attempts", ())))
