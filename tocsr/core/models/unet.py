"""Diffusion UNet presets on a 16-channel latent (the "expanded" teacher).

All presets are diffusers `UNet2DConditionModel` configurations, so SD-shaped checkpoints load with
`from_pretrained(local_dir)`. Conditioning comes through `encoder_hidden_states` of
`cond_tokens` tokens: a learned null/class embedding here (no text encoder is available offline),
77 text tokens for SD-shaped checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from tocsr.core.errors import ConfigError

LATENT_CHANNELS = 16


@dataclass(frozen=True)
class UNetPreset:
    name: str
    description: str
    config: dict[str, Any]
    cond_tokens: int

    @property
    def cross_attention_dim(self) -> int:
        return int(self.config["cross_attention_dim"])


def _cfg(**kw: Any) -> dict[str, Any]:
    base = {"in_channels": LATENT_CHANNELS, "out_channels": LATENT_CHANNELS, "use_linear_projection": True}
    base.update(kw)
    return base


def _sd21_shaped(**widths: Any) -> dict[str, Any]:
    """SD 2.1's block structure: four levels, cross-attention in the first three, linear projections, one head
    count per level; `widths` sets the channels, heads, conditioning width and sample size."""
    return _cfg(layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                **widths)


UNET_PRESETS: dict[str, UNetPreset] = {
    "tiny": UNetPreset(
        "tiny", "CPU preset: trains in minutes on 2 cores; 16x16 latents of 128px images",
        _cfg(sample_size=16, block_out_channels=(32, 64, 64), layers_per_block=2,
             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
             attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8),
        cond_tokens=1),
    "base": UNetPreset(
        "base", "one-GPU preset: 32x32 latents of 256px images",
        _cfg(sample_size=32, block_out_channels=(128, 256, 384, 384), layers_per_block=2,
             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
             attention_head_dim=32, cross_attention_dim=256, norm_num_groups=32),
        cond_tokens=1),
    "sd21": UNetPreset(
        "sd21", "Stable Diffusion 2.1 UNet shape widened to a 16-channel latent (paper scale, ~866M params)",
        _sd21_shaped(sample_size=64, block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                     cross_attention_dim=1024, norm_num_groups=32),
        cond_tokens=77),
    # SD 2.1's structure at a width a CPU runs in seconds: the shape the import tests write as a checkpoint.
    "sd21-tiny": UNetPreset(
        "sd21-tiny", "SD-2.1-shaped UNet at reduced width, for tests of import and the gpu preset on CPU",
        _sd21_shaped(sample_size=8, block_out_channels=(32, 32, 64, 64), attention_head_dim=(2, 2, 4, 4),
                     cross_attention_dim=64, norm_num_groups=8),
        cond_tokens=4),
}


def get_unet_preset(name: str) -> UNetPreset:
    if name not in UNET_PRESETS:
        raise ConfigError(f"UNet preset {name!r} does not exist; available: {', '.join(UNET_PRESETS)}")
    return UNET_PRESETS[name]


def build_unet_from_preset(name: str, device: str | torch.device = "cpu") -> UNet2DConditionModel:
    """A randomly initialised UNet of the preset's shape. On `device="meta"` nothing is allocated,
    which is enough to count parameters and MACs of paper-scale shapes."""
    preset = get_unet_preset(name)
    with torch.device(device):
        return UNet2DConditionModel(**preset.config)


def unet_example_inputs(config: dict[str, Any], cond_tokens: int, batch: int, latent_px: int,
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        seed: int = 0) -> tuple[tuple, dict[str, Any]]:
    """(args, kwargs) for one denoising call: noisy latent, timestep, conditioning tokens."""
    gen = torch.Generator().manual_seed(seed)
    channels = int(config.get("in_channels", LATENT_CHANNELS))
    sample = torch.randn(batch, channels, latent_px, latent_px, generator=gen)
    cond = torch.randn(batch, cond_tokens, int(config["cross_attention_dim"]), generator=gen)
    timestep = torch.full((batch,), 500, dtype=torch.long)
    return ((sample.to(device, dtype), timestep.to(device)),
            {"encoder_hidden_states": cond.to(device, dtype), "return_dict": False})
