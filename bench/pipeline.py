"""The cost of what is deployed: the whole one-step SR call, from fixed parts plus the backbone's cost table.

    pipeline ratio(spec) = the deployed parts' ratios + their overhead + the backbone table's ratio(spec)

Every ratio is a latency in units of the same reference workload (the teacher UNet, timed beside each
measurement; bench.costtable), so parts measured at different moments add up at one machine speed.
The fixed parts (an encoder and a decoder: the autoencoder's own, or the cheaper ones a device may deploy
instead, search.parts) do not depend on the backbone: they are measured once per device. A whole call costs more
than its parts timed alone (on this project's CPU the LR encoder + tiny decoder pipeline ran ~1.5 ms over the sum,
every backbone alike: reports/evidence/pipeline-costs-cpu-deployed/): that overhead is measured per pair of parts on
a few whole pipelines with that pair (`PartsOverhead`) and added. Whole pipelines held out from everything fitted,
spread over the pairs, judge the sum (`bar`), as held-out candidates judge a cost table.

`PipelineParts` is the measured record (an artifact beside the cost table, `pipeline_parts_path`); `PipelineCostModel`
joins it with a `CostTable` and answers as the search's cost model (search.problem.CostModel) and as
the table the selection re-validates and recalibrates (search.selection.choose). Parameters and
GMACs stay the backbone's: the paper's measures, and what a params/GMAC budget bounds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.costtable import (
    CandidateMeasurement,
    CostTable,
    ProbeMeter,
    ValidationBar,
    sample_candidates,
    summarize_errors,
)
from bench.profile import DeviceProfile
from bench.stats import LatencyStats, PairedLatency
from bench.timing import Clock, measure_paired
from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec, SearchSpace

log = logging.getLogger(__name__)

PIPELINE_PARTS_KIND = "tocsr.bench.pipeline_parts"
# 2: the LR encoder is timed among the parts. A version-1 file reads as it was (its device offers only the
# autoencoder's encoder); the bump changes the main job's costs key, so a resumed run times the new part.
# 3: each pair of parts has its measured overhead. Older files read with none (the sum of the parts, as they were
# judged); the bump makes a resumed main job measure the overheads.
PIPELINE_PARTS_SCHEMA_VERSION = 3

# The parts' names as measured. Each end of the pipeline is a choice of the device (search.parts): the
# autoencoder's own part ("kl") or a cheaper one trained against it (tocsr.core.sr.parts): the LR encoder
# ("lr", reads the LR image at LR resolution: no bicubic upscale, no KL encoder; tocsr.core.models.parts.LREncoder)
# and the tiny decoder ("tiny", tocsr.core.models.parts.TinyDecoder).
ENCODER_PARTS = {"kl": "bicubic + encoder", "lr": "lr encoder"}
DECODER_PARTS = {"kl": "decoder", "tiny": "tiny decoder"}
OVERHEAD_PART = "whole-call overhead"     # in the listing of what is not the backbone (fixed_latency_at_ms)
# Whole pipelines measured by `measure_pipeline_parts` carry their parts in their role (`parts_role`): "holdout" and
# "teacher" ran the autoencoder's own parts, "holdout lr+tiny" the LR encoder and the tiny decoder; those measured
# while choosing ("selection", "revalidation") ran the parts the device deploys.
MEASURED_ROLES = ("teacher", "holdout", "overhead")


def parts_role(role: str, encoder: str, decoder: str) -> str:
    """The role of a whole pipeline measured with `encoder` and `decoder` (see MEASURED_ROLES)."""
    return role if (encoder, decoder) == ("kl", "kl") else f"{role} {encoder}+{decoder}"


def role_parts(role: str) -> tuple[str, str] | None:
    """The (encoder, decoder) a pipeline of this role was measured with; None: the parts deployed when it was."""
    base, _, pair = role.partition(" ")
    if base not in MEASURED_ROLES:
        return None
    if not pair:
        return "kl", "kl"
    encoder, _, decoder = pair.partition("+")
    return encoder, decoder


def pipeline_parts_path(table_path: str | Path) -> Path:
    """Where the pipeline parts measured with a cost table are kept: beside it, `<table>.pipeline.json`."""
    path = Path(table_path)
    return path.with_name(path.stem + ".pipeline.json")


@dataclass(frozen=True)
class PartCost:
    """One fixed part of the pipeline, timed beside the reference."""

    name: str
    ratio: float            # median latency / the reference's median, in the same rounds
    median_ms: float
    iqr_ms: float
    reference_ms: float
    params: int


@dataclass(frozen=True)
class PartsOverhead:
    """What a whole pipeline with `encoder` and `decoder` costs beyond those parts timed alone and its backbone's
    prediction: each residual is one whole pipeline's measured ratio minus that sum (reference units); the
    overhead is their median (a copy between stages, caches a part alone keeps warm; negative where the whole call
    runs faster than its parts alone)."""

    encoder: str
    decoder: str
    residuals: tuple[float, ...]

    @property
    def ratio(self) -> float:
        return float(np.median(self.residuals))

    def scaled(self, factor: float) -> PartsOverhead:
        return dataclasses.replace(self, residuals=tuple(factor * r for r in self.residuals))


class PipelineProbe(Protocol):
    """The device the pipeline is measured on. `bench.probe.TorchPipelineProbe` runs torch modules; tests
    use a simulated device. `candidate`, `candidate_memory_mib` and `candidate_params` measure the whole
    pipeline with `spec` as its backbone (params: the backbone's)."""

    device: torch.device
    clock: Clock | None
    device_name: str
    bytes_per_param: int

    def reference(self) -> Callable[[], object]: ...
    def parts(self) -> dict[str, tuple[Callable[[], object], int]]: ...     # name -> (call, params)
    def candidate(self, spec: ArchSpec) -> Callable[[], object]: ...
    def candidate_memory_mib(self, spec: ArchSpec) -> float: ...
    def candidate_params(self, spec: ArchSpec) -> int: ...
    def deploying(self, encoder: str, decoder: str) -> PipelineProbe: ...   # whole pipelines with these parts


class PipelineMeter(Protocol):
    """What `measure_pipeline_parts` asks of the device: the fixed parts and whole pipelines, each paired
    with the reference. `PipelineProbeMeter` measures in this process; `bench.remote.RayPipelineMeter` on
    the Ray node that has the device. Whole pipelines run the autoencoder's parts; `deploying` gives the meter of
    pipelines with other parts."""

    device_name: str
    bytes_per_param: int

    def parts(self, progress: Callable[[str], None] | None = None) -> list[PartCost]: ...
    def candidates(self, specs: Sequence[ArchSpec], role: str, progress: Callable[[str], None] | None = None,
                   stop: Callable[[], bool] | None = None) -> list[CandidateMeasurement]: ...
    def deploying(self, encoder: str, decoder: str) -> PipelineMeter: ...


class PipelineProbeMeter(ProbeMeter):
    """`PipelineMeter` of a `PipelineProbe` in this process (whole pipelines are measured as
    `ProbeMeter` measures candidates)."""

    probe: PipelineProbe

    def parts(self, progress: Callable[[str], None] | None = None) -> list[PartCost]:
        self._warm_up()
        p, out = self.probe, []
        for name, (call, params) in p.parts().items():
            paired = measure_paired(call, p.reference(), self.profile.timing, p.device, p.clock, warm_reference=False)
            out.append(PartCost(name, paired.ratio, paired.target.median_ms, paired.target.iqr_ms,
                                paired.reference_ms, params))
            if progress:
                progress(name)
        return out

    def deploying(self, encoder: str, decoder: str) -> PipelineProbeMeter:
        other = PipelineProbeMeter(self.probe.deploying(encoder, decoder), self.profile)
        other._warm = self._warm
        return other


def pipeline_meter(probe: PipelineProbe | PipelineMeter, profile: DeviceProfile) -> PipelineMeter:
    """`probe` itself when it already measures whole parts (a `PipelineMeter`), else a `PipelineProbeMeter` of it."""
    return probe if hasattr(probe, "candidates") else PipelineProbeMeter(probe, profile)   # type: ignore[return-value]


@dataclass(frozen=True)
class PipelineParts:
    """The fixed parts of the one-step SR pipeline on one device, and whole pipelines measured to judge the sum."""

    profile_name: str
    profile_sha256: str
    device_name: str
    input_px: int
    output_px: int
    batch: int
    parts: tuple[PartCost, ...]
    percentile: float
    percentile_ratio: float        # p{percentile} / median of a whole pipeline's relative samples (mean)
    fixed_memory_mib: float        # the teacher-shaped pipeline's peak minus its backbone's weights (own parts)
    candidates: tuple[CandidateMeasurement, ...] = ()    # whole pipelines: "teacher", "holdout", "selection", ...
    bar: ValidationBar = ValidationBar()
    decoder: str = "kl"            # the decoder deployed (a key of DECODER_PARTS); its part is in `parts`
    encoder: str = "kl"            # the encoder deployed (a key of ENCODER_PARTS); its part is in `parts`
    overheads: tuple[PartsOverhead, ...] = ()    # per pair of parts; a pair without one is the sum of its parts

    def __post_init__(self) -> None:
        for what, kind, offered in (("decoder", self.decoder, self.decoders), ("encoder", self.encoder, self.encoders)):
            if kind not in offered:
                raise ConfigError(f"pipeline {what} {kind!r}: the parts measured on {self.device_name} offer "
                                  f"{', '.join(offered)}; measure them again with `tocsr costs`")

    def part(self, name: str) -> PartCost:
        [found] = [p for p in self.parts if p.name == name] or [None]
        if found is None:
            raise ConfigError(f"no pipeline part {name!r} was measured (have {', '.join(p.name for p in self.parts)})")
        return found

    def _offered(self, names: dict[str, str]) -> tuple[str, ...]:
        measured = {p.name for p in self.parts}
        return tuple(k for k, name in names.items() if name in measured)

    @property
    def decoders(self) -> tuple[str, ...]:
        """The decoders whose cost was measured: the choices this device offers."""
        return self._offered(DECODER_PARTS)

    @property
    def encoders(self) -> tuple[str, ...]:
        """The encoders whose cost was measured (parts measured before the LR encoder was offered: "kl" only)."""
        return self._offered(ENCODER_PARTS)

    @property
    def fixed_parts(self) -> tuple[PartCost, ...]:
        """The parts the deployed pipeline runs beside its backbone: the chosen encoder and decoder."""
        return self.part(ENCODER_PARTS[self.encoder]), self.part(DECODER_PARTS[self.decoder])

    def overhead(self, encoder: str, decoder: str) -> PartsOverhead | None:
        """The measured overhead of the pipeline with `encoder` and `decoder`; None when none was measured."""
        return next((o for o in self.overheads if (o.encoder, o.decoder) == (encoder, decoder)), None)

    def ratio_with(self, encoder: str, decoder: str) -> float:
        """All that is not the backbone, in reference units: the two parts and their overhead."""
        over = self.overhead(encoder, decoder)
        return (self.part(ENCODER_PARTS[encoder]).ratio + self.part(DECODER_PARTS[decoder]).ratio
                + (over.ratio if over is not None else 0.0))

    @property
    def fixed_ratio(self) -> float:
        return self.ratio_with(self.encoder, self.decoder)

    def with_parts(self, encoder: str, decoder: str) -> PipelineParts:
        return dataclasses.replace(self, encoder=encoder, decoder=decoder)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "parts": [dataclasses.asdict(p) for p in self.parts], "bar": dataclasses.asdict(self.bar),
                "candidates": [c.to_dict() for c in self.candidates], "fixed_ratio": self.fixed_ratio,
                "overheads": [{**dataclasses.asdict(o), "ratio": o.ratio} for o in self.overheads]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineParts:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names},
                      "parts": tuple(PartCost(**p) for p in d["parts"]), "bar": ValidationBar(**d["bar"]),
                      "candidates": tuple(CandidateMeasurement.from_dict(c) for c in d["candidates"]),
                      "overheads": tuple(PartsOverhead(o["encoder"], o["decoder"], tuple(o["residuals"]))
                                         for o in d.get("overheads", ()))})

    def save(self, path: str | Path, environment: dict[str, Any], validation: dict[str, Any] | None = None) -> Path:
        return write_artifact(path, PIPELINE_PARTS_KIND, PIPELINE_PARTS_SCHEMA_VERSION,
                              {**self.to_dict(), "validation": validation}, environment=environment)

    @classmethod
    def load(cls, path: str | Path) -> PipelineParts:
        return cls.from_dict(read_artifact(path, PIPELINE_PARTS_KIND, PIPELINE_PARTS_SCHEMA_VERSION,
                                           rebuild="measure it again with `tocsr costs`", migrations={1: dict, 2: dict}))


