"""Device profiles: what device to measure, how, and the budgets (the ε of the search).

A profile is a YAML file under hw_profiles/. It is validated completely on load; a bad one raises
`ConfigError` with one line naming the file, the key, the value found and what was expected.

Example:
    >>> profile = load_profile("hw_profiles/cpu-2core.yaml")
    >>> profile.resolution.latent_px, profile.budgets.latency_vs_teacher
    (16, 0.5)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from tocsr.core.errors import ConfigError
from tocsr.core.provenance import REPO_ROOT, content_sha256
from tocsr.core.schema import from_mapping, to_mapping

log = logging.getLogger(__name__)

# 2: `budgets.scope` (the whole one-step SR call by default). A schema-1 file is read as schema 2 with
#    `scope: backbone`, which is what its budgets meant (one UNet call), and a warning says so.
PROFILE_SCHEMA_VERSION = 2


def _profiles_dir() -> Path:
    """hw_profiles/ of the checkout, or the copy an installed wheel carries."""
    if (REPO_ROOT / "hw_profiles").is_dir():
        return REPO_ROOT / "hw_profiles"
    from importlib.resources import files

    return Path(str(files("hw_profiles")))


PROFILES_DIR = _profiles_dir()

DeviceKind = Literal["cpu", "cuda", "predicted"]
Precision = Literal["fp32", "bf16", "fp16"]
ExecutionMode = Literal["eager", "compiled", "cuda_graphs"]
BudgetScope = Literal["pipeline", "backbone"]

_SLUG = {"pattern": r"[a-z0-9][a-z0-9._-]{0,63}",
         "pattern_help": "a lowercase slug (letters, digits, '.', '_', '-'; at most 64; no '/')"}


@dataclass(frozen=True)
class DeviceSpec:
    kind: DeviceKind
    name: str = ""                        # human-readable, e.g. "NVIDIA H200"; checked against the card when measured
    index: int = field(default=0, metadata={"ge": 0})
    threads: int | None = field(default=None, metadata={"ge": 1})  # torch intra-op threads (CPU)
    # The custom Ray resource the device's node advertises (`ray start --resources='{"device:orin-nano": 1}'`):
    # with `--ray-address`, this profile's measurements run on that node (bench.remote).
    ray_resource: str | None = field(default=None, metadata={
        "pattern": r"[A-Za-z0-9][A-Za-z0-9:._-]{0,127}",
        "pattern_help": "a Ray resource name such as 'device:orin-nano' (letters, digits, ':', '.', '_', '-')"})


@dataclass(frozen=True)
class Resolution:
    """Output (HR) size and SR scale. The latent the UNet sees is output_px / vae_factor."""

    output_px: int = field(metadata={"ge": 8, "le": 16384})
    scale: Literal[1, 2, 4, 8] = 4
    vae_factor: Literal[4, 8, 16] = 8

    def __post_init__(self) -> None:
        for name in ("vae_factor", "scale"):
            if self.output_px % getattr(self, name):
                raise ValueError(f"resolution.output_px = {self.output_px} is not divisible by "
                                 f"resolution.{name} = {getattr(self, name)}")

    @property
    def latent_px(self) -> int:
        return self.output_px // self.vae_factor

    @property
    def input_px(self) -> int:
        return self.output_px // self.scale


@dataclass(frozen=True)
class TimingPolicy:
    warmup_min_iters: int = field(default=5, metadata={"ge": 1})
    warmup_max_iters: int = field(default=200, metadata={"ge": 1})
    # Warm-up ends once the median of one window of iterations is within this fraction of the last.
    warmup_stable_rel: float = field(default=0.05, metadata={"gt": 0, "le": 1})
    repeats: int = field(default=50, metadata={"ge": 3, "le": 100000})
    percentile: float = field(default=90.0, metadata={"ge": 50, "le": 99.9})  # what the latency budget applies to
    max_cv: float = field(default=0.05, metadata={"gt": 0, "le": 1})          # above it a result is flagged unstable
    isolate: bool = False                                                     # each measurement in a fresh subprocess
    # A timed loop whose CV exceeds max_cv is repeated up to this many times, and the samples of every attempt
    # are pooled: more samples where one loop was too noisy (bench.timing.measure_paired says why pooled).
    max_retries: int = field(default=2, metadata={"ge": 0, "le": 10})
    # Latencies that are compared with others are timed in this many rounds, each beside a short burst
    # of a reference workload (bench.timing.measure_paired).
    paired_rounds: int = field(default=8, metadata={"ge": 2, "le": 100})
    # The share of a latency budget a chosen model's measurement must leave free (0: none). On a device whose
    # timings of one model drift between stages minutes apart, a model chosen just under the budget is timed over
    # it the next time; the guard is the spread of that second timing on the device's record
    # (reports/evidence/latency-agreement/guard.py reads it from the README runs). The budget stays the budget.
    latency_guard: float = field(default=0.0, metadata={"ge": 0, "lt": 0.5})

    def __post_init__(self) -> None:
        if self.warmup_max_iters < self.warmup_min_iters:
            raise ValueError(f"timing.warmup_max_iters = {self.warmup_max_iters} is below "
                             f"timing.warmup_min_iters = {self.warmup_min_iters}")


def guarded_target_ms(budget_ms: float | None, guard: float) -> float | None:
    """What a chosen model's measured latency must meet: `budget_ms` less `guard` of it (`timing.latency_guard`).
    The one definition; the profile and the search's decision both state their target with it."""
    return None if budget_ms is None else budget_ms * (1 - guard)


