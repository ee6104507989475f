"""Choosing the candidate to ship: the search's best, re-measured on the device until one meets the budgets.

The cost model predicts; only a measurement decides. `choose` runs in this order:

1. The teacher is measured now, paired with the reference (the teacher itself). Its median fixes the
   speed at which every millisecond of this decision is judged (`DecisionSpeed`), and the latency
   budget in ms at that speed (a `latency_vs_teacher` budget is a multiple of the teacher measured
   now). Candidates are searched for and judged on the target: the budget less the profile's
   `timing.latency_guard` of it, so that the chosen model timed again minutes later still meets the
   budget on a device whose timings drift (the report's row).
   Where a `latency_vs_teacher` budget bounds the pipeline and the meter can time a candidate beside the
   teacher as shipped (`SelectionConfig.judge_beside_shipped`), the teacher as shipped is instead the cost
   model's prediction of it at this speed, and each candidate is judged on its share of the teacher as
   shipped timed in the same rounds: the budget is then a share of one thing, on both sides, and does not
   follow how that pipeline happened to read against the UNet at the decision's moment.
2. A cost table measured when the machine ran at another speed (beyond `revalidate_above`), that
   predicts the teacher just measured off by more than `teacher_off_above`, measured on another device, or that
   missed its own validation bar (the main job keeps such a table rather than stopping), is re-validated on
   fresh candidates. One that fails is scaled by their median measured/predicted (a speed change moves the
   reference and the candidates by different factors: every error leans one way) and judged on as many more;
   one that fails scaled too is measured again through the
   caller's `remeasure` (without one, `StaleCostTable` is raised), and the new table is used as it
   comes: it was judged on its own held-out candidates minutes ago, and a machine whose load keeps
   moving would fail any second re-validation. The choice is still judged on its own measurement.
3. The cheapest candidate (every slot at its cheapest choice) is measured. If even it misses the
   budgets, `SearchInfeasible` says so with the measured figures and the budget that would work. If it
   meets them while the model predicts it over the latency budget, the search looks that much above
   the budget (measurements still decide), rather than proposing nothing and shipping the cheapest.
   With `SelectionConfig.bias_probes` > 0 the model's bias is read where the picks will land as well: that
   many candidates predicted nearest the target are measured once each, they and the cheapest refit the
   correction, and the first round searches as far above (or below) the target as the refit still over-
   (or under-) predicts them, by their median (by the cheapest's own reading where the refit still puts it
   over the target).
4. Rounds: the search runs to this round's evaluation cap (a share of the evaluations is held back
   for later rounds), the best predicted-feasible candidates are measured, and the first that
   meets the budgets on a second, independent reading too is chosen, with that reading (the first
   reading to meet a budget is biased low: `SelectionConfig.confirm_choice`). When none does, their
   measurements join the cost table's calibration, the correction is refitted, and the next round
   searches below the budget by as much as the refitted model still under-predicts those
   candidates; the trials are re-scored
   under it (their fidelity stands) and the search goes on. After the last round the best
   measured-feasible candidate is chosen (at worst the cheapest one, measured in step 3).
   With `SelectionConfig.search_bound` "fixed" the search itself is bounded, in every round, by the cost model
   as it stood before step 3 at the target widened by the table's tolerance; the round's bound and refit
   only re-score its trials to pick which are measured, so the trials do not follow the moment's readings
   (a round that finds none of them under its bound releases the fixed bound for the rounds after it).

Measuring is not done here: a `CandidateMeter` (bench.probe.DeployedCandidateMeter on a device)
returns `bench.measure.Measurement`s whose latency is paired with the reference.

What the budgets bound follows the profile's `budgets.scope`: for "pipeline" the cost model is a
`bench.pipeline.PipelineCostModel` (fixed parts + the backbone table) and the meter measures whole
one-step SR calls (bench.probe.DeployedPipelineMeter); "the teacher" is then the pipeline with the
teacher as its backbone. Everything above holds unchanged in those units.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bench.costtable import (
    CandidateMeasurement,
    CostTable,
    describe_validation,
    sample_candidates,
    summarize_errors,
)
from bench.measure import Measurement
from bench.pipeline import PipelineCostModel
from bench.profile import DeviceProfile, guarded_target_ms
from bench.stats import PairedLatency
from search.problem import Constraints, SearchProblem
from search.run import evaluate_one, rescore
from search.trials import Trial
from tocsr.core.errors import TocsrError
from tocsr.core.space import TEACHER, ArchSpec, SearchSpace

log = logging.getLogger(__name__)


class SearchInfeasible(TocsrError):
    """No candidate of the space can meet the profile's budgets."""


class StaleCostTable(TocsrError):
    """The cost table no longer predicts this machine: measure it again. `revalidation` holds the figures."""

    def __init__(self, message: str, revalidation: dict[str, Any]):
        super().__init__(message)
        self.revalidation = revalidation


class CandidateMeter(Protocol):
    """Measures candidates as deployed. A meter whose pipeline deploys other parts than the teacher's own (a
    cheaper decoder) also has `measure_teacher_as_shipped()`: the teacher-shaped pipeline with the autoencoder's
    parts, which a `latency_vs_teacher` budget is a multiple of (bench.probe.DeployedPipelineMeter), and may have
    `measure_against_shipped(spec)`: the candidate paired with that pipeline instead of the teacher UNet, which a
    candidate is then judged on (`SelectionConfig.judge_beside_shipped`)."""

    def measure(self, spec: ArchSpec) -> Measurement:
        """The candidate as deployed, its latency paired with the reference (`Measurement.paired` set)."""