def backbone_equivalent(m: CandidateMeasurement, fixed_ratio: float) -> CandidateMeasurement | None:
    """A measured pipeline as a backbone measurement: the fixed parts' ratio taken off every relative
    sample (and their ms off the raw ones), so it can join a backbone cost table's calibration.

    None when the pipeline was not slower than its fixed parts alone (median): on a device where the
    backbone is a small share of the call, noise in the once-measured parts can exceed it, and such a
    measurement says nothing about the backbone (its equivalent would be a zero-cost backbone)."""
    p = m.latency
    shift = fixed_ratio * p.reference.median_ms
    if np.median(p.relative_samples) <= fixed_ratio or np.median(p.target.samples_ms) <= shift:
        return None
    rel = tuple(max(1e-9, r - fixed_ratio) for r in p.relative_samples)
    target = LatencyStats.from_samples([max(0.0, s - shift) for s in p.target.samples_ms], p.target.timer,
                                       p.target.warmup_iters)
    return dataclasses.replace(m, latency=PairedLatency(target, p.reference, rel, p.rounds, p.attempts))


@dataclass(frozen=True)
class PipelineCostModel:
    """Fixed parts + a backbone cost table: the cost of the deployed one-step SR call (see module doc)."""

    table: CostTable
    pipeline: PipelineParts

    scope = "pipeline"

    # --- what the selection reads of a table
    @property
    def reference_ms(self) -> float:
        return self.table.reference_ms

    @property
    def device_name(self) -> str:
        return self.table.device_name

    @property
    def bar(self) -> ValidationBar:
        return self.pipeline.bar

    @property
    def candidates(self) -> tuple[CandidateMeasurement, ...]:
        return self.pipeline.candidates

    @property
    def rounds(self) -> tuple[dict[str, Any], ...]:
        return self.table.rounds

    @property
    def correction(self):
        return self.table.correction

    @property
    def measured(self) -> bool:
        return self.table.measured

    @property
    def how(self) -> str:
        return self.table.how

    # --- predictions
    def backbone_ratio(self, spec: ArchSpec) -> float:
        return self.table.predict_ratio(spec)

    def predict_ratio(self, spec: ArchSpec) -> float:
        return self.pipeline.fixed_ratio + self.table.predict_ratio(spec)

    def predict_latency_ms(self, spec: ArchSpec) -> float:
        return self.predict_ratio(spec) * self.table.reference_ms

    def predict_latency_at_ms(self, spec: ArchSpec) -> float:
        return self.predict_latency_ms(spec) * self.pipeline.percentile_ratio

    def backbone_latency_at_ms(self, spec: ArchSpec) -> float:
        return self.table.predict_latency_at_ms(spec)

    def fixed_latency_at_ms(self) -> dict[str, float]:
        """Each deployed fixed part's median in ms at the speed of `reference_ms`, and their overhead when measured."""
        p, ms = self.pipeline, self.table.reference_ms
        out = {part.name: part.ratio * ms for part in p.fixed_parts}
        over = p.overhead(p.encoder, p.decoder)
        if over is not None:
            out[OVERHEAD_PART] = over.ratio * ms
        return out

    def parts_memory_mib(self) -> float:
        """The deployed parts' share of the call's peak memory. Measured with the autoencoder's own parts (the
        teacher-shaped pipeline's peak less its backbone's weights); for other parts their weights replace the
        autoencoder's parts' weights, and the activations stay the autoencoder's parts': the cheaper parts are
        narrower (the LR encoder runs at LR resolution), so this stays an upper bound for them."""
        p = self.pipeline
        shipped = p.part(ENCODER_PARTS["kl"]).params + p.part(DECODER_PARTS["kl"]).params
        deployed = sum(part.params for part in p.fixed_parts)
        return max(0.0, p.fixed_memory_mib + (deployed - shipped) * self.table.bytes_per_param / 2**20)

    def predict_memory_mib(self, spec: ArchSpec) -> float:
        return self.table.params(spec) * self.table.bytes_per_param / 2**20 + self.parts_memory_mib()

    def params(self, spec: ArchSpec) -> int:
        return self.table.params(spec)

    def macs(self, spec: ArchSpec) -> int:
        return self.table.macs(spec)

    def cheapest(self, space: SearchSpace) -> ArchSpec:
        return self.table.cheapest(space)

    # --- judged on whole pipelines
    def errors(self, cands: Sequence[CandidateMeasurement]) -> np.ndarray:
        """Relative errors (predicted / measured - 1) of whole pipelines' median latency, in reference units. Each
        is predicted with the parts it was measured with (`role_parts`)."""
        p = self.pipeline
        return np.array([(p.ratio_with(*(role_parts(c.role) or (p.encoder, p.decoder)))
                          + self.table.correction.predict(self.table.entries, c.choices)) / c.latency.ratio - 1
                         for c in cands])

    def holdout(self) -> list[CandidateMeasurement]:
        """The whole pipelines held out from everything fitted, whatever parts each ran."""
        return [c for c in self.pipeline.candidates if c.role.partition(" ")[0] == "holdout"]

    def validation_summary(self) -> dict[str, Any]:
        return summarize_errors(self.errors(self.holdout()), self.pipeline.bar)

    # --- updated by the selection
    def at_reference(self, reference_ms: float) -> PipelineCostModel:
        return dataclasses.replace(self, table=self.table.at_reference(reference_ms))

    def with_parts(self, encoder: str, decoder: str) -> PipelineCostModel:
        """The model of the pipeline that deploys `encoder` and `decoder` (keys of ENCODER_PARTS and DECODER_PARTS
        measured on this device)."""
        return dataclasses.replace(self, pipeline=self.pipeline.with_parts(encoder, decoder))

    def with_candidates(self, fresh: Sequence[CandidateMeasurement]) -> PipelineCostModel:
        return dataclasses.replace(self, pipeline=dataclasses.replace(
            self.pipeline, candidates=self.pipeline.candidates + tuple(fresh)))

    def recalibrated(self, space: SearchSpace, measured: Sequence[CandidateMeasurement]) -> PipelineCostModel:
        """Whole pipelines measured while choosing refit the backbone table, as backbone measurements (the
        fixed parts taken off); they are kept with the pipeline's candidates too."""
        backbone = [b for b in (backbone_equivalent(m, self.pipeline.fixed_ratio) for m in measured) if b is not None]
        if len(backbone) < len(measured):
            log.warning("%d of %d pipelines measured while choosing ran no slower than the fixed parts alone (%.3f x "
                        "the reference): kept as pipeline measurements, left out of the backbone table's refit",
                        len(measured) - len(backbone), len(measured), self.pipeline.fixed_ratio)
        table = self.table.recalibrated(space, backbone)
        return dataclasses.replace(self.with_candidates(measured), table=table)

    def rescaled(self, factor: float) -> PipelineCostModel:
        """Every prediction `factor` times larger, the fixed parts' and the backbone's alike (CostTable.rescaled)."""
        pipeline = dataclasses.replace(
            self.pipeline, parts=tuple(dataclasses.replace(p, ratio=factor * p.ratio) for p in self.pipeline.parts),
            candidates=tuple(c.scaled(factor) for c in self.pipeline.candidates),
            overheads=tuple(o.scaled(factor) for o in self.pipeline.overheads))
        return PipelineCostModel(self.table.rescaled(factor), pipeline)

    def save(self, table_path: str | Path, environment: dict[str, Any]) -> Path:
        """The backbone table at `table_path` and the pipeline parts beside it (`pipeline_parts_path`)."""
        self.table.save(table_path, environment)
        return self.pipeline.save(pipeline_parts_path(table_path), environment, self.validation_summary())


