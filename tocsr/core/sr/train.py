"""SR adaptation (multi-step conditional SR teachers) and one-step distillation (the students).

SR teacher, one per degradation: the expanded teacher UNet with conv_in widened to [noisy latent, LR latent],
predicting the clean HR latent (x0) through an EDM-style preconditioning around the LR latent (SRDenoiser),
trained on t <= t_start (half of its samples on the chain's real start state, the LR latent noised to
t_start) to minimise the mean over images of log(latent MSE in raw autoencoder units + a floor), as the
score is PSNR averaged over images. Read out as the mean of `sample_chains` DDIM chains of `sample_steps`
calls each, every chain from the LR latent noised to t_start with its own noise: one chain is a sample,
and their mean estimates the posterior mean that PSNR rewards (see SRConfig.sample_chains).

Student: the selected compact backbone, initialised from the teacher's weights and the distilled
surrogates, mapping the LR latent to the HR latent in one call; one student per degradation, each trained
on its own degradation's pairs (`SRConfig.student_per_degradation`, models.PerDegradationStudent). Loss = latent regression to the HR
latent + regression to the SR teacher's multi-step output (cached once per run), both as log per-image
MSE, + a pixel term through a decoder (L1 or per-image log MSE: SRConfig.pixel_loss) + a small hinge-GAN term from a
discriminator on the latents or on the decoded images (SRConfig.discriminator). The deployed LR encoder and tiny
decoder may train with it (SRConfig.train_encoder / train_decoder): the whole deployed pipeline then learns, LR pixels
to SR pixels. EMA weights are the result.

Both trainings run through an accelerate.Accelerator (tocsr.core.training.make_accelerator): on a GPU the
pair cache, the models and every step live on the card with bf16 autocast; on CPU nothing changes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader

from tocsr.core.assembly import load_surrogate_weights, load_teacher_weights
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import decode_latents, encode_latents, raw_latent_mse_per_image
from tocsr.core.resize import bicubic_upscale
from tocsr.core.space import ArchSpec, SearchSpace
from tocsr.core.sr.config import SRConfig
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.degradations import DRAWN
from tocsr.core.sr.models import LatentDiscriminator, OneStepStudent, PixelDiscriminator, widen_conv_in
from tocsr.core.sr.onestep import LatentEncoder
from tocsr.core.training import (
    Checkpointer,
    adamw,
    check_finite,
    load_optimizer,
    make_accelerator,
    progress,
    save_optimizer,
)

log = logging.getLogger(__name__)


class SRDenoiser(torch.nn.Module):
    """forward(z_t, t, z_lr) -> HR latent estimate (x0), EDM-preconditioned around the LR latent:

        x0 = z_lr + c_skip(t) (z_t / sqrt(abar_t) - z_lr) + c_out(t) UNet([z_t, z_lr], t, null condition)

    with sigma_t^2 = (1 - abar_t) / abar_t, c_skip = s^2 / (s^2 + sigma_t^2), c_out = sigma_t s / sqrt(s^2 + sigma_t^2)
    and s the per-channel std of the HR - LR latent residual (Karras et al. 2022, with the LR latent as the
    prior mean). With the head at zero this is the linear least-squares estimate of x0 from the state:
    the state itself at low noise, the LR latent at high noise. Without it (x0 = z_lr + UNet) the network
    had to rebuild the state's detail at low noise from z_lr, and its first call on Real-ESRGAN inputs
    stayed 0.06 dB below bicubic (64 held-out crops; +0.22 with it, same data and steps).
    """

    def __init__(self, unet: UNet2DConditionModel, condition, alphas_cumprod: torch.Tensor,
                 residual_std: torch.Tensor):
        super().__init__()
        self.unet, self.condition = unet, condition
        if residual_std.shape != (unet.config.out_channels,) or not bool((residual_std > 0).all()):
            raise ConfigError(f"residual_std must hold one positive std per latent channel "
                              f"({unet.config.out_channels}); got {residual_std.tolist()}")
        self.register_buffer("alphas_cumprod", alphas_cumprod.float().clone(), persistent=False)
        self.register_buffer("residual_var", residual_std.float().square()[None, :, None, None], persistent=False)

    @property
    def residual_std(self) -> torch.Tensor:
        return self.residual_var.flatten().sqrt()

    def forward(self, zt: torch.Tensor, t: torch.Tensor, z_lr: torch.Tensor) -> torch.Tensor:
        cond = self.condition.null(zt.shape[0]).to(zt.dtype)
        abar = self.alphas_cumprod.to(zt.device)[t.long()].to(zt.dtype)[:, None, None, None]
        sigma2 = (1 - abar) / abar
        var = self.residual_var.to(zt)
        c_skip = var / (var + sigma2)
        c_out = (sigma2 * var / (var + sigma2)).sqrt()
        head = self.unet(torch.cat([zt, z_lr], dim=1), t, encoder_hidden_states=cond, return_dict=False)[0]
        return z_lr + c_skip * (zt / abar.sqrt() - z_lr) + c_out * head


def latent_residual_std(cache: PairCache) -> torch.Tensor:
    """Per-channel std of HR latent - LR latent over a pair cache: the preconditioning's data scale."""
    return (cache.z_hr.float() - cache.z_lr.float()).std(dim=(0, 2, 3)).cpu().clamp_min(1e-3)


