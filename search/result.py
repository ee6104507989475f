"""SearchResult: what a device's search hands to the SR stage, the main job's summary and the report.

It is written as `<search folder>/search_result.json` and read back only through `SearchResult.load`,
so no other module reads the file by key strings. Records that are kept for people and not read by
any stage (the Pareto front, each re-measured attempt, the cost-table rounds) stay plain mappings.

Example:
    >>> result = SearchResult.load("runs/quick/search-cpu-2core")
    >>> result.chosen.key, result.chosen.measured_latency_ms, result.latency_budget_ms
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bench.pipeline import PipelineCostModel, describe_pipeline
from bench.profile import DeviceProfile
from search.analysis import pareto_front
from search.parts import PartsChoice
from search.run import best_feasible
from search.selection import Selection
from tocsr.core.artifacts import FolderRecord
from tocsr.core.space import ArchSpec, SearchSpace


@dataclass(frozen=True)
class ChosenModel:
    """The architecture a search chose, with what was measured of it at the decision's speed."""

    spec: ArchSpec
    fidelity: float
    predicted: dict[str, float]          # the cost model's prediction at the decision's speed
    found_by: str                        # "search" or "cheapest"
    measured_latency_ms: float           # at the profile's percentile, at the decision's speed
    teacher_latency_ms: float            # the teacher, same percentile, same speed
    measured_latency_ms_raw: float       # as timed, not converted to the decision's speed
    measured_memory_mib: float | None
    params_m: float
    gmacs: float | None
    status: str
    # where a predicted choice's figures come from (the roofline of the profile's constants, or a cost table
    # measured on the device: bench.table_prediction); "" when measured on the spot
    basis: str = ""
    # the fewest and most cores the confirmed timing had (bench.cores.cores_summary); None where it was not probed
    effective_cores: dict[str, float] | None = None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def latency_vs_teacher(self) -> float:
        return self.measured_latency_ms / self.teacher_latency_ms

    @property
    def how(self) -> str:
        """"predicted" on a device that is not attached (the `measured_*` figures are its roofline), else "measured"."""
        return "predicted" if self.status == "predicted" else "measured"

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "spec": self.spec.to_dict(),
                "key": self.key, "latency_vs_teacher": self.latency_vs_teacher}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChosenModel:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "spec": ArchSpec.from_dict(d["spec"])})


