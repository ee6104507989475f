"""Stage 2 of the teacher: the expanded diffusion UNet on 16-channel latents.

The autoencoder is frozen; training crops are encoded once into a latent cache (each step then
costs only the UNet). Per-step noise and timesteps come from a generator seeded by the step, so a
resumed run continues exactly as an uninterrupted one would.
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

from tocsr.core.data import Photo, RandomPatches, grid_patches
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import encode_latents
from tocsr.core.models.condition import ConditionEmbedding
from tocsr.core.models.unet import get_unet_preset
from tocsr.core.teacher.evaluate import denoising_error, prediction_target
from tocsr.core.teacher.importing import load_unet
from tocsr.core.teacher.presets import TeacherPreset
from tocsr.core.training import (
    Checkpointer,
    adamw,
    batch_indices,
    check_finite,
    load_optimizer,
    progress,
    save_optimizer,
)

log = logging.getLogger(__name__)


class Denoiser(torch.nn.Module):
    """UNet + its conditioning as one module: forward(z_t, t, class_ids=None) -> prediction."""

    def __init__(self, unet: UNet2DConditionModel, condition: ConditionEmbedding):
        super().__init__()
        self.unet, self.condition = unet, condition

    def forward(self, zt: torch.Tensor, t: torch.Tensor, class_ids: torch.Tensor | None = None) -> torch.Tensor:
        cond = self.condition.null(zt.shape[0]) if class_ids is None else self.condition(class_ids)
        return self.unet(zt, t, encoder_hidden_states=cond.to(zt.dtype), return_dict=False)[0]


def make_scheduler(preset: TeacherPreset) -> DDPMScheduler:
    d = preset.diffusion
    if d.zero_terminal_snr and d.prediction_type != "v_prediction":
        raise ConfigError(f"teacher preset {preset.name!r}: zero_terminal_snr needs prediction_type "
                          f"'v_prediction', got {d.prediction_type!r}")
    # clip_sample off: latents are unit-variance, not in [-1, 1] (see latent_ddim). The sampler built
    # from this config (latent_ddim) inherits the rescaled betas and the spacing.
    return DDPMScheduler(num_train_timesteps=d.num_train_timesteps, beta_schedule=d.beta_schedule,
                         beta_start=0.00085, beta_end=0.012, prediction_type=d.prediction_type, clip_sample=False,
                         rescale_betas_zero_snr=d.zero_terminal_snr,
                         timestep_spacing="trailing" if d.zero_terminal_snr else "leading")


@torch.no_grad()
def build_latent_cache(ae, photos: list[Photo], image_px: int, count: int, seed: int,
                       device: torch.device, batch: int = 32) -> torch.Tensor:
    crops = RandomPatches(photos, image_px, count, seed)
    out = []
    for i in range(0, count, batch):
        x = torch.stack([crops[j] for j in range(i, min(count, i + batch))]).to(device)
        out.append(encode_latents(ae, x).cpu())
    return torch.cat(out)


@torch.no_grad()
def build_val_latents(ae, photos: list[Photo], image_px: int, device: torch.device) -> torch.Tensor:
    return encode_latents(ae, grid_patches(photos, image_px, per_image=4).to(device)).cpu()


@dataclass(frozen=True)
class DiffusionReport:
    steps: int
    final_loss: float
    val_error_untrained: dict[str, float]
    val_error_trained: dict[str, float]
    prediction_type: str


def _lr_at(step: int, preset: TeacherPreset) -> float:
    d = preset.diffusion
    if step < d.warmup_steps:
        return d.lr * (step + 1) / d.warmup_steps
    progress_frac = (step - d.warmup_steps) / max(1, d.steps - d.warmup_steps)
    return d.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac))))


def new_denoiser(preset: TeacherPreset, init_unet: Path | None = None, latent_side: int | None = None,
                 unet_option: str = "--init-unet") -> Denoiser:
    """A fresh denoiser of the preset's shape, or one starting from a UNet folder (checked and, from 4 channels,
    widened by `tocsr.core.teacher.importing.load_unet`). The condition tokens are always new: the teacher is
    conditioned on a learned embedding, not on a text encoder."""
    unet_preset = get_unet_preset(preset.unet)
    torch.manual_seed(preset.seed)
    if init_unet is not None:
        unet = load_unet(init_unet, preset, latent_side or preset.image_px // 8, option=unet_option)
    else:
        unet = UNet2DConditionModel(**unet_preset.config)
    condition = ConditionEmbedding(1, unet_preset.cond_tokens, int(unet.config.cross_attention_dim))
    return Denoiser(unet, condition)


def train_diffusion(latents: torch.Tensor, val_latents: torch.Tensor, preset: TeacherPreset, out_dir: Path,
                    accelerator, resume: bool, init_unet: Path | None = None,
                    unet_option: str = "--init-unet") -> DiffusionReport:
    d = preset.diffusion
    scheduler = make_scheduler(preset)
    checkpointer = Checkpointer(out_dir / "checkpoints" / "unet")
    model = new_denoiser(preset, init_unet, latents.shape[-1], unet_option)
    untrained = denoising_error(lambda z, t: model(z, t), scheduler, val_latents)
    optimizer = adamw(model.parameters(), lr=d.lr, weight_decay=1e-2)
    ema = EMAModel(model.parameters(), decay=d.ema_decay)
    start = 0
    latest = checkpointer.latest() if resume else None
    if latest is not None:
        meta = checkpointer.latest_meta()
        model.unet = UNet2DConditionModel.from_pretrained(latest / "unet")
        model.condition = ConditionEmbedding.from_pretrained(latest / "condition")
        optimizer = adamw(model.parameters(), lr=d.lr, weight_decay=1e-2)
        state = load_optimizer(latest / "optimizer.pt", optimizer)
        ema = EMAModel(model.parameters(), decay=d.ema_decay)
        ema.load_state_dict(state["ema"])
        untrained = meta["val_error_untrained"]
        start = int(meta["step"])
        log.info("diffusion: resuming from %s at step %d", latest, start)
    if d.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.to(accelerator.device)
    model.train()
    # Killed after the last checkpoint but before the end: no step runs on restart, so the final
    # loss is the one that checkpoint recorded (never NaN, which JSON cannot hold).
    loss = torch.tensor(float(meta["loss"]) if start else float("nan"))
    with progress("teacher/unet", d.steps, start) as bar:
        for step in range(start, d.steps):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, preset)
            idx = torch.tensor(list(batch_indices(step, d.batch, accelerator.process_index,
                                                  accelerator.num_processes))) % len(latents)
            z0 = latents[idx].to(accelerator.device)
            gen = torch.Generator().manual_seed(preset.seed * 1_000_003 + step * 101 + accelerator.process_index)
            noise = torch.randn(z0.shape, generator=gen).to(z0)
            t = torch.randint(0, d.num_train_timesteps, (len(z0),), generator=gen).to(z0.device)
            if torch.rand((), generator=gen) < 0.5:   # latent-space flip doubles the cache's variety
                z0, noise = z0.flip(-1), noise.flip(-1)
            zt = scheduler.add_noise(z0, noise, t)
            pred = model(zt, t)
            loss = F.mse_loss(pred.float(), prediction_target(scheduler, z0, noise, t).float())
            check_finite(loss, step, checkpointer)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), d.grad_clip)
            optimizer.step()
            ema.step(accelerator.unwrap_model(model).parameters())
            bar.update(1, loss=loss.item(), lr=_lr_at(step, preset))
            if accelerator.is_main_process and ((step + 1) % d.checkpoint_every == 0 or step + 1 == d.steps):
                inner = accelerator.unwrap_model(model)

                def write(path: Path, inner=inner) -> None:
                    inner.unet.save_pretrained(path / "unet")
                    inner.condition.save_pretrained(path / "condition")
                    save_optimizer(path / "optimizer.pt", optimizer, {"ema": ema.state_dict()})

                checkpointer.save(step + 1, write, {"loss": loss.item(), "val_error_untrained": untrained})
    inner = accelerator.unwrap_model(model).eval()
    ema.copy_to(inner.parameters())          # the teacher is the EMA of the weights
    if d.gradient_checkpointing:
        inner.unet.disable_gradient_checkpointing()
    trained = denoising_error(lambda z, t: inner(z.to(accelerator.device), t.to(accelerator.device)).cpu(),
                              scheduler, val_latents)
    if accelerator.is_main_process:
        inner.unet.save_pretrained(out_dir / "unet")
        inner.condition.save_pretrained(out_dir / "condition")
        scheduler.save_pretrained(out_dir / "scheduler")
    accelerator.wait_for_everyone()     # other ranks read the saved folders next
    return DiffusionReport(d.steps, float(loss.item()), untrained, trained, d.prediction_type)
