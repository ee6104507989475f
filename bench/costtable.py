"""Per-device cost tables: what each (slot, choice) costs on one device, and a whole-model correction.

Every latency in a table is measured interleaved with a reference workload (the teacher UNet at the
profile's size, see `bench.timing.measure_paired`) and kept both in ms and as a ratio to the
reference measured beside it. The model is fitted on ratios, so a machine that slows down or speeds
up while the table is measured does not bend it:

    ratio(spec) = intercept + sum over groups g of slope_g * sum over slots s in g of ratio(s, choice)

Each block is timed alone on the inputs it sees inside the teacher. The correction (intercept,
slopes) is a least-squares fit on whole candidates measured on the device (the calibration set):
the intercept absorbs the parts no slot owns (conv_in, time embedding, conv_out), the slopes what
isolated timing misses or double-counts. The plain affine correction has one slope; richer ones
have a slope per slot kind, per feature-map size, or both, and leave-one-out error on the
calibration set picks among them. The fit is then judged on held-out candidates against a stated
bar (`ValidationBar`). A table that misses the bar is refitted: the held-out candidates join the
calibration set, outliers are measured again, and a fresh held-out set judges the new fit; after
`refit_rounds` a table that still misses raises `CostTableInvalid` with the figures.

Milliseconds come from ratios times a reference latency: `reference_ms` (what the reference took
while the table was measured) unless a decision converts at the speed measured then
(`at_reference`). A table is valid only for the device, precision, execution mode and resolution it
was measured at; all are recorded.

Memory is predicted conservatively as the candidate's weights plus the teacher's transient peak.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.profile import DeviceProfile
from bench.stats import PairedLatency
from bench.timing import Clock, measure_paired, warm_up
from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.errors import TocsrError
from tocsr.core.space import TEACHER, ArchSpec, SearchSpace

COST_TABLE_KIND = "tocsr.bench.cost_table"
# 2: latencies paired with a reference workload, ratio-space correction, validation rounds.
# 3: `measured` (False: built from a predicted device's roofline, bench.predicted); every version-2 table was measured.
COST_TABLE_SCHEMA_VERSION = 3
REFERENCE_WORKLOAD = "teacher UNet, one call at the profile's batch and latent size"

# Slot groups of the correction models, simplest first (ties in leave-one-out error go to the simpler).
CORRECTIONS: dict[str, Callable[[Any], str]] = {
    "affine": lambda slot: "all",
    "per-kind": lambda slot: slot.kind,
    "per-stride": lambda slot: f"stride{slot.stride}",
    "per-kind-stride": lambda slot: f"{slot.kind}@stride{slot.stride}",
}


class CostTableInvalid(TocsrError):
    """A measured cost table missed its validation bar after every refit round. `table` holds it."""

    def __init__(self, message: str, table: CostTable):
        super().__init__(message)
        self.table = table


class CostProbe(Protocol):
    """The device a cost table is measured on, as zero-argument calls.

    `bench.probe.TorchProbe` runs torch modules; tests use a simulated device with known costs.
    A call returned by `candidate` is valid until the next call of `candidate`.
    """

    device: torch.device
    clock: Clock | None
    device_name: str
    bytes_per_param: int

    def reference(self) -> Callable[[], object]: ...
    def block(self, slot: str, choice: str) -> Callable[[], object]: ...
    def block_counts(self, slot: str, choice: str) -> tuple[int, int]: ...       # (params, MACs)
    def whole_counts(self) -> tuple[int, int]: ...                                # the teacher's (params, MACs)
    def candidate(self, spec: ArchSpec) -> Callable[[], object]: ...
    def candidate_memory_mib(self, spec: ArchSpec) -> float: ...
    def candidate_params(self, spec: ArchSpec) -> int: ...


@dataclass(frozen=True)
class ValidationBar:
    """A table is trusted when at least `share` of held-out candidates are predicted within ±`tolerance`."""

    tolerance: float = 0.10
    share: float = 0.90

    def describe(self) -> str:
        return f">= {100 * self.share:.0f}% of held-out candidates within ±{100 * self.tolerance:.0f}%"


@dataclass(frozen=True)
class ChoiceCost:
    slot: str
    choice: str
    ratio: float            # median latency / the reference's median latency, measured in the same rounds
    median_ms: float
    iqr_ms: float
    reference_ms: float     # the reference's median while this block was measured
    params: int
    macs: int


@dataclass(frozen=True)
class CandidateMeasurement:
    key: str
    choices: dict[str, str]
    latency: PairedLatency
    peak_memory_mib: float
    params: int
    role: str            # "calibration", "holdout", "selection" (re-measured when choosing) or "revalidation"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "choices": self.choices, "role": self.role, "latency": self.latency.to_dict(),
                "peak_memory_mib": self.peak_memory_mib, "params": self.params}

    def scaled(self, factor: float) -> CandidateMeasurement:
        return dataclasses.replace(self, latency=self.latency.scaled(factor))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateMeasurement:
        return cls(d["key"], dict(d["choices"]), PairedLatency.from_dict(d["latency"]), float(d["peak_memory_mib"]),
                   int(d["params"]), d["role"])


@dataclass(frozen=True)
class Correction:
    """ratio = intercept + sum_g slopes[g] * (sum of block ratios of the slots in group g)."""

    kind: str
    intercept: float
    slopes: dict[str, float]
    groups: dict[str, str]          # slot name -> group
    loo_median_abs_err: float | None = None

    def predict(self, entries: dict[tuple[str, str], ChoiceCost], choices: dict[str, str]) -> float:
        sums: dict[str, float] = {}
        for slot, choice in choices.items():
            g = self.groups[slot]
            sums[g] = sums.get(g, 0.0) + entries[(slot, choice)].ratio
        return self.intercept + sum(self.slopes[g] * v for g, v in sums.items())

    def scaled(self, factor: float) -> Correction:
        """Every prediction `factor` times larger."""
        return dataclasses.replace(self, intercept=factor * self.intercept,
                                   slopes={g: factor * v for g, v in self.slopes.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Correction:
        return cls(d["kind"], float(d["intercept"]), dict(d["slopes"]), dict(d["groups"]), d.get("loo_median_abs_err"))


def _design(entries, groups: dict[str, str], names: list[str], cands: Sequence[CandidateMeasurement]) -> np.ndarray:
    x = np.zeros((len(cands), len(names) + 1))
    x[:, 0] = 1.0
    col = {g: i + 1 for i, g in enumerate(names)}
    for r, m in enumerate(cands):
        for slot, choice in m.choices.items():
            x[r, col[groups[slot]]] += entries[(slot, choice)].ratio
    return x


def _lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coef if np.all(coef[1:] > 0) and np.all(np.isfinite(coef)) else None   # a negative slope is not physical


def _loo(c: Correction) -> float:
    return float("inf") if c.loo_median_abs_err is None else c.loo_median_abs_err


def fit_correction(space: SearchSpace, entries: dict[tuple[str, str], ChoiceCost],
                   calibration: Sequence[CandidateMeasurement]) -> Correction:
    """The correction with the lowest leave-one-out error on `calibration` (median |relative error|).

    A model is tried only when the calibration set has at least three more candidates than the model
    has coefficients; the affine one is always tried, and with fewer than two distinct block sums it
    degrades to a pure offset."""
    y = np.array([m.latency.ratio for m in calibration])
    best: Correction | None = None
    for kind, group_of in CORRECTIONS.items():
        groups = {s.name: group_of(s) for s in space.slots}
        names = sorted(set(groups.values()))
        x = _design(entries, groups, names, calibration)
        if kind != "affine" and len(calibration) < x.shape[1] + 3:
            continue
        if kind == "affine" and (len(calibration) < 2 or np.ptp(x[:, 1]) == 0):
            return Correction("offset", float(np.mean(y - x[:, 1])), {"all": 1.0}, groups, None)
        coef = _lstsq(x, y)
        if coef is None:
            continue
        loo = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            c = _lstsq(x[keep], y[keep]) if keep.sum() >= x.shape[1] else None
            if c is not None:
                loo.append(abs(float(x[i] @ c) / y[i] - 1))
        err = float(np.median(loo)) if loo else None      # None: no leave-one-out fit was physical
        model = Correction(kind, float(coef[0]), {g: float(v) for g, v in zip(names, coef[1:], strict=True)}, groups,
                           err)
        if best is None or _loo(model) < _loo(best) - 1e-3:      # a richer model must earn its place
            best = model
    if best is None:          # every fit gave a negative slope: fall back to a plain offset on the block sum
        groups = {s.name: "all" for s in space.slots}
        x = _design(entries, groups, ["all"], calibration)
        return Correction("offset", float(np.mean(y - x[:, 1])), {"all": 1.0}, groups, None)
    return best


@dataclass(frozen=True)
class CostTable:
    profile_name: str
    profile_sha256: str
    device_name: str
    precision: str
    execution_mode: str
    latent_px: int
    space_id: str
    reference: str                 # what the reference workload is
    reference_ms: float            # its median while the table was measured: the speed the ms figures are at
    entries: dict[tuple[str, str], ChoiceCost]
    fixed_params: int              # parameters outside every slot
    fixed_macs: int
    correction: Correction
    percentile_ratio: float        # p{percentile} / median of the relative samples, mean over calibration
    percentile: float
    teacher_transient_mib: float
    bytes_per_param: int
    bar: ValidationBar = ValidationBar()
    candidates: tuple[CandidateMeasurement, ...] = ()
    rounds: tuple[dict[str, Any], ...] = ()      # validation of every fit, first to last
    extra: dict[str, Any] = field(default_factory=dict)
    measured: bool = True          # False: every figure is the roofline of a device that is not attached

    @property
    def how(self) -> str:
        """"measured" or "predicted": the word every figure from this table is shown with."""
        return "measured" if self.measured else "predicted"

    scope = "backbone"          # what it predicts: one backbone call (bench.pipeline adds the fixed parts)

    def _check(self, spec: ArchSpec) -> None:
        if spec.space_id != self.space_id:
            raise ValueError(f"ArchSpec {spec.key} is from space {spec.space_id}; this cost table is for {self.space_id}")

    def block_sum_ratio(self, spec: ArchSpec) -> float:
        self._check(spec)
        return sum(self.entries[(s, c)].ratio for s, c in spec.items())

    def predict_ratio(self, spec: ArchSpec) -> float:
        """Predicted median latency of the whole candidate, in units of the reference's."""
        self._check(spec)
        return self.correction.predict(self.entries, dict(spec.items()))

    def predict_latency_ms(self, spec: ArchSpec) -> float:
        """Predicted median latency in ms at the speed of `reference_ms`."""
        return self.predict_ratio(spec) * self.reference_ms

    def predict_latency_at_ms(self, spec: ArchSpec) -> float:
        """Predicted latency at the profile's constraint percentile, in ms at the speed of `reference_ms`."""
        return self.predict_latency_ms(spec) * self.percentile_ratio

    def at_reference(self, reference_ms: float) -> CostTable:
        """The same table converting to ms at another speed of the machine (the reference measured now)."""
        if not reference_ms > 0:
            raise ValueError(f"reference_ms = {reference_ms}: expected a positive latency")
        return dataclasses.replace(self, reference_ms=float(reference_ms))

    def params(self, spec: ArchSpec) -> int:
        self._check(spec)
        return self.fixed_params + sum(self.entries[(s, c)].params for s, c in spec.items())

    def macs(self, spec: ArchSpec) -> int:
        self._check(spec)
        return self.fixed_macs + sum(self.entries[(s, c)].macs for s, c in spec.items())

    def predict_memory_mib(self, spec: ArchSpec) -> float:
        return self.params(spec) * self.bytes_per_param / 2**20 + self.teacher_transient_mib

    def cheapest(self, space: SearchSpace) -> ArchSpec:
        """Every slot at its cheapest choice by block ratio (the correction's slopes are positive, so this is
        also the candidate with the lowest predicted latency)."""
        return space.spec({s.name: min(s.choices, key=lambda c, s=s: self.entries[(s.name, c)].ratio)
                           for s in space.slots})

    def errors(self, cands: Sequence[CandidateMeasurement]) -> np.ndarray:
        """Relative errors (predicted / measured - 1) of median latency, in reference units (one speed)."""
        return np.array([self.correction.predict(self.entries, c.choices) / c.latency.ratio - 1 for c in cands])

    def holdout(self) -> list[CandidateMeasurement]:
        return [c for c in self.candidates if c.role == "holdout"]

    def with_candidates(self, fresh: Sequence[CandidateMeasurement]) -> CostTable:
        return dataclasses.replace(self, candidates=self.candidates + tuple(fresh))

    def validation_summary(self) -> dict[str, Any]:
        return summarize_errors(self.errors(self.holdout()), self.bar)

    def recalibrated(self, space: SearchSpace, measured: Sequence[CandidateMeasurement]) -> CostTable:
        """The table refitted with `measured` (e.g. candidates re-measured when choosing) added to its
        calibration set; the held-out candidates stay held out and keep judging it."""
        cands = self.candidates + tuple(measured)
        correction = fit_correction(space, self.entries, [c for c in cands if c.role != "holdout"])
        return dataclasses.replace(self, candidates=cands, correction=correction)

    def rescaled(self, factor: float) -> CostTable:
        """The table with every prediction `factor` times larger: the machine now runs candidates `factor` times
        as long relative to the reference as when the table was measured (search.selection fits the factor on
        fresh candidates and judges it on others). The candidates it holds are carried into the same units, so a
        later refit mixes no two speeds; `extra["rescaled_by"]` keeps the product of every factor applied."""
        return dataclasses.replace(self, correction=self.correction.scaled(factor),
                                   candidates=tuple(c.scaled(factor) for c in self.candidates),
                                   extra={**self.extra, "rescaled_by": factor * self.extra.get("rescaled_by", 1.0)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile_name": self.profile_name, "profile_sha256": self.profile_sha256, "device_name": self.device_name,
            "precision": self.precision, "execution_mode": self.execution_mode, "latent_px": self.latent_px,
            "space_id": self.space_id, "reference": self.reference, "reference_ms": self.reference_ms,
            "fixed_params": self.fixed_params, "fixed_macs": self.fixed_macs,
            "correction": self.correction.to_dict(), "percentile_ratio": self.percentile_ratio,
            "percentile": self.percentile, "teacher_transient_mib": self.teacher_transient_mib,
            "bytes_per_param": self.bytes_per_param, "bar": dataclasses.asdict(self.bar),
            "entries": [dataclasses.asdict(e) for e in self.entries.values()],
            "candidates": [c.to_dict() for c in self.candidates],
            "validation": self.validation_summary(), "rounds": list(self.rounds), "extra": self.extra,
            "measured": self.measured,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostTable:
        entries = {(e["slot"], e["choice"]): ChoiceCost(**e) for e in d["entries"]}
        keys = ("profile_name", "profile_sha256", "device_name", "precision", "execution_mode", "latent_px", "space_id",
                "reference", "reference_ms", "fixed_params", "fixed_macs", "percentile_ratio", "percentile",
                "teacher_transient_mib", "bytes_per_param")
        return cls(**{k: d[k] for k in keys}, entries=entries, correction=Correction.from_dict(d["correction"]),
                   bar=ValidationBar(**d["bar"]),
                   candidates=tuple(CandidateMeasurement.from_dict(c) for c in d.get("candidates", [])),
                   rounds=tuple(d.get("rounds", ())), extra=d.get("extra", {}), measured=bool(d["measured"]))

    def save(self, path: str | Path, environment: dict[str, Any]) -> Path:
        return write_artifact(path, COST_TABLE_KIND, COST_TABLE_SCHEMA_VERSION, self.to_dict(), environment=environment)

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        return cls.from_dict(read_artifact(
            path, COST_TABLE_KIND, COST_TABLE_SCHEMA_VERSION,
            rebuild="measure it again with `tocsr costs`, or delete it and rerun `tocsr run`",
            migrations={2: lambda d: {**d, "measured": True}}))


def summarize_errors(err: np.ndarray, bar: ValidationBar) -> dict[str, Any]:
    """Figures of relative prediction errors and whether they meet `bar` (None when nothing was held out)."""
    if err.size == 0:
        return {"n": 0, "passes": None, "bar": bar.describe()}
    abs_err = np.abs(err)
    within = float((abs_err <= bar.tolerance).mean())
    return {"n": int(err.size), "within_10pct": float((abs_err <= 0.10).mean()),
            "within_5pct": float((abs_err <= 0.05).mean()), "within_tolerance": within,
            "median_abs_err": float(np.median(abs_err)), "p90_abs_err": float(np.percentile(abs_err, 90)),
            "max_abs_err": float(abs_err.max()), "mean_signed_err": float(err.mean()),
            "passes": bool(within >= bar.share), "bar": bar.describe()}


def describe_validation(v: dict[str, Any]) -> str:
    if not v.get("n"):
        return "not validated (no held-out candidates)"
    return (f"{100 * v['within_tolerance']:.0f}% of {v['n']} held-out candidates within the tolerance "
            f"(median |error| {100 * v['median_abs_err']:.1f}%, max {100 * v['max_abs_err']:.1f}%; bar: {v['bar']})")


def sample_candidates(space: SearchSpace, n: int, seed: int, include_extremes: bool,
                      exclude: set[str] | frozenset[str] = frozenset()) -> list[ArchSpec]:
    """`n` distinct candidates not in `exclude`: mixes of teacher and surrogate blocks (with the
    all-teacher and all-last-choice candidates first when `include_extremes`)."""
    rng = random.Random(seed)
    specs: dict[str, ArchSpec] = {}
    if include_extremes:
        for spec in (space.all_teacher(), space.spec({s.name: s.choices[-1] for s in space.slots})):
            if spec.key not in exclude:
                specs[spec.key] = spec
    tries = 0
    while len(specs) < n and tries < 100 * n:
        tries += 1
        spec = space.sample_mixed(rng)
        if spec.key not in exclude:
            specs.setdefault(spec.key, spec)
    return list(specs.values())


class TableMeter(Protocol):
    """What `measure_cost_table` asks of the device it measures on, one (slot, choice) entry or one
    whole candidate at a time. `ProbeMeter` measures in this process through a `CostProbe`;
    `bench.remote.RayTableMeter` measures on the Ray node that has the device. `stop()` returning True
    ends `candidates` early with what was measured."""

    device_name: str
    bytes_per_param: int

    def whole_counts(self) -> tuple[int, int]: ...
    def entries(self, keys: Sequence[tuple[str, str]], progress: Callable[[str], None] | None = None
                ) -> dict[tuple[str, str], ChoiceCost]: ...
    def candidates(self, specs: Sequence[ArchSpec], role: str, progress: Callable[[str], None] | None = None,
                   stop: Callable[[], bool] | None = None) -> list[CandidateMeasurement]: ...


class ProbeMeter:
    """`TableMeter` of a `CostProbe` in this process: every latency paired with the probe's reference,
    which is warmed up once before the first measurement."""

    def __init__(self, probe: CostProbe, profile: DeviceProfile):
        self.probe, self.profile = probe, profile
        self.device_name, self.bytes_per_param = probe.device_name, probe.bytes_per_param
        self._warm = False

    def _warm_up(self) -> None:
        if not self._warm:
            warm_up(self.probe.reference(), self.profile.timing, self.probe.device, self.probe.clock)
            self._warm = True

    def whole_counts(self) -> tuple[int, int]:
        return self.probe.whole_counts()

    def entry(self, slot: str, choice: str) -> ChoiceCost:
        self._warm_up()
        p = self.probe
        # No retries: the median over rounds already ignores a burst, and there are many entries.
        paired = measure_paired(p.block(slot, choice), p.reference(), self.profile.timing, p.device, p.clock,
                                retries=0, warm_reference=False)
        params, macs = p.block_counts(slot, choice)
        return ChoiceCost(slot, choice, paired.ratio, paired.target.median_ms, paired.target.iqr_ms,
                          paired.reference_ms, params, macs)

    def candidate(self, spec: ArchSpec, role: str) -> CandidateMeasurement:
        self._warm_up()
        p = self.probe
        memory = p.candidate_memory_mib(spec)
        paired = measure_paired(p.candidate(spec), p.reference(), self.profile.timing, p.device, p.clock,
                                warm_reference=False)
        return CandidateMeasurement(spec.key, dict(spec.items()), paired, memory, p.candidate_params(spec), role)

    def entries(self, keys: Sequence[tuple[str, str]], progress: Callable[[str], None] | None = None
                ) -> dict[tuple[str, str], ChoiceCost]:
        out = {}
        for slot, choice in keys:
            out[(slot, choice)] = self.entry(slot, choice)
            if progress:
                progress(f"{slot}:{choice}")
        return out

    def candidates(self, specs: Sequence[ArchSpec], role: str, progress: Callable[[str], None] | None = None,
                   stop: Callable[[], bool] | None = None) -> list[CandidateMeasurement]:
        out = []
        for spec in specs:
            if stop is not None and stop():
                break
            out.append(self.candidate(spec, role))
            if progress:
                progress(f"{role} {len(out)}/{len(specs)}")
        return out


def table_meter(probe: CostProbe | TableMeter, profile: DeviceProfile) -> TableMeter:
    """`probe` itself when it already measures whole entries (a `TableMeter`), else a `ProbeMeter` of it."""
    return probe if hasattr(probe, "entries") else ProbeMeter(probe, profile)   # type: ignore[return-value]


def entry_keys(space: SearchSpace) -> list[tuple[str, str]]:
    """Every (slot, choice) of `space`, in the space's order: the entries of its cost table."""
    return [(slot.name, choice) for slot in space.slots for choice in slot.choices]


def measure_cost_table(space: SearchSpace, probe: CostProbe | TableMeter, profile: DeviceProfile, n_calibration: int = 16,
                       n_holdout: int = 50, seed: int = 0, refit_rounds: int = 2, bar: ValidationBar = ValidationBar(),
                       progress: Callable[[str], None] | None = None,
                       deadline: Callable[[], bool] | None = None) -> CostTable:
    """Measure a cost table for `space` on the probe's device, fit it, and validate it. `probe` is a
    `CostProbe` (measured here) or a `TableMeter` (measured wherever it measures, e.g. a Ray node).

    `deadline()` returning True stops measuring held-out candidates early (GPU leases are short); a
    table cut short that way is returned with what was validated. Raises `CostTableInvalid` when the
    fit still misses `bar` after `refit_rounds` refits.
    """
    meter = table_meter(probe, profile)
    entries = meter.entries(entry_keys(space), progress)
    teacher_params, teacher_macs = meter.whole_counts()
    calibration = meter.candidates(sample_candidates(space, n_calibration, seed, include_extremes=True),
                                   "calibration", progress)
    seen = {c.key for c in calibration}
    holdout = meter.candidates(sample_candidates(space, n_holdout, seed + 1, False, seen), "holdout", progress,
                               deadline)
    rounds: list[dict[str, Any]] = []
    remeasured: set[str] = set()
    for round_ in range(refit_rounds + 1):
        correction = fit_correction(space, entries, calibration)
        table = assemble_table(profile, meter.device_name, meter.bytes_per_param, space, entries, correction,
                               calibration, holdout, teacher_params, teacher_macs, bar, rounds)
        v = table.validation_summary()
        rounds.append({"round": round_, "correction": correction.kind, "calibration": len(calibration),
                       "loo_median_abs_err": correction.loo_median_abs_err, **v})
        table = dataclasses.replace(table, rounds=tuple(rounds))
        if v["passes"] is not False or round_ == refit_rounds or (deadline is not None and deadline()):
            break
        # Refit: what was held out becomes calibration (a fit judged on it may not be judged on it
        # again), calibration outliers that look like a burst are measured once more, and a fresh
        # held-out set judges the new fit.
        calibration = [dataclasses.replace(c, role="calibration") for c in calibration + holdout]
        loo = table.errors(calibration)
        again = [i for i, e in enumerate(loo) if abs(e) > bar.tolerance and calibration[i].key not in remeasured]
        again_measured = meter.candidates([space.spec(calibration[i].choices) for i in again], "calibration")
        for i, m in zip(again, again_measured, strict=True):
            remeasured.add(calibration[i].key)
            if m.latency.relative_cv < calibration[i].latency.relative_cv:
                calibration[i] = m
        seen |= {c.key for c in calibration}
        holdout = meter.candidates(sample_candidates(space, n_holdout, seed + 2 + round_, False, seen), "holdout",
                                   progress, deadline)
    table = dataclasses.replace(table, extra={**table.extra, "remeasured_outliers": sorted(remeasured)})
    if table.validation_summary()["passes"] is False:
        raise CostTableInvalid(
            f"the cost table for {profile.name} misses its validation after {len(rounds)} fits: "
            f"{describe_validation(table.validation_summary())}. The device's timings do not add up or are not "
            "steady: rerun on an idle machine, raise timing.repeats in the profile, or use an execution mode "
            "with less launch jitter (cuda_graphs on a GPU)", table)
    return table


def assemble_table(profile: DeviceProfile, device_name: str, bytes_per_param: int, space: SearchSpace,
                   entries: dict[tuple[str, str], ChoiceCost], correction: Correction,
                   calibration: Sequence[CandidateMeasurement], holdout: Sequence[CandidateMeasurement],
                   teacher_params: int, teacher_macs: int, bar: ValidationBar, rounds: Sequence[dict[str, Any]],
                   measured: bool | None = None) -> CostTable:
    """The table from its measured parts: fixed parameters and MACs are the teacher's minus its slots'."""
    calibration, holdout = list(calibration), list(holdout)
    slot_teacher = [entries[(s.name, TEACHER)] for s in space.slots]
    q = profile.timing.percentile
    ratio = float(np.mean([c.latency.ratio_at(q) / c.latency.ratio for c in calibration]))
    reference_ms = float(np.median([x for c in calibration + holdout for x in c.latency.reference.samples_ms]))
    teacher = next((c for c in calibration if c.key == space.all_teacher().key), calibration[0])
    return CostTable(
        profile_name=profile.name, profile_sha256=profile.sha256, device_name=device_name,
        precision=profile.precision, execution_mode=profile.execution_mode, latent_px=profile.resolution.latent_px,
        space_id=space.space_id, reference=REFERENCE_WORKLOAD, reference_ms=reference_ms, entries=entries,
        fixed_params=teacher_params - sum(e.params for e in slot_teacher),
        fixed_macs=teacher_macs - sum(e.macs for e in slot_teacher),
        correction=correction, percentile_ratio=ratio, percentile=q,
        teacher_transient_mib=max(0.0, teacher.peak_memory_mib - teacher_params * bytes_per_param / 2**20),
        bytes_per_param=bytes_per_param, bar=bar, candidates=tuple(calibration + holdout), rounds=tuple(rounds),
        measured=profile.is_measured if measured is None else measured)