SR_SCHEDULER_DIR = "sr_scheduler"
SR_TEACHER_DIR = "sr_teacher"
PRECONDITIONING_FILE = "preconditioning.json"


def sr_scheduler(teacher) -> DDPMScheduler:
    """The base teacher's noise schedule, predicting x0 ("sample"), never clamping latents."""
    return DDPMScheduler.from_config(teacher.scheduler.config, prediction_type="sample", clip_sample=False)


def save_sr_teacher(model: SRDenoiser, folder: Path) -> None:
    model.unet.save_pretrained(folder)
    (folder / PRECONDITIONING_FILE).write_text(json.dumps({"residual_std": model.residual_std.tolist()}, indent=1))


def load_sr_teachers(sr_dir: str | Path, condition) -> tuple[dict[str, SRDenoiser], dict]:
    """({degradation: SR teacher}, their scheduler config) from a `tocsr sr` run folder."""
    sr_dir = Path(sr_dir)
    folders = sorted(p.parent for p in (sr_dir / SR_TEACHER_DIR).glob(f"*/{PRECONDITIONING_FILE}"))
    if not (sr_dir / SR_SCHEDULER_DIR).is_dir() or not folders:
        raise ConfigError(f"{sr_dir} has no {SR_SCHEDULER_DIR}/ or no per-degradation {SR_TEACHER_DIR}/<kind>/: "
                          "written by an older tocsr; rerun `tocsr sr`")
    config = dict(DDPMScheduler.from_pretrained(sr_dir / SR_SCHEDULER_DIR).config)
    abar = DDPMScheduler.from_config(config).alphas_cumprod
    teachers = {}
    for folder in folders:
        std = torch.tensor(json.loads((folder / PRECONDITIONING_FILE).read_text())["residual_std"])
        unet = UNet2DConditionModel.from_pretrained(folder).eval()
        teachers[folder.name] = SRDenoiser(unet, condition, abar, std).eval()
    return teachers, config


