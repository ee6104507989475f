"""Measure one workload on the device a profile names: latency, memory, energy, MACs, params.

Example:
    >>> profile = load_profile("hw_profiles/cpu-2core.yaml")
    >>> m = measure_workload(resolve_workload("unet-tiny", profile), profile)
    >>> m.latency.median_ms, m.memory.peak_mib, m.macs.gmacs
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch

from bench import roofline
from bench.cores import attempt_readings, cores_summary, effective_cores
from bench.counting import MacCount, count_macs, count_params
from bench.memory import MemoryStats, measure_peak, weights_mib
from bench.nvml import GpuTelemetry, Nvml
from bench.predicted import predicted_device_name, predicted_pair
from bench.profile import DeviceProfile
from bench.rapl import Rapl
from bench.stats import LatencyStats, PairedLatency
from bench.timing import cpu_steal_fraction_since, measure_paired, run_timed, warm_up
from bench.workloads import Workload
from tocsr.core.errors import TocsrError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MEASUREMENT_KIND = "tocsr.bench.measurement"
MEASUREMENT_SCHEMA_VERSION = 1
ENERGY_WINDOW_S = 1.0   # NVML's energy counter updates every few ms: integrate over >= 1 s

Status = Literal["ok", "unstable", "error", "predicted"]


class DeviceUnavailableError(TocsrError):
    """The profile names a device this machine does not have."""


@dataclass(frozen=True)
class Measurement:
    """Everything measured for one (workload, profile). `status` says how far to trust it:
    ok; unstable (CV above the profile's max_cv); error (see `error`); predicted (roofline, no device).
    `paired` is set when the latency was measured interleaved with a reference workload: its ratio is
    what to compare with other measurements (bench.stats.PairedLatency); then `status` judges the
    ratio's spread, not the raw milliseconds'."""

    model: str
    profile_name: str
    profile_sha256: str
    device_name: str
    precision: str
    execution_mode: str
    batch: int
    status: Status
    params: int = 0
    buffers: int = 0
    macs: MacCount | None = None
    latency: LatencyStats | None = None
    paired: PairedLatency | None = None
    memory: MemoryStats | None = None
    energy_mj_per_inference: float | None = None
    energy_note: str = ""
    prediction: roofline.RooflineEstimate | None = None
    telemetry_before: GpuTelemetry | None = None
    telemetry_after: GpuTelemetry | None = None
    driver_version: str | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def latency_at_ms(self, percentile: float) -> float | None:
        """The latency the budget is compared with: measured percentile, or the prediction."""
        if self.latency is not None:
            return self.latency.percentile_ms(percentile)
        if self.prediction is not None:
            return self.prediction.latency_ms
        return None

    @property
    def peak_memory_mib(self) -> float | None:
        if self.memory is not None:
            return self.memory.peak_mib
        if self.prediction is not None:
            return self.prediction.memory_lower_bound_mib
        return None

    def to_dict(self) -> dict[str, Any]:
        def d(x):
            return x.to_dict() if x is not None else None

        return {
            "model": self.model, "profile_name": self.profile_name, "profile_sha256": self.profile_sha256,
            "device_name": self.device_name, "precision": self.precision, "execution_mode": self.execution_mode,
            "batch": self.batch, "status": self.status, "error": self.error, "params": self.params,
            "buffers": self.buffers, "params_m": self.params / 1e6, "macs": d(self.macs), "latency": d(self.latency),
            "paired": d(self.paired),
            "memory": d(self.memory), "energy_mj_per_inference": self.energy_mj_per_inference,
            "energy_note": self.energy_note, "prediction": d(self.prediction),
            "telemetry_before": d(self.telemetry_before), "telemetry_after": d(self.telemetry_after),
            "driver_version": self.driver_version, "notes": list(self.notes), "wall_s": self.wall_s,
            "extra": self.extra,
        }


def resolve_device(profile: DeviceProfile) -> torch.device:
    if profile.device.kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"profile {profile.name!r} measures a CUDA device, but this machine has none "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); use a cpu profile, "
                "or a predicted one for a device that is not attached (`tocsr run` predicts a CUDA profile "
                "that has a 'predicted:' section, labelled predicted)")
        if profile.device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"profile {profile.name!r}: device.index = {profile.device.index} but only "
                                         f"{torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device("cuda", profile.device.index)
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from tocsr.core.provenance import cpu_model

    return cpu_model()


def cast(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Floating tensors (also inside tuples, lists, dicts) to `device` in `dtype`; other tensors to `device`."""
    if isinstance(x, torch.Tensor):
        return x.to(device, dtype) if x.is_floating_point() else x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(cast(v, device, dtype) for v in x)
    if isinstance(x, dict):
        return {k: cast(v, device, dtype) for k, v in x.items()}
    return x


def prepare_callable(module: torch.nn.Module, args: tuple, kwargs: dict, mode: str) -> Callable[[], object]:
    """The zero-argument inference call for an execution mode.

    eager: the module as is. compiled: torch.compile (compiles lazily, inside warm-up).
    cuda_graphs: the eager kernels captured once into a CUDA graph and replayed, which removes the
    per-kernel launch overhead that dominates batch-1 latency without any compile time.
    """
    if mode == "cuda_graphs":
        return GraphReplay(module, args, kwargs)
    runner = torch.compile(module) if mode == "compiled" else module

    def call() -> object:
        with torch.inference_mode():
            return runner(*args, **kwargs)

    return call


class GraphReplay:
    """One inference call captured into a CUDA graph, replayed on each call. It holds the module and the inputs
    it was captured with: the graph reads their memory on every replay, so they must live as long as it does (a
    caller that passed a temporary copy would otherwise time, or crash on, memory that has been freed)."""

    def __init__(self, module: torch.nn.Module, args: tuple, kwargs: dict):
        self.module, self.args, self.kwargs = module, args, kwargs
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):   # allocator and cuDNN/cuBLAS workspaces settle before capture
                module(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.out = module(*args, **kwargs)

    def __call__(self) -> object:
        self.graph.replay()
        return self.out


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _predict(workload: Workload, profile: DeviceProfile, base: dict[str, Any], reference: Workload | None
             ) -> Measurement:
    """The roofline in place of a measurement; with `reference`, also in its paired form (what selection
    judges), in units of the reference's roofline."""
    assert profile.predicted is not None
    counts = count_params(workload.module)
    try:
        est = roofline.estimate(workload.module, workload.args, workload.kwargs, profile.predicted, profile.precision)
    except (NotImplementedError, RuntimeError) as err:
        # The roofline sees torch operators only: a model that leaves torch (PIL, numpy) has no estimate.
        return Measurement(**base, status="error", params=counts["params"], buffers=counts["buffers"],
                           energy_note="not measured: predicted device",
                           error=f"no roofline estimate: the model runs work torch does not see ({err})")
    paired = None
    if reference is not None:
        paired = predicted_pair(est, roofline.estimate(reference.module, reference.args, reference.kwargs,
                                                       profile.predicted, profile.precision))
    macs = count_macs(workload.module, workload.args, workload.kwargs, meta_dtype=DTYPES[profile.precision])
    return Measurement(**base, status="predicted", params=counts["params"], buffers=counts["buffers"], macs=macs,
                       prediction=est, paired=paired, energy_note="not measured: predicted device",
                       notes=("latency and memory are a roofline estimate from the profile's device constants"
                              + (f", calibrated against {est.calibration}" if est.calibration else ""),))


def measure_workload(workload: Workload, profile: DeviceProfile, thop_check: bool = False,
                     reference: Workload | None = None) -> Measurement:
    """Measure `workload` as `profile` says. Failures of the model itself (out of memory, an exception in
    forward) are returned as status 'error' with the message; a missing device raises.

    With `reference`, the latency is measured in rounds interleaved with the reference workload
    (bench.timing.measure_paired) and `paired` holds the ratio; use it whenever this measurement is
    compared with one taken at another time."""
    t_start = time.perf_counter()
    base = {"model": workload.name, "profile_name": profile.name, "profile_sha256": profile.sha256,
            "precision": profile.precision, "execution_mode": profile.execution_mode, "batch": profile.batch,
            "device_name": profile.device.name or profile.device.kind}
    if not profile.is_measured:
        m = _predict(workload, profile, {**base, "device_name": predicted_device_name(profile)}, reference)
        return _with_wall(m, t_start)

    device = resolve_device(profile)
    dtype = DTYPES[profile.precision]
    base["device_name"] = device_name(device)
    notes: list[str] = []
    if profile.device.name and profile.device.name.lower() not in base["device_name"].lower():
        notes.append(f"profile names device {profile.device.name!r} but measured on {base['device_name']!r}")
    counts = count_params(workload.module)
    nvml = Nvml(device.index or 0) if device.type == "cuda" else None
    try:
        with _threads(profile.device.threads):
            # nn.Module.to, not diffusers' ModelMixin.to: the latter warns on every dtype cast.
            module = torch.nn.Module.to(workload.module, device=device, dtype=dtype).eval()
            args, kwargs = cast(workload.args, device, dtype), cast(workload.kwargs, device, dtype)
            macs = count_macs(module, args, kwargs, thop_check=thop_check)
            call = prepare_callable(module, args, kwargs, profile.execution_mode)
            before = nvml.snapshot() if nvml else None
            warm = warm_up(call, profile.timing, device)
            # Memory is always read from an eager call: one inference needs the same memory in every
            # mode, and a CUDA-graph replay allocates nothing to observe.
            memory = measure_peak(prepare_callable(module, args, kwargs, "eager"), device, weights_mib(module))
            paired, cores = None, None
            if reference is None:
                samples, attempts = _timed_with_retries(call, profile, device)
            else:
                ref_module = torch.nn.Module.to(reference.module, device=device, dtype=dtype).eval()
                ref_call = prepare_callable(ref_module, cast(reference.args, device, dtype),
                                            cast(reference.kwargs, device, dtype), profile.execution_mode)
                # the cores each attempt had: what tells a slow model from a busy machine (bench.cores)
                probe = partial(effective_cores, torch.get_num_threads()) if device.type == "cpu" else None
                paired = measure_paired(call, ref_call, profile.timing, device, core_probe=probe)
                samples, attempts = list(paired.target.samples_ms), list(paired.attempts)
                cores = cores_summary(attempt_readings(attempts), torch.get_num_threads())
            energy, energy_note = _energy(call, device, nvml, samples)
            after = nvml.snapshot() if nvml else None
    except torch.cuda.OutOfMemoryError as err:
        return _with_wall(Measurement(**base, status="error", params=counts["params"], buffers=counts["buffers"],
                                      error=f"out of memory: {str(err).splitlines()[0]}"), t_start)
    except RuntimeError as err:
        return _with_wall(Measurement(**base, status="error", params=counts["params"], buffers=counts["buffers"],
                                      error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"),
                          t_start)
    stats = LatencyStats.from_samples(samples, "cuda_event" if device.type == "cuda" else "perf_counter", warm)
    spread = stats.cv if paired is None else paired.relative_cv
    status: Status = "ok" if spread <= profile.timing.max_cv else "unstable"
    if len(attempts) > 1:
        cvs = ", ".join(f"{a.get('cv', a.get('relative_cv')):.3f}" for a in attempts)
        notes.append(f"{len(attempts)} timed attempts (CV {cvs}); "
                     "their samples are pooled, each attempt is summarised under extra.attempts")
    if status == "unstable":
        notes.append(f"CV {spread:.3f} exceeds the profile's max_cv {profile.timing.max_cv} after "
                     f"{len(attempts)} attempt(s): the machine was busy or the clocks moved; rerun before trusting this")
    m = Measurement(**base, status=status, params=counts["params"], buffers=counts["buffers"], macs=macs,
                    latency=stats, paired=paired, memory=memory, energy_mj_per_inference=energy,
                    energy_note=energy_note,
                    telemetry_before=before, telemetry_after=after,
                    driver_version=nvml.driver_version() if nvml else None, notes=tuple(notes),
                    extra={"attempts": attempts, **({"reference": reference.name} if reference else {}),
                           **({"effective_cores": cores} if cores else {})})
    return _with_wall(m, t_start)


def _timed_with_retries(call: Callable[[], object], profile: DeviceProfile,
                        device: torch.device) -> tuple[list[float], list[dict[str, Any]]]:
    """Time the loop; while an attempt's CV exceeds max_cv, time it again (up to max_retries). Each attempt's
    summary and CPU steal share are kept; the samples of every attempt are returned, pooled (why pooled, not the
    steadiest: bench.timing.measure_paired)."""
    attempts: list[dict[str, Any]] = []
    pooled: list[float] = []
    for _ in range(1 + profile.timing.max_retries):
        _, snap = cpu_steal_fraction_since(None)
        samples = run_timed(call, profile.timing.repeats, device)
        steal, _ = cpu_steal_fraction_since(snap)
        stats = LatencyStats.from_samples(samples, "t", 0)
        attempts.append({"median_ms": stats.median_ms, "cv": stats.cv, "cpu_steal_fraction": steal})
        pooled += samples
        if stats.cv <= profile.timing.max_cv:
            break
    return pooled, attempts


def _energy(call: Callable[[], object], device: torch.device, nvml: Nvml | None,
            samples: list[float]) -> tuple[float | None, str]:
    median_ms = sorted(samples)[len(samples) // 2]
    iters = max(len(samples), int(ENERGY_WINDOW_S * 1e3 / max(median_ms, 1e-3)))
    if device.type != "cuda":
        rapl = Rapl()
        if not rapl.available:
            return None, f"not measured: {rapl.reason}"
        s0 = rapl.snapshot()
        run_timed(call, iters, device)
        delta = Rapl.delta_mj(s0, rapl.snapshot())
        if delta <= 0:
            return None, "not measured: the RAPL energy counters did not advance"
        return delta / iters, (f"RAPL package-energy delta over {iters} inferences (~{iters * median_ms / 1e3:.1f} s; "
                               "the whole CPU package: idle cores and other processes included)")
    if nvml is None or not nvml.available:
        return None, f"not measured: NVML unavailable ({nvml.reason if nvml else 'no handle'})"
    e0 = nvml.energy_mj()
    if e0 is None:
        return None, "not measured: this GPU has no NVML total-energy counter"
    run_timed(call, iters, device)
    e1 = nvml.energy_mj()
    if e1 is None or e1 <= e0:
        return None, "not measured: the NVML energy counter did not advance"
    return (e1 - e0) / iters, f"NVML total-energy delta over {iters} inferences (~{iters * median_ms / 1e3:.1f} s)"


def _with_wall(m: Measurement, t_start: float) -> Measurement:
    return dataclasses.replace(m, wall_s=round(time.perf_counter() - t_start, 3))
