"""SR adaptation (multi-step conditional SR teacher) and one-step distillation (the student).

SR teacher: the expanded teacher UNet with conv_in widened to [noisy latent, LR latent], predicting the
clean HR latent (x0) as a residual over the LR latent, trained on t <= t_start to minimise the mean
over images of log(latent MSE in raw autoencoder units + a floor), as the score is PSNR averaged over
images. Sampled with DDIM from the LR latent noised to t_start (img2img-style); the last x0 estimate
is the output.

Student: the selected compact backbone, initialised from the teacher's weights and the distilled
surrogates, mapping the LR latent to the HR latent in one call; one student per degradation, each trained
on its own degradation's pairs (`SRConfig.student_per_degradation`, models.PerDegradationStudent). Loss = latent regression to the HR
latent + regression to the SR teacher's multi-step output (cached once per run), both as log per-image
MSE, + pixel L1 through the frozen decoder + a small hinge-GAN term from a latent discriminator. EMA
weights are the result.

Both trainings run through an accelerate.Accelerator (tocsr.training.make_accelerator): on a GPU the
pair cache, the models and every step live on the card with bf16 autocast; on CPU nothing changes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader

from tocsr.assembly import load_surrogate_weights, load_teacher_weights
from tocsr.errors import ConfigError
from tocsr.models.autoencoder import decode_latents, encode_latents, raw_latent_mse_per_image
from tocsr.space import ArchSpec, SearchSpace
from tocsr.sr.data import SRPairs, upsample_lr
from tocsr.sr.models import LatentDiscriminator, OneStepStudent, widen_conv_in
from tocsr.teacher.evaluate import latent_ddim
from tocsr.training import (
    Checkpointer,
    check_finite,
    load_optimizer,
    make_accelerator,
    progress,
    save_optimizer,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SRConfig:
    scale: int = 4
    patch_px: int = 128
    batch: int = 16
    teacher_steps: int = 1500
    teacher_lr: float = 2e-4
    student_steps: int = 800
    student_lr: float = 2e-4
    # SR teacher network calls per image. 50, not the minimum 20: on held-out crops the 50-call chain
    # scored the same as the 20-call one (PSNR-Y 30.31 vs 30.28 bicubic deg., 26.15 vs 26.17 Real-ESRGAN)
    # and it is the chain the one-step student replaces, so its cost is what the speed-up is measured on.
    sample_steps: int = 50
    t_start: int = 250                    # the chain starts from the LR latent noised to this timestep
    pair_cache: int = 2048                # (HR, LR) latent pairs encoded once, shared by both trainings
    teacher_cache: int = 256              # LR crops whose teacher output the student regresses to
    w_latent: float = 1.0
    # The teacher and adversarial terms pull the student away from the posterior mean (PSNR) towards
    # the teacher's samples and the HR distribution. At 0.25 / 0.02 they cost 0.26 dB PSNR-Y against
    # 0.05 / 0.002 (main job's models, bicubic deg.: 30.36 vs 30.62; Real-ESRGAN 26.32 vs 26.27).
    w_teacher: float = 0.05
    # The teacher term is a log MSE too, whose gradient scales with 1 / (MSE + floor). The teacher's outputs
    # sit close to the student's (MSE ~1e-3 vs ~1.5e-2 to the HR latent), so with the student's floor of
    # 1e-4 the 0.05 term pulled 70 % as hard as the HR term, and held the student at the teacher, which is
    # below bicubic on Real-ESRGAN inputs (Real-ESRGAN student, 64 held-out crops: +0.12 dB over bicubic
    # with it, +0.57 without). A floor of 1e-2 bounds its pull to about 7 % of the HR term's: +0.46.
    teacher_target_floor: float = 1e-2
    w_pixel: float = 0.2
    pixel_share: int = 4                  # images per batch decoded for the pixel loss (decoding is costly)
    w_adv: float = 0.002
    ema_decay: float = 0.995
    # Both trainings minimise the mean over images of log(latent MSE + floor), not the MSE of the batch:
    # the score is PSNR averaged over images, the mean of -10 log10(MSE) per image, and with a plain MSE
    # the small errors on smooth crops vanish beside the textured ones while costing those crops dB.
    # Main job's models, student retrained, PSNR-Y bicubic deg.: plain MSE 30.60 (a very smooth moon
    # crop 1.39 dB below bicubic), floor 1e-5 / 1e-4 / 1e-3: 30.82 / 30.83 / 30.84 (that crop -0.01).
    # The floor keeps the weight of near-perfect crops bounded (1e-4: below the 5 % quantile, 2.6e-4, of
    # the identity map's per-crop error on the training pairs).
    loss_floor: float = 1e-4
    # The SR teacher's per-sample error also spans the noise levels t <= t_start; a floor of 1e-4 starves
    # the high-noise samples, where the chain starts (one crop 4.2 dB below bicubic, mean 30.43); 1e-2
    # caps the weight of well-predicted samples (30.68; plain MSE 30.55), same data and steps.
    teacher_loss_floor: float = 1e-2
    t_star: int = 250
    checkpoint_every: int = 500
    # Processes that crop and degrade pairs while the cache is encoded. Worth it only where encoding
    # is cheap (a GPU: ~4 ms of CPU per Real-ESRGAN pair vs ~70 ms to encode it on 2 CPU cores).
    pair_workers: int = 0
    seed: int = 0
    kinds: tuple[str, ...] = ("bicubic", "realesrgan")
    # One student per entry of `kinds`, each trained (student_steps) on that kind's half of the cache. A
    # blind student trained on both settled near the identity on Real-ESRGAN inputs (64 held-out crops:
    # -0.03 dB vs bicubic); told the kind through a learned embedding, -0.02. Trained apart: +0.31 dB
    # (bicubic) and +0.46 dB (Real-ESRGAN) over bicubic. See models.PerDegradationStudent.
    student_per_degradation: bool = True


class SRDenoiser(torch.nn.Module):
    """forward(z_t, t, z_lr) -> HR latent estimate (x0): z_lr + UNet([z_t, z_lr], t, null condition).

    The HR latent as a correction of the LR latent, so a zero-initialised output layer starts as the
    identity map, the best guess before training.
    """

    def __init__(self, unet: UNet2DConditionModel, condition):
        super().__init__()
        self.unet, self.condition = unet, condition

    def forward(self, zt: torch.Tensor, t: torch.Tensor, z_lr: torch.Tensor) -> torch.Tensor:
        cond = self.condition.null(zt.shape[0]).to(zt.dtype)
        return z_lr + self.unet(torch.cat([zt, z_lr], dim=1), t, encoder_hidden_states=cond, return_dict=False)[0]


SR_SCHEDULER_DIR = "sr_scheduler"


def sr_scheduler(teacher) -> DDPMScheduler:
    """The base teacher's noise schedule, predicting x0 ("sample"), never clamping latents."""
    return DDPMScheduler.from_config(teacher.scheduler.config, prediction_type="sample", clip_sample=False)