@dataclass(frozen=True)
class Budgets:
    """The ε-constraints of the search. Latency applies at `timing.percentile`.

    `scope` says what the latency and memory budgets bound. "pipeline" (the default): the whole
    one-step SR call a user deploys, LR image in, HR image out (bicubic upsampling, encoder, one
    backbone call, decoder) at the profile's resolution and batch; "backbone": one backbone (UNet)
    call at the latent size, what the paper's tables count. Parameter and GMAC budgets always bound
    the backbone.

    Latency can be bounded in milliseconds, relative to the teacher measured on the spot
    (`latency_vs_teacher: 0.5` = at most half the teacher's latency on this machine, now), or both
    (both then hold). Machines of one class differ and a shared machine's speed moves over minutes:
    a relative budget means the same on all of them, a millisecond budget is judged at the speed the
    machine runs when the choice is made.
    """

    peak_memory_mib: float = field(metadata={"gt": 0})
    latency_ms: float | None = field(default=None, metadata={"gt": 0})
    latency_vs_teacher: float | None = field(default=None, metadata={"gt": 0})
    params_m: float | None = field(default=None, metadata={"gt": 0})
    gmacs: float | None = field(default=None, metadata={"gt": 0})
    energy_mj: float | None = field(default=None, metadata={"gt": 0})
    scope: BudgetScope = "pipeline"

    def __post_init__(self) -> None:
        if self.latency_ms is None and self.latency_vs_teacher is None:
            raise ValueError("budgets has neither latency_ms nor latency_vs_teacher: give at least one "
                             "(e.g. latency_vs_teacher: 0.5 for half the teacher's latency on this machine)")

    def latency_budget_ms(self, teacher_ms: float | None) -> float | None:
        """The latency budget in ms at the machine's current speed, where the teacher takes `teacher_ms`
        (at the profile's percentile); None when the profile bounds no latency."""
        limits = [self.latency_ms] if self.latency_ms is not None else []
        if self.latency_vs_teacher is not None:
            if teacher_ms is None:
                raise ValueError("budgets.latency_vs_teacher needs the teacher's latency measured on this machine")
            limits.append(self.latency_vs_teacher * teacher_ms)
        return min(limits) if limits else None

    def describe_latency(self, percentile: float) -> str:
        teacher = "the teacher as shipped (its backbone, the autoencoder's parts)" if self.scope == "pipeline" else "the teacher"
        parts = ([f"{self.latency_ms:g} ms"] if self.latency_ms is not None else []) + (
            [f"{self.latency_vs_teacher:g} x {teacher}"] if self.latency_vs_teacher is not None else [])
        what = "one-step SR pipeline" if self.scope == "pipeline" else "backbone (one UNet call)"
        return f"{what} p{percentile:g} latency <= " + " and <= ".join(parts) if parts else "no latency budget"


