"""Before a long run commits: each training stage's time, estimated from steps timed at the run's own shapes.

For each training stage the dominant step is built at the preset's shapes with random weights (the cost of a
step does not depend on the weights), on the accelerator the run will use (`make_accelerator`: bf16 autocast
on CUDA), with the stage's gradient checkpointing; a warm-up step, then `timed_steps` timed ones. The stage's
estimate is its step count times the median step. What each row timed is written beside it; where the
run's real step does more or less (the student's backbone is chosen by the search, so the teacher-shaped
backbone stands in for it and the row is an upper bound), the row says so. Stages that are not a loop of
training steps (cost tables, search, evaluation) are listed as not estimated, with the reason.

Every figure here is an *estimate*, labelled so in the record (`RunEstimate`), the console and the GPU script.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from tocsr.core.artifacts import FolderRecord
from tocsr.core.training import adamw


@dataclass(frozen=True)
class StageEstimate:
    """One training stage: what one timed step does, how long it took, how many the run takes."""

    stage: str
    what: str                        # the timed step, in words
    steps: int                       # steps (or calls) the run will take
    images_per_step: int
    step_s: tuple[float, ...]        # each timed step, seconds
    peak_memory_bytes: int | None    # CUDA allocator peak over the timed steps; None where not readable (CPU)
    upper_bound: bool = False        # the run's real step is at most this costly

    @property
    def step_s_median(self) -> float:
        return statistics.median(self.step_s)

    @property
    def step_s_spread(self) -> float:
        """Half the range of the timed steps: with a handful of steps, the honest spread."""
        return (max(self.step_s) - min(self.step_s)) / 2

    @property
    def estimated_s(self) -> float:
        return self.steps * self.step_s_median

    @property
    def images_per_s(self) -> float:
        return self.images_per_step / self.step_s_median

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "what": self.what, "steps": self.steps, "images_per_step": self.images_per_step,
                "step_s": list(self.step_s), "peak_memory_bytes": self.peak_memory_bytes,
                "upper_bound": self.upper_bound, "step_s_median": self.step_s_median,
                "estimated_s": self.estimated_s, "images_per_s": self.images_per_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageEstimate:
        return cls(str(d["stage"]), str(d["what"]), int(d["steps"]), int(d["images_per_step"]),
                   tuple(float(s) for s in d["step_s"]),
                   None if d["peak_memory_bytes"] is None else int(d["peak_memory_bytes"]), bool(d["upper_bound"]))


@dataclass(frozen=True)
class RunEstimate(FolderRecord):
    """A run preset's training stages, estimated before the run (written to <out>/estimate.json)."""

    FILE_NAME: ClassVar[str] = "estimate.json"
    KIND: ClassVar[str] = "tocsr.run_estimate"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "rerun `tocsr run --estimate-only` into {folder}"

    preset: str
    device: str
    devices_searched: int            # profiles in the run: each trains its own student (and fine-tune)
    stages: tuple[StageEstimate, ...]
    baselines: int                   # each trained for the SR stage's seconds (reports.comparison)
    not_estimated: tuple[str, ...]
    # whether the students learn from the SR teachers (SRConfig.uses_sr_teachers): only then are the teachers'
    # seconds part of the SR model's training, and so of each baseline's
    sr_teachers_in_budget: bool = True
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def training_s(self) -> float:
        return sum(s.estimated_s for s in self.stages)

    @property
    def baselines_s(self) -> float:
        """Each baseline trains once per run for one SR model's training seconds (the shared part and one
        device's student; reports.comparison)."""
        shared = sum(s.estimated_s for s in self.stages if s.stage.startswith("sr-shared")
                     and (self.sr_teachers_in_budget or s.stage != "sr-shared/teachers"))
        students = sum(s.estimated_s for s in self.stages if s.stage.startswith("sr/"))
        return self.baselines * (shared + students / max(self.devices_searched, 1))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "device": self.device, "devices_searched": self.devices_searched,
                "stages": [s.to_dict() for s in self.stages], "baselines": self.baselines,
                "not_estimated": list(self.not_estimated), "training_s": self.training_s,
                "baselines_s": self.baselines_s, "sr_teachers_in_budget": self.sr_teachers_in_budget,
                "measured": False}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunEstimate:
        return cls(str(d["preset"]), str(d["device"]), int(d["devices_searched"]),
                   tuple(StageEstimate.from_dict(s) for s in d["stages"]), int(d["baselines"]),
                   tuple(d["not_estimated"]), bool(d.get("sr_teachers_in_budget", True)), d.get("environment", {}))

    def describe(self) -> list[str]:
        timed = len(self.stages[0].step_s) if self.stages else 0
        lines = [f"ESTIMATED stage times of the {self.preset!r} preset on {self.device} (from {timed} timed steps "
                 "each, random weights at the run's shapes; not measured runs):"]
        for s in self.stages:
            mem = "" if s.peak_memory_bytes is None else f", peak {s.peak_memory_bytes / 2**30:.2f} GiB"
            bound = " (upper bound)" if s.upper_bound else ""
            lines.append(f"  {s.stage:<20} {s.steps:>7} x {s.step_s_median * 1e3:9.2f} ms "
                         f"(± {s.step_s_spread * 1e3:.2f}) = {_hms(s.estimated_s):>9}{bound}; "
                         f"{s.images_per_s:.1f} images/s{mem}")
            lines.append(f"  {'':<20} {s.what}")
        lines.append(f"  {'baselines':<20} {self.baselines} x the SR model's seconds = {_hms(self.baselines_s)}")
        lines.append(f"  training total (estimated): {_hms(self.training_s + self.baselines_s)}")
        lines += [f"  not estimated: {n}" for n in self.not_estimated]
        return lines