def load_sr_teacher(sr_dir: str | Path, condition) -> tuple[SRDenoiser, dict]:
    """(SR teacher, its scheduler config) from a `tocsr sr` run folder."""
    sr_dir = Path(sr_dir)
    if not (sr_dir / SR_SCHEDULER_DIR).is_dir():
        raise ConfigError(f"{sr_dir} has no {SR_SCHEDULER_DIR}/: written by an older tocsr; rerun `tocsr sr`")
    config = dict(DDPMScheduler.from_pretrained(sr_dir / SR_SCHEDULER_DIR).config)
    unet = UNet2DConditionModel.from_pretrained(sr_dir / "sr_teacher").eval()
    return SRDenoiser(unet, condition).eval(), config


def log_latent_mse(ae, a: torch.Tensor, b: torch.Tensor, floor: float) -> torch.Tensor:
    """mean over images of log(raw latent MSE + floor): the PSNR-per-image objective (see SRConfig)."""
    return torch.log(raw_latent_mse_per_image(ae, a, b) + floor).mean()


def encode_pair(ae, hr: torch.Tensor, lr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return encode_latents(ae, hr), encode_latents(ae, upsample_lr(lr, scale))


@dataclass
class PairCache:
    """(HR, LR) latent pairs encoded once. Encoding dominated an SR step (two autoencoder passes per
    image); with the cache a step costs only the UNet. HR pixels, needed for the pixel loss, are
    re-cropped on demand (cheap: no degradation, no encoding). `items[r]` is the SRPairs item that row r
    holds (all of them in order, or the rows of one degradation: `of_kind`)."""

    pairs: SRPairs
    z_hr: torch.Tensor
    z_lr: torch.Tensor
    items: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.items is None:
            self.items = torch.arange(len(self.z_hr))

    @classmethod
    def build(cls, ae, photos, cfg: SRConfig, seed: int, device: torch.device | str = "cpu",
              batch: int = 32) -> PairCache:
        pairs = SRPairs(photos, cfg.patch_px, cfg.scale, cfg.pair_cache, seed, cfg.kinds)
        # Item i depends only on (seed, i), so worker processes change nothing but the wall time.
        loader = DataLoader(pairs, batch_size=batch, num_workers=cfg.pair_workers)
        z_hr, z_lr = [], []
        with progress("sr/latent-pairs", cfg.pair_cache) as bar:
            for hr, lr in loader:
                a, b = encode_pair(ae, hr.to(device), lr.to(device), cfg.scale)
                z_hr.append(a.half())
                z_lr.append(b.half())
                bar.update(len(hr))
        return cls(pairs, torch.cat(z_hr), torch.cat(z_lr))

    @property
    def device(self) -> torch.device:
        return self.z_hr.device

    def sample(self, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.z_hr), (n,), generator=gen)
        on = idx.to(self.device)
        return idx, self.z_hr[on].float(), self.z_lr[on].float()

    def of_kind(self, kind: str) -> PairCache:
        """The rows of one degradation (SRPairs alternates them), as a cache of their own (a copy)."""
        if kind not in self.pairs.kinds:
            raise ConfigError(f"degradation {kind!r}: this cache holds {', '.join(self.pairs.kinds)}")
        rows = (self.items % len(self.pairs.kinds) == self.pairs.kinds.index(kind)).nonzero()[:, 0]
        on = rows.to(self.device)
        return PairCache(self.pairs, self.z_hr[on], self.z_lr[on], self.items[rows])

    def hr_pixels(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.pairs.hr(int(self.items[int(i)])) for i in idx]).to(self.device)


