"""The main job, `tocsr run`: teacher -> surrogates -> per-device cost, search, SR -> evaluation -> report.

Like tocsr.app.cli, this module wires stages together. Each stage is keyed by a content hash of its
inputs and writes `<out>/stages/<stage>.json` (atomically) when it finishes: a rerun skips every
stage whose marker matches its inputs, and a stage interrupted part-way resumes from its own
checkpoints. The inputs include the schema version of what a stage writes, so a folder written by an
earlier version of the suite reruns exactly the stages whose records changed. Several profiles share the teacher and the surrogates; each profile has its own cost
table (shared between profiles measured the same way), search and SR model (shared between profiles
that chose the same architecture).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.cores import cores_text, had_fewer_cores
from bench.profile import DeviceProfile, load_profile
from search.result import SearchResult
from search.selection import SHIPPED_JUDGED, ShippedYardstick, reference_text
from tocsr.app.estimate import RunEstimate
from tocsr.core.artifacts import atomic_write_text
from tocsr.core.distill.config import DEFAULT_PROXY
from tocsr.core.errors import ConfigError
from tocsr.core.provenance import content_sha256, package_versions
from tocsr.core.sr.config import TRAINED_PARTS
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.timebudget import RunShape, StepPlan, check_budget, plan_after_teacher, plan_students
from tocsr.core.training import progress


@dataclass(frozen=True)
class RunPreset:
    name: str
    teacher_preset: str
    distill_steps: int
    search_method: str
    search_evaluations: int
    sr_teacher_steps: int
    sr_student_steps: int              # each device's one-step student, up to the run-wide cap below
    # Trained for the SR stage's measured training seconds each (reports.comparison.compare_methods), so every
    # baseline listed here costs the main job as much as the SR stage does.
    baselines: tuple[str, ...]
    baseline_max_steps: int | None = None   # a cap on top of the seconds: for tests
    sr_sample_steps: int = 20          # SR teacher calls per chain (tocsr.core.sr.train.SRConfig.sample_steps)
    sr_sample_chains: int = 16         # SR teacher chains averaged per image (SRConfig.sample_chains)
    sr_pair_cache: int = 2048          # SRConfig.pair_cache
    sr_teacher_cache: int = 32         # SRConfig.teacher_cache
    # SRConfig.w_teacher where it differs from SRConfig's (0: the student never learns from the SR teachers, which
    # are then trained for the report's multi-step row only, if at all (sr_teacher_steps 0), and leave its budget)
    sr_w_teacher: float | None = None
    # Other SRConfig fields of this preset's students where they differ from SRConfig's (tocsr.core.sr.config).
    sr_settings: dict[str, Any] | None = None
    test_max_px: int = 384             # test photographs are scored on their centre, at most this many px a side
    calibration: int = 16
    holdout: int = 30
    # Timing keys that replace the profile's: fewer repeats for the presets tests run, fewer attempts for the
    # quick preset's minutes. The job measures with the modified profile, written to <out>/profiles/, so what
    # was measured is on record.
    timing_override: dict[str, Any] | None = None
    # Candidates the surrogates stage scores whole to report how well the per-block errors rank them
    # (DistillConfig.spearman_candidates); a report, not an input to the search.
    surrogate_check_candidates: int = 100
    proxy: str = DEFAULT_PROXY          # the fidelity proxy each search minimises
    # Fine-tune steps for each chosen backbone as a diffusion model before the SR stage (0: no fine-tune stage;
    # the quick preset has no minutes left for it).
    finetune_steps: int = 0
    # Held-out whole one-step SR pipelines that judge the pipeline cost model (bench.pipeline) per device.
    pipelines: int = 10
    # Whole pipelines per pair of parts that measure what the call costs beyond its parts (bench.pipeline.PartsOverhead).
    overhead_pipelines: int = 3
    # Training steps of each cheaper pipeline part (tocsr.core.sr.parts; the search may deploy them).
    parts_steps: int = 600
    # The LR encoder's steps where they differ (PartsConfig.encoder_steps; None: parts_steps). Its steps are the
    # cheap ones, and with the decoder's few it stood in poorly for the KL encoder: the model that shipped it fell
    # below bicubic (docs/status.md, twenty-seventh session).
    parts_encoder_steps: int | None = None
    sr_patch_px: int = 128             # HR crop side of the SR stage and the parts (the output size trained at)
    needs_cuda: bool = False           # refused up front on a machine without a CUDA device
    # Time a few steps of each training stage at the run's shapes and print the estimate before the first stage
    # (tocsr.app.estimate); for presets whose run is long enough that a user should see its cost first.
    estimate_first: bool = False
    teacher_max_steps: int | None = None   # a cap on the teacher's diffusion steps (set by `capped`)
    # The student steps of a whole run, shared evenly by its devices where sr_student_steps each would exceed them
    # (None: no cap). Each device's student is its own SR stage, and its trained baselines get the longest
    # stage's seconds: without a cap every extra device costs a whole student and lengthens every baseline.
    # The cap keeps a run of a few profiles within minutes of a one-profile run, at fewer steps per student
    # (what that costs in quality: tocsr.app.sr_curve's learning curve). Students of one run always train the
    # same number of steps, so the baselines' budget is fair to each of them.
    sr_run_student_steps: int | None = None
    # One student per degradation behind a DegradationRouter (SRConfig.routes), each trained on its degradation's
    # pairs for the device's student steps divided among them (the same steps as one blind student), the router for
    # sr_router_steps; blind to users and to the comparison like one student. Where sr_settings train the deployed
    # parts, each student trains its own (SRConfig.own_parts); the runs below had one frozen pair. Off by default: at equal steps the
    # told students beat the blind one on Real-ESRGAN validation photographs, but a router deciding by the most
    # probable degradation sent a clean, strongly textured one to the Real-ESRGAN student, below bicubic on it,
    # which a default must never be (run39-routed). Deciding by expected loss under the students' measured misroute
    # costs keeps every clean photograph safe, but those costs are so lopsided that it answers Real-ESRGAN only on
    # near-certainty, which whole Real-ESRGAN photographs rarely give it: routed then ties blind on clean inputs and
    # loses a little on Real-ESRGAN ones (run41-routed; both under reports/evidence/sr-ablation/, docs/status.md).
    # The smoke preset turns it on so that the tests run the routed path end to end.
    sr_routed: bool = False
    sr_router_steps: int = 300
    # The job's minutes (tocsr.core.timebudget): after the teacher stage, the training stages after it train the
    # fraction of their steps that fits this many seconds on this hour's machine, never below step_floor of them
    # (None: the steps as listed). A run of several profiles gets time_budget_extra_profile_s more per profile.
    time_budget_s: float | None = None
    time_budget_extra_profile_s: float = 0.0
    step_floor: float = 0.5

    def __post_init__(self) -> None:
        if self.sr_run_student_steps is not None and self.sr_run_student_steps < 1:
            raise ConfigError(f"RunPreset {self.name!r}: sr_run_student_steps = {self.sr_run_student_steps}; give "
                              "a positive number of steps, or None for no run-wide cap")
        if self.time_budget_s is not None:
            check_budget(self.time_budget_s, self.step_floor)

    def time_budget_for(self, n_devices: int) -> float | None:
        """The seconds a run of `n_devices` profiles has (None: no budget, the steps as listed)."""
        if self.time_budget_s is None:
            return None
        return self.time_budget_s + self.time_budget_extra_profile_s * max(0, n_devices - 1)

    def scaled(self, training: float = 1.0, students: float = 1.0) -> RunPreset:
        """This preset with the surrogates', parts' and fine-tune's steps times `training` and the students' (and
        their router's) times `students`, each at least one step (a stage that is off stays off); the measurement
        settings stay, and so do the SR teachers' steps, which belong to the shared SR part trained before the
        students' scale is known. How a time budget is met (tocsr.core.timebudget.StepPlan)."""
        for what, f in (("training", training), ("students", students)):
            if not 0 < f <= 1:
                raise ConfigError(f"RunPreset.scaled({what}={f!r}): give a fraction of the preset's steps in (0, 1]")

        def cut(n: int | None, f: float) -> int | None:
            return n if n is None or n == 0 else max(1, round(n * f))

        return dataclasses.replace(self, **{k: cut(getattr(self, k), training) for k in (
            "distill_steps", "parts_steps", "parts_encoder_steps", "finetune_steps")}, **{k: cut(getattr(self, k), students) for k in (
            "sr_student_steps", "sr_run_student_steps", "sr_router_steps")})

    def run_shape(self, profiles: list[DeviceProfile]) -> RunShape:
        """What a run of these profiles trains and measures, as the time budget predicts it."""
        n = len(profiles)
        per_device = self.student_steps_per_device(n)
        measured = sum(p.is_measured for p in profiles)
        return RunShape(devices_measured=measured, devices_predicted=n - measured, baselines=len(self.baselines),
                        student_share_total=per_device * n / self.sr_student_steps,
                        student_share_longest=per_device / self.sr_student_steps)

    def student_steps_per_device(self, n_devices: int) -> int:
        """Each device's student steps in a run of `n_devices` profiles: sr_student_steps, cut so that the run's
        students together train at most sr_run_student_steps (at least one step each)."""
        if n_devices < 1:
            raise ConfigError(f"a run of {n_devices} devices: give at least one profile")
        if self.sr_run_student_steps is None:
            return self.sr_student_steps
        return max(1, min(self.sr_student_steps, self.sr_run_student_steps // n_devices))

    def capped(self, max_steps: int | None) -> RunPreset:
        """This preset with every training stage cut to at most `max_steps` steps (the baselines too; a stage
        that is off stays off): a check that every stage runs at the preset's shapes, not a run whose models
        anyone should use."""
        if max_steps is None:
            return self
        if max_steps < 1:
            raise ConfigError(f"--max-steps {max_steps}: give a positive number of steps per training stage")
        changes: dict[str, Any] = {f: min(getattr(self, f), max_steps) for f in (
            "distill_steps", "sr_teacher_steps", "sr_student_steps", "finetune_steps", "parts_steps",
            "sr_router_steps")}
        if self.parts_encoder_steps is not None:
            changes["parts_encoder_steps"] = min(self.parts_encoder_steps, max_steps)
        changes["baseline_max_steps"] = min(self.baseline_max_steps or max_steps, max_steps)
        changes["teacher_max_steps"] = max_steps
        changes["time_budget_s"] = None         # a check of shapes, not a timed run
        return dataclasses.replace(self, **changes)

    def sr_config(self, n_devices: int = 1):
        """The SR stage's settings at this preset for a run of `n_devices` profiles (tocsr.core.sr.config.SRConfig):
        what the job trains and what the estimate times."""
        from tocsr.core.sr.config import SRConfig

        extra: dict[str, Any] = {} if self.sr_w_teacher is None else {"w_teacher": self.sr_w_teacher}
        extra |= dict(self.sr_settings or {})
        steps = self.student_steps_per_device(n_devices)
        if self.sr_routed:        # the device's steps divided among its students: the same steps as one blind student
            # where the settings train the deployed parts, each student trains its own (SRConfig.own_parts)
            extra |= {"student_per_degradation": True, "router_steps": self.sr_router_steps}
            steps = max(1, steps // len(SRConfig().kinds))
        return SRConfig(patch_px=self.sr_patch_px, teacher_steps=self.sr_teacher_steps,
                        student_steps=steps, sample_steps=self.sr_sample_steps,
                        sample_chains=self.sr_sample_chains, pair_cache=self.sr_pair_cache,
                        teacher_cache=self.sr_teacher_cache, **extra)

    def teacher(self):
        """The teacher preset this run trains, its diffusion steps capped like the rest, and its latent cache cut
        to what those steps read (the sd21 preset's would take hours to encode)."""
        from tocsr.core.teacher.presets import get_teacher_preset

        tp = get_teacher_preset(self.teacher_preset)
        cap, d = self.teacher_max_steps, tp.diffusion
        if cap is None or d.steps <= cap:
            return tp
        crops = min(d.latent_crops, max(64, cap * d.batch))
        return dataclasses.replace(tp, diffusion=dataclasses.replace(d, steps=cap, latent_crops=crops))


RUN_PRESETS = {
    # Sized for 30 minutes on 2 cores. Every SR step is paid twice: the trained baseline gets the SR stage's
    # seconds, so a second baseline would cost another SR stage (the full preset trains five). A pipeline
    # budget lets the search pick a backbone several times the teacher's smallest, whose student steps cost
    # more than at backbone scope: the SR step counts leave room for that.
    # The step counts were cut once more (teacher, surrogates, SR teachers, student) when a slow day of the
    # shared 2-core machine put the job over 30 minutes; docs/status.md has the stage seconds and the quality
    # figures before and after, and tocsr.app.sr_curve what more student steps would buy.
    # It trains no multi-step SR teacher: at the steps it could afford them they were no better than bicubic on
    # validation crops, and at equal seconds the student without their term, given their seconds as steps, scored
    # higher on validation photographs (docs/status.md, twenty-ninth session); trained for the report's multi-step
    # row alone they cost minutes of a job over its 30, for a row that said nothing. The full and gpu presets train
    # them, and their students learn from them.
    # Its student trains the encoder and decoder it deploys with it (TRAINED_PARTS; docs/status.md, forty-eighth
    # session): a step costs more than a frozen one's, so it trains fewer of them.
    # A run of several profiles shares 600 student steps (one device's 400 and half as many again): two devices
    # train 300 each, three 200 (sr_run_student_steps). Uncapped, each extra device cost nearly a whole SR stage and
    # lengthened the baselines, and the three-profile job ran far past its 35 minutes (docs/status.md, thirty-seventh
    # and thirty-eighth sessions, with what the split costs in quality).
    # Its steps are what a normal hour affords; on a slower one the training stages after the teacher train fewer
    # (time_budget_s: 30 minutes less the install and a margin; the three-profile job has 35), down to half. The
    # margin covers the stages after the students' plan, which are not scaled: on a slow hour a job that spent
    # its whole budget came within a minute of the 30 (docs/status.md, fifty-sixth session).
    # It times with two attempts per measurement (timing.max_retries 1), not the profile's three. On the 2-core
    # machine every measurement makes all of its attempts (a call's spread never falls under max_cv), so the
    # costs stage, the largest stage the plan cannot scale, took markedly less of the machine's time with two,
    # and its table and the deployed pipelines still met issue 24's bar (reports/evidence/costs-attempts/).
    "quick": RunPreset("quick", "quick", distill_steps=400, search_method="bo", search_evaluations=40,
                       sr_teacher_steps=0, sr_student_steps=400, baselines=("srvgg",), sr_pair_cache=1024,
                       sr_w_teacher=0.0, holdout=20, pipelines=6, parts_steps=40, parts_encoder_steps=400,
                       sr_run_student_steps=600, sr_settings=dict(TRAINED_PARTS), time_budget_s=27.5 * 60,
                       time_budget_extra_profile_s=150, timing_override={"max_retries": 1}),
    # For tests: every stage runs for real, at a handful of steps each. The cost table is judged by the same
    # bar as everywhere (90% of held-out candidates within 10%): with only three held out, one noisy timing on a
    # busy machine failed a fit, and three failed fits stopped the job; ten keep the bar and tolerate one.
    "smoke": RunPreset("smoke", "smoke", distill_steps=10, search_method="bo", search_evaluations=10,
                       sr_teacher_steps=4, sr_student_steps=4, baselines=("espcn", "rrdb-s"), baseline_max_steps=4,
                       finetune_steps=4, sr_run_student_steps=6, sr_routed=True, sr_router_steps=20,
                       sr_settings=dict(TRAINED_PARTS),      # as quick: the tests run each student with its own parts
                       sr_sample_steps=4, sr_sample_chains=2, sr_pair_cache=32, sr_teacher_cache=4, test_max_px=128,
                       calibration=6, holdout=10, pipelines=2, overhead_pipelines=1, parts_steps=2,
                       surrogate_check_candidates=16,
                       timing_override={"repeats": 8, "paired_rounds": 2, "warmup_max_iters": 10,
                                        "max_retries": 1},
                       # a budget it always fits: the plan is made, recorded and reused on a rerun; the steps stay
                       time_budget_s=3600),
    # Its student trains the parts it deploys (TRAINED_PARTS) as quick's does: the old objective's curve stopped
    # rising early, and the README job's test figure rose with the change (docs/status.md, forty-eighth session).
    # More student steps did not help on test photographs (fifty-third session), so the step count stays.
    "full": RunPreset("full", "tiny", distill_steps=2000, search_method="bo", search_evaluations=100,
                      sr_teacher_steps=1500, sr_student_steps=800, finetune_steps=1000, sr_settings=dict(TRAINED_PARTS),
                      baselines=("espcn", "srvgg", "span", "rrdb-s", "swinir-light"), test_max_px=512, holdout=50,
                      pipelines=30),
    # Paper scale on one GPU: an imported 16-channel VAE (--vae) and an SD-2.1-shaped UNet fine-tuned on its
    # latents (bf16, gradient checkpointing, EMA), the 38-slot space's surrogates, cost tables in each
    # profile's execution mode, search per profile, SR at 512 px output. It prints its estimated stage times
    # before the first stage; `--max-steps N` cuts every stage short (the GPU check, tocsr.app.gpu_check).
    "gpu": RunPreset("gpu", "sd21", distill_steps=20_000, search_method="bo", search_evaluations=200,
                     sr_teacher_steps=20_000, sr_student_steps=10_000, finetune_steps=5_000,
                     baselines=("espcn", "srvgg", "span", "rrdb-s", "swinir-light"), sr_patch_px=512,
                     sr_pair_cache=8192, sr_teacher_cache=256, test_max_px=1024, holdout=50, pipelines=30,
                     parts_steps=5_000, needs_cuda=True, estimate_first=True),
    # The gpu preset's stages and shapes at reduced width (sd21-tiny teacher, 64 px SR crops): what tests run
    # on CPU to check its wiring end to end.
    "gpu-tiny": RunPreset("gpu-tiny", "sd21-tiny", distill_steps=4, search_method="bo", search_evaluations=10,
                          sr_teacher_steps=2, sr_student_steps=2, finetune_steps=2, baselines=("espcn",),
                          baseline_max_steps=2, sr_patch_px=64, sr_sample_steps=2, sr_sample_chains=2,
                          sr_pair_cache=16, sr_teacher_cache=4, test_max_px=128, calibration=3, holdout=3,
                          pipelines=2, overhead_pipelines=1, parts_steps=2, estimate_first=True,
                          surrogate_check_candidates=16,
                          timing_override={"repeats": 8, "paired_rounds": 2, "warmup_max_iters": 10,
                                           "max_retries": 1}),
}


@dataclass
class StageLog:
    out: Path
    console: Console
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def marker(self, name: str) -> dict[str, Any]:
        """The finished stage's marker (its inputs' hash, wall seconds, whether it resumed); {} if none."""
        try:
            doc = json.loads((self.out / "stages" / f"{name}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def stage_s(self, name: str) -> float:
        """A stage's seconds: this process's, or for a stage skipped here the ones its marker recorded."""
        return self.seconds[name] if name in self.seconds else float(self.marker(name).get("wall_s", 0.0))

    def spent_s(self) -> float:
        """Seconds the stages of this run have taken so far, in this process or the earlier ones it resumed."""
        return sum(self.stage_s(n) for n in self.ran + self.skipped)

    def run(self, name: str, inputs: dict[str, Any], fn: Callable[[bool], Any], outputs: Path) -> str:
        """Run `fn(resume)` unless its marker records the same inputs; returns the stage's hash."""
        sha = content_sha256(inputs)
        marker = self.out / "stages" / f"{name}.json"
        if _marker_sha(marker) == sha and outputs.exists():
            self.skipped.append(name)
            self.console.print(f"[green]skip[/green] {name}: done earlier with the same inputs")
            return sha
        # A stage killed part-way resumes from its checkpoints, but only when it was started with the
        # same inputs: the `.started` marker records them. (Checking for the stage's final output, as
        # this once did, never resumed anything: the output is written last.)
        started = self.out / "stages" / f"{name}.started.json"
        resume = _marker_sha(started) == sha
        self.console.print(f"[bold]stage[/bold] {name}" + (" (resuming from its checkpoints)" if resume else ""))
        atomic_write_text(started, json.dumps({"inputs_sha256": sha, "started_utc": time.time()}, indent=2))
        t0 = time.perf_counter()
        fn(resume)
        self.seconds[name] = time.perf_counter() - t0
        atomic_write_text(marker, json.dumps({"inputs_sha256": sha, "wall_s": self.seconds[name],
                                              "finished_utc": time.time(), "resumed": resume}, indent=2))
        started.unlink(missing_ok=True)
        self.ran.append(name)
        return sha


def _marker_sha(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("inputs_sha256")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None     # missing or broken: not known to have started with these inputs


def data_fingerprint(data: str | Path | None) -> dict[str, Any]:
    if data is None:
        from tocsr.core.data import list_photos

        # The names too: which packages are installed decides which photographs the default holds.
        return {"embedded": package_versions(("scikit-image", "scikit-learn", "matplotlib", "pyiqa")),
                "photographs": list_photos(None)}
    files = sorted(p for p in Path(data).rglob("*") if p.is_file())
    return {"folder": str(Path(data).resolve()),
            "files": content_sha256([(str(p.relative_to(data)), p.stat().st_size, int(p.stat().st_mtime)) for p in files])}


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"file": str(p.resolve()), "bytes": p.stat().st_size, "mtime": int(p.stat().st_mtime)}


def check_teacher_weights(preset, vae: str | Path | None, unet: str | Path | None) -> None:
    """Refuse bad --vae / --unet folders, or a teacher preset that needs --vae, before any stage runs."""
    from tocsr.core.teacher.importing import check_before_writing, require_autoencoder_source

    require_autoencoder_source(preset, vae)
    check_before_writing(preset, vae, unet, "--unet")


def check_accelerator(rp: RunPreset) -> None:
    """Refuse, before anything is written, a preset sized for a GPU on a machine without one."""
    import torch

    if rp.needs_cuda and not torch.cuda.is_available():
        raise ConfigError(f"--preset {rp.name} needs a CUDA device and torch sees none (torch.cuda.is_available() is "
                          "False); --preset gpu-tiny runs the same stages at reduced width on this machine")


def check_external(external: tuple[str, ...], scale: int) -> None:
    """Refuse a bad --baseline NAME=CHECKPOINT before any training, not after it."""
    from reports.protocol import baseline_method

    for spec in external:
        if "=" not in spec or Path(spec.partition("=")[2]).is_dir():
            raise ConfigError(f"--baseline {spec!r}: write NAME=CHECKPOINT, a .pth or .safetensors file spandrel "
                              "recognises (the job trains its own baselines itself)")
        baseline_method(spec, scale)


def check_split(data: str | Path | None, split) -> None:
    """Refuse, before any training, data without photographs for one of the parts: the test table is made
    at the end of the job, and a folder with train/ and val/ but no test/ would only fail there."""
    from tocsr.core.data import PARTS, list_photos

    assigned = split.assign(list_photos(data))
    missing = [p for p in PARTS if p not in assigned.values()]
    if missing:
        raise ConfigError(f"--data {data}: no {missing[0]} photographs ({len(assigned)} found); add a {missing[0]}/ "
                          "subfolder beside the others, or remove the train/, val/, test/ subfolders to have them split "
                          "by name")


def measurement_key(profile: DeviceProfile) -> str:
    """Profiles measured the same way (device, precision, batch, size, mode, timing) share a cost table. The Ray
    resource is not part of it (it says where, not how); the costs stage records the node it measured on."""
    d = profile.to_dict()
    d["device"] = {k: v for k, v in d["device"].items() if k != "ray_resource"}
    return content_sha256({k: d[k] for k in ("device", "precision", "batch", "resolution", "execution_mode", "timing")})[:12]


def run_main_job(profiles: list[str], preset: str | RunPreset, out_dir: str | Path, data: str | Path | None = None,
                 report_dir: str | Path | None = None, external: tuple[str, ...] = (),
                 vae: str | Path | None = None, unet: str | Path | None = None,
                 ray_address: str | None = None, max_steps: int | None = None,
                 estimate_only: bool = False, fixed_steps: bool = False) -> dict[str, Any]:
    """The main job on a preset of RUN_PRESETS (or a RunPreset: the GPU check's). `external`: pretrained SR
    checkpoints ("NAME=FILE") scored and costed beside the rest. `vae` / `unet`: weight folders the teacher
    starts from (tocsr.core.teacher.importing), checked before any stage runs. `ray_address`: a Ray cluster
    whose nodes advertise the profiles' `device.ray_resource`; those profiles' costs, checks and evaluation are
    measured there (bench.remote). `max_steps`: every training stage cut to at most that many steps
    (RunPreset.capped). `estimate_only`: print and write the estimated stage times (tocsr.app.estimate), train
    nothing. `fixed_steps`: train the preset's steps as listed, whatever its time budget (runs compared across
    days); otherwise a preset with a time budget scales its training steps to fit it (tocsr.core.timebudget)."""
    from bench.costtable import COST_TABLE_SCHEMA_VERSION
    from bench.pipeline import PIPELINE_PARTS_SCHEMA_VERSION, load_cost_model, pipeline_parts_path
    from tocsr.app.stages import (
        stage_costs,
        stage_eval,
        stage_finetune,
        stage_parts,
        stage_search,
        stage_sr,
        stage_sr_shared,
    )
    from tocsr.core.baselines import BaselineTraining
    from tocsr.core.distill.config import FinetuneConfig
    from tocsr.core.distill.finetune import FinetuneRecord
    from tocsr.core.distill.record import DistillRecord
    from tocsr.core.distill.train import DistillConfig, distill
    from tocsr.core.sr.parts import PartsConfig, PartsRecord
    from tocsr.core.sr.shared import SharedSRRecord, shared_config
    from tocsr.core.sr.train import SRConfig
    from tocsr.core.teacher.record import TeacherRecord
    from tocsr.core.teacher.train import load_teacher, teacher_latents, train_teacher

    if not isinstance(preset, RunPreset) and preset not in RUN_PRESETS:
        raise ConfigError(f"--preset {preset!r} does not exist; available: {', '.join(RUN_PRESETS)}")
    rp = (preset if isinstance(preset, RunPreset) else RUN_PRESETS[preset]).capped(max_steps)
    tp = rp.teacher()
    check_accelerator(rp)
    check_external(tuple(external), SRConfig().scale)
    check_split(data, tp.split)
    if not estimate_only or vae or unet:     # the estimate times random weights: it runs before weights exist
        check_teacher_weights(tp, vae, unet)
    out = Path(out_dir)
    loaded = [load_profile(p) for p in profiles]
    if len({p.name for p in loaded}) != len(loaded):
        raise ConfigError("the same profile is named twice")
    profiles, loaded = _prepare_profiles(profiles, loaded, rp, out, ray_address)
    # Off a terminal rich assumes 80 columns; the summary table needs more to stay readable in logs.
    import sys

    console = Console() if sys.stdout.isatty() else Console(width=160)
    if rp.estimate_first or estimate_only:
        from tocsr.app.estimate import estimate_run
        from tocsr.core.provenance import environment

        estimate = estimate_run(rp, len(loaded))
        estimate.save(out, environment())
        for line in estimate.describe():
            console.print(line, markup=False, highlight=False)
        if estimate_only:
            return {"estimate": estimate.to_dict(), "estimate_file": str(out / RunEstimate.FILE_NAME)}
    log = StageLog(out, console)
    t_start = time.perf_counter()
    n_stages = 5 + (3 + (rp.finetune_steps > 0)) * len(loaded) + 1
    with progress("main job stages", n_stages) as bar:
        teacher_dir = out / "teacher"
        weights = {name: data_fingerprint(folder) for name, folder in (("vae", vae), ("unet", unet)) if folder}
        teacher_sha = log.run("teacher", {"preset": rp.teacher_preset, "data": data_fingerprint(data),
                                          "config": dataclasses.asdict(tp),
                                          "record": TeacherRecord.SCHEMA_VERSION, **weights},
                              lambda resume: train_teacher(tp, teacher_dir, data, resume, init_unet=unet, vae=vae,
                                                           unet_option="--unet"), teacher_dir)
        bar.update(1)
        plan = step_plan(out, rp, loaded, teacher_sha, log, fixed_steps)
        if plan is not None:
            console.print(plan.describe(), markup=False, highlight=False)
            rp = rp.scaled(training=plan.training_scale)
        surrogates_dir = out / "surrogates"
        dcfg = DistillConfig(steps=rp.distill_steps, spearman_candidates=rp.surrogate_check_candidates)

        def run_distill(resume: bool) -> None:
            t = load_teacher(teacher_dir)
            lat, val = teacher_latents(t, data)
            distill(t, lat, val, surrogates_dir, dcfg, resume)

        surrogates_sha = log.run("surrogates", {"teacher": teacher_sha, "config": dataclasses.asdict(dcfg),
                                                "record": DistillRecord.SCHEMA_VERSION},
                                 run_distill, surrogates_dir / "distill.json")
        bar.update(1)
        parts_dir = out / "parts"
        pcfg = PartsConfig(steps=rp.parts_steps, encoder_steps=rp.parts_encoder_steps, patch_px=rp.sr_patch_px)
        parts_sha = log.run("parts", {"teacher": teacher_sha, "data": data_fingerprint(data),
                                      "config": dataclasses.asdict(pcfg), "record": PartsRecord.SCHEMA_VERSION},
                            lambda resume: stage_parts(teacher_dir, parts_dir, pcfg, data),
                            parts_dir / PartsRecord.FILE_NAME)
        bar.update(1)
        chosen: dict[str, SearchResult] = {}
        scfg = rp.sr_config(len(loaded))
        shared_dir, shared_sha = out / "sr-shared", None
        sr_dirs: dict[str, Path] = {}
        sr_shas: dict[str, str] = {}
        for profile, ref in zip(loaded, profiles, strict=True):
            mkey = measurement_key(profile)
            cost_path = out / "costs" / f"{mkey}.json"
            remote = ray_address if profile.device.ray_resource else None
            where = {"ray_resource": profile.device.ray_resource} if remote else {}
            costs_sha = log.run(f"costs-{mkey}", {"teacher": teacher_sha, "measurement": mkey,
                                                  "n": [rp.calibration, rp.holdout, rp.pipelines,
                                                        rp.overhead_pipelines],
                                                  "record": [COST_TABLE_SCHEMA_VERSION, PIPELINE_PARTS_SCHEMA_VERSION],
                                                  **where},
                                # A table that misses its bar on a noisy stretch is kept, not fatal: the search
                                # checks it on fresh candidates before it steers (re-measuring it if they miss)
                                # and judges its choice on the choice's own measurement; the summary marks it.
                                lambda resume, ref=ref, cost_path=cost_path, remote=remote: stage_costs(
                                    teacher_dir, ref, cost_path, rp.calibration, rp.holdout, n_pipelines=rp.pipelines,
                                    ray_address=remote, keep_invalid=True, n_overhead=rp.overhead_pipelines),
                                pipeline_parts_path(cost_path))
            bar.update(1)
            search_dir = out / f"search-{profile.name}"
            log.run(f"search-{profile.name}", {"surrogates": surrogates_sha, "costs": costs_sha,
                                                            "profile": profile.sha256, "method": rp.search_method,
                                                            "evaluations": rp.search_evaluations,
                                                            "proxy": rp.proxy, "parts": parts_sha,
                                                            "record": SearchResult.SCHEMA_VERSION, **where},
                                 lambda resume, ref=ref, cp=cost_path, sd=search_dir, p=profile, remote=remote: stage_search(
                                     teacher_dir, surrogates_dir, ref, load_cost_model(cp, p.budgets.scope), sd,
                                     rp.search_method, rp.search_evaluations, proxy=rp.proxy, ray_address=remote,
                                     parts_dir=parts_dir),
                                 search_dir / SearchResult.FILE_NAME)
            bar.update(1)
            result = SearchResult.load(search_dir)
            chosen[profile.name] = result
            arch = result.chosen.key
            ft_dir, ft_sha = None, None
            if rp.finetune_steps > 0:
                ft_dir = out / "finetune" / arch
                fcfg = FinetuneConfig(steps=rp.finetune_steps,
                                      gradient_checkpointing=tp.diffusion.gradient_checkpointing)
                ft_sha = log.run(f"finetune-{arch}", {"teacher": teacher_sha, "surrogates": surrogates_sha,
                                                      "arch": arch, "config": dataclasses.asdict(fcfg),
                                                      "record": FinetuneRecord.SCHEMA_VERSION},
                                 lambda resume, sd=search_dir, fd=ft_dir, fcfg=fcfg: stage_finetune(
                                     teacher_dir, surrogates_dir, sd, fd, fcfg, resume),
                                 ft_dir / FinetuneRecord.FILE_NAME)
            if shared_sha is None:
                # Trained once, right before the first device's SR stage (a search that stops the run stops
                # it before any SR training); every device's student starts from it.
                shared_sha = log.run("sr-shared", {"teacher": teacher_sha, "config": shared_config(scfg),
                                                   "record": SharedSRRecord.SCHEMA_VERSION},
                                     lambda resume, cfg=scfg: stage_sr_shared(teacher_dir, shared_dir, cfg, data,
                                                                              resume),
                                     shared_dir / SharedSRRecord.FILE_NAME)
                bar.update(1)
            if plan is not None and plan.student_scale is None:
                # Decided once, before the run's first student, from the seconds actually spent: every student of the
                # run trains the same steps, so the baselines' budget is fair to each of them.
                plan = students_plan(out, plan, log, loaded[len(sr_dirs) + 1:])
                console.print(plan.describe(), markup=False, highlight=False)
            if plan is not None and not sr_dirs:
                scfg = rp.scaled(students=plan.student_scale).sr_config(len(loaded))
            sr_dir = out / "sr" / result.sr_folder_name
            sr_shas[profile.name] = log.run(f"sr-{result.sr_folder_name}", {"teacher": teacher_sha, "surrogates": surrogates_sha,
                                                           "arch": arch, "config": dataclasses.asdict(scfg),
                                                           "finetune": ft_sha, "shared": shared_sha,
                                                           "decoder": result.decoder, "encoder": result.encoder,
                                                           "parts": parts_sha,
                                                           "record": SRModelInfo.SCHEMA_VERSION},
                                            lambda resume, sd=search_dir, srd=sr_dir, fd=ft_dir, cfg=scfg: stage_sr(
                                                teacher_dir, surrogates_dir, sd, srd, cfg, data, resume, fd,
                                                shared_dir, parts_dir),
                                            sr_dir / SRModelInfo.FILE_NAME)
            sr_dirs[profile.name] = sr_dir
            bar.update(1)
        checkpoints = [{"spec": e, "file": file_fingerprint(e.partition("=")[2])} for e in external]
        speeds = {name: r.decision_reference_ms for name, r in chosen.items() if r.decision_reference_ms is not None}
        yardsticks = {name: y for name, r in chosen.items() if (y := ShippedYardstick.from_decision(r.decision))}
        log.run("eval", {"sr": sr_shas, "profiles": [p.sha256 for p in loaded], "baselines": rp.baselines,
                         "baseline_max_steps": rp.baseline_max_steps, "test_max_px": rp.test_max_px,
                         "external": checkpoints, "record": 4, "decision_speeds_ms": speeds,
                         "yardsticks": {name: y.to_dict() for name, y in yardsticks.items()},
                         "baseline_init": BaselineTraining.init,
                         **({"ray_address": ray_address} if ray_address else {})},
                lambda resume: stage_eval(out, profiles, teacher_dir, sr_dirs, rp.baselines, external=list(external),
                                          data=data, test_max_px=rp.test_max_px,
                                          baseline_max_steps=rp.baseline_max_steps, ray_address=ray_address,
                                          decision_speeds_ms=speeds, yardsticks=yardsticks),
                out / "eval" / "rows.json")
        bar.update(1)
    from reports.build import build_report

    report_path = build_report(out, Path(report_dir) if report_dir else out / "report")
    browser = browser_check(report_path)
    summary = summarize(out, chosen, report_path, time.perf_counter() - t_start, log,
                        {p.name: str(r) for p, r in zip(loaded, profiles, strict=True)})
    summary["browser_check"] = browser
    # the steps one device alone would have trained in this run (its time budget scales them too)
    students_rp = rp if plan is None or plan.student_scale is None else rp.scaled(students=plan.student_scale)
    summary["step_plan"] = None if plan is None else {**plan.to_dict(), "line": plan.describe()}
    summary["sr_student_steps"] = {"per_device": scfg.student_steps * scfg.students, "students": scfg.students,
                                   "devices": len(loaded),
                                   "one_device": students_rp.sr_student_steps,
                                   "run_cap": students_rp.sr_run_student_steps,
                                   "preset": rp.name}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    print_summary(console, summary)
    return summary


def step_plan(out: Path, rp: RunPreset, loaded: list[DeviceProfile], teacher_sha: str, log: StageLog,
              fixed_steps: bool = False) -> StepPlan | None:
    """The run's step plan after its teacher stage (tocsr.core.timebudget): the folder's own where it was made for
    this teacher, budget and profiles (a rerun or resume trains, and so reuses, exactly what it planned). Made for
    this teacher but another run shape (profiles added on the same --out), it keeps the training scale, whose
    surrogates and parts the folder already holds, and decides the students' again. None where the run trains the
    preset's steps as listed (`fixed_steps`, or a preset without a time budget)."""
    from tocsr.core.artifacts import ArtifactError
    from tocsr.core.provenance import environment
    from tocsr.core.timebudget import StageShares

    if rp.time_budget_s is None or fixed_steps:
        # a plan an earlier run left here no longer describes the models this run trains
        (out / StepPlan.FILE_NAME).unlink(missing_ok=True)
        return None
    shape, budget = rp.run_shape(loaded), rp.time_budget_for(len(loaded))
    teacher_key = content_sha256({"preset": rp.name, "teacher": teacher_sha, "floor": rp.step_floor,
                                  "shares": StageShares().to_dict()})
    try:
        earlier = StepPlan.load(out)
    except ArtifactError:
        earlier = None          # none yet, or from another version of the suite: planned afresh
    if earlier is not None and earlier.inputs_sha256 == teacher_key and (earlier.shape, earlier.budget_s) == (shape, budget):
        return earlier
    kept = earlier.training_scale if earlier is not None and earlier.inputs_sha256 == teacher_key else None
    plan = plan_after_teacher(rp.name, teacher_key, budget, rp.step_floor, log.stage_s("teacher"),
                              bool(log.marker("teacher").get("resumed")), shape, training_scale=kept)
    plan.save(out, environment())
    return plan


def students_plan(out: Path, plan: StepPlan, log: StageLog, later: list[DeviceProfile]) -> StepPlan:
    """The students' scale, from the seconds the run has spent and the profiles (`later`) whose cost tables and
    search come after its first student."""
    from tocsr.core.provenance import environment

    measured = sum(p.is_measured for p in later)
    plan = plan_students(plan, log.spent_s(), measured, len(later) - measured, log.stage_s("parts"),
                         log.stage_s("sr-shared"))
    plan.save(out, environment())
    return plan


def _prepare_profiles(refs: list[str], loaded: list[DeviceProfile], rp: RunPreset, out: Path,
                      ray_address: str | None = None) -> tuple[list[str], list[DeviceProfile]]:
    """The profiles as the stages use them. A CUDA profile whose card is not attached, and that is not measured
    on a Ray node (`ray_address` and `device.ray_resource`), becomes its predicted stand-in
    (bench.profile.predicted_stand_in: one line says so, every figure is labelled predicted; without
    a 'predicted:' section it is refused here, before any training); the preset's timing keys are applied.
    A profile that changed is written to <out>/profiles/<name>.yaml and used from there, on record."""
    import torch
    import yaml

    from bench.profile import predicted_stand_in, replace

    out_refs, out_loaded = [], []
    for ref, profile in zip(refs, loaded, strict=True):
        p, why = profile, []
        on_ray = bool(ray_address and p.device.ray_resource)
        if p.device.kind == "cuda" and not torch.cuda.is_available() and not on_ray:
            p = predicted_stand_in(p)
            why.append("its CUDA device is not attached here, so it is predicted from its 'predicted:' constants")
            logging.getLogger(__name__).warning("%s: no CUDA device on this machine; its costs are PREDICTED by the "
                                                "roofline of the profile's 'predicted:' constants", p.name)
        if rp.timing_override:
            p = replace(p, timing={**p.to_dict()["timing"], **rp.timing_override})
            why.append(f"with the timing of the {rp.name!r} preset (tocsr.app.mainjob.RUN_PRESETS)")
        if p is profile:
            out_refs.append(str(ref))
        else:
            path = out / "profiles" / f"{p.name}.yaml"
            atomic_write_text(path, f"# {p.name}: {'; '.join(why)}\n" + yaml.safe_dump(p.to_dict(), sort_keys=False))
            out_refs.append(str(path))
        out_loaded.append(p)
    return out_refs, out_loaded


def browser_check(report_path: Path) -> dict[str, Any]:
    """Open the report in headless Chromium when it is installed; keep a screenshot beside it."""
    from reports.browser import check_page, find_chromium

    if find_chromium() is None:
        return {"checked": False, "why": "chromium is not installed"}
    try:
        r = check_page(report_path, report_path.parent / "screenshot.png")
    except (OSError, __import__("subprocess").SubprocessError) as err:
        return {"checked": False, "why": f"{type(err).__name__}: {err}"}
    return {"checked": True, "images_ok": r.images_ok, "images_failed": r.images_failed,
            "console_errors": r.console_errors, "screenshot": str(r.screenshot)}


def confirm_command(out: Path, result: SearchResult, profile_ref: str) -> str | None:
    """The command that writes the bundle confirming a predicted choice on its device (bench.confirm); None
    where the choice was measured here."""
    if result.chosen.how != "predicted":
        return None
    return (f"tocsr costs export --confirm {out / f'search-{result.profile_name}'} -p {profile_ref} "
            f"--teacher {out / 'teacher'} -o confirm-{result.profile_name}/")


def summarize(out: Path, chosen: dict[str, SearchResult], report_path: Path, wall_s: float,
              log: StageLog, profile_refs: dict[str, str] | None = None) -> dict[str, Any]:
    from reports.build import read_rows
    from reports.rows import tocsr_row
    from reports.verdicts import test_headline

    rows, scored_on = read_rows(out / "eval")
    devices = {}
    for name, res in chosen.items():
        c, v = res.chosen, res.cost_table_validation
        # the report's row of the model as trained and deployed, timed in the eval stage at the search's speed
        row = tocsr_row(rows, name)
        devices[name] = {
            "architecture": c.key, "fidelity_error": c.fidelity,
            "measured_p90_ms": c.measured_latency_ms, "teacher_p90_ms": c.teacher_latency_ms, "latency_how": c.how,
            "report_row_p90_ms": row.latency_p90_ms if row is not None else None,
            "report_row_latency": row.provenance.get("latency") if row is not None else None,
            "measured_effective_cores": c.effective_cores,
            "report_row_effective_cores": row.provenance.get("effective_cores") if row is not None else None,
            # judged beside the teacher as shipped (search.selection.ShippedYardstick): the choice's share of it, as
            # the search read it, and the report row's, timed beside it again in the eval stage
            "chosen_share": c.latency_vs_teacher,
            "report_row_share": row.latency_share_of_shipped if row is not None else None,
            "report_row_share_effective_cores": (row.provenance.get("beside_teacher_as_shipped") or {}).get(
                "effective_cores") if row is not None else None,
            "latency_budget_ms": res.latency_budget_ms, "budget": res.budget_in_words,
            "latency_target_ms": res.decision.get("latency_target_ms"),
            "latency_guard": res.decision.get("latency_guard", 0.0),
            "teacher_p90_readings_ms": res.decision.get("teacher_at_readings_ms"),
            "judged_against": res.decision.get("judged_against", "reference"),
            "cost_table_within_10pct": v.get("within_10pct"), "cost_table_holdout_n": v.get("n"),
            "cost_table_passes": v.get("passes"),
            "selection_rounds": res.selection_rounds, "chosen_found_by": c.found_by,
            "params_m": c.params_m, "teacher_params_m": res.teacher_params_m, "gmacs": c.gmacs,
            "teacher_gmacs": res.teacher_gmacs, "test": test_headline(out, name, rows), "fidelity_proxy": res.proxy,
            "scope": res.scope, "pipeline": res.pipeline, "decoder": res.decoder, "encoder": res.encoder,
            "parts_reason": (res.parts_choice or {}).get("reason"), "sr_folder": res.sr_folder_name,
            "finetune": _finetune_summary(out / "finetune" / c.key), "latency_basis": c.basis,
            "confirm_command": confirm_command(out, res, (profile_refs or {}).get(name, name)),
        }
    fairness = {k: scored_on.get(k) for k in ("test_images", "test_max_px", "baseline_budget_s", "budget_unit",
                                              "baselines_trained", "told_degradation", "student_steps", "routing")}
    return {"devices": devices, "comparison": fairness, "report": str(report_path), "wall_s": wall_s,
            "stages_ran": log.ran, "stages_skipped": log.skipped, "stage_seconds": log.seconds}


def _finetune_summary(folder: Path) -> dict[str, Any] | None:
    from tocsr.core.distill.finetune import FinetuneRecord

    if not (folder / FinetuneRecord.FILE_NAME).is_file():
        return None
    r = FinetuneRecord.load(folder)
    return {"steps": r.config["steps"], "seconds": r.seconds, "before": r.before, "after": r.after,
            "lines": r.describe()}


def judged_on_share(d: dict[str, Any]) -> bool:
    """Whether a device's choice was judged on its share of the teacher as shipped (search.selection.SHIPPED_JUDGED):
    its milliseconds are then that share times the cost model's figure for the teacher as shipped, and the share is
    the measured figure."""
    return d.get("judged_against") == SHIPPED_JUDGED and d.get("chosen_share") is not None


def _row_against_search(d: dict[str, Any]) -> tuple[float, float | None, float, str, dict | None]:
    """(the report row's figure, the budget, the search's figure, how to print one, the cores the row's timing had):
    shares of the teacher as shipped where both were timed beside it, else p90 milliseconds."""
    if judged_on_share(d) and d.get("report_row_share") is not None:
        budget = d.get("latency_budget_ms")
        return (d["report_row_share"], None if budget is None else budget / d["teacher_p90_ms"], d["chosen_share"],
                "{:.3f} of the teacher as shipped", d.get("report_row_share_effective_cores"))
    return (d["report_row_p90_ms"], d.get("latency_budget_ms"), d["measured_p90_ms"], "{:.2f} ms",
            d.get("report_row_effective_cores"))


def cores_beside(d: dict[str, Any]) -> str:
    """How many cores the search's timing and the row's had (bench.cores), "" where either was not probed."""
    search, row = d.get("measured_effective_cores"), _row_against_search(d)[4]
    if not search or not row:
        return ""
    return f"; cores the timings had: the search's {cores_text(search)}, the row's {cores_text(row)}"


def row_budget_verdict(d: dict[str, Any]) -> str:
    """What a device's summary adds after the report row's latency where that row is over the budget the search met.
    The two are timings of one model minutes apart on a machine whose speed drifts: a user deciding to ship on that
    budget should see that the second one missed it, by how much the two disagree, and whether the second had
    fewer cores to itself (a busy machine, not a slower model). "" where the row fits. Judged beside the teacher as
    shipped, both are shares of it, so the cost model's figure for that pipeline cancels."""
    row, budget, searched, fmt, row_cores = _row_against_search(d)
    if budget is None or row <= budget:
        return ""
    guard = d.get("latency_guard") or 0.0
    busier = had_fewer_cores(row_cores, d.get("measured_effective_cores"))
    return (f": OVER the budget of {fmt.format(budget)} by {100 * (row / budget - 1):.1f}%, which the search's "
            f"re-measurement ({fmt.format(searched)}) met; the two timings of this model differ by "
            f"{100 * (row / searched - 1):+.1f}%"
            + (f", more than the profile's guard of {100 * guard:g}% (timing.latency_guard) left free" if guard else "")
            + ("; the row's timing had fewer cores to itself than the search's (below), which moves a pipeline's "
               "ratio to the reference it is paired with (reports/evidence/latency-agreement/)" if busier else "")
            + ", so time it again on the device before shipping it at this budget")


def row_line(name: str, d: dict[str, Any]) -> str:
    """A device's summary line on the report row of its model as trained: its second timing, judged against the
    budget as the search judged the choice (its share of the teacher as shipped, where the search judged on that),
    and its p90 beside the teacher UNet, the unit every method of the report is compared in."""
    unet = f"{d['report_row_p90_ms']:.2f} ms ({d['report_row_latency']})"
    head = f"{name}: the report's row of the model as trained, timed again in the eval stage"
    if judged_on_share(d) and d.get("report_row_share") is not None:
        return (f"{head} beside the teacher as shipped: p90 {d['report_row_share']:.3f} of it{row_budget_verdict(d)}; "
                f"beside the teacher UNet, p90 {unet}{cores_beside(d)}")
    return f"{head}: p90 {unet}{row_budget_verdict(d)}{cores_beside(d)}"


def chosen_on_share(name: str, d: dict[str, Any]) -> str:
    """A device's summary line on a choice judged on its share of the teacher as shipped: the share it was chosen
    at and read, and its milliseconds with where they come from (the cost model's figure for the teacher as
    shipped, so they carry that model's error, and the share does not)."""
    budget_share = d["latency_budget_ms"] / d["teacher_p90_ms"]
    return (f"{name}: chosen on a re-measured p90 <= {d['latency_target_ms'] / d['teacher_p90_ms']:.3f} of the "
            f"teacher as shipped, timed beside it: the budget of {budget_share:.3f} of it less the profile's guard of "
            f"{100 * d['latency_guard']:g}% (timing.latency_guard), what a second timing of one model drifts by on "
            f"this device; the choice read {d['chosen_share']:.3f}. In milliseconds, the choice "
            f"{d['measured_p90_ms']:.2f} and the budget {d['latency_budget_ms']:.2f}, at the teacher as shipped p90 "
            f"{d['teacher_p90_ms']:.2f} ms{teacher_how(d)}: they carry the cost model's error on the teacher as "
            "shipped, the shares do not")


def teacher_how(d: dict[str, Any]) -> str:
    """What follows the teacher as shipped's figure in a device's summary (search.selection.reference_text)."""
    return reference_text({"teacher_at_readings_ms": d.get("teacher_p90_readings_ms"),
                           "judged_against": d.get("judged_against")})


def print_summary(console: Console, s: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="TOC-SR main job", header_style="bold")
    for col in ("device", "architecture", "p90 ms (teacher)", "budget ms", "cost table ±10%", "params M (teacher)",
                "GMACs (teacher)", "test PSNR-Y dB, TOC-SR minus the best baseline, per degradation"):
        table.add_column(col)
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def iv(d: dict[str, float] | None, sign: str = "") -> str:
        return "-" if d is None else f"{d['mean']:{sign}.2f} [{d['low']:{sign}.2f}, {d['high']:{sign}.2f}]"

    for name, d in s["devices"].items():
        # every degradation scored, each as the paired difference its verdict reads: a column of the clean inputs
        # alone showed the degradation TOC-SR leads on and hid the one it trails on
        quality = "\n".join(f"{kind}: {iv(h.get('tocsr_minus_best_baseline'), '+')} vs {h['best_baseline']}"
                             if h.get("best_baseline") else
                             f"{kind}: {iv(h.get('tocsr_minus_bicubic'), '+')} vs bicubic"
                             for kind, h in d["test"].items()) or "-"
        within = d["cost_table_within_10pct"]
        mark = "" if d["latency_how"] == "measured" else " predicted"
        # judged beside the teacher as shipped, that pipeline's figure, and the budget a share of it, are the cost
        # model's (search.selection.SHIPPED_JUDGED)
        model = " predicted" if d.get("judged_against") == SHIPPED_JUDGED and not mark else ""
        # ... and the share of it is what was measured of the choice
        share = (f"\n{d['chosen_share']:.3f} x the teacher, measured" if model and judged_on_share(d) else "")
        budget_share = (f"\n{d['latency_budget_ms'] / d['teacher_p90_ms']:.3f} x the teacher"
                        if share and d["latency_budget_ms"] is not None else "")
        table.add_row(name, d["architecture"],
                      f"{d['measured_p90_ms']:.2f} ({d['teacher_p90_ms']:.2f}{model}){mark}{share}",
                      fmt(d["latency_budget_ms"]) + model + budget_share,
                      "-" if within is None else f"{100 * within:.0f}% of {d['cost_table_holdout_n']}"
                      + (" (misses its bar)" if d.get("cost_table_passes") is False else ""),
                      f"{d['params_m']:.3f} ({d['teacher_params_m']:.3f})",
                      f"{fmt(d['gmacs'])} ({fmt(d['teacher_gmacs'])})", quality)
    console.print(table)
    comp = s.get("comparison") or {}
    trained = ", ".join(f"{n} {m.get('steps')} steps x {m.get('batch')} in {m.get('seconds', 0):.0f} s on "
                        f"{m.get('device', 'cpu')}" for n, m in (comp.get("baselines_trained") or {}).items())
    if comp.get("baseline_budget_s") is not None:
        console.print(f"Baselines trained from scratch for the TOC-SR SR stage's {comp['baseline_budget_s']:.0f} s "
                      f"each ({trained}); scored blind on {len(comp.get('test_images') or [])} test photographs "
                      "no setting saw; [95% bootstrap interval over photographs]")
    from reports.build import misroute_said, sureness_said
    from reports.verdicts import verdict_line

    for name, kinds in (comp.get("routing") or {}).items():
        right = ", ".join(f"{d['routed_right']} of {d['photographs']} {kind}{sureness_said(d, kind)}{misroute_said(d)}"
                          for kind, d in sorted(kinds.items()))
        console.print(f"{name}: blind, its router read the degradation of each test photograph; routed to the right "
                      f"student: {right}")
    steps = s.get("sr_student_steps") or {}
    if steps and steps["per_device"] < steps["one_device"]:
        split = f" ({steps['students']} students, one per degradation)" if steps.get("students", 1) > 1 else ""
        console.print(f"Each device's one-step model trained {steps['per_device']} steps{split}: the {steps['preset']} "
                      f"preset shares {steps['run_cap']} student steps among a run's {steps['devices']} devices (one "
                      f"device alone trains {steps['one_device']}; fewer steps, less quality: `python -m "
                      "tocsr.app.sr_curve` measures how much). A run of one profile trains its full student; on the "
                      "same --out it reuses every stage before that profile's SR stage.")
    plan = s.get("step_plan")
    if plan:
        console.print(f"{plan['line']}; it took {s['wall_s'] / 60:.1f} min in this process", markup=False,
                      highlight=False)
    for name, d in s["devices"].items():
        p = d.get("pipeline")
        if p:
            v = p["validation"]
            within = "not validated" if not v.get("n") else \
                f"{100 * v['within_10pct']:.0f}% of {v['n']} held-out pipelines within ±10%"
            console.print(f"{name}: latencies are of the whole one-step SR call ({d['budget']}): {p['line']}; the "
                          f"teacher as backbone would be {100 * p['teacher_backbone_share_predicted']:.0f}% of its "
                          f"call; pipeline cost model: {within}")
            if d.get("latency_guard") and d.get("latency_target_ms") is not None and judged_on_share(d):
                console.print(chosen_on_share(name, d), markup=False, highlight=False)
            elif d.get("latency_guard") and d.get("latency_target_ms") is not None:
                console.print(f"{name}: chosen on a re-measured p90 <= {d['latency_target_ms']:.2f} ms: the "
                              f"{d['latency_budget_ms']:.2f} ms budget (the teacher as shipped p90 "
                              f"{d['teacher_p90_ms']:.2f} ms{teacher_how(d)}) "
                              f"less the profile's guard of "
                              f"{100 * d['latency_guard']:g}% (timing.latency_guard), what a second timing of one "
                              "model drifts by on this device", markup=False, highlight=False)
            if d.get("report_row_p90_ms") is not None and d["latency_how"] == "measured":
                console.print(row_line(name, d), markup=False, highlight=False)
            if d.get("parts_reason"):
                console.print(f"{name}: parts deployed: {d['encoder']} encoder, {d['decoder']} decoder: "
                              f"{d['parts_reason']}")
        else:
            console.print(f"{name}: latencies are of one backbone call ({d['budget']})")
        if d["latency_how"] == "predicted":
            console.print(f"{name}: PREDICTED, not measured: " + (
                d.get("latency_basis") or "the device is not attached; its latencies, memory and the check of the "
                                          "choice are the roofline from the profile's device constants"))
            if d.get("confirm_command"):
                console.print(f"{name}: to confirm the choice on the device: `{d['confirm_command']}`, run the "
                              f"bundle's run_bundle.py there, then `tocsr costs confirm confirm-{name}/results.json`")
        if d.get("finetune"):
            console.print(f"{name}: " + "\n".join(d["finetune"]["lines"]))
        for kind, h in d["test"].items():
            console.print(f"{name}, {kind} degradation: {verdict_line(h)}")
    console.print(f"report: {s['report']}  ({s['wall_s'] / 60:.1f} min; ran {len(s['stages_ran'])} stages, "
                  f"skipped {len(s['stages_skipped'])})")
    b = s.get("browser_check", {})
    if b.get("checked"):
        console.print(f"headless Chromium: {b['images_ok']} images loaded, {b['images_failed']} failed, "
                      f"{len(b['console_errors'])} console errors; screenshot {b['screenshot']}")