def load_cost_model(table_path: str | Path, scope: str) -> CostTable | PipelineCostModel:
    """The cost model for a profile's budget scope: the backbone table alone, or with the pipeline parts
    measured beside it."""
    table = CostTable.load(table_path)
    if scope == "backbone":
        return table
    parts = pipeline_parts_path(table_path)
    if not parts.is_file():
        raise ConfigError(f"{table_path}: the profile's budgets bound the whole one-step SR pipeline, and no pipeline "
                          f"parts were measured with this cost table ({parts.name} is missing); measure both again "
                          f"with `tocsr costs -p PROFILE --teacher DIR --out {table_path}`")
    return PipelineCostModel(table, PipelineParts.load(parts))


def pipeline_pairs(part_names: Iterable[str], n_overhead: int) -> list[tuple[str, str]]:
    """The (encoder, decoder) pairs whole pipelines are measured with: every pair the measured parts offer when
    overheads are measured (`n_overhead` > 0), else the autoencoder's own, as the sum of parts was judged before."""
    if n_overhead <= 0:
        return [("kl", "kl")]
    names = set(part_names)
    return [(e, d) for e, e_name in ENCODER_PARTS.items() if e_name in names
            for d, d_name in DECODER_PARTS.items() if d_name in names]


def pipeline_backbones(space: SearchSpace, exclude: set[str], n_overhead: int, n_holdout: int, seed: int
                       ) -> tuple[list[ArchSpec], list[ArchSpec]]:
    """Backbones of the whole pipelines a pipeline model is built and judged on, none of them in `exclude`: those
    of each pair's overhead pipelines after its teacher-shaped one (the same for every pair, so the pairs'
    overheads differ by their parts), and the held-out ones (spread over the pairs in turn: `held[i::len(pairs)]`).
    One plan for a measurement here (`measure_pipeline_parts`) and one on a bare device (bench.bundle)."""
    shared = sample_candidates(space, max(0, n_overhead - 1), seed + 211, False, exclude=exclude)
    held = sample_candidates(space, n_holdout, seed + 101, False, exclude=exclude | {s.key for s in shared})
    return shared, held