def train_sr_teacher(teacher, cache: PairCache, out_dir: Path, cfg: SRConfig, resume: bool = False,
                     accelerator=None) -> SRDenoiser:
    """Widen the teacher into the conditional SR teacher and train it; saves <out>/sr_teacher."""
    acc = accelerator or make_accelerator()
    ck = Checkpointer(out_dir / "checkpoints" / "sr_teacher")
    sched = sr_scheduler(teacher)
    model = SRDenoiser(widen_conv_in(teacher.unet, 16), teacher.denoiser.condition)
    # The base teacher's head predicts noise; as the residual x0 head it starts at zero (identity map).
    with torch.no_grad():
        model.unet.conv_out.weight.zero_()
        model.unet.conv_out.bias.zero_()
    latest = ck.latest() if resume else None
    if latest is not None:
        model.unet = UNet2DConditionModel.from_pretrained(latest / "unet")
    for p in model.condition.parameters():
        p.requires_grad_(False)
    model.to(acc.device)
    params = list(model.unet.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.teacher_lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=0.999, foreach=True)
    start = 0
    if latest is not None:
        state = load_optimizer(latest / "optimizer.pt", opt)
        ema.load_state_dict(state["ema"])
        start = int(ck.latest_meta()["step"])
    ema.to(acc.device)
    wrapped, opt = acc.prepare(model, opt)
    wrapped.train()
    rank, world = acc.process_index, acc.num_processes
    with progress("sr/teacher", cfg.teacher_steps, start) as bar:
        for step in range(start, cfg.teacher_steps):
            lr_now = cfg.teacher_lr * min(1.0, (step + 1) / 100)
            for g in opt.param_groups:
                g["lr"] = lr_now
            gen = torch.Generator().manual_seed(cfg.seed * 999_983 + step * world + rank)
            _, z_hr, z_lr = cache.sample(gen, cfg.batch)
            noise = torch.randn(z_hr.shape, generator=gen).to(z_hr)
            # Sampling never starts above t_start, so training spends its steps there.
            t = torch.randint(0, cfg.t_start + 1, (len(z_hr),), generator=gen).to(z_hr.device)
            # In raw autoencoder units, as the student's latent loss: each channel counts as much as it moves
            # pixels. With the plain MSE on normalised latents the teacher scored 30.31 dB PSNR-Y (bicubic
            # deg., 50 calls), with the raw MSE 30.55, on the same data and steps.
            pred = wrapped(sched.add_noise(z_hr, noise, t), t, z_lr).float()
            loss = log_latent_mse(teacher.autoencoder, pred, z_hr, cfg.teacher_loss_floor)
            check_finite(loss, step, ck)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            ema.step(params)
            bar.update(1, loss=loss.item())
            if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.teacher_steps):
                def write(d: Path) -> None:
                    model.unet.save_pretrained(d / "unet")
                    save_optimizer(d / "optimizer.pt", opt, {"ema": ema.state_dict()})

                ck.save(step + 1, write, {"loss": loss.item()})
    ema.copy_to(params)
    # The plain module, without accelerate's autocast wrapper: evaluation and a reload then agree.
    model = acc.unwrap_model(wrapped, keep_fp32_wrapper=False).eval()
    if acc.is_main_process:
        model.unet.save_pretrained(out_dir / "sr_teacher")
        sched.save_pretrained(out_dir / SR_SCHEDULER_DIR)
    acc.wait_for_everyone()
    return model


