"""Stage 1 of the teacher: the 16-channel autoencoder (L1 + L2 + KL, perceptual when available)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tocsr.core.data import Photo, RandomPatches, grid_patches
from tocsr.core.metrics import bicubic_down_up, psnr
from tocsr.core.models.autoencoder import (
    AUTOENCODER_CLASSES,
    ShortcutAutoencoderKL,
    build_autoencoder_from_preset,
    decode_latents,
    encode_latents,
    get_autoencoder_preset,
    set_latent_stats,
)
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


@dataclass(frozen=True)
class AutoencoderReport:
    val_psnr_db: float
    val_psnr_y_db: float
    bicubic_x4_psnr_db: float
    bicubic_x4_psnr_y_db: float
    val_images: int
    steps: int
    perceptual: str
    pca_variance_kept: float | None
    source: str = "trained"              # or "imported from <folder>" (tocsr.core.teacher.importing)

    @property
    def margin_db(self) -> float:
        return self.val_psnr_db - self.bicubic_x4_psnr_db


def perceptual_loss_or_reason():
    """LPIPS through pyiqa when its weights are already in the local cache; else (None, why not)."""
    try:
        import pyiqa  # noqa: F401
    except ImportError:
        return None, "off: pyiqa is not installed"
    from tocsr.core.iqa import load_metric

    metric, reason = load_metric("lpips", as_loss=True)
    return metric, ("on: LPIPS" if metric is not None else f"off: {reason}")


class _ReconstructionStep(torch.nn.Module):
    """forward(x) -> (reconstruction, KL): one module, so DDP sees the whole step through forward()."""

    def __init__(self, ae):
        super().__init__()
        self.ae = ae

    def forward(self, x: torch.Tensor):
        posterior = self.ae.encode(x).latent_dist
        return self.ae.decode(posterior.sample()).sample, posterior.kl().mean()


@torch.no_grad()
def evaluate_autoencoder(ae, val: torch.Tensor, batch: int = 8) -> dict[str, float]:
    ae.eval()
    rec = torch.cat([decode_latents(ae, encode_latents(ae, val[i:i + batch])).clamp(-1, 1)
                     for i in range(0, len(val), batch)])
    bic = bicubic_down_up(val, 4)
    return {"val_psnr_db": psnr(rec, val).mean().item(), "val_psnr_y_db": psnr(rec, val, y_channel=True).mean().item(),
            "bicubic_x4_psnr_db": psnr(bic, val).mean().item(),
            "bicubic_x4_psnr_y_db": psnr(bic, val, y_channel=True).mean().item()}


def train_autoencoder(train: list[Photo], val: list[Photo], preset: TeacherPreset, out_dir: Path,
                      accelerator, resume: bool) -> AutoencoderReport:
    cfg = preset.ae_training
    final_dir = out_dir / "autoencoder"
    cls = AUTOENCODER_CLASSES[get_autoencoder_preset(preset.autoencoder).cls_name]
    val_images = grid_patches(val, preset.image_px, per_image=4)
    checkpointer = Checkpointer(out_dir / "checkpoints" / "autoencoder")
    torch.manual_seed(preset.seed)
    ae = build_autoencoder_from_preset(preset.autoencoder)
    pca_kept = None
    if isinstance(ae, ShortcutAutoencoderKL):
        crops = RandomPatches(train, cfg.patch_px, cfg.pca_images, seed=preset.seed + 101)
        pca_kept = ae.init_shortcuts_from_images(torch.stack([crops[i] for i in range(len(crops))]))
    optimizer = adamw(ae.parameters(), lr=cfg.lr)
    start = 0
    latest = checkpointer.latest() if resume else None
    if latest is not None:
        ae = cls.from_pretrained(latest / "autoencoder")
        optimizer = adamw(ae.parameters(), lr=cfg.lr)
        load_optimizer(latest / "optimizer.pt", optimizer)
        start = int(checkpointer.latest_meta()["step"])
        log.info("autoencoder: resuming from %s", latest)
    perceptual, perceptual_note = perceptual_loss_or_reason()
    step_module, optimizer = accelerator.prepare(_ReconstructionStep(ae), optimizer)
    data = RandomPatches(train, cfg.patch_px, (cfg.steps + 1) * cfg.batch * accelerator.num_processes, preset.seed)
    step_module.train()
    with progress("teacher/autoencoder", cfg.steps, start) as bar:
        for step in range(start, cfg.steps):
            idx = batch_indices(step, cfg.batch, accelerator.process_index, accelerator.num_processes)
            x = torch.stack([data[i] for i in idx]).to(accelerator.device)
            rec, kl = step_module(x)
            loss = cfg.l1_weight * F.l1_loss(rec, x) + cfg.mse_weight * F.mse_loss(rec, x) + cfg.kl_weight * kl
            if perceptual is not None:
                loss = loss + cfg.perceptual_weight * perceptual(rec.clamp(-1, 1) * 0.5 + 0.5, x * 0.5 + 0.5).mean()
            check_finite(loss, step, checkpointer)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            bar.update(1, loss=loss.item())
            if accelerator.is_main_process and ((step + 1) % 200 == 0 or step + 1 == cfg.steps):
                model = accelerator.unwrap_model(step_module).ae

                def write(d: Path, model=model) -> None:
                    model.save_pretrained(d / "autoencoder")
                    save_optimizer(d / "optimizer.pt", optimizer)

                checkpointer.save(step + 1, write, {"loss": loss.item()})
    model = accelerator.unwrap_model(step_module).ae.eval()
    stats_crops = RandomPatches(train, preset.image_px, 256, seed=preset.seed + 202)
    set_latent_stats(model, torch.stack([stats_crops[i] for i in range(len(stats_crops))]).to(accelerator.device))
    if accelerator.is_main_process:
        model.save_pretrained(final_dir)
    accelerator.wait_for_everyone()     # other ranks read the saved folder next
    scores = evaluate_autoencoder(model, val_images.to(accelerator.device))
    return AutoencoderReport(**scores, val_images=len(val_images), steps=cfg.steps, perceptual=perceptual_note,
                             pca_variance_kept=pca_kept)