def _hms(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, timed: int, warmup: int = 1
               ) -> tuple[tuple[float, ...], int | None]:
    """Seconds of each of `timed` calls of `step` after `warmup` untimed ones, and the CUDA peak memory."""
    if timed < 1:
        raise ValueError(f"timed steps must be >= 1, got {timed}")
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return tuple(times), peak


def train_step(params, loss_of: Callable[[], torch.Tensor], acc) -> Callable[[], None]:
    """One optimiser step (AdamW) of `loss_of()` under the accelerator's autocast."""
    params = [p for p in params if p.requires_grad]
    opt = adamw(params, lr=1e-6)

    def step() -> None:
        with acc.autocast():
            loss = loss_of()
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
    return step


@dataclass
class _Bench:
    """What every row's timing shares: the accelerator, a seeded generator, the teacher preset, the step count."""

    acc: Any
    tp: Any
    timed: int
    gen: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    @property
    def dev(self) -> torch.device:
        return self.acc.device

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen).to(self.dev)

    def timesteps(self, n: int) -> torch.Tensor:
        return torch.randint(0, self.tp.diffusion.num_train_timesteps, (n,), generator=self.gen).to(self.dev)

    def row(self, stage: str, what: str, steps: int, images: int, step: Callable[[], None],
            upper: bool = False) -> StageEstimate:
        times, peak = time_steps(step, self.dev, self.timed)
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
        return StageEstimate(stage, what, steps, images, times, peak, upper)


def _teacher_row(b: _Bench, denoiser) -> StageEstimate:
    """One diffusion step of the teacher (UNet forward and backward, AdamW), gradient checkpointing as the preset."""
    d, side = b.tp.diffusion, b.tp.image_px // 8
    ch = int(denoiser.unet.config.in_channels)
    if d.gradient_checkpointing:
        denoiser.unet.enable_gradient_checkpointing()
    denoiser.train()
    zt, t, target = b.rand(d.batch, ch, side, side), b.timesteps(d.batch), b.rand(d.batch, ch, side, side)
    try:
        return b.row("teacher", f"UNet forward+backward, batch {d.batch}, {ch}x{side}x{side} latents"
                     + (", gradient checkpointing" if d.gradient_checkpointing else ""), d.steps, d.batch,
                     train_step(denoiser.parameters(), lambda: F.mse_loss(denoiser(zt, t).float(), target), b.acc))
    finally:
        if d.gradient_checkpointing:
            denoiser.unet.disable_gradient_checkpointing()
        denoiser.eval().requires_grad_(False)