@torch.no_grad()
def sample_sr_teacher(model: SRDenoiser, scheduler_config: dict, z_lr: torch.Tensor, steps: int, t_start: int,
                      seed: int) -> torch.Tensor:
    """DDIM from the LR latent noised to t_start, `steps` network calls; returns the last x0 estimate
    (the chain ends one DDIM stride above t = 0, where the state still holds a little noise)."""
    ddim = latent_ddim(scheduler_config)
    total = max(steps, math.ceil(steps * ddim.config.num_train_timesteps / t_start))
    ddim.set_timesteps(total)
    timesteps = [t for t in ddim.timesteps if int(t) <= t_start][:steps]
    noise = torch.randn(z_lr.shape, generator=torch.Generator().manual_seed(seed)).to(z_lr)
    z = ddim.add_noise(z_lr, noise, torch.full((len(z_lr),), int(timesteps[0]), dtype=torch.long))
    x0 = z
    for t in timesteps:
        tt = torch.full((len(z),), int(t), dtype=torch.long, device=z.device)
        out = ddim.step(model(z, tt, z_lr), t, z)
        z, x0 = out.prev_sample, out.pred_original_sample
    return x0


def build_student(teacher, space: SearchSpace, spec: ArchSpec, bank, cfg: SRConfig) -> OneStepStudent:
    unet_config = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(space.unet_config).items()}
    student = OneStepStudent(unet_config=unet_config, arch_choices=spec.replaced(),
                             cond_tokens=int(teacher.denoiser.condition.config.cond_tokens),
                             cross_attention_dim=int(teacher.unet.config.cross_attention_dim), timestep=cfg.t_star)
    load_teacher_weights(student.backbone, teacher.unet, space, spec)
    load_surrogate_weights(student.backbone, space, spec, {k: m.state_dict() for k, m in bank.items()})
    with torch.no_grad():
        student.null_condition.copy_(teacher.denoiser.condition.null(1))
        # Start as the identity map (z_hr = z_lr): the backbone's last layer begins at zero.
        student.backbone.unet.conv_out.weight.zero_()
        student.backbone.unet.conv_out.bias.zero_()
    return student


