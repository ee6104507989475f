"""Per-device cost tables: what each (slot, choice) costs on one device, and a whole-model correction.

The cost of a candidate is predicted as
    latency(spec) = intercept + slope * sum over slots of median_latency(slot, choice)
where each block is timed alone on the inputs it sees inside the teacher, and (intercept, slope)
is a least-squares fit on whole candidates measured on the device (the calibration set): the
intercept absorbs the parts no slot owns (conv_in, time embedding, samplers, conv_out), the slope
what isolated timing misses or double-counts (cache effects, launch overlap). The fit's error is
then measured on held-out candidates. A table is valid only for the device, precision, execution
mode and resolution it was measured at; all are recorded.

Memory is predicted conservatively as the candidate's weights plus the teacher's transient peak.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.counting import count_macs, count_params
from bench.measure import DTYPES, device_name, prepare_callable, resolve_device
from bench.memory import measure_cpu_peak, measure_cuda_peak, weights_mib
from bench.profile import DeviceProfile
from bench.stats import LatencyStats
from bench.timing import run_timed, warm_up
from tocsr.assembly import ModuleSwapper
from tocsr.space import TEACHER, ArchSpec, SearchSpace

COST_TABLE_KIND = "tocsr.bench.cost_table"
COST_TABLE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ChoiceCost:
    slot: str
    choice: str
    median_ms: float
    iqr_ms: float
    params: int
    macs: int


@dataclass(frozen=True)
class CandidateMeasurement:
    key: str
    choices: dict[str, str]
    latency: LatencyStats
    peak_memory_mib: float
    params: int
    role: str            # "calibration" or "holdout"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "choices": self.choices, "role": self.role, "latency": self.latency.summary(),
                "peak_memory_mib": self.peak_memory_mib, "params": self.params}


@dataclass(frozen=True)
class CostTable:
    profile_name: str
    profile_sha256: str
    device_name: str
    precision: str
    execution_mode: str
    latent_px: int
    space_id: str
    entries: dict[tuple[str, str], ChoiceCost]
    fixed_params: int              # parameters outside every slot
    fixed_macs: int
    intercept_ms: float
    slope: float
    percentile_ratio: float        # measured p{percentile} / median on calibration candidates
    percentile: float
    teacher_transient_mib: float
    bytes_per_param: int
    candidates: tuple[CandidateMeasurement, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def _check(self, spec: ArchSpec) -> None:
        if spec.space_id != self.space_id:
            raise ValueError(f"ArchSpec {spec.key} is from space {spec.space_id}; this cost table is for {self.space_id}")

    def block_sum_ms(self, spec: ArchSpec) -> float:
        self._check(spec)
        return sum(self.entries[(s, c)].median_ms for s, c in spec.items())

    def predict_latency_ms(self, spec: ArchSpec) -> float:
        """Predicted median latency of the whole candidate."""
        return self.intercept_ms + self.slope * self.block_sum_ms(spec)

    def predict_latency_at_ms(self, spec: ArchSpec) -> float:
        """Predicted latency at the profile's constraint percentile."""
        return self.predict_latency_ms(spec) * self.percentile_ratio

    def params(self, spec: ArchSpec) -> int:
        self._check(spec)
        return self.fixed_params + sum(self.entries[(s, c)].params for s, c in spec.items())

    def macs(self, spec: ArchSpec) -> int:
        self._check(spec)
        return self.fixed_macs + sum(self.entries[(s, c)].macs for s, c in spec.items())

    def predict_memory_mib(self, spec: ArchSpec) -> float:
        return self.params(spec) * self.bytes_per_param / 2**20 + self.teacher_transient_mib

    def holdout_errors(self) -> np.ndarray:
        """Relative errors (predicted/measured - 1) of median latency on held-out candidates."""
        rows = [c for c in self.candidates if c.role == "holdout"]
        tab = {c.key: c for c in rows}
        return np.array([self._predict_from_choices(tab[k].choices) / tab[k].latency.median_ms - 1 for k in tab])

    def _predict_from_choices(self, choices: dict[str, str]) -> float:
        return self.intercept_ms + self.slope * sum(self.entries[(s, c)].median_ms for s, c in choices.items())

    def validation_summary(self) -> dict[str, Any]:
        err = self.holdout_errors()
        if err.size == 0:
            return {"n": 0}
        abs_err = np.abs(err)
        return {"n": int(err.size), "within_10pct": float((abs_err <= 0.10).mean()),
                "within_5pct": float((abs_err <= 0.05).mean()), "median_abs_err": float(np.median(abs_err)),
                "p90_abs_err": float(np.percentile(abs_err, 90)), "max_abs_err": float(abs_err.max()),
                "mean_signed_err": float(err.mean())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile_name": self.profile_name, "profile_sha256": self.profile_sha256, "device_name": self.device_name,
            "precision": self.precision, "execution_mode": self.execution_mode, "latent_px": self.latent_px,
            "space_id": self.space_id, "fixed_params": self.fixed_params, "fixed_macs": self.fixed_macs,
            "intercept_ms": self.intercept_ms, "slope": self.slope, "percentile_ratio": self.percentile_ratio,
            "percentile": self.percentile, "teacher_transient_mib": self.teacher_transient_mib,
            "bytes_per_param": self.bytes_per_param,
            "entries": [e.__dict__ for e in self.entries.values()],
            "candidates": [c.to_dict() | {"latency_samples_ms": list(c.latency.samples_ms)} for c in self.candidates],
            "validation": self.validation_summary(), "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostTable:
        entries = {(e["slot"], e["choice"]): ChoiceCost(**e) for e in d["entries"]}
        cands = tuple(CandidateMeasurement(
            key=c["key"], choices=c["choices"], role=c["role"], peak_memory_mib=c["peak_memory_mib"], params=c["params"],
            latency=LatencyStats.from_samples(c["latency_samples_ms"], c["latency"]["timer"], c["latency"]["warmup_iters"]))
            for c in d.get("candidates", []))
        keys = ("profile_name", "profile_sha256", "device_name", "precision", "execution_mode", "latent_px", "space_id",
                "fixed_params", "fixed_macs", "intercept_ms", "slope", "percentile_ratio", "percentile",
                "teacher_transient_mib", "bytes_per_param")
        return cls(**{k: d[k] for k in keys}, entries=entries, candidates=cands, extra=d.get("extra", {}))


def capture_slot_inputs(unet: nn.Module, space: SearchSpace, args: tuple, kwargs: dict) -> dict[str, tuple[tuple, dict]]:
    """The (args, kwargs) each slot's block receives during one teacher forward pass."""
    captured: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for slot in space.slots:
        def hook(module, a, k, name=slot.name):
            captured[name] = (tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in a),
                              {kk: v.detach().clone() if isinstance(v, torch.Tensor) else v for kk, v in k.items()})
        hooks.append(unet.get_submodule(slot.module_path).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():   # not inference_mode: captured tensors may later feed training
            unet(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    missing = [s.name for s in space.slots if s.name not in captured]
    if missing:
        raise RuntimeError(f"slots never called during the forward pass: {missing[:5]}")
    return captured


def _time(module: nn.Module, args: tuple, kwargs: dict, profile: DeviceProfile, device: torch.device,
          repeats: int | None = None) -> LatencyStats:
    call = prepare_callable(module, args, kwargs, profile.execution_mode)
    warm = warm_up(call, profile.timing, device)
    samples = run_timed(call, repeats or profile.timing.repeats, device)
    return LatencyStats.from_samples(samples, "cuda_event" if device.type == "cuda" else "perf_counter", warm)


def measure_choice_costs(space: SearchSpace, swapper: ModuleSwapper, slot_inputs: dict[str, tuple[tuple, dict]],
                         profile: DeviceProfile, device: torch.device, latent_px: int,
                         progress: Callable[[str], None] | None = None) -> dict[tuple[str, str], ChoiceCost]:
    entries = {}
    for slot in space.slots:
        args, kwargs = slot_inputs[slot.name]
        for choice in slot.choices:
            module = swapper.module_for(slot.name, choice)
            stats = _time(module, args, kwargs, profile, device)
            macs = count_macs(module, args, kwargs).total_macs
            entries[(slot.name, choice)] = ChoiceCost(slot.name, choice, stats.median_ms, stats.iqr_ms,
                                                      count_params(module)["params"], macs)
            if progress:
                progress(f"{slot.name}:{choice}")
    return entries


def sample_candidates(space: SearchSpace, n: int, seed: int, include_extremes: bool) -> list[ArchSpec]:
    rng = random.Random(seed)
    specs: dict[str, ArchSpec] = {}
    if include_extremes:
        for spec in (space.all_teacher(), space.spec({s.name: s.choices[-1] for s in space.slots})):
            specs[spec.key] = spec
    while len(specs) < n:
        spec = space.sample_mixed(rng)
        specs.setdefault(spec.key, spec)
    return list(specs.values())


def measure_candidate(swapper: ModuleSwapper, spec: ArchSpec, args: tuple, kwargs: dict, profile: DeviceProfile,
                      device: torch.device, role: str) -> CandidateMeasurement:
    unet = swapper.apply(spec)
    eager = prepare_callable(unet, args, kwargs, "eager")   # memory from an eager call, as in measure_workload
    if device.type == "cuda":
        eager()
        mem = measure_cuda_peak(eager, device, weights_mib(unet)).peak_mib
    else:
        mem = measure_cpu_peak(eager, weights_mib(unet)).peak_mib
    call = prepare_callable(unet, args, kwargs, profile.execution_mode)
    warm = warm_up(call, profile.timing, device)
    samples = run_timed(call, profile.timing.repeats, device)
    stats = LatencyStats.from_samples(samples, "cuda_event" if device.type == "cuda" else "perf_counter", warm)
    return CandidateMeasurement(spec.key, dict(spec.items()), stats, mem, count_params(unet)["params"], role)


def fit_correction(entries: dict[tuple[str, str], ChoiceCost], calibration: list[CandidateMeasurement]) -> tuple[float, float]:
    x = np.array([sum(entries[(s, c)].median_ms for s, c in m.choices.items()) for m in calibration])
    y = np.array([m.latency.median_ms for m in calibration])
    if len(x) < 2 or np.ptp(x) == 0:
        return float(np.mean(y - x)), 1.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def measure_cost_table(space: SearchSpace, unet: nn.Module, args: tuple, kwargs: dict, profile: DeviceProfile,
                       bank: dict[tuple[str, str], nn.Module], n_calibration: int = 8, n_holdout: int = 50,
                       seed: int = 0, progress: Callable[[str], None] | None = None,
                       deadline: Callable[[], bool] | None = None) -> CostTable:
    """Measure a cost table for `space` on the profile's device. `unet` is the teacher (any weights:
    cost does not depend on their values); `args/kwargs` one inference at the profile's size;
    `bank` the surrogate modules (see tocsr.assembly.build_module_bank), already on the device.
    `deadline()` returning True stops measuring held-out candidates early (GPU leases are short)."""
    device = resolve_device(profile)
    dtype = DTYPES[profile.precision]
    unet = nn.Module.to(unet, device=device, dtype=dtype).eval()
    for m in bank.values():
        nn.Module.to(m, device=device, dtype=dtype).eval()
    swapper = ModuleSwapper(unet, space, bank)
    args = tuple(a.to(device, dtype) if isinstance(a, torch.Tensor) and a.is_floating_point()
                 else (a.to(device) if isinstance(a, torch.Tensor) else a) for a in args)
    kwargs = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if isinstance(v, torch.Tensor) else v
              for k, v in kwargs.items()}
    swapper.restore()
    slot_inputs = capture_slot_inputs(unet, space, args, kwargs)
    latent_px = int(args[0].shape[-1])
    entries = measure_choice_costs(space, swapper, slot_inputs, profile, device, latent_px, progress)
    teacher_macs = count_macs(unet, args, kwargs).total_macs
    teacher_params = count_params(unet)["params"]
    slot_teacher = [entries[(s.name, TEACHER)] for s in space.slots]

    calibration, holdout = [], []
    for spec in sample_candidates(space, n_calibration, seed, include_extremes=True):
        calibration.append(measure_candidate(swapper, spec, args, kwargs, profile, device, "calibration"))
        if progress:
            progress(f"calibration {len(calibration)}/{n_calibration}")
    seen = {c.key for c in calibration}
    for spec in sample_candidates(space, n_holdout + len(seen), seed + 1, include_extremes=False):
        if spec.key in seen or len(holdout) >= n_holdout:
            continue
        if deadline is not None and deadline():
            break
        holdout.append(measure_candidate(swapper, spec, args, kwargs, profile, device, "holdout"))
        if progress:
            progress(f"holdout {len(holdout)}/{n_holdout}")
    swapper.restore()
    intercept, slope = fit_correction(entries, calibration)
    teacher_cal = calibration[0]
    ratio = float(np.mean([c.latency.percentile_ms(profile.timing.percentile) / c.latency.median_ms for c in calibration]))
    bytes_per_param = torch.tensor([], dtype=dtype).element_size()
    return CostTable(
        profile_name=profile.name, profile_sha256=profile.sha256, device_name=device_name(device),
        precision=profile.precision, execution_mode=profile.execution_mode, latent_px=latent_px,
        space_id=space.space_id, entries=entries,
        fixed_params=teacher_params - sum(e.params for e in slot_teacher),
        fixed_macs=teacher_macs - sum(e.macs for e in slot_teacher),
        intercept_ms=intercept, slope=slope, percentile_ratio=ratio, percentile=profile.timing.percentile,
        teacher_transient_mib=max(0.0, teacher_cal.peak_memory_mib - teacher_params * bytes_per_param / 2**20),
        bytes_per_param=bytes_per_param, candidates=tuple(calibration + holdout),
    )