@dataclass(frozen=True)
class RooflineCalibration:
    """What a card measured, folded into the roofline (`python -m bench.roofline_check` fits it): latency =
    compute_scale x roofline time + launches x launch_overhead_us + intercept_ms. Predictions stay predictions."""

    compute_scale: float = field(metadata={"gt": 0})
    launch_overhead_us: float = field(metadata={"ge": 0})
    intercept_ms: float = field(metadata={"ge": 0})
    source: str = ""                       # the evidence it was fitted on, and its held-out error


@dataclass(frozen=True)
class PredictedConstants:
    """Datasheet constants for a device that is not attached; used by the roofline estimate only."""

    peak_tflops: dict[str, float]          # per precision: fp32 / bf16 / fp16
    memory_bandwidth_gbps: float = field(metadata={"gt": 0})
    launch_overhead_us: float = field(default=5.0, metadata={"ge": 0})
    memory_mib: float | None = field(default=None, metadata={"gt": 0})
    calibration: RooflineCalibration | None = None

    def __post_init__(self) -> None:
        for key, value in self.peak_tflops.items():
            if key not in ("fp32", "bf16", "fp16"):
                raise ValueError(f"predicted.peak_tflops has key {key!r}: expected fp32, bf16 or fp16")
            if value <= 0:
                raise ValueError(f"predicted.peak_tflops.{key} = {value}: expected a number > 0")


@dataclass(frozen=True)
class DeviceProfile:
    name: str = field(metadata=_SLUG)
    device: DeviceSpec
    precision: Precision
    resolution: Resolution
    budgets: Budgets
    schema_version: int = PROFILE_SCHEMA_VERSION
    description: str = ""
    batch: int = field(default=1, metadata={"ge": 1, "le": 4096})
    execution_mode: ExecutionMode = "eager"
    timing: TimingPolicy = TimingPolicy()
    predicted: PredictedConstants | None = None

    def __post_init__(self) -> None:
        if self.schema_version != PROFILE_SCHEMA_VERSION:
            raise ValueError(f"schema_version = {self.schema_version}: this suite reads profile schema "
                             f"version {PROFILE_SCHEMA_VERSION}")
        if self.device.kind == "predicted" and self.predicted is None:
            raise ValueError("device.kind 'predicted' needs a 'predicted:' section with device constants")
        if self.device.kind == "cpu" and self.predicted is not None:
            raise ValueError("a cpu profile measures this machine's CPU and may not have a 'predicted:' section; "
                             "describe another CPU as device.kind 'predicted'")
        if self.predicted is not None and self.precision not in self.predicted.peak_tflops:
            raise ValueError(f"predicted.peak_tflops has no entry for precision {self.precision!r}")
        if self.execution_mode == "cuda_graphs" and self.device.kind == "cpu":
            raise ValueError("execution_mode = 'cuda_graphs' needs device.kind 'cuda' (or 'predicted', whose constants "
                             "then assume graph replay), not 'cpu'")

    def latency_target_ms(self, teacher_ms: float | None) -> float | None:
        """What a chosen model's measured latency must meet: the latency budget (`Budgets.latency_budget_ms`) less
        `timing.latency_guard` of it, so that a second timing of it minutes later meets the budget too."""
        return guarded_target_ms(self.budgets.latency_budget_ms(teacher_ms), self.timing.latency_guard)

    @property
    def is_measured(self) -> bool:
        return self.device.kind != "predicted"

    def to_dict(self) -> dict:
        return to_mapping(self)

    @property
    def sha256(self) -> str:
        """Content hash of the validated profile: formatting and comments do not change it, nor the Ray
        resource that names the node it is measured on (where, not what: bench.remote records the node)."""
        doc = self.to_dict()
        doc["device"] = {k: v for k, v in doc["device"].items() if k != "ray_resource"}
        return content_sha256(doc)

    def torch_device(self) -> str:
        if self.device.kind == "cuda":
            return f"cuda:{self.device.index}"
        return "cpu" if self.device.kind == "cpu" else "meta"