def train_student(teacher, sr_teacher: SRDenoiser, sr_scheduler_config: dict, student: OneStepStudent,
                  cache: PairCache, out_dir: Path, cfg: SRConfig, resume: bool = False,
                  accelerator=None, name: str = "student", save: bool = True) -> OneStepStudent:
    """Distil one student on `cache`; checkpoints under <out>/checkpoints/<name>, the result (EMA weights)
    saved to <out>/<name> when `save` (a per-degradation part is saved by the caller, combined)."""
    acc = accelerator or make_accelerator()
    dev = acc.device
    ck = Checkpointer(out_dir / "checkpoints" / name)
    # Seeded: the discriminator's weights and spectral-norm vectors would otherwise come from the global
    # RNG, and two runs of the same config would train different students.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        disc = LatentDiscriminator(student.backbone.unet.config.out_channels)
    latest = ck.latest() if resume else None
    if latest is not None:
        student = OneStepStudent.from_pretrained(latest / "student")
        disc.load_state_dict(torch.load(latest / "discriminator.pt", weights_only=True))
    student.to(dev)
    disc.to(dev)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.student_lr, weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.student_lr, betas=(0.5, 0.999))
    ema = EMAModel(student.parameters(), decay=cfg.ema_decay, foreach=True)
    start = 0
    if latest is not None:
        state = load_optimizer(latest / "optimizer.pt", opt)
        opt_d.load_state_dict(state["opt_d"])
        ema.load_state_dict(state["ema"])
        start = int(ck.latest_meta()["step"])
    ema.to(dev)
    ae = teacher.autoencoder.to(dev)
    sr_teacher = sr_teacher.to(dev)
    # The multi-step teacher's answers for a fixed subset of the cached LR latents, computed once.
    n_t = min(cfg.teacher_cache, len(cache.z_lr))
    cache_lr, cache_teacher = cache.z_lr[:n_t].float(), []
    with progress("sr/teacher-targets", n_t) as bar:
        for i in range(0, n_t, cfg.batch):
            z_lr = cache_lr[i:i + cfg.batch]
            cache_teacher.append(sample_sr_teacher(sr_teacher, sr_scheduler_config, z_lr, cfg.sample_steps,
                                                   cfg.t_start, seed=cfg.seed + i))
            bar.update(len(z_lr))
    cache_teacher = torch.cat(cache_teacher)
    for p in ae.parameters():
        p.requires_grad_(False)
    wrapped, wrapped_disc, opt, opt_d = acc.prepare(student, disc, opt, opt_d)
    wrapped.train()
    rank, world = acc.process_index, acc.num_processes
    with progress("sr/student", cfg.student_steps, start) as bar:
        for step in range(start, cfg.student_steps):
            frac = step / max(1, cfg.student_steps)
            for g in opt.param_groups:
                g["lr"] = cfg.student_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            gen = torch.Generator().manual_seed(cfg.seed * 31 + step * world + rank)
            idx, z_hr, z_lr = cache.sample(gen, cfg.batch)
            ci = torch.randint(0, len(cache_lr), (max(1, cfg.batch // 4),), generator=gen).to(dev)
            pred = wrapped(z_lr)
            pred_c = wrapped(cache_lr[ci])
            loss_latent = log_latent_mse(ae, pred.float(), z_hr, cfg.loss_floor)
            loss_teacher = log_latent_mse(ae, pred_c.float(), cache_teacher[ci], cfg.teacher_target_floor)
            k = min(cfg.pixel_share, len(idx))
            loss_pixel = F.l1_loss(decode_latents(ae, pred[:k]), cache.hr_pixels(idx[:k]))
            loss_adv = -wrapped_disc(pred).float().mean()
            loss = (cfg.w_latent * loss_latent + cfg.w_teacher * loss_teacher + cfg.w_pixel * loss_pixel
                    + cfg.w_adv * loss_adv)
            check_finite(loss, step, ck)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            ema.step(student.parameters())
            d_loss = (F.relu(1 - wrapped_disc(z_hr).float()).mean()
                      + F.relu(1 + wrapped_disc(pred.detach()).float()).mean())
            opt_d.zero_grad(set_to_none=True)
            acc.backward(d_loss)
            opt_d.step()
            bar.update(1, latent=loss_latent.item(), teacher=loss_teacher.item(), d=d_loss.item())
            if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.student_steps):
                def write(d: Path) -> None:
                    student.save_pretrained(d / "student")
                    torch.save(disc.state_dict(), d / "discriminator.pt")
                    save_optimizer(d / "optimizer.pt", opt, {"ema": ema.state_dict(), "opt_d": opt_d.state_dict()})

                ck.save(step + 1, write, {"loss": loss.item()})
    ema.copy_to(student.parameters())
    student = acc.unwrap_model(wrapped, keep_fp32_wrapper=False).eval()
    if acc.is_main_process and save:
        student.save_pretrained(out_dir / name)
    acc.wait_for_everyone()
    return student
