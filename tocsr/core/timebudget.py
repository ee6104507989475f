"""A run's minutes: how many of its preset's training steps fit the time budget on this machine, this hour.

The shared machines the quick preset runs on change speed from hour to hour, and every stage slows alike, so a job
of fixed steps that fits its minutes on one hour runs well over them on another (docs/status.md has the stage
seconds of the same job on many hours). The teacher stage runs first, at its fixed steps, and is the yardstick:
each later stage's seconds are predicted as a share of the teacher stage's (`StageShares`, measured on committed
runs of the job), and the training stages after it train a fraction of their steps so that the predicted job fits
its budget. What scales: the surrogates' distillation and the pipeline parts (decided after the teacher stage),
and the one-step students (decided again before the first of them, from the seconds actually spent by then). The
trained baselines follow by themselves: they train for the SR stage's seconds. What does not: cost tables, search,
the shared SR part and evaluation, which measure or prepare rather than train.

A floor keeps every model trained enough to be worth scoring: on an hour slow enough to reach it the job runs over
its budget, and its plan says so. Every figure here is a prediction, labelled so; the job's summary puts the
seconds it spent beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from tocsr.core.artifacts import FolderRecord
from tocsr.core.errors import ConfigError


@dataclass(frozen=True)
class StageShares:
    """Each stage's seconds per second of the teacher stage, at the preset's full steps. Medians over the quick
    job's committed summaries on this machine class (`source`; tocsr.app.stage_shares recomputes them from any run
    summaries, scaled runs included). The ratios move far less from hour to hour than the seconds themselves,
    which is what makes the teacher stage a yardstick; the measurement stages' move most, which is why the students'
    scale is decided again after them."""

    KIND: ClassVar[str] = "tocsr.stage_shares"
    VERSION: ClassVar[int] = 1

    surrogates: float = 0.46            # feature-wise distillation of the surrogates, its whole-candidate check
    parts: float = 0.26                 # the cheaper pipeline parts (tiny decoder, LR encoder)
    costs_search_measured: float = 1.22  # cost table, pipelines and search of a profile measured here
    costs_search_predicted: float = 0.16  # the same for a predicted profile (roofline; no timing)
    sr_shared: float = 0.14             # the SR stage's shared part (pair cache)
    student: float = 0.80               # one device's SR stage at the preset's one-device student steps
    eval_per_device: float = 0.09       # evaluation beyond training the baselines, per device
    # the run folders (summary.json each) these are the medians of
    source: tuple[str, ...] = tuple(f"reports/evidence/main-quick-pipeline/{r}-readme" for r in (
        "run34-ea74431", "run35-6501784", "run36-5a57298", "run42-b543548", "run43-af42cd9")) + tuple(
        f"reports/evidence/three-profiles-quick/{r}" for r in ("run38-fa8d684", "run43-e60e6a7"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "source" and not (isinstance(v, float | int) and v >= 0):
                raise ConfigError(f"StageShares.{f.name} = {v!r}: expected seconds per teacher second, >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageShares:
        return cls(**{f.name: tuple(d[f.name]) if f.name == "source" else d[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class RunShape:
    """What a run trains and measures, in the numbers the prediction needs (from the run preset and its profiles)."""

    devices_measured: int
    devices_predicted: int
    baselines: int
    student_share_total: float     # the run's student steps over one device's preset steps (1 for one device)
    student_share_longest: float   # one device's student steps over the same (the baselines train for its seconds)

    def __post_init__(self) -> None:
        if self.devices_measured < 0 or self.devices_predicted < 0 or self.devices < 1:
            raise ConfigError(f"RunShape: {self.devices_measured} measured and {self.devices_predicted} predicted "
                              "devices; a run needs at least one")

    @property
    def devices(self) -> int:
        return self.devices_measured + self.devices_predicted


@dataclass(frozen=True)
class StepPlan(FolderRecord):
    """How a run's training steps were scaled to fit its time budget, and what it predicted (<run>/step_plan.json).

    `training_scale` multiplies the surrogates' and the parts' steps, `student_scale` the students' (None until
    decided, right before the first student). 1.0 is the preset's steps; neither goes below `floor`."""

    FILE_NAME: ClassVar[str] = "step_plan.json"
    KIND: ClassVar[str] = "tocsr.step_plan"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "delete {folder}/step_plan.json; the next `tocsr run` on the folder plans again"

    preset: str
    inputs_sha256: str            # teacher stage, budget, devices: a resumed run with the same inputs keeps this plan
    budget_s: float
    floor: float
    teacher_s: float              # the yardstick: the teacher stage's seconds on this machine
    teacher_resumed: bool         # its stage resumed from checkpoints: its seconds understate the machine's pace
    shape: RunShape
    shares: StageShares
    training_scale: float
    predicted_full_s: float       # the whole job at the preset's steps, predicted after the teacher stage
    predicted_s: float            # at the scales decided (the latest prediction)
    student_scale: float | None = None
    spent_before_students_s: float | None = None   # seconds the run's stages had taken when the students' scale was set

    def __post_init__(self) -> None:
        for name in ("training_scale", "student_scale"):
            v = getattr(self, name)
            if v is not None and not (0 < v <= 1):
                raise ConfigError(f"StepPlan.{name} = {v!r}: expected a fraction of the preset's steps in (0, 1]")

    @property
    def over_budget(self) -> bool:
        """The job is predicted past its budget. The scales are solved to fill the budget exactly, so the prediction
        lands on it up to floating-point rounding: a second of slack keeps that from reading as "over"."""
        return self.predicted_s > self.budget_s + 1.0

    @property
    def at_floor(self) -> bool:
        return any(s is not None and s <= self.floor for s in (self.training_scale, self.student_scale))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "inputs_sha256": self.inputs_sha256, "budget_s": self.budget_s,
                "floor": self.floor, "teacher_s": self.teacher_s, "teacher_resumed": self.teacher_resumed,
                "shape": dataclasses.asdict(self.shape), "shares": self.shares.to_dict(),
                "training_scale": self.training_scale, "predicted_full_s": self.predicted_full_s,
                "predicted_s": self.predicted_s, "student_scale": self.student_scale,
                "spent_before_students_s": self.spent_before_students_s, "predicted": True}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepPlan:
        return cls(str(d["preset"]), str(d["inputs_sha256"]), float(d["budget_s"]), float(d["floor"]),
                   float(d["teacher_s"]), bool(d["teacher_resumed"]), RunShape(**d["shape"]),
                   StageShares.from_dict(d["shares"]), float(d["training_scale"]), float(d["predicted_full_s"]),
                   float(d["predicted_s"]),
                   None if d.get("student_scale") is None else float(d["student_scale"]),
                   None if d.get("spent_before_students_s") is None else float(d["spent_before_students_s"]))

    def describe(self) -> str:
        """One line for the console and the report."""
        pace = (f"the teacher stage took {self.teacher_s:.0f} s"
                + (" (resumed: an underestimate of the pace)" if self.teacher_resumed else ""))
        if self.training_scale == 1 and self.student_scale in (None, 1):
            return (f"time budget {self.budget_s / 60:.1f} min: {pace}; the job at the {self.preset} preset's full "
                    f"steps is predicted at {self.predicted_s / 60:.1f} min, so every stage trains its full steps")
        students = "not decided yet" if self.student_scale is None else f"{self.student_scale:.2f}x"
        line = (f"time budget {self.budget_s / 60:.1f} min: {pace}; at the {self.preset} preset's full steps the job "
                f"was predicted at {self.predicted_full_s / 60:.1f} min, so the surrogates and parts train "
                f"{self.training_scale:.2f}x their steps and the students {students} (predicted "
                f"{self.predicted_s / 60:.1f} min; `--fixed-steps` trains the preset's steps)")
        if self.over_budget:
            line += (f"; at the floor of {self.floor:.2f}x the job still runs over its budget on this hour's machine"
                     if self.at_floor else "; the job is predicted over its budget (a scale decided earlier is kept)")
        # The trained baselines get the SR stage's seconds, so a cut reaches them too, and a verdict against them is
        # at a budget the preset did not set. Across the README runs on record the smaller budget favoured TOC-SR.
        if self.shape.baselines:
            line += ("; the trained baselines' seconds are the SR stage's, so they were cut with it: every verdict "
                     "against them is at this hour's smaller budget, which has favoured TOC-SR against SRVGG "
                     "(reports/evidence/main-quick-pipeline/lead_vs_budget.png)")
        return line