def parts_overhead(parts: PipelineParts, table: CostTable, encoder: str, decoder: str,
                   runs: Sequence[CandidateMeasurement]) -> PartsOverhead:
    """What whole pipelines with `encoder` and `decoder` cost beyond their parts (measured alone, in `parts`, which
    has no overheads yet) and their backbone (`table`'s prediction), in reference units."""
    fixed = parts.ratio_with(encoder, decoder)
    return PartsOverhead(encoder, decoder, tuple(
        c.latency.ratio - fixed - table.correction.predict(table.entries, c.choices) for c in runs))


def measure_pipeline_parts(space: SearchSpace, table: CostTable, probe: PipelineProbe | PipelineMeter,
                           profile: DeviceProfile,
                           n_holdout: int = 30, seed: int = 0, bar: ValidationBar = ValidationBar(),
                           progress: Callable[[str], None] | None = None, n_overhead: int = 3) -> PipelineCostModel:
    """Measure the fixed parts, each offered pair of parts' overhead on `n_overhead` whole pipelines (the
    teacher-shaped one first; 0: none, the model is the sum of the parts), and `n_holdout` whole pipelines
    (backbones never measured for `table` or the overheads, spread over the pairs in turn) on the probe's device;
    the model they make with `table`, judged on the held-out pipelines."""
    meter = pipeline_meter(probe, profile)
    parts = meter.parts(progress)
    [teacher] = meter.candidates([space.all_teacher()], "teacher")
    if progress:
        progress("teacher-shaped pipeline")
    skeleton = PipelineParts(
        profile_name=profile.name, profile_sha256=profile.sha256, device_name=meter.device_name,
        input_px=profile.resolution.input_px, output_px=profile.resolution.output_px, batch=profile.batch,
        parts=tuple(parts), percentile=profile.timing.percentile, percentile_ratio=1.0, fixed_memory_mib=0.0)
    pairs = pipeline_pairs([p.name for p in parts], n_overhead)
    meters = {pair: meter if pair == ("kl", "kl") else meter.deploying(*pair) for pair in pairs}
    shared, held = pipeline_backbones(space, {c.key for c in table.candidates} | {teacher.key}, n_overhead,
                                      n_holdout, seed)
    measured, overheads = [teacher], []
    for enc, dec in pairs if n_overhead > 0 else ():
        if (enc, dec) == ("kl", "kl"):                 # its teacher-shaped pipeline is `teacher`, measured above
            runs = [teacher, *meter.candidates(shared, "overhead", progress)]
        else:
            runs = meters[enc, dec].candidates([space.all_teacher(), *shared], parts_role("overhead", enc, dec),
                                               progress)
        overheads.append(parts_overhead(skeleton, table, enc, dec, runs))
        measured += [c for c in runs if c is not teacher]
    for i, (enc, dec) in enumerate(pairs):
        if held[i::len(pairs)]:
            measured += meters[enc, dec].candidates(held[i::len(pairs)], parts_role("holdout", enc, dec), progress)
    q = profile.timing.percentile
    teacher_weights = table.params(space.all_teacher()) * meter.bytes_per_param / 2**20
    pipeline = dataclasses.replace(
        skeleton, percentile_ratio=float(np.mean([c.latency.ratio_at(q) / c.latency.ratio for c in measured])),
        fixed_memory_mib=max(0.0, teacher.peak_memory_mib - teacher_weights), candidates=tuple(measured), bar=bar,
        overheads=tuple(overheads))
    return PipelineCostModel(table, pipeline)


