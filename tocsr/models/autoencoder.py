"""16-channel latent autoencoders at f8: diffusers AutoencoderKL presets, and an AutoencoderTiny
16-channel option (TAESD3-shaped) for cheap encoding/decoding.

`sd3-shape` is Stable Diffusion 3's VAE configuration, so its real weights load with
`AutoencoderKL.from_pretrained(local_dir)` when a user has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from tocsr.errors import ConfigError

LATENT_CHANNELS = 16


@dataclass(frozen=True)
class AutoencoderPreset:
    name: str
    description: str
    cls_name: str            # "AutoencoderKL" or "AutoencoderTiny"
    config: dict[str, Any]


def _kl(channels: tuple[int, ...], layers: int, groups: int = 32, **extra: Any) -> dict[str, Any]:
    n = len(channels)
    cfg = {"in_channels": 3, "out_channels": 3, "latent_channels": LATENT_CHANNELS,
           "down_block_types": ("DownEncoderBlock2D",) * n, "up_block_types": ("UpDecoderBlock2D",) * n,
           "block_out_channels": channels, "layers_per_block": layers, "norm_num_groups": groups}
    cfg.update(extra)
    return cfg


AUTOENCODER_PRESETS: dict[str, AutoencoderPreset] = {
    "tiny": AutoencoderPreset("tiny", "CPU preset, f8, 16 channels", "AutoencoderKL",
                              _kl((32, 64, 64, 64), 1, groups=16, use_quant_conv=False, use_post_quant_conv=False)),
    "base": AutoencoderPreset("base", "one-GPU preset, f8, 16 channels", "AutoencoderKL",
                              _kl((64, 128, 256, 256), 2, use_quant_conv=False, use_post_quant_conv=False)),
    "sd3-shape": AutoencoderPreset("sd3-shape", "Stable Diffusion 3 VAE configuration (f8, 16 channels, ~84M params)",
                                   "AutoencoderKL",
                                   _kl((128, 256, 512, 512), 2, use_quant_conv=False, use_post_quant_conv=False,
                                       scaling_factor=1.5305, shift_factor=0.0609, sample_size=1024)),
    "tiny16": AutoencoderPreset("tiny16", "AutoencoderTiny with a 16-channel latent (TAESD3 shape, ~2.4M params)",
                                "AutoencoderTiny",
                                {"in_channels": 3, "out_channels": 3, "latent_channels": LATENT_CHANNELS,
                                 "encoder_block_out_channels": (64, 64, 64, 64),
                                 "decoder_block_out_channels": (64, 64, 64, 64)}),
}


def get_autoencoder_preset(name: str) -> AutoencoderPreset:
    if name not in AUTOENCODER_PRESETS:
        raise ConfigError(f"autoencoder preset {name!r} does not exist; available: {', '.join(AUTOENCODER_PRESETS)}")
    return AUTOENCODER_PRESETS[name]


def build_autoencoder_from_preset(name: str, device: str | torch.device = "cpu") -> AutoencoderKL | AutoencoderTiny:
    preset = get_autoencoder_preset(name)
    cls = {"AutoencoderKL": AutoencoderKL, "AutoencoderTiny": AutoencoderTiny}[preset.cls_name]
    with torch.device(device):
        return cls(**preset.config)