def _fixed_s(t: float, sh: StageShares, shape: RunShape) -> float:
    """Seconds that do not scale with the training steps: the teacher, measurement, search, shared SR part
    (once, and again inside each baseline's budget) and evaluation."""
    return t * (1 + shape.devices_measured * sh.costs_search_measured + shape.devices_predicted
                * sh.costs_search_predicted + sh.sr_shared * (1 + shape.baselines) + sh.eval_per_device * shape.devices)


def predict_job_s(teacher_s: float, shares: StageShares, shape: RunShape, training_scale: float = 1.0,
                  student_scale: float = 1.0) -> float:
    """The whole job's seconds predicted from the teacher stage's. Each baseline trains for the longest SR model's
    training seconds, which count the parts it deploys, the shared part and one device's student."""
    t, sh = teacher_s, shares
    training = t * (sh.surrogates + sh.parts * (1 + shape.baselines)) * training_scale
    students = t * sh.student * (shape.student_share_total + shape.baselines * shape.student_share_longest) * student_scale
    return _fixed_s(t, sh, shape) + training + students


def _fit(room_s: float, scalable_s: float, floor: float) -> float:
    """The fraction of the scalable seconds that fits `room_s`, between `floor` and 1."""
    if scalable_s <= 0:
        return 1.0
    return min(1.0, max(floor, room_s / scalable_s))