@dataclass(frozen=True)
class SearchResult(FolderRecord):
    """One device's search and selection. Latencies are judged at the decision's speed (the teacher
    measured when choosing); `latency_budget_ms` is None when the profile sets no latency budget."""

    FILE_NAME: ClassVar[str] = "search_result.json"
    KIND: ClassVar[str] = "tocsr.search_result"
    # 3: a typed SearchResult (chosen model and teacher figures as fields, profile name at the top).
    # 4: names the fidelity proxy the search minimised (`proxy`).
    # 5: `scope` of the budgets and, for the pipeline, its split into fixed parts and backbone (`pipeline`).
    # 6: the decoder the chosen pipeline deploys and why (`decoder`, `decoder_choice`).
    # 7: the encoder too (`encoder`), and why both (`parts_choice`, search.parts, in place of `decoder_choice`).
    SCHEMA_VERSION: ClassVar[int] = 7
    # before 6 every pipeline had the autoencoder's parts; before 7 its encoder
    MIGRATIONS: ClassVar[dict] = {5: lambda d: {**d, "decoder": "kl", "encoder": "kl"},
                                  6: lambda d: {**d, "encoder": "kl", "parts_choice": d.get("decoder_choice")}}
    REBUILD: ClassVar[str] = "search again with `tocsr search --out {folder}` (or delete the folder and rerun `tocsr run`)"

    profile_name: str
    method: str
    seed: int
    evaluations_cap: int                 # fidelity evaluations the search was allowed
    evaluations: int                     # fidelity evaluations it made
    formulation: str                     # "device" or "paper"
    complexity: str
    proxy: str                           # the fidelity proxy minimised (tocsr.core.distill.config.PROXIES)
    space_id: str
    chosen: ChosenModel
    latency_budget_ms: float | None
    budget_in_words: str
    percentile: float
    teacher_params_m: float
    teacher_gmacs: float | None
    selection_rounds: int
    # the last round searched at latency budget / this: > 1 below it (the model under-predicted near the
    # budget), < 1 above it (the model over-predicted the measured cheapest candidate)
    last_round_searched_below_budget_by: float
    cost_table_validation: dict[str, Any]
    profile: dict[str, Any]              # the profile as searched (a record, not read back as a profile)
    decision: dict[str, Any]             # the decision's speed (search.selection.DecisionSpeed)
    constraints: dict[str, Any]          # the ε of the last round, latency as the real budget
    teacher_measured: dict[str, Any]     # bench.measure.Measurement of the teacher when choosing
    cheapest: dict[str, Any]
    remeasured: tuple[dict[str, Any], ...]
    revalidation: dict[str, Any] | None
    best_feasible_predicted: dict[str, Any] | None
    pareto_front: tuple[dict[str, Any], ...]
    cost_table_rounds: tuple[dict[str, Any], ...]
    scope: str = "backbone"              # what the latencies above are of: "pipeline" (one-step SR call) or "backbone"
    pipeline: dict[str, Any] | None = None   # scope "pipeline": fixed parts, backbone share, held-out pipelines
    decoder: str = "kl"                  # the decoder the chosen model deploys ("kl": the autoencoder's; "tiny")
    encoder: str = "kl"                  # the encoder it deploys ("kl": bicubic + the autoencoder's; "lr")
    parts_choice: dict[str, Any] | None = None     # search.parts.PartsChoice: why, and the options weighed
    convergence_png: str = "convergence.png"
    cost_table: str = "cost_table.json"
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def decision_reference_ms(self) -> float | None:
        """The reference's (the teacher UNet's) median ms when this choice was made: the machine's speed that the
        budget and the chosen model's latency are stated at (None where the choice was judged on a table)."""
        return self.decision.get("reference_ms")

    @property
    def sr_folder_name(self) -> str:
        """The run's folder (runs/<r>/sr/<this>) of the SR model this choice trains: one per architecture and
        deployed parts, so devices that chose the same architecture and parts share it."""
        name = self.chosen.key
        if self.encoder != "kl":
            name += f"-{self.encoder}-encoder"
        if self.decoder != "kl":
            name += f"-{self.decoder}-decoder"
        return name

    @classmethod
    def from_selection(cls, sel: Selection, profile: DeviceProfile, space: SearchSpace, method: str, seed: int,
                       evaluations_cap: int, formulation: str, complexity: str, proxy: str,
                       parts_choice: PartsChoice | None = None) -> SearchResult:
        c, m, teacher_at = sel.choice, sel.choice.measurement, sel.decision.teacher_at_ms
        chosen = ChosenModel(
            spec=c.spec, fidelity=c.fidelity, predicted=dict(c.predicted), found_by=c.found_by,
            measured_latency_ms=c.latency_ms, teacher_latency_ms=teacher_at,
            measured_latency_ms_raw=m.latency_at_ms(profile.timing.percentile),
            measured_memory_mib=m.peak_memory_mib, params_m=m.params / 1e6,
            gmacs=m.macs.gmacs if m.macs else None, status=m.status,
            basis=m.notes[0] if m.status == "predicted" and m.notes else "",
            effective_cores=m.extra.get("effective_cores"))
        best = best_feasible(sel.trials)
        t = sel.teacher
        pipeline, table = None, sel.table
        if isinstance(sel.table, PipelineCostModel):
            at, table = sel.table.at_reference(sel.decision.reference_ms), sel.table.table
            pipeline = {"fixed_parts_median_ms": at.fixed_latency_at_ms(),
                        "backbone_median_ms_predicted": at.table.predict_latency_ms(c.spec),
                        "pipeline_median_ms_predicted": at.predict_latency_ms(c.spec),
                        "backbone_share_predicted": at.backbone_ratio(c.spec) / at.predict_ratio(c.spec),
                        "teacher_backbone_share_predicted": at.backbone_ratio(space.all_teacher())
                        / at.predict_ratio(space.all_teacher()),
                        "validation": sel.table.validation_summary(),
                        "line": describe_pipeline(at, c.spec, c.latency_ms, chosen.how)}
        return cls(
            profile_name=profile.name, method=method, seed=seed, evaluations_cap=evaluations_cap,
            evaluations=len(sel.trials), formulation=formulation, complexity=complexity, proxy=proxy,
            space_id=space.space_id,
            chosen=chosen, latency_budget_ms=sel.decision.latency_budget_ms, budget_in_words=sel.decision.budget,
            percentile=sel.decision.percentile, teacher_params_m=t.params / 1e6,
            teacher_gmacs=t.macs.gmacs if t.macs else None, selection_rounds=sel.rounds,
            last_round_searched_below_budget_by=sel.shortfall,
            cost_table_validation=table.validation_summary(), profile=profile.to_dict(),
            decision=sel.decision.to_dict(),
            constraints={**sel.problem.constraints.__dict__, "latency_ms": sel.decision.latency_budget_ms},
            teacher_measured=t.to_dict(), cheapest=dict(sel.cheapest), remeasured=tuple(sel.attempts),
            revalidation=sel.revalidation, best_feasible_predicted=best.__dict__ if best else None,
            pareto_front=tuple({"key": x.key, "fidelity": x.fidelity, **x.costs} for x in pareto_front(sel.trials)),
            cost_table_rounds=tuple(sel.table.rounds), scope=sel.decision.scope, pipeline=pipeline,
            decoder=sel.table.pipeline.decoder if isinstance(sel.table, PipelineCostModel) else "kl",
            encoder=sel.table.pipeline.encoder if isinstance(sel.table, PipelineCostModel) else "kl",
            parts_choice=parts_choice.to_dict() if parts_choice else None)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "environment"}
        return {**d, "chosen": self.chosen.to_dict(), "remeasured": list(self.remeasured),
                "pareto_front": list(self.pareto_front), "cost_table_rounds": list(self.cost_table_rounds)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchResult:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in d.items() if k in names}
        return cls(**{**fields, "chosen": ChosenModel.from_dict(d["chosen"]),
                      "remeasured": tuple(d["remeasured"]), "pareto_front": tuple(d["pareto_front"]),
                      "cost_table_rounds": tuple(d["cost_table_rounds"]), "environment": d.get("environment", {})})