def _distill_row(b: _Bench, denoiser, steps: int) -> StageEstimate:
    """The frozen teacher recorded once, every surrogate of every slot trained on its block."""
    from tocsr.core.distill.bank import new_bank
    from tocsr.core.distill.capture import block_output, record_slots
    from tocsr.core.distill.config import DistillConfig
    from tocsr.core.distill.fidelity import normalised_error
    from tocsr.core.space import derive_search_space

    cfg, side = DistillConfig(steps=steps), b.tp.image_px // 8
    ch = int(denoiser.unet.config.in_channels)
    space = derive_search_space(denoiser.unet)
    bank = new_bank(space)
    for m in bank.values():
        m.to(b.dev).train()
    z, t = b.rand(cfg.batch, ch, side, side), b.timesteps(cfg.batch)

    def loss() -> torch.Tensor:
        with torch.no_grad(), record_slots(denoiser.unet, space) as rec:
            denoiser(z, t)
        return sum(normalised_error(block_output(m(*rec[s][0], **rec[s][1])), rec[s][2]) for (s, _), m in bank.items())

    return b.row("surrogates", f"teacher forward with {len(space.slots)} slots recorded + {len(bank)} surrogates "
                 f"forward+backward, batch {cfg.batch}", cfg.steps, cfg.batch,
                 train_step([p for m in bank.values() for p in m.parameters()], loss, b.acc))


def _finetune_row(b: _Bench, denoiser, steps: int, devices: int) -> StageEstimate:
    """Teacher forward (no grad) + the backbone's forward and backward. The chosen backbone is at most the
    teacher, so a teacher-shaped one bounds the step from above."""
    from tocsr.core.distill.config import FinetuneConfig
    from tocsr.core.teacher.diffusion_train import new_denoiser

    cfg, side = FinetuneConfig(steps=steps), b.tp.image_px // 8
    ch = int(denoiser.unet.config.in_channels)
    student = new_denoiser(b.tp).to(b.dev).train()
    if b.tp.diffusion.gradient_checkpointing:
        student.unet.enable_gradient_checkpointing()
    z, t = b.rand(cfg.batch, ch, side, side), b.timesteps(cfg.batch)

    def loss() -> torch.Tensor:
        with torch.no_grad():
            reference = denoiser(z, t).float()
        return F.mse_loss(student(z, t).float(), reference)

    return b.row("finetune", f"teacher forward + teacher-shaped backbone forward+backward, batch {cfg.batch}; "
                 f"x {devices} device(s)", cfg.steps * devices, cfg.batch, train_step(student.parameters(), loss, b.acc),
                 upper=True)