@dataclass(frozen=True)
class SelectionConfig:
    per_round: int = 3                 # candidates measured per round
    # A candidate whose reading meets the budgets is measured again, and the second reading decides (see `choose`).
    confirm_choice: bool = True
    rounds: int = 3
    reserve_share: float = 0.2         # of the evaluations, held back for the rounds after the first
    revalidate_above: float = 0.15     # |speed now / speed of the table - 1| beyond which the table is re-validated
    teacher_off_above: float = 0.15    # |model's teacher / teacher measured now - 1| beyond which, likewise
    # Fresh candidates a re-validation measures. Judged by the table's own bar (>= 90% within the tolerance), 8 made
    # it 8 of 8: a single reading just outside the tolerance sent the table to be measured again, minutes of the main
    # job (docs/status.md, thirtieth session). With 10 the bar is the one written, one outlier tolerated, as on the
    # table's own held-out candidates.
    revalidation_candidates: int = 10
    # A table that fails re-validation with every error leaning one way (the machine's speed moved, and the
    # candidates with it, by another factor than the reference: the README jobs' failed re-validations leaned one
    # way on every candidate, docs/status.md) is first scaled by the median measured/predicted of those candidates and judged on this many
    # more; only when the scaled table fails too is it measured again (minutes of the main job). 0: no scaling.
    rescale_candidates: int = 10
    # The cheapest candidate measured slower than the validated model predicts (beyond the table's tolerance)
    # is measured again up to this many times before the space is called infeasible: one burst that the
    # pairing did not cancel must not stop a run.
    cheapest_remeasure: int = 2
    # ... with this pause before each further reading: a shared machine's slow spells (a neighbour's job)
    # last longer than one burst, and change the ratios too (the decoder slowed more than the UNet).
    cheapest_pause_s: float = 20.0
    # A `latency_vs_teacher` budget is a multiple of the teacher as shipped, timed just before the search chooses.
    # On a shared CPU one reading of that pipeline moves far more than the candidates' readings do, and the
    # architecture chosen follows it (reports/evidence/latency-agreement/, "The budget's reference"): it is timed
    # this many times in a row and the median taken, and the readings are kept beside the budget. Readings in a row
    # share the machine's state of the moment, so this outvotes one reading's spike, not a drift over minutes.
    budget_readings: int = 3
    # Where a `latency_vs_teacher` budget bounds a pipeline and the meter can pair a candidate with the teacher as
    # shipped (`measure_against_shipped`), the budget is kept as a share of it: the search's target is that share of
    # the cost model's own prediction of the teacher as shipped (the model's epoch, not the moment's), and each
    # candidate is timed paired with the teacher as shipped and judged on that (`_measure_judged`). Read against the
    # teacher UNet at different moments instead, the two moved together and the architecture chosen followed them
    # (reports/evidence/latency-agreement/, "the budget's reference"). The teacher as shipped is then read once,
    # for the record. False: as before.
    judge_beside_shipped: bool = True
    # How far the first round searches above the target where the model over-predicts the measured cheapest candidate
    # (a model biased high). UPWARD_CONTINUOUS: by whatever its refit still over-predicts, so the target follows the
    # measured bias without a step. UPWARD_BEYOND_TOLERANCE (as before): only where that is beyond the table's
    # tolerance, so a bias read just under it is ignored and one just over moves the target by more than the
    # tolerance. Searched at the target under a model biased high within its tolerance, the feasible set is smaller
    # than the budget allows and the picks' fidelity error on the proxy ran worse than those searched above it
    # (reports/evidence/latency-agreement/, "The upward step").
    upward_step: str = "continuous"
    # Where the continuous step reads the model's bias. 0 (the default): at the cheapest candidate, one reading.
    # N > 0: also at N candidates the model predicts nearest the target, each measured once, and the step follows the
    # median of what the refit still over- or under-predicts there; a model biased low is then corrected before the
    # first round, and a bias that differs between the cheapest and the boundary is read where the picks land. On
    # this CPU, against the cheapest alone on the same inputs, it chose no more repeatably and took longer: one
    # reading of a candidate moves by more than the bias differs (reports/evidence/latency-agreement/, "Read near
    # the target"). Kept to compare, and for a device whose readings are steadier.
    bias_probes: int = 0
    # candidates drawn (seeded, so the same inputs probe the same candidates) to find those nearest the target
    bias_probe_pool: int = 256
    # What the search itself (BO's design, pool and proposals) is bounded by. SEARCH_BOUND_MOVING (the default): the
    # round's bound, which follows the moment's readings (the upward step, each round's refit), so searches on
    # identical inputs part from their first trial and chose as many architectures as searches. SEARCH_BOUND_FIXED:
    # the cost model as it stood before any reading of this search, in its own units (`_fixed_bound_factor`),
    # widened by the table's tolerance; the moment's readings decide only which of its trials are measured,
    # re-scored under the round's bound. Bounded fixed, searches on identical inputs made the same trials; but BO's
    # trials crowd the bound they are searched under, so where the moment's bound sat below them none could be
    # measured (a round that finds none releases the bound: see `choose`), and on one run's inputs the fixed search
    # chose no more repeatably and worse (reports/evidence/latency-agreement/, "A fixed search bound").
    search_bound: str = "moving"

    def caps(self, evaluations: int) -> list[int]:
        """Evaluation cap of each round: the first gets all but the reserve, the last reaches `evaluations`."""
        if self.rounds == 1:
            return [evaluations]
        reserve = min(evaluations - 1, math.ceil(self.reserve_share * evaluations))
        return [evaluations - reserve + round(reserve * r / (self.rounds - 1)) for r in range(self.rounds)]


UPWARD_BEYOND_TOLERANCE, UPWARD_CONTINUOUS = "beyond tolerance", "continuous"
SEARCH_BOUND_MOVING, SEARCH_BOUND_FIXED = "moving", "fixed"
REFERENCE_JUDGED = "reference"
SHIPPED_JUDGED = "teacher as shipped"
# Measurement.extra key of a candidate's latency at decision speed over the teacher as shipped's (SHIPPED_JUDGED)
SHARE_KEY = "share_of_teacher_as_shipped"


@dataclass(frozen=True)
class ShippedYardstick:
    """How a pipeline timed paired with the teacher as shipped is judged against a search's budget (SHIPPED_JUDGED):
    its samples over the teacher as shipped's median in the same rounds are rebased to teacher-UNet units through the
    cost model's teacher as shipped (`shipped_ratio_predicted`), read at the decision's speed (`reference_ms`) and
    put over the model's teacher as shipped at the percentile (`teacher_at_ms`). The search judges each candidate
    this way; the eval stage judges the chosen model as trained the same way (reports.evaluate.report_rows), so the
    two readings are comparable with each other and with the budget, whatever the cost model's error on the
    teacher as shipped. Crosses from the search to the eval stage."""

    reference_ms: float
    shipped_ratio_predicted: float
    teacher_at_ms: float
    percentile: float
    kind: str = "tocsr.shipped_yardstick"
    version: int = 1

    def ms_at_decision(self, paired: PairedLatency) -> float:
        """The pipeline's milliseconds at the percentile, at the decision's speed, in the cost model's units of the
        teacher as shipped (its share of it times the model's figure)."""
        return paired.rebased(self.shipped_ratio_predicted).ms_at(self.percentile, self.reference_ms)

    def share(self, paired: PairedLatency) -> float:
        """The pipeline's latency at the percentile as a share of the teacher as shipped's: what a
        `latency_vs_teacher` budget bounds, independent of the cost model's figure for the teacher as shipped."""
        return self.ms_at_decision(paired) / self.teacher_at_ms

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_decision(cls, decision: dict[str, Any]) -> ShippedYardstick | None:
        """The yardstick of a search's decision (DecisionSpeed.to_dict, SearchResult.decision); None where its
        candidates were not judged beside the teacher as shipped."""
        if decision.get("judged_against") != SHIPPED_JUDGED or not decision.get("shipped_ratio_predicted"):
            return None
        return cls(float(decision["reference_ms"]), float(decision["shipped_ratio_predicted"]),
                   float(decision["teacher_at_ms"]), float(decision["percentile"]))