def predicted_stand_in(profile: DeviceProfile) -> DeviceProfile:
    """A CUDA profile whose card is not attached, as a predicted device: the same budgets, precision, size
    and mode, costed by the roofline of its `predicted:` constants (bench.predicted) and labelled predicted."""
    if profile.device.kind != "cuda":
        raise ValueError(f"profile {profile.name!r} has device.kind {profile.device.kind!r}: only a CUDA profile has a "
                         "predicted stand-in")
    if profile.predicted is None:
        raise ConfigError(f"profile {profile.name!r} measures a CUDA device and this machine has none; add a "
                          "'predicted:' section (peak_tflops, memory_bandwidth_gbps, launch_overhead_us from the "
                          "card's datasheet) to predict it here, or run on a machine with the card")
    device = {**profile.to_dict()["device"], "kind": "predicted"}
    note = (f"{profile.description} Predicted here: the card was not attached, so its costs are the roofline of "
            "the 'predicted:' constants.").strip()
    return replace(profile, device=device, description=note)


def resolve_profile_path(ref: str | Path) -> Path:
    """Accept a path, or a bare name found in hw_profiles/ ("cpu-2core" -> hw_profiles/cpu-2core.yaml)."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix == "" and (PROFILES_DIR / f"{ref}.yaml").is_file():
        return PROFILES_DIR / f"{ref}.yaml"
    known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))) or "none"
    raise ConfigError(f"{ref}: no such profile file; give a path to a YAML file or one of: {known}")


def load_profile(ref: str | Path) -> DeviceProfile:
    path = resolve_profile_path(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read profile ({err})") from None
    return parse_profile(text, source=str(path))


def parse_profile(text: str, source: str = "<profile>") -> DeviceProfile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if data is None:
        raise ConfigError(f"{source}: the file is empty; expected a device profile mapping")
    return from_mapping(DeviceProfile, migrate(data, source), source=source)


def migrate(data, source: str = "<profile>"):
    """A schema-1 profile mapping as schema 2: its budgets bounded one UNet call, so `scope: backbone`."""
    if not isinstance(data, dict) or data.get("schema_version") != 1:
        return data
    budgets = data.get("budgets")
    if isinstance(budgets, dict) and "scope" not in budgets:
        log.warning("%s: schema_version 1 profile read as schema 2 with budgets.scope: backbone (what its budgets "
                    "meant: one UNet call). To bound the deployed one-step SR call instead, set schema_version: 2 "
                    "and budgets.scope: pipeline", source)
        budgets = {**budgets, "scope": "backbone"}
    return {**data, "schema_version": PROFILE_SCHEMA_VERSION, "budgets": budgets}


def replace(profile: DeviceProfile, **changes) -> DeviceProfile:
    """A modified copy, validated again (e.g. the same device with a tighter latency budget)."""
    return from_mapping(DeviceProfile, {**profile.to_dict(), **changes}, source=f"<{profile.name} modified>")


__all__ = [
    "BudgetScope", "Budgets", "DeviceProfile", "DeviceSpec", "PredictedConstants", "Resolution", "RooflineCalibration",
    "TimingPolicy",
    "guarded_target_ms", "load_profile", "migrate", "parse_profile", "predicted_stand_in", "replace", "resolve_profile_path",
]