def check_budget(budget_s: float, floor: float) -> None:
    if not budget_s > 0:
        raise ConfigError(f"time budget {budget_s!r} s: give a positive number of seconds, or none for fixed steps")
    if not 0 < floor <= 1:
        raise ConfigError(f"step floor {floor!r}: give a fraction of the preset's steps in (0, 1]")


def plan_after_teacher(preset: str, inputs_sha256: str, budget_s: float, floor: float, teacher_s: float,
                       teacher_resumed: bool, shape: RunShape, shares: StageShares | None = None,
                       training_scale: float | None = None) -> StepPlan:
    """The first decision: one scale for every training stage after the teacher, so that the predicted job fits.
    `training_scale`, where given, was decided earlier (the stages it scaled are done and reused): only the
    prediction is made.

    Example:
        >>> shape = RunShape(devices_measured=1, devices_predicted=0, baselines=1, student_share_total=1.0,
        ...                  student_share_longest=1.0)
        >>> round(plan_after_teacher("quick", "sha", 1710, 0.5, 390.0, False, shape).training_scale, 2)  # a slow hour
        0.7
    """
    check_budget(budget_s, floor)
    sh = shares or StageShares()
    full = predict_job_s(teacher_s, sh, shape)
    scalable = full - _fixed_s(teacher_s, sh, shape)
    scale = training_scale if training_scale is not None else _fit(budget_s - _fixed_s(teacher_s, sh, shape),
                                                                   scalable, floor)
    return StepPlan(preset, inputs_sha256, budget_s, floor, teacher_s, teacher_resumed, shape, sh, scale, full,
                    predict_job_s(teacher_s, sh, shape, scale, scale))


def plan_students(plan: StepPlan, spent_s: float, later_measured: int, later_predicted: int,
                  spent_parts_s: float, spent_shared_s: float) -> StepPlan:
    """The second decision, right before the first student: its scale from the seconds the run has actually spent
    (`spent_s`), what is left to measure (`later_measured` / `later_predicted` profiles whose cost tables and search
    have not run) and the parts' and shared part's seconds as they came (each baseline trains for them again)."""
    t, sh, shape = plan.teacher_s, plan.shares, plan.shape
    fixed = (t * (later_measured * sh.costs_search_measured + later_predicted * sh.costs_search_predicted
                  + sh.eval_per_device * shape.devices)
             + shape.baselines * (spent_parts_s + spent_shared_s))
    scalable = t * sh.student * (shape.student_share_total + shape.baselines * shape.student_share_longest)
    scale = _fit(plan.budget_s - spent_s - fixed, scalable, plan.floor)
    return dataclasses.replace(plan, student_scale=scale, spent_before_students_s=spent_s,
                               predicted_s=spent_s + fixed + scalable * scale)