def image_mean(per_image: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of a per-image term over the batch, weighted by `weights` (one per image) where given."""
    if weights is None:
        return per_image.mean()
    return (per_image * weights).sum() / weights.sum()


def log_latent_mse(ae, a: torch.Tensor, b: torch.Tensor, floor: float,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean over images of log(raw latent MSE + floor): the PSNR-per-image objective (see SRConfig); weighted per
    image by `weights` where given."""
    return image_mean(torch.log(raw_latent_mse_per_image(ae, a, b) + floor), weights)


def pixel_loss(pred: torch.Tensor, hr: torch.Tensor, cfg: SRConfig,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """The student's pixel term on decoded images in [-1, 1] (SRConfig.pixel_loss); weighted per image by `weights`
    where given."""
    dims = tuple(range(1, pred.ndim))
    if cfg.pixel_loss == "l1":
        return image_mean((pred.float() - hr.float()).abs().mean(dim=dims), weights)
    mse = (pred.float() - hr.float()).square().mean(dim=dims)
    return image_mean(torch.log(mse + cfg.pixel_loss_floor), weights)


def row_weights(cache: PairCache, cfg: SRConfig) -> torch.Tensor | None:
    """Each cache row's weight in the student's per-image terms (SRConfig.drawn_weight); None where all weigh 1."""
    if cfg.drawn_weight == 1:
        return None
    return torch.tensor([cfg.drawn_weight if kind in DRAWN else 1.0 for kind in cache.row_kinds()])


def encode_pair(ae, hr: torch.Tensor, lr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return encode_latents(ae, hr), encode_latents(ae, bicubic_upscale(lr, scale))


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
    # What the student reads for each row: the KL latent of the bicubic upscale (z_lr, the default), or the
    # latent a stand-in encoder gives for the LR image itself (`with_encoder`). The SR teachers always read z_lr.
    z_in: torch.Tensor | None = None
    # The rows' LR images (draw 0), cut and degraded once on first use (`lr_images`): a student that trains its encoder
    # reads them every step.
    lr: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.items is None:
            self.items = torch.arange(len(self.z_hr))
        if self.z_in is None:
            self.z_in = self.z_lr
        if len(self.z_in) != len(self.z_lr):
            raise ConfigError(f"PairCache: {len(self.z_in)} student inputs for {len(self.z_lr)} rows")

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

    def inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """The student's inputs for cache rows (see `z_in`)."""
        return self.z_in[rows.to(self.device)].float()

    def with_encoder(self, encoder: torch.nn.Module, batch: int = 32, draw: int = 0) -> PairCache:
        """This cache with the student's inputs from `encoder` (tocsr.core.models.parts.LREncoder, or
        tocsr.core.sr.onestep.LatentEncoder: bicubic + the autoencoder's encoder) on
        each row's LR image: a student deployed behind that encoder learns to map what it gives. HR latents, the KL
        latents and the SR teachers' answers (computed from those) are unchanged. `draw` > 0: the rows of a
        degradation with random parameters (degradations.DRAWN) read another draw of it (SRPairs.degraded), the
        same HR crop degraded anew; the other rows keep the inputs this cache has (so give a cache whose inputs
        `encoder` made: a draw of a bicubic row would only repeat them)."""
        encoder = encoder.to(self.device).eval()
        rows = [r for r, kind in enumerate(self.row_kinds()) if not draw or kind in DRAWN]
        z_in = self.z_in.clone()
        with torch.no_grad(), progress("sr/student-inputs", len(rows)) as bar:
            for i in range(0, len(rows), batch):
                chunk = rows[i:i + batch]
                lr = self.lr_images(torch.tensor(chunk), draw)
                z_in[torch.tensor(chunk, device=self.device)] = encoder(lr).to(self.z_lr.dtype)
                bar.update(len(chunk))
        return PairCache(self.pairs, self.z_hr, self.z_lr, self.items, z_in, self.lr)

    def lr_images(self, rows: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """The LR images of cache rows: draw 0, the ones the cache's latents were made from (kept after the first
        call), or another draw of their degradation, cut and degraded again (SRPairs.degraded)."""
        if draw:
            return torch.stack([self.pairs.degraded(int(self.items[int(r)]), draw)[1] for r in rows]).to(self.device)
        if self.lr is None:
            with progress("sr/lr-images", len(self.items)) as bar:
                images = []
                for i in self.items:
                    images.append(self.pairs.degraded(int(i))[1])
                    bar.update(1)
            self.lr = torch.stack(images).to(self.device)
        return self.lr[rows.to(self.device)]

    def of_kind(self, kind: str) -> PairCache:
        """The rows of one degradation (SRPairs alternates them), as a cache of their own (a copy)."""
        if kind not in self.pairs.kinds:
            raise ConfigError(f"degradation {kind!r}: this cache holds {', '.join(self.pairs.kinds)}")
        rows = (self.items % len(self.pairs.kinds) == self.pairs.kinds.index(kind)).nonzero()[:, 0]
        on = rows.to(self.device)
        return PairCache(self.pairs, self.z_hr[on], self.z_lr[on], self.items[rows], self.z_in[on],
                         None if self.lr is None else self.lr[on])

    def row_kinds(self) -> list[str]:
        """The degradation that made each row."""
        return [self.pairs.kinds[int(i) % len(self.pairs.kinds)] for i in self.items]

    def hr_pixels(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.pairs.hr(int(self.items[int(i)])) for i in idx]).to(self.device)


def train_sr_teacher(teacher, cache: PairCache, out_dir: Path, cfg: SRConfig, kind: str, resume: bool = False,
                     accelerator=None) -> SRDenoiser:
    """Widen the teacher into the conditional SR teacher for one degradation and train it on `cache` (that
    degradation's pairs); checkpoints under <out>/checkpoints/sr_teacher-<kind>, the result (EMA weights)
    saved to <out>/sr_teacher/<kind>/."""
    acc = accelerator or make_accelerator()
    ck = Checkpointer(out_dir / "checkpoints" / f"sr_teacher-{kind}")
    sched = sr_scheduler(teacher)
    model = SRDenoiser(widen_conv_in(teacher.unet, 16), teacher.denoiser.condition, sched.alphas_cumprod,
                       latent_residual_std(cache))
    # The base teacher's head predicts noise; as the preconditioned x0 head it starts at zero (the linear
    # estimate, see SRDenoiser).
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
    opt = adamw(params, lr=cfg.teacher_lr, weight_decay=1e-2)
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
            # Sampling never starts above t_start, so training spends its steps there; a share of the samples
            # is the chain's start state itself (the LR latent noised to t_start, see SRConfig).
            t = torch.randint(0, cfg.t_start + 1, (len(z_hr),), generator=gen)
            at_start = torch.rand(len(z_hr), generator=gen) < cfg.teacher_start_share
            t = torch.where(at_start, torch.full_like(t, cfg.t_start), t).to(z_hr.device)
            clean = torch.where(at_start.to(z_hr.device)[:, None, None, None], z_lr, z_hr)
            # In raw autoencoder units, as the student's latent loss: each channel counts as much as it moves
            # pixels. With the plain MSE on normalised latents the teacher scored 30.31 dB PSNR-Y (bicubic
            # deg., 50 calls), with the raw MSE 30.55, on the same data and steps.
            pred = wrapped(sched.add_noise(clean, noise, t), t, z_lr).float()
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
        save_sr_teacher(model, out_dir / SR_TEACHER_DIR / kind)
        sched.save_pretrained(out_dir / SR_SCHEDULER_DIR)
    acc.wait_for_everyone()
    return model


def chain_timesteps(steps: int, t_start: int) -> list[int]:
    """`steps` evenly spaced timesteps from t_start down (t_start, ..., t_start / steps): the chain starts
    exactly where the teacher was trained to start. diffusers' DDIM spacing started 10 below it (240 for
    20 calls from 250)."""
    if not 1 <= steps <= t_start:
        raise ConfigError(f"steps={steps}: an SR teacher chain from t_start={t_start} takes 1 to {t_start} calls")
    return [int(t) for t in torch.linspace(t_start, 0, steps + 1)[:-1].round()]


@torch.no_grad()
def sample_sr_teacher(model, alphas_cumprod: torch.Tensor, z_lr: torch.Tensor, steps: int, t_start: int,
                      seed: int, chains: int = 1) -> torch.Tensor:
    """Mean over `chains` deterministic DDIM chains (eta 0) of `steps` network calls each, every chain from the
    LR latent noised to t_start with its own noise; a chain's result is its last x0 estimate (the chain ends
    one stride above t = 0, where the state still holds a little noise). The chains run as one batch.
    `alphas_cumprod`: the SR scheduler's (sr_scheduler(...).alphas_cumprod), built once by the caller."""
    if chains < 1:
        raise ConfigError(f"chains={chains}: the SR teacher needs at least one chain")
    timesteps = chain_timesteps(steps, t_start)
    abar = alphas_cumprod.to(z_lr.device, z_lr.dtype)
    cond = z_lr.repeat(chains, 1, 1, 1)
    noise = torch.randn(cond.shape, generator=torch.Generator().manual_seed(seed)).to(z_lr)
    z = abar[t_start].sqrt() * cond + (1 - abar[t_start]).sqrt() * noise
    for i, t in enumerate(timesteps):
        x0 = model(z, torch.full((len(z),), t, dtype=torch.long, device=z.device), cond)
        if i + 1 < len(timesteps):
            a, a_next = abar[t], abar[timesteps[i + 1]]
            eps = (z - a.sqrt() * x0) / (1 - a).sqrt()
            z = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return x0.view(chains, *z_lr.shape).mean(0)


def build_student(teacher, space: SearchSpace, spec: ArchSpec, bank, cfg: SRConfig, backbone=None) -> OneStepStudent:
    """The one-step student for `spec`: its backbone from the teacher's blocks and the distilled surrogates, or
    from `backbone` (the same architecture, fine-tuned as a diffusion model) when given."""
    unet_config = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(space.unet_config).items()}
    student = OneStepStudent(unet_config=unet_config, arch_choices=spec.replaced(),
                             cond_tokens=int(teacher.denoiser.condition.config.cond_tokens),
                             cross_attention_dim=int(teacher.unet.config.cross_attention_dim), timestep=cfg.t_star)
    if backbone is None:
        load_teacher_weights(student.backbone, teacher.unet, space, spec)
        load_surrogate_weights(student.backbone, space, spec, {k: m.state_dict() for k, m in bank.items()})
    else:
        student.backbone.load_state_dict(backbone.state_dict())
    with torch.no_grad():
        student.null_condition.copy_(teacher.denoiser.condition.null(1))
        # Start as the identity map (z_hr = z_lr): the backbone's last layer begins at zero.
        student.backbone.unet.conv_out.weight.zero_()
        student.backbone.unet.conv_out.bias.zero_()
    return student


def train_student(teacher, sr_teachers: dict[str, SRDenoiser], sr_scheduler_config: dict, student: OneStepStudent,
                  cache: PairCache, out_dir: Path, cfg: SRConfig, resume: bool = False,
                  accelerator=None, name: str = "student", save: bool = True,
                  evaluate: Callable[[int, OneStepStudent, dict[str, torch.nn.Module]], None] | None = None,
                  evaluate_every: int = 0,
                  pixel_decoder: torch.nn.Module | None = None,
                  input_encoder: torch.nn.Module | None = None,
                  pixel_branch: torch.nn.Module | None = None) -> OneStepStudent:
    """Distil one student on `cache`; checkpoints under <out>/checkpoints/<name>, the result (EMA weights)
    saved to <out>/<name> when `save` (a per-degradation part is saved by the caller, combined).
    `evaluate(step, student, trained)` is called every `evaluate_every` steps with the EMA weights in place (the
    weights a run stopped there would return), in eval mode; training resumes from the raw weights after. `trained`
    holds the parts trained here, in their EMA state: {"decoder": ..., "encoder": ..., "branch": ...}, those that are.
    `pixel_decoder`: the decoder the pixel loss runs through (a TinyDecoder: latent -> image), None for the
    autoencoder's; frozen, or trained in place with the student where `cfg.train_decoder` (give a copy). With no
    teacher term (`cfg.uses_sr_teachers` false) the SR teachers are never run.
    `input_encoder`: what made the cache's student inputs from LR images (an LREncoder, or onestep.LatentEncoder); with
    `cfg.redraw_every` > 0 the randomly degraded rows are degraded and encoded anew every that many steps. Where
    `cfg.train_encoder` and it is an LREncoder, it is trained in place with the student (give a copy), encoding each
    step's LR images afresh.
    `pixel_branch`: the PixelBranch whose correction of each LR image is added to the decoded image the pixel term
    scores, trained in place with the student (give a copy); needed where `cfg.pixel_branch_width` > 0."""
    acc = accelerator or make_accelerator()
    dev = acc.device
    if cfg.redraw_every > 0 and input_encoder is None:
        raise ConfigError(f"SRConfig.redraw_every = {cfg.redraw_every}: degrading the pairs anew needs the module that "
                          "encodes the student's inputs (input_encoder); pass it, or set redraw_every = 0")
    ck = Checkpointer(out_dir / "checkpoints" / name)
    # Seeded: the discriminator's weights and spectral-norm vectors would otherwise come from the global
    # RNG, and two runs of the same config would train different students.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        disc = (PixelDiscriminator() if cfg.discriminator == "pixel"
                else LatentDiscriminator(student.backbone.unet.config.out_channels))
    latest = ck.latest() if resume else None
    if latest is not None:
        student = OneStepStudent.from_pretrained(latest / "student")
        disc.load_state_dict(torch.load(latest / "discriminator.pt", weights_only=True))
    student.to(dev)
    disc.to(dev)
    if (pixel_branch is None) != (cfg.pixel_branch_width == 0):
        raise ConfigError(f"SRConfig.pixel_branch_width = {cfg.pixel_branch_width}, but "
                          f"{'no' if pixel_branch is None else 'a'} pixel branch was given: pass a PixelBranch of that "
                          "width where it is above 0, and none where it is 0")
    if cfg.train_encoder and input_encoder is None:
        raise ConfigError("SRConfig.train_encoder = True: training the encoder needs it (input_encoder); pass it, or "
                          "set train_encoder = False")
    # the parts trained with the student (SRConfig.train_decoder / train_encoder); the autoencoder's own stay frozen
    trained = {name: m for name, m, on in (
        ("decoder", pixel_decoder, cfg.train_decoder),
        ("encoder", input_encoder, cfg.train_encoder and not isinstance(input_encoder, LatentEncoder)),
        ("branch", pixel_branch, True))
        if on and m is not None}
    for name, m in trained.items():
        if latest is not None:
            m.load_state_dict(type(m).from_pretrained(latest / name).state_dict())
        m.to(dev).train()
    if pixel_decoder is not None:
        pixel_decoder = pixel_decoder.to(dev).train("decoder" in trained)
        for p in pixel_decoder.parameters():
            p.requires_grad_("decoder" in trained)
    # what the optimiser and the EMA follow: the student's weights and the trained parts'
    params = [*student.parameters(), *(p for m in trained.values() for p in m.parameters())]
    # the encoder's and decoder's, held still for the first SRConfig.parts_frozen_steps (the pixel branch is not held)
    held = [p for name in ("encoder", "decoder") if name in trained for p in trained[name].parameters()]
    opt = adamw(params, lr=cfg.student_lr)
    opt_d = adamw(disc.parameters(), lr=cfg.student_lr, weight_decay=1e-2, betas=(0.5, 0.999))
    ema = EMAModel(params, decay=cfg.ema_decay, foreach=True)
    start = 0
    if latest is not None:
        state = load_optimizer(latest / "optimizer.pt", opt)
        opt_d.load_state_dict(state["opt_d"])
        ema.load_state_dict(state["ema"])
        start = int(ck.latest_meta()["step"])
    # a trained encoder reads each step's draw itself; otherwise the cache holds the draw's latents
    redraws = cfg.redraw_every > 0 and "encoder" not in trained
    if redraws and start >= cfg.redraw_every:      # resumed: the draw the stopped run was on
        cache = cache.with_encoder(input_encoder, draw=start // cfg.redraw_every)
    ema.to(dev)
    ae = teacher.autoencoder.to(dev)
    # The multi-step teachers' answers for a fixed subset of the cached LR latents, computed once; each row
    # by the teacher of the degradation that made it.
    n_t = min(cfg.teacher_cache, len(cache.z_lr)) if cfg.uses_sr_teachers else 0
    row_kinds = cache.row_kinds()[:n_t]
    missing = sorted(set(row_kinds) - set(sr_teachers))
    if missing:
        raise ConfigError(f"no SR teacher for degradation(s) {', '.join(missing)}; have {', '.join(sr_teachers)}")
    abar = DDPMScheduler.from_config(sr_scheduler_config).alphas_cumprod
    cache_lr = cache.z_lr[:n_t].float()
    cache_in = cache.inputs(torch.arange(n_t))        # what the student reads for those rows
    cache_teacher = torch.empty_like(cache_lr)
    with progress("sr/teacher-targets", n_t) as bar:
        for i in range(0, n_t, cfg.batch):
            kinds = row_kinds[i:i + cfg.batch]
            for kind in sorted(set(kinds)):
                rows = [i + r for r, k in enumerate(kinds) if k == kind]
                cache_teacher[rows] = sample_sr_teacher(sr_teachers[kind].to(dev), abar,
                                                        cache_lr[rows], cfg.sample_steps, cfg.t_start,
                                                        seed=cfg.seed + i, chains=cfg.sample_chains)
            bar.update(len(kinds))
    for p in ae.parameters():
        p.requires_grad_(False)
    wrapped, wrapped_disc, opt, opt_d = acc.prepare(student, disc, opt, opt_d)
    wrapped.train()
    # the trained parts run through the accelerator as the student does: with several processes their gradients are
    # averaged too, and on a GPU they run under the same autocast
    running = {name: acc.prepare(m) for name, m in trained.items()}
    decode = (lambda z: decode_latents(ae, z)) if pixel_decoder is None else running.get("decoder", pixel_decoder)
    trained_encoder = running.get("encoder")
    rank, world = acc.process_index, acc.num_processes
    weights = row_weights(cache, cfg)           # a redraw keeps the rows and their kinds
    with progress("sr/student", cfg.student_steps, start) as bar:
        for step in range(start, cfg.student_steps):
            if redraws and step > start and step % cfg.redraw_every == 0:
                cache = cache.with_encoder(input_encoder, draw=step // cfg.redraw_every)
            frac = step / max(1, cfg.student_steps)
            for g in opt.param_groups:
                g["lr"] = cfg.student_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            gen = torch.Generator().manual_seed(cfg.seed * 31 + step * world + rank)
            idx, z_hr, _ = cache.sample(gen, cfg.batch)
            draw = step // cfg.redraw_every if cfg.redraw_every > 0 else 0
            lr_px = cache.lr_images(idx, draw) if trained_encoder is not None or "branch" in running else None
            pred = wrapped(cache.inputs(idx) if trained_encoder is None else trained_encoder(lr_px))
            w = None if weights is None else weights[idx].to(dev)
            loss_latent = log_latent_mse(ae, pred.float(), z_hr, cfg.loss_floor, w)
            if n_t:
                ci = torch.randint(0, n_t, (max(1, cfg.batch // 4),), generator=gen).to(dev)
                # the teachers answered the rows' first draw (their KL latents): the student reads that draw too
                pred_c = wrapped(cache_in[ci] if trained_encoder is None else trained_encoder(cache.lr_images(ci)))
                loss_teacher = log_latent_mse(ae, pred_c.float(), cache_teacher[ci], cfg.teacher_target_floor)
            else:
                loss_teacher = torch.zeros((), device=dev)
            k = min(cfg.pixel_share, len(idx))
            decoded, hr_px = decode(pred[:k]), cache.hr_pixels(idx[:k])
            if "branch" in running:             # the deployed image: the decoder's plus the branch's correction
                decoded = decoded + running["branch"](lr_px[:k])
            loss_pixel = pixel_loss(decoded, hr_px, cfg, None if w is None else w[:k])
            # what the discriminator judges (SRConfig.discriminator): the latents, or the images decoded from them
            fake, real = (decoded, hr_px) if cfg.discriminator == "pixel" else (pred, z_hr)
            loss_adv = -wrapped_disc(fake).float().mean()
            loss = (cfg.w_latent * loss_latent + cfg.w_teacher * loss_teacher + cfg.w_pixel * loss_pixel
                    + cfg.w_adv * loss_adv)
            check_finite(loss, step, ck)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            if step < cfg.parts_frozen_steps:
                # no gradient, no step: AdamW skips them (moments and weight decay too); after the backward pass, so
                # the processes of a multi-process run have averaged the same graph
                for p in held:
                    p.grad = None
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            ema.step(params)
            d_loss = (F.relu(1 - wrapped_disc(real).float()).mean()
                      + F.relu(1 + wrapped_disc(fake.detach()).float()).mean())
            opt_d.zero_grad(set_to_none=True)
            acc.backward(d_loss)
            opt_d.step()
            bar.update(1, latent=loss_latent.item(), teacher=loss_teacher.item(), d=d_loss.item())
            if evaluate is not None and evaluate_every > 0 and (step + 1) % evaluate_every == 0:
                ema.store(params)
                ema.copy_to(params)
                for m in (student, *trained.values()):
                    m.eval()
                evaluate(step + 1, student, trained)
                for m in (student, *trained.values()):
                    m.train()
                ema.restore(params)
            if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.student_steps):
                def write(d: Path) -> None:
                    student.save_pretrained(d / "student")
                    for name, m in trained.items():
                        m.save_pretrained(d / name)
                    torch.save(disc.state_dict(), d / "discriminator.pt")
                    save_optimizer(d / "optimizer.pt", opt, {"ema": ema.state_dict(), "opt_d": opt_d.state_dict()})

                ck.save(step + 1, write, {"loss": loss.item()})
    ema.copy_to(params)
    for m in trained.values():
        m.eval()
    student = acc.unwrap_model(wrapped, keep_fp32_wrapper=False).eval()
    if acc.is_main_process and save:
        student.save_pretrained(out_dir / name)
    acc.wait_for_everyone()
    return student