@dataclass(frozen=True)
class DecisionSpeed:
    """How fast the machine runs when the choice is made, and the latency budget at that speed."""

    reference_ms: float            # the reference's (teacher's) median now: ratios convert to ms with it
    teacher_at_ms: float           # the teacher at the profile's percentile, now
    table_reference_ms: float      # the reference's median when the cost table was measured
    latency_budget_ms: float | None
    percentile: float
    budget: str                    # the profile's budget in words
    scope: str = "backbone"        # what is measured and bounded: "pipeline" (the one-step SR call) or "backbone"
    # the share of the latency budget a chosen model's measurement leaves free (the profile's timing.latency_guard)
    latency_guard: float = 0.0
    # each reading of the teacher at the percentile, now, whose median `teacher_at_ms` is: the budget's spread
    teacher_at_readings_ms: tuple[float, ...] = ()
    # REFERENCE_JUDGED: a candidate's latency is its ratio to the teacher UNet at the percentile, at `reference_ms`.
    # SHIPPED_JUDGED: it is timed paired with the teacher as shipped (`_measure_judged`), and `teacher_at_ms` is the
    # cost model's prediction of the teacher as shipped at `reference_ms` (`teacher_at_basis`), with
    # `teacher_at_readings_ms` what was measured of it, for the record.
    judged_against: str = REFERENCE_JUDGED
    teacher_at_basis: str = "measured"
    shipped_ratio_predicted: float | None = None     # the model's teacher as shipped, in UNet medians (SHIPPED_JUDGED)

    @property
    def latency_target_ms(self) -> float | None:
        """What a candidate's measured latency must meet to be chosen: the budget less the guard."""
        return guarded_target_ms(self.latency_budget_ms, self.latency_guard)

    @property
    def yardstick(self) -> ShippedYardstick | None:
        """How a candidate timed beside the teacher as shipped is judged; None where candidates are not."""
        return ShippedYardstick.from_decision(dataclasses.asdict(self))

    @property
    def speed_vs_table(self) -> float:
        """> 1: the machine runs slower now than when the cost table was measured."""
        return self.reference_ms / self.table_reference_ms

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "speed_vs_table": self.speed_vs_table,
                "latency_target_ms": self.latency_target_ms}


@dataclass(frozen=True)
class Choice:
    spec: ArchSpec
    fidelity: float
    objective: float
    predicted: dict[str, float]          # the cost model's prediction at decision speed
    measurement: Measurement
    latency_ms: float                    # measured, at the percentile, at decision speed
    found_by: str                        # "search" or "cheapest"


@dataclass(frozen=True)
class Selection:
    choice: Choice
    decision: DecisionSpeed
    table: CostTable | PipelineCostModel   # as finally used (re-validated / recalibrated)
    trials: list[Trial]
    attempts: list[dict[str, Any]]
    rounds: int
    cheapest: dict[str, Any]
    revalidation: dict[str, Any] | None
    teacher: Measurement
    problem: SearchProblem = field(repr=False)     # the last round's (its latency budget / `shortfall`)
    shortfall: float = 1.0                         # the last round searched below budget / shortfall


def as_candidate(m: Measurement, spec: ArchSpec, role: str) -> CandidateMeasurement:
    if m.paired is None:
        raise ValueError(f"{m.model}: the measurement was not paired with the reference")
    return CandidateMeasurement(spec.key, dict(spec.items()), m.paired, float(m.peak_memory_mib or 0.0), m.params, role)


def check_reachable(problem: SearchProblem, skip: tuple[str, ...] = ()) -> None:
    """Costs are additive over slots, so each budget's best case is the per-slot minimum. If one of
    them is out of reach, no candidate can be feasible: say which, and how close the space gets.
    Constraints in `skip` are not checked (one a measurement has already settled)."""
    space = problem.space
    for name in ("latency_ms", "peak_memory_mib", "params_m", "gmacs"):
        budget = getattr(problem.constraints, name)
        if budget is None or name in skip:
            continue

        def cost_of(s: ArchSpec, name=name) -> float:
            return getattr(problem.costs(s), name)

        base = space.all_teacher()
        best = {s.name: min(s.choices, key=lambda c, s=s: cost_of(base.with_choice(s.name, c)) if c != TEACHER
                            else cost_of(base)) for s in space.slots}
        closest = space.spec(best)
        value = cost_of(closest)
        if value > budget:
            raise SearchInfeasible(
                f"no candidate meets {name} <= {budget:g}: the closest candidate ({closest.key}, every slot at "
                f"its cheapest choice) is predicted at {value:.4g}. Relax the profile's budgets or add cheaper "
                "surrogate families")


def _judge(m: Measurement, decision: DecisionSpeed, budgets: Constraints) -> tuple[bool, float | None]:
    """(meets every measured budget, latency in ms at decision speed)."""
    if m.status == "error" or m.paired is None:
        return False, None
    lat = m.paired.ms_at(decision.percentile, decision.reference_ms)
    ok = budgets.latency_ms is None or lat <= budgets.latency_ms
    if budgets.peak_memory_mib is not None:
        ok = ok and m.peak_memory_mib is not None and m.peak_memory_mib <= budgets.peak_memory_mib
    if budgets.params_m is not None:
        ok = ok and m.params / 1e6 <= budgets.params_m
    if budgets.gmacs is not None and m.macs is not None:
        ok = ok and m.macs.gmacs <= budgets.gmacs
    if budgets.energy_mj is not None:
        ok = ok and m.energy_mj_per_inference is not None and m.energy_mj_per_inference <= budgets.energy_mj
    return ok, lat


