"""A tiny untrained teacher for tests of what only needs its shapes (cost, export): built in a second on CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from tocsr.core.models.autoencoder import build_autoencoder_from_preset, set_latent_stats
from tocsr.core.models.condition import ConditionEmbedding
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.teacher.diffusion_train import Denoiser, make_scheduler
from tocsr.core.teacher.presets import get_teacher_preset
from tocsr.core.teacher.train import Teacher


def tiny_teacher(folder: Path, seed: int = 0) -> Teacher:
    """The `tiny` autoencoder and UNet with the `smoke` preset's scheduler, weights as initialised (seeded)."""
    torch.manual_seed(seed)
    ae = build_autoencoder_from_preset("tiny").eval()
    set_latent_stats(ae, torch.rand(4, 3, 64, 64) * 2 - 1)
    unet = build_unet_from_preset("tiny", "cpu").eval()
    condition = ConditionEmbedding(cond_tokens=1, cross_attention_dim=unet.config.cross_attention_dim)
    preset = get_teacher_preset("smoke")
    return Teacher(preset, ae, Denoiser(unet, condition).eval(), make_scheduler(preset), folder)