def describe_pipeline(model: PipelineCostModel, spec: ArchSpec, measured_ms: float | None = None,
                      how: str | None = None) -> str:
    """One line: the pipeline's predicted cost split into its parts, the backbone's share; `measured_ms`, the
    choice's own figure, is `how` it was obtained ("measured" or "predicted"; the table's word by default)."""
    fixed = model.fixed_latency_at_ms()
    backbone = model.table.predict_latency_ms(spec)
    total = sum(fixed.values()) + backbone
    parts = ", ".join(f"{k} {v:.2f} ms" for k, v in fixed.items())
    # On a predicted device the "re-measured" figure is the roofline of the whole pipeline (or the prediction of
    # a table measured on the device, bench.table_prediction), and the line says so.
    head = (f"{how or model.how} p{model.pipeline.percentile:g} {measured_ms:.2f} ms; " if measured_ms is not None
            else "")
    source = "cost model" if model.measured else "roofline cost model"
    return (f"{head}{source} median {total:.2f} ms = {parts}, backbone {backbone:.2f} ms "
            f"({100 * backbone / total:.0f}% of the call)")


__all__ = [
    "DECODER_PARTS", "ENCODER_PARTS", "OVERHEAD_PART", "PartCost", "PartsOverhead", "PipelineCostModel", "PipelineMeter",
    "PipelineParts", "PipelineProbe", "PipelineProbeMeter", "backbone_equivalent", "describe_pipeline",
    "load_cost_model", "measure_pipeline_parts", "parts_overhead", "parts_role", "pipeline_backbones", "pipeline_meter",
    "pipeline_pairs", "pipeline_parts_path", "role_parts",
]