def _measure_judged(meter: CandidateMeter, spec: ArchSpec, decision: DecisionSpeed, budgets: Constraints
                    ) -> tuple[Measurement, bool, float | None]:
    """`spec` measured as deployed and judged: (measurement, meets every budget, latency in ms at decision speed).

    Where the decision judges beside the teacher as shipped, the candidate is timed paired with it (each sample over
    the teacher as shipped's median in its own round), and that ratio is rebased to teacher-UNet units through the
    cost model's teacher as shipped: its milliseconds at decision speed are then its percentile in medians of the
    teacher as shipped times the model's teacher as shipped, and the budget's test reduces to that percentile
    against the budget's share of the model's own percentile over median (`PipelineParts.percentile_ratio`). So the
    teacher as shipped's level against the UNet cancels, and a burst in one round is one sample, not the budget's
    yardstick. The rebased measurement joins the table's calibration like any other; its share of the teacher as
    shipped is kept in `extra[SHARE_KEY]`."""
    if decision.judged_against != SHIPPED_JUDGED:
        m = meter.measure(spec)
        return m, *_judge(m, decision, budgets)
    yardstick = decision.yardstick
    assert yardstick is not None, "judged beside the teacher as shipped without the model's figure for it"
    m = meter.measure_against_shipped(spec)
    share = yardstick.share(m.paired) if m.paired is not None else None
    if m.paired is not None:
        m = dataclasses.replace(m, paired=m.paired.rebased(decision.shipped_ratio_predicted))
    ok, lat = _judge(m, decision, budgets)
    if share is not None and lat is not None:
        m = dataclasses.replace(m, extra={**m.extra, SHARE_KEY: share})
    return m, ok, lat