def _sr_teacher_rows(b: _Bench, denoiser, scfg, devices: int) -> list[StageEstimate]:
    """The SR teachers' training steps, and the calls that make the students' targets (all chains at once); none
    where the config trains no SR teacher."""
    from tocsr.core.sr.models import widen_conv_in

    if not scfg.has_sr_teachers:
        return []
    side, kinds, n = scfg.patch_px // 8, len(scfg.kinds), scfg.batch
    ch = int(denoiser.unet.config.in_channels)
    unet = widen_conv_in(denoiser.unet, ch).to(b.dev).train().requires_grad_(True)
    cond = denoiser.condition.null(n).to(b.dev)
    z, t, target = b.rand(n, 2 * ch, side, side), b.timesteps(n), b.rand(n, ch, side, side)
    train = b.row("sr-shared/teachers", f"SR teacher forward+backward, batch {n}, {2 * ch}x{side}x{side} in; "
                  f"x {kinds} degradations", scfg.teacher_steps * kinds, n,
                  train_step(unet.parameters(), lambda: F.mse_loss(
                      unet(z, t, encoder_hidden_states=cond, return_dict=False)[0].float(), target), b.acc))
    if not scfg.uses_sr_teachers:         # the student never asks them: no targets to make
        return [train]
    # A batch of the teacher cache is split by degradation; each part runs all its chains as one batch.
    rows = max(1, min(n, scfg.teacher_cache) // kinds)
    calls = math.ceil(scfg.teacher_cache / n) * kinds * scfg.sample_steps * devices
    zc, tc = b.rand(rows * scfg.sample_chains, 2 * ch, side, side), b.timesteps(rows * scfg.sample_chains)
    cc = denoiser.condition.null(len(zc)).to(b.dev)
    unet.eval()

    def call() -> None:
        with torch.no_grad(), b.acc.autocast():
            unet(zc, tc, encoder_hidden_states=cc, return_dict=False)

    sample = b.row("sr/teacher-targets", f"SR teacher forward, {rows} rows x {scfg.sample_chains} chains; "
                   f"x {devices} device(s)", calls, len(zc), call)
    return [train, sample]


def _student_row(b: _Bench, scfg, devices: int) -> StageEstimate:
    """The student's forward and backward on the LR latent, and the pixel loss through the decoder; the
    teacher-shaped backbone bounds the chosen one from above."""
    from tocsr.core.models.autoencoder import build_autoencoder_from_preset
    from tocsr.core.teacher.diffusion_train import new_denoiser

    side, n = scfg.patch_px // 8, scfg.batch
    ae = build_autoencoder_from_preset(b.tp.autoencoder, b.dev).requires_grad_(False)
    student = new_denoiser(b.tp).to(b.dev).train()
    ch = int(student.unet.config.in_channels)
    z_lr, hr = b.rand(n, ch, side, side), b.rand(scfg.pixel_share, 3, scfg.patch_px, scfg.patch_px)
    t_star = torch.full((n,), scfg.t_star, device=b.dev)

    def loss() -> torch.Tensor:
        pred = z_lr + student(z_lr, t_star)
        pixels = ae.decode(pred[:scfg.pixel_share]).sample
        return F.mse_loss(pred.float(), z_lr) + F.l1_loss(pixels.float(), hr)

    return b.row("sr/student", f"teacher-shaped backbone forward+backward, batch {n}, + decoder forward+backward "
                 f"on {scfg.pixel_share}; x {scfg.students} student(s) x {devices} device(s)", scfg.student_steps * scfg.students * devices, n,
                 train_step(student.parameters(), loss, b.acc), upper=True)


def estimate_run(rp, n_profiles: int, timed_steps: int = 3, acc=None) -> RunEstimate:
    """Estimate the training stages of run preset `rp` (tocsr.app.mainjob.RunPreset, step caps applied) for
    `n_profiles` devices, on `acc` (default: the accelerator the run would use)."""
    from tocsr.core.provenance import environment
    from tocsr.core.teacher.diffusion_train import new_denoiser
    from tocsr.core.training import make_accelerator

    b = _Bench(acc or make_accelerator(), rp.teacher(), timed_steps)
    not_estimated = ["costs: measured per candidate on the device (the profile's timing keys set how long)",
                     "search: a few ms of surrogate fidelity per evaluation, plus the validation candidates' timing",
                     "evaluation: per test photograph and baseline"]
    if b.tp.ae_training.steps > 0:
        not_estimated.insert(0, f"the teacher's autoencoder training ({b.tp.ae_training.steps} steps)")
    if rp.parts_steps > 0:
        enc = rp.parts_steps if rp.parts_encoder_steps is None else rp.parts_encoder_steps
        not_estimated.append(f"parts: {enc} step(s) of the LR encoder, {rp.parts_steps} of the tiny decoder "
                             "(small networks)")
    denoiser = new_denoiser(b.tp).to(b.dev)
    stages = [_teacher_row(b, denoiser), _distill_row(b, denoiser, rp.distill_steps)]
    if rp.finetune_steps > 0:
        stages.append(_finetune_row(b, denoiser, rp.finetune_steps, n_profiles))
    scfg = rp.sr_config(n_profiles)
    stages += _sr_teacher_rows(b, denoiser, scfg, n_profiles)
    stages.append(_student_row(b, scfg, n_profiles))
    return RunEstimate(rp.name, _device_name(b.dev), n_profiles, tuple(stages), len(rp.baselines),
                       tuple(not_estimated), scfg.uses_sr_teachers, environment())


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu, {torch.get_num_threads()} threads"