def _measure_cheapest(meter: CandidateMeter, spec: ArchSpec, decision: DecisionSpeed, budgets: Constraints,
                      predicted_ms: float | None, tolerance: float, again: int, pause_s: float = 0.0
                      ) -> tuple[Measurement, bool, float | None, list[float | None]]:
    """The cheapest candidate, measured. A reading that misses the budgets and is slower than the validated
    model's prediction beyond `tolerance` gets `again` more readings, `pause_s` apart, and the one with the
    median latency is kept: one burst or slow spell is outvoted, neither the slowest nor the fastest reading
    is picked. Every reading's latency is returned for the record."""
    m, ok, lat = _measure_judged(meter, spec, decision, budgets)
    if ok or lat is None or predicted_ms is None or lat <= predicted_ms * (1 + tolerance) or again < 1:
        return m, ok, lat, [lat]
    log.warning("the cheapest candidate %s measured %.2f ms, %.0f%% above the cost model's %.2f ms: measuring it "
                "%d more times, %.0f s apart, and keeping the median (a burst or slow spell the pairing did not "
                "cancel?)", spec.key, lat, 100 * (lat / predicted_ms - 1), predicted_ms, again, pause_s)
    readings = [(m, ok, lat)]
    for _ in range(again):
        time.sleep(pause_s)
        readings.append(_measure_judged(meter, spec, decision, budgets))
    timed = sorted((r for r in readings if r[2] is not None), key=lambda r: r[2])
    m, ok, lat = timed[(len(timed) - 1) // 2]
    return m, ok, lat, [r[2] for r in readings]


def _budget_in_model_epoch(decision: DecisionSpeed, table: PipelineCostModel, space: SearchSpace,
                           profile: DeviceProfile) -> DecisionSpeed:
    """`decision` judged beside the teacher as shipped (SelectionConfig.judge_beside_shipped): the teacher as shipped
    is the cost model's prediction of it at the reference's speed now, so the search's target in the model's units
    is the budget's share of the model's own teacher as shipped, whatever that pipeline read against the UNet at
    this moment; a candidate's milliseconds are its measured share of the teacher as shipped at that figure."""
    shipped = table.with_parts("kl", "kl").at_reference(decision.reference_ms)
    teacher = space.all_teacher()
    at_ms = shipped.predict_latency_at_ms(teacher)
    return dataclasses.replace(decision, teacher_at_ms=at_ms, latency_budget_ms=profile.budgets.latency_budget_ms(at_ms),
                               judged_against=SHIPPED_JUDGED, teacher_at_basis="predicted by the cost model",
                               shipped_ratio_predicted=shipped.predict_ratio(teacher))


def reference_text(decision: dict[str, Any]) -> str:
    """What follows the teacher as shipped's milliseconds in a summary (a SearchResult's `decision`): the readings
    it is the median of, or, where candidates were judged beside it, that its figure is the cost model's and what
    it measured now."""
    readings = decision.get("teacher_at_readings_ms")
    if decision.get("judged_against") != SHIPPED_JUDGED:
        return readings_text(readings)
    r = list(readings or ())
    measured = ("" if not r else f"; measured {r[0]:.2f} ms just before" if len(r) == 1
                else f"; measured {min(r):.2f}-{max(r):.2f} ms in {len(r)} readings just before")
    return (f" as the cost model predicts it at this speed{measured}; each candidate judged on its share of it, timed "
            "in the same rounds")


def readings_text(readings_ms: tuple[float, ...] | list[float] | None) -> str:
    """" (median of 3 readings in a row, 36.20-40.11 ms)" after a figure read more than once (the budget's reference,
    DecisionSpeed.teacher_at_readings_ms); "" after one read once."""
    r = list(readings_ms or ())
    return f" (median of {len(r)} readings in a row, {min(r):.2f}-{max(r):.2f} ms)" if len(r) > 1 else ""


def teacher_at_readings(meter: CandidateMeter, teacher: Measurement, profile: DeviceProfile, q: float,
                        ref_now: float, readings: int) -> list[float]:
    """The teacher as it ships, with its own autoencoder parts, at percentile `q` in ms at the speed where the
    reference takes `ref_now`: `readings` readings in a row where a `latency_vs_teacher` budget is a multiple of
    it (SelectionConfig.budget_readings) on a measured device, one otherwise (a predicted device's figure is a
    prediction: reading it again gives the same number, and it is not a reading). "x the teacher" means the teacher
    as shipped even where this device deploys cheaper parts: the parts' saving is the device's to spend on its
    backbone. A meter of backbones (no `measure_teacher_as_shipped`) has `teacher` itself as its reference."""
    if not hasattr(meter, "measure_teacher_as_shipped"):
        return [teacher.paired.ms_at(q, ref_now)]
    n = readings if profile.budgets.latency_vs_teacher is not None and profile.is_measured else 1
    out = []
    for _ in range(n):
        shipped = meter.measure_teacher_as_shipped()
        if shipped.paired is None:
            raise TocsrError(f"the teacher as shipped could not be measured on {profile.name}: {shipped.error}")
        out.append(shipped.paired.ms_at(q, ref_now))
    return out


def _infeasible_message(profile: DeviceProfile, decision: DecisionSpeed, spec: ArchSpec, m: Measurement,
                        lat: float | None, table: CostTable | PipelineCostModel) -> str:
    if lat is None:
        return f"the cheapest candidate ({spec.key}) could not be measured on {profile.name}: {m.error}"
    q = decision.percentile
    parts = [f"the cheapest candidate ({spec.key}, every slot at its cheapest choice) measures p{q:g} {lat:.2f} ms "
             f"and {m.peak_memory_mib:.0f} MiB on {profile.name} at this machine's current speed (teacher "
             f"{decision.teacher_at_ms:.2f} ms)"]
    b = profile.budgets
    target = decision.latency_target_ms
    if target is not None and lat > target:
        g = decision.latency_guard
        # 5% above the measurement (timings vary run to run), and the guard on top
        need = math.ceil(lat * 1.05 / (1 - g) * 100) / 100
        guard = f" less its timing.latency_guard of {100 * g:g}% (a target of {target:.2f} ms)" if g else ""
        parts.append(f"above the latency budget of {decision.latency_budget_ms:.2f} ms ({decision.budget}){guard}; "
                     f"budgets.latency_ms >= {need:.2f} or budgets.latency_vs_teacher >= "
                     f"{math.ceil(100 * need / decision.teacher_at_ms) / 100:.2f} would work"
                     + (" with the guard as it is" if g else ""))
    if b.energy_mj is not None and (m.energy_mj_per_inference is None or m.energy_mj_per_inference > b.energy_mj):
        parts.append(f"energy per call {m.energy_mj_per_inference} mJ against the budget of {b.energy_mj:g} mJ "
                     f"({m.energy_note})")
    if m.peak_memory_mib is not None and m.peak_memory_mib > b.peak_memory_mib:
        parts.append(f"above the memory budget of {b.peak_memory_mib:g} MiB; budgets.peak_memory_mib >= "
                     f"{math.ceil(m.peak_memory_mib * 1.05):d} would work")
    if isinstance(table, PipelineCostModel):
        fixed = table.at_reference(decision.reference_ms).fixed_latency_at_ms()
        parts.append("the pipeline's fixed parts alone take " + ", ".join(f"{k} {v:.2f} ms" for k, v in fixed.items())
                     + " (medians); no backbone choice removes them")
    return "; ".join(parts) + ". Relax the profile's budgets or add cheaper surrogate families"


def choose(space: SearchSpace, fidelity, table: CostTable | PipelineCostModel, profile: DeviceProfile,
           meter: CandidateMeter,
           search_round: Callable[[SearchProblem, int], list[Trial]], evaluations: int,
           formulation: str = "device", eps_fid: float | None = None, complexity: str = "params",
           cfg: SelectionConfig = SelectionConfig(),
           remeasure: Callable[[], CostTable | PipelineCostModel] | None = None) -> Selection:
    """Search and re-measure until a candidate meets the profile's budgets when measured (see module doc).

    `search_round(problem, cap)` runs (or continues) the search until `cap` evaluations in all and
    returns every trial scored under `problem`. `remeasure()` measures a new cost model of the same scope
    when this one fails re-validation.
    """
    if table.scope != profile.budgets.scope:
        raise TocsrError(f"profile {profile.name!r} bounds the {profile.budgets.scope} (budgets.scope) and the cost "
                         f"model predicts the {table.scope}: give the matching model (bench.pipeline.load_cost_model)")
    # a bad configuration is refused before minutes of measuring
    if cfg.upward_step not in (UPWARD_BEYOND_TOLERANCE, UPWARD_CONTINUOUS):
        raise TocsrError(f"SelectionConfig.upward_step {cfg.upward_step!r}: expected {UPWARD_BEYOND_TOLERANCE!r} or "
                         f"{UPWARD_CONTINUOUS!r}")
    if cfg.bias_probes < 0:
        raise TocsrError(f"SelectionConfig.bias_probes {cfg.bias_probes}: expected 0 (read the model's bias at the "
                         "cheapest candidate) or more (also at that many candidates near the target)")
    if cfg.search_bound not in (SEARCH_BOUND_MOVING, SEARCH_BOUND_FIXED):
        raise TocsrError(f"SelectionConfig.search_bound {cfg.search_bound!r}: expected {SEARCH_BOUND_MOVING!r} or "
                         f"{SEARCH_BOUND_FIXED!r}")
    q = profile.timing.percentile
    teacher = meter.measure(space.all_teacher())
    if teacher.paired is None:
        raise TocsrError(f"the teacher could not be measured on {profile.name}: {teacher.error}")
    ref_now = teacher.paired.reference_ms
    device_budgets = formulation == "device"
    beside_shipped = (device_budgets and cfg.judge_beside_shipped and profile.is_measured
                      and profile.budgets.latency_vs_teacher is not None and isinstance(table, PipelineCostModel)
                      and hasattr(meter, "measure_against_shipped"))
    readings = teacher_at_readings(meter, teacher, profile, q, ref_now,
                                   cfg.budget_readings if device_budgets and not beside_shipped else 1)
    teacher_at = float(np.median(readings))
    latency_budget = profile.budgets.latency_budget_ms(teacher_at) if device_budgets else None
    decision = DecisionSpeed(ref_now, teacher_at, table.reference_ms, latency_budget, q,
                             profile.budgets.describe_latency(q), table.scope,
                             profile.timing.latency_guard if device_budgets else 0.0, tuple(readings))

    revalidation = None
    moved = abs(decision.speed_vs_table - 1) > cfg.revalidate_above
    # The teacher was just measured: the model's prediction of it is a free check. For a pipeline model it
    # catches ratios that moved while the speed did not (a slow spell that had slowed the decoder more than
    # the UNet when the fixed parts were measured, over by the time of choosing, left every candidate
    # predicted ~15% slow: the search found none under the budget and shipped the cheapest).
    teacher_off = table.predict_ratio(space.all_teacher()) / teacher.paired.ratio - 1
    if abs(teacher_off) > cfg.teacher_off_above:
        log.warning("the cost model predicts the teacher %+.0f%% off its measurement now: re-validating it",
                    100 * teacher_off)
    # (only where it can be measured again: a table imported from an unattached device is judged as it is)
    missed_bar = remeasure is not None and _missed_own_bar(table)
    if missed_bar:
        log.warning("the cost table missed its own validation bar when it was measured (%s): re-validating it",
                    describe_validation(_backbone(table).rounds[-1]))
    # A pipeline model of cheaper parts whose overhead the costs stage did not measure was never checked on whole
    # pipelines with them (on this CPU they ran over the sum of their parts, every pipeline the same way:
    # reports/evidence/pipeline-costs-cpu-deployed/), so it is checked, and scaled if need be, before it steers.
    unchecked_parts = remeasure is not None and _deploys_other_parts(table)
    if unchecked_parts:
        log.info("the cost model deploys the %s encoder and the %s decoder, never judged on whole pipelines with them: "
                 "re-validating it", table.pipeline.encoder, table.pipeline.decoder)
    if (moved or abs(teacher_off) > cfg.teacher_off_above or teacher.device_name != table.device_name or missed_bar
            or unchecked_parts):
        try:
            table, revalidation = _revalidate(space, table, meter, decision, teacher, cfg)
        except StaleCostTable as err:
            if remeasure is None:
                raise
            log.warning("%s; measuring it again", err)
            table = remeasure()
            decision = dataclasses.replace(decision, table_reference_ms=table.reference_ms)
            revalidation = {**err.revalidation, "remeasured": True,
                            "remeasured_validation": table.validation_summary()}

    if beside_shipped:
        decision = _budget_in_model_epoch(decision, table, space, profile)
    # Candidates are searched for, and chosen on, the target: the budget less the guard the device's timings need.
    latency_target = decision.latency_target_ms
    log.info("decision speed: teacher %.2f ms now, %.2f ms when the cost table was measured; latency budget %s%s",
             ref_now, decision.table_reference_ms, "none" if decision.latency_budget_ms is None
             else f"{decision.latency_budget_ms:.2f} ms ({decision.budget}; the teacher as shipped "
                  f"{decision.teacher_at_ms:.2f} ms{reference_text(decision.to_dict())})",
             f", chosen at <= {latency_target:.2f} ms (less the {100 * decision.latency_guard:g}% guard)"
             if latency_target is not None and decision.latency_guard else "")

    pb = profile.budgets
    budgets = (Constraints(latency_target, pb.peak_memory_mib, pb.params_m, pb.gmacs, eps_fid, pb.energy_mj)
               if device_budgets else Constraints(fidelity=eps_fid))

    def problem_for(t: CostTable, shortfall: float = 1.0) -> SearchProblem:
        """The search problem under table `t`, its latency budget divided by `shortfall`: what the model has
        been seen to under-predict near the budget (> 1), or to over-predict the measured cheapest (< 1)."""
        searched = budgets if budgets.latency_ms is None else dataclasses.replace(
            budgets, latency_ms=budgets.latency_ms / shortfall)
        return SearchProblem(space, fidelity, t.at_reference(ref_now), searched, formulation, complexity)

    problem = problem_for(table)
    searched = None
    if cfg.search_bound == SEARCH_BOUND_FIXED and device_budgets and latency_target is not None:
        searched = problem_for(table, 1 / _fixed_bound_factor(problem, table, space, decision, latency_target,
                                                               profile.budgets.latency_vs_teacher is not None))
    measured: dict[str, tuple[ArchSpec, Measurement, bool, float | None]] = {}
    cheapest_doc: dict[str, Any] = {}
    if device_budgets:
        cheapest = table.cheapest(space)
        predicted = problem.costs(cheapest).latency_ms
        m, ok, lat, tries = _measure_cheapest(meter, cheapest, decision, budgets, predicted, table.bar.tolerance,
                                              cfg.cheapest_remeasure, cfg.cheapest_pause_s)
        measured[cheapest.key] = (cheapest, m, ok, lat)
        cheapest_doc = {"key": cheapest.key, "latency_ms": lat, "peak_memory_mib": m.peak_memory_mib, "meets": ok,
                        "predicted_latency_ms": predicted, "measurements_ms": tries}
        if not ok:
            raise SearchInfeasible(_infeasible_message(profile, decision, cheapest, m, lat, table))
    shortfall = 1.0
    biased_high = 1 + (table.bar.tolerance if cfg.upward_step == UPWARD_BEYOND_TOLERANCE else 0.0)
    if (device_budgets and latency_target is not None and cfg.upward_step == UPWARD_CONTINUOUS
            and cfg.bias_probes > 0):
        table, shortfall, cheapest_doc["boundary_probes"] = _step_from_boundary(
            space, table, meter, decision, budgets, cheapest, m, lat, latency_target, cfg, problem_for)
        problem = problem_for(table, shortfall)
    elif device_budgets and latency_target is not None and (problem.costs(cheapest).latency_ms > latency_target or
                                                          problem.costs(cheapest).latency_ms > lat * biased_high):
        # The measurement says the space reaches the budget, the model says not, or the model over-predicts the
        # measured cheapest beyond its own tolerance: believe the measurement.
        table = table.recalibrated(space, [as_candidate(m, cheapest, "selection")])
        problem = problem_for(table)
        over = problem.costs(cheapest).latency_ms / lat
        if problem.costs(cheapest).latency_ms > latency_target or over > biased_high:
            # One point among the calibration set leaves the refit over-predicting here; searched at the
            # budget, nothing would be proposed and the cheapest would ship unsearched (a CI run on a
            # drifting machine did), or a model biased high steers to a backbone smaller than the budget allows
            # (a pipeline model whose deployed parts were timed in a slow spell: docs/status.md, sixty-seventh
            # session). Search as far above the budget as the model over-predicts the measured
            # cheapest; every pick is still judged on its own measurement, and a round whose picks miss searches
            # lower again.
            shortfall = 1 / over
            problem = problem_for(table, shortfall)
            log.info("the cost model predicts the cheapest candidate %.0f%% slower than measured: searching up to "
                     "that far above the budget", 100 * (over - 1))
    check_reachable(problem, skip=("latency_ms",) if device_budgets else ())

    attempts: list[dict[str, Any]] = []
    trials: list[Trial] = []
    caps = cfg.caps(evaluations)
    chosen: Choice | None = None
    for round_, cap in enumerate(caps):
        trials = search_round(problem, cap) if searched is None else rescore(search_round(searched, cap), problem)
        ranked = sorted((t for t in trials if t.feasible and t.objective is not None and t.key not in measured),
                        key=lambda t: t.objective)
        if searched is not None and not ranked:
            # The fixed search's trials crowd its own bound (BO's repaired design lands just under it), so a round
            # whose bound the moment put lower can find none under it; left fixed, every round would, and the
            # cheapest would ship unsearched (reports/evidence/latency-agreement/, "A fixed search bound").
            log.warning("round %d: none of the fixed search's %d trials is under this round's bound (%.2f ms): the "
                        "search follows the round's bound from the next round", round_ + 1, len(trials),
                        problem.constraints.latency_ms)
            searched = None
        failed, failed_ms = [], []
        for t in ranked[:cfg.per_round]:
            spec = space.spec(t.choices)
            m, ok, lat = _measure_judged(meter, spec, decision, budgets)
            first_ms = None
            if ok and cfg.confirm_choice:
                # A candidate the search proposes sits just under the budget, so a reading that meets it is, more
                # often than not, one whose noise ran low: judged on it, the chosen model timed again later ran
                # slower (the report's row; docs/status.md, fifty-third session). A second, independent reading
                # decides, and is the figure the choice carries.
                first_ms = lat
                m, ok, lat = _measure_judged(meter, spec, decision, budgets)
            measured[t.key] = (spec, m, ok, lat)
            attempts.append({"round": round_, "key": t.key, "predicted": t.costs, "latency_ms_at_decision": lat,
                             "first_reading_ms_at_decision": first_ms,
                             "searched_below_ms": problem.constraints.latency_ms,
                             "bo_bounded_by_ms": (searched or problem).constraints.latency_ms,
                             "measured_p_ms_raw": m.latency_at_ms(q), "ratio": m.paired.ratio if m.paired else None,
                             SHARE_KEY: m.extra.get(SHARE_KEY),
                             "peak_memory_mib": m.peak_memory_mib, "status": m.status, "meets_budgets": ok,
                             "effective_cores": m.extra.get("effective_cores")})
            if ok:
                chosen = Choice(spec, float(t.fidelity), float(t.objective), t.costs, m, float(lat), "search")
                break
            if m.paired is not None and lat is not None:
                failed.append(as_candidate(m, spec, "selection"))
                failed_ms.append(lat)
        if chosen is not None or round_ == len(caps) - 1:
            break
        if failed:
            # The predictions near the budget were low. Refit the correction with what was just measured;
            # what the refitted model still under-predicts for those candidates is a bias near the budget
            # that a global fit cannot see (or the search's winner's curse: among many candidates at the
            # boundary it keeps those predicted lowest), so the next round searches that much below it.
            table = table.recalibrated(space, failed)
            refit = problem_for(table)
            seen = [ms / refit.costs(space.spec(c.choices)).latency_ms
                    for c, ms in zip(failed, failed_ms, strict=True)]
            shortfall = max([shortfall, *seen])
            problem = problem_for(table, shortfall)
            log.info("round %d: none of %d re-measured candidates met the budgets; correction refitted (%s), "
                     "next round searches %.1f%% below the budget", round_ + 1, len(failed), table.correction.kind,
                     100 * (1 - 1 / shortfall))

    if chosen is None:
        chosen = _best_measured(fidelity, problem, measured, trials)
    return Selection(chosen, decision, table, trials, attempts, len({a["round"] for a in attempts}) or 1,
                     cheapest_doc, revalidation, teacher, problem, shortfall)


def _fixed_bound_factor(problem: SearchProblem, table: CostTable | PipelineCostModel, space: SearchSpace,
                        decision: DecisionSpeed, latency_target: float, relative: bool) -> float:
    """SelectionConfig.search_bound "fixed": the search's bound over the target. In the cost model's own units, so
    that neither the moment's reading of the teacher nor a re-validation's scaling moves it: a target that is a
    share of a teacher read now is restated as that share of the model's own teacher (where the target already is,
    judged beside the teacher as shipped, this is 1); then widened by the table's tolerance, and never below the
    model's own cheapest (where the model puts that over the target, the measured cheapest may still meet it)."""
    epoch = 1.0
    if relative and decision.judged_against != SHIPPED_JUDGED:
        teacher_model = table.with_parts("kl", "kl") if isinstance(table, PipelineCostModel) else table
        epoch = (teacher_model.at_reference(decision.reference_ms).predict_latency_at_ms(space.all_teacher())
                 / decision.teacher_at_ms)
    reach = max(1.0, problem.costs(table.cheapest(space)).latency_ms / (epoch * latency_target))
    return epoch * reach * (1 + table.bar.tolerance)


def _step_from_boundary(space: SearchSpace, table: CostTable | PipelineCostModel, meter: CandidateMeter,
                        decision: DecisionSpeed, budgets: Constraints, cheapest: ArchSpec, cheapest_m: Measurement,
                        cheapest_ms: float, latency_target: float, cfg: SelectionConfig,
                        problem_for: Callable[..., SearchProblem]) -> tuple[CostTable | PipelineCostModel, float,
                                                                            dict[str, Any]]:
    """The first round's step, read where its picks will land (SelectionConfig.bias_probes): the `cfg.bias_probes`
    candidates the model predicts nearest the target are measured once each; they and the measured cheapest refit
    the correction; the step is the median of what the refit still predicts over their measurements. Returns the
    refit model, the shortfall (the first round searches at target / shortfall) and the record."""
    before = problem_for(table)
    pool = sample_candidates(space, cfg.bias_probe_pool, seed=4051, include_extremes=False, exclude={cheapest.key})
    near = sorted(pool, key=lambda s: abs(before.costs(s).latency_ms - latency_target))[:cfg.bias_probes]
    probes = []
    for spec in near:
        pm, _, lat = _measure_judged(meter, spec, decision, budgets)
        if pm.paired is not None and lat is not None:
            probes.append((spec, pm, lat))
    table = table.recalibrated(space, [as_candidate(cheapest_m, cheapest, "selection"),
                                       *(as_candidate(pm, spec, "selection") for spec, pm, _ in probes)])
    refit = problem_for(table)
    overs = [refit.costs(spec).latency_ms / lat for spec, _, lat in probes]
    if refit.costs(cheapest).latency_ms > latency_target or not overs:
        # The refit puts the measured cheapest over the target (or nothing near it could be timed): every candidate
        # it predicts near the target is predicted over the cheapest, so the boundary lies below all of them, and
        # their reading could put the search's bound below the cheapest with nothing to propose. The cheapest's own
        # reading steps, as with bias_probes 0.
        basis, over = "cheapest", refit.costs(cheapest).latency_ms / cheapest_ms
    else:
        basis, over = "near the target", float(np.median(overs))
    shortfall = 1 / over
    log.info("the cost model, refit with the cheapest and %d candidates near the target, predicts %s %+.1f%% off "
             "measured: the first round searches at %.3f x the target", len(probes),
             "the cheapest" if basis == "cheapest" else "those (median)", 100 * (over - 1), 1 / shortfall)
    doc = {"predicted_before_ms": [before.costs(spec).latency_ms for spec, _, _ in probes],
           "keys": [spec.key for spec, _, _ in probes], "measured_ms": [lat for _, _, lat in probes],
           "predicted_after_refit_ms": [refit.costs(spec).latency_ms for spec, _, _ in probes],
           "over_predicted_median": float(np.median(overs)) if overs else None, "step_read_at": basis,
           "searched_at_target_times": 1 / shortfall}
    return table, shortfall, doc


def _best_measured(fidelity, problem: SearchProblem, measured: dict[str, tuple[ArchSpec, Measurement, bool, float | None]],
                   trials: list[Trial]) -> Choice:
    """After the last round: the best candidate that met the budgets when measured (the cheapest one at worst)."""
    known = {t.key: t for t in trials if t.fidelity is not None}
    best: Choice | None = None
    for key, (spec, m, ok, lat) in measured.items():
        if not ok or lat is None:
            continue
        if key in known:
            fid = float(known[key].fidelity)
        else:
            fid, err, _ = evaluate_one(fidelity, spec)
            if fid is None:
                log.warning("candidate %s met the budgets but its fidelity could not be evaluated: %s", key, err)
                continue
        objective = problem.objective(spec, fid)
        if best is None or objective < best.objective:
            best = Choice(spec, fid, objective, problem.costs(spec).to_dict(), m, lat,
                          "search" if key in known else "cheapest")
    if best is None:
        raise SearchInfeasible("no re-measured candidate met the budgets and the cheapest candidate's fidelity could "
                               "not be evaluated; see the search log")
    return best


def _backbone(table: CostTable | PipelineCostModel) -> CostTable:
    return table.table if isinstance(table, PipelineCostModel) else table


def _missed_own_bar(table: CostTable | PipelineCostModel) -> bool:
    """The backbone table's last fit missed its bar on its own held-out candidates when it was measured (the
    main job keeps such a table). A pipeline model that misses its bar is kept by design and not re-validated
    for it: the choice is judged on a measured pipeline either way."""
    rounds = _backbone(table).rounds
    return bool(rounds) and rounds[-1].get("passes") is False


def _deploys_other_parts(table: CostTable | PipelineCostModel) -> bool:
    """A pipeline model of cheaper parts than the autoencoder's whose overhead was never measured: it was judged on
    pipelines with the autoencoder's parts only (parts measured before overheads were, or without them)."""
    if not isinstance(table, PipelineCostModel):
        return False
    p = table.pipeline
    return (p.encoder, p.decoder) != ("kl", "kl") and p.overhead(p.encoder, p.decoder) is None


def _revalidate(space: SearchSpace, table: CostTable | PipelineCostModel, meter: CandidateMeter,
                decision: DecisionSpeed, teacher: Measurement, cfg: SelectionConfig
                ) -> tuple[CostTable | PipelineCostModel, dict[str, Any]]:
    """Measure fresh candidates and judge the table on them. A table that misses its bar is scaled by the
    median measured/predicted of those candidates and judged on as many more (`cfg.rescale_candidates`): a
    speed change that moved every candidate by one factor against the reference is one number to learn, not a
    table to measure again. Raise StaleCostTable when the table misses its bar, scaled or not."""
    seen = {c.key for c in table.candidates}
    fresh = _measure_fresh(space, meter, cfg.revalidation_candidates, len(seen) + 7919, seen)
    errors = table.errors(fresh)
    v = summarize_errors(errors, table.bar)
    if teacher.device_name != table.device_name:
        why = f"measured on {teacher.device_name!r}, the table on {table.device_name!r}"
    else:
        why = f"the reference runs {decision.reference_ms:.2f} ms now vs {table.reference_ms:.2f} ms when the table was measured"
        if _missed_own_bar(table):
            why += "; the table missed its own validation bar then"
        if _deploys_other_parts(table):
            why += f"; pipelines with the {table.pipeline.encoder} encoder and the {table.pipeline.decoder} decoder"
    doc = {"why": why, **v}
    if v["passes"] is not False:
        log.info("cost table re-validated: %s", doc)
        return table.with_candidates(fresh), doc
    if cfg.rescale_candidates > 0 and len(fresh) > 0:
        factor = float(np.median(1 / (1 + errors)))        # measured / predicted
        scaled = table.rescaled(factor)
        more = _measure_fresh(space, meter, cfg.rescale_candidates, len(seen) + 104729, seen | {c.key for c in fresh})
        v_scaled = summarize_errors(scaled.errors(more), table.bar)
        doc["rescaled"] = {"factor": factor, "fitted_on": len(fresh), **v_scaled}
        log.info("the cost table misses its bar on %d fresh candidates (%s); scaled by %.3f (their median "
                 "measured/predicted), on %d more: %s", len(fresh), describe_validation(v), factor, len(more),
                 describe_validation(v_scaled))
        if v_scaled["passes"]:            # judged on candidates it was not scaled on: none measured is no pass
            return scaled.with_candidates(fresh + more), doc
        what = (f"{100 * v['within_tolerance']:.0f}% of {v['n']} fresh candidates within the tolerance, and scaled "
                f"by {factor:.3f} " + (f"{100 * v_scaled['within_tolerance']:.0f}% of {v_scaled['n']} more"
                                       if v_scaled["n"] else "no further candidate could be measured"))
    else:
        what = f"{100 * v['within_tolerance']:.0f}% of {v['n']} fresh candidates within the tolerance"
    raise StaleCostTable(f"the cost table no longer predicts this machine ({doc['why']}): {what} (bar: {v['bar']}); "
                         "measure it again", doc)


def _measure_fresh(space: SearchSpace, meter: CandidateMeter, n: int, seed: int, exclude: set[str]
                   ) -> list[CandidateMeasurement]:
    """`n` candidates the table has never seen, measured now (those that could not be measured are left out)."""
    fresh = []
    for spec in sample_candidates(space, n, seed=seed, include_extremes=False, exclude=exclude):
        m = meter.measure(spec)
        if m.paired is not None:
            fresh.append(as_candidate(m, spec, "revalidation"))
    return fresh
