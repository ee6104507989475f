"""16-channel latent autoencoders at f8: diffusers AutoencoderKL presets, and an AutoencoderTiny
16-channel option (TAESD3-shaped) for cheap encoding/decoding.

`sd3-shape` is Stable Diffusion 3's VAE configuration, so its real weights load with
`AutoencoderKL.from_pretrained(local_dir)` when a user has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderTiny
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from torch import nn

from tocsr.core.errors import ConfigError

LATENT_CHANNELS = 16


@dataclass(frozen=True)
class AutoencoderPreset:
    name: str
    description: str
    cls_name: str            # "AutoencoderKL", "ShortcutAutoencoderKL" or "AutoencoderTiny"
    config: dict[str, Any]


def _kl(channels: tuple[int, ...], layers: int, groups: int = 32, **extra: Any) -> dict[str, Any]:
    n = len(channels)
    cfg = {"in_channels": 3, "out_channels": 3, "latent_channels": LATENT_CHANNELS,
           "down_block_types": ("DownEncoderBlock2D",) * n, "up_block_types": ("UpDecoderBlock2D",) * n,
           "block_out_channels": channels, "layers_per_block": layers, "norm_num_groups": groups}
    cfg.update(extra)
    return cfg


AUTOENCODER_PRESETS: dict[str, AutoencoderPreset] = {
    "tiny": AutoencoderPreset("tiny", "CPU preset, f8, 16 channels, PCA-initialised space-to-channel shortcuts",
                              "ShortcutAutoencoderKL",
                              _kl((32, 64, 64, 64), 1, groups=16, use_quant_conv=False, use_post_quant_conv=False)),
    "base": AutoencoderPreset("base", "one-GPU preset, f8, 16 channels", "AutoencoderKL",
                              _kl((64, 128, 256, 256), 2, use_quant_conv=False, use_post_quant_conv=False)),
    "sd3-shape": AutoencoderPreset("sd3-shape", "Stable Diffusion 3 VAE configuration (f8, 16 channels, ~84M params)",
                                   "AutoencoderKL",
                                   _kl((128, 256, 512, 512), 2, use_quant_conv=False, use_post_quant_conv=False,
                                       scaling_factor=1.5305, shift_factor=0.0609, sample_size=1024)),
    "sd3-tiny": AutoencoderPreset("sd3-tiny", "the SD3 VAE configuration at reduced width (tests of import on CPU)",
                                  "AutoencoderKL",
                                  _kl((16, 32, 32, 32), 1, groups=8, use_quant_conv=False, use_post_quant_conv=False,
                                      scaling_factor=1.5305, shift_factor=0.0609, sample_size=64)),
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
    cls = AUTOENCODER_CLASSES[preset.cls_name]
    with torch.device(device):
        return cls(**preset.config)


class ShortcutAutoencoderKL(AutoencoderKL):
    """AutoencoderKL with linear space-to-channel shortcuts around the encoder and the decoder.

    Why: from scratch, a deep VAE needs far more steps than a CPU preset can afford before it beats
    even a linear code (on the default photographs, 16 PCA coefficients per 8x8 colour block give
    32.3 dB where bicubic x4 gives 28.9 dB, while the plain tiny AutoencoderKL was at ~23.5 dB after
    2,400 steps). Following DC-AE's residual autoencoding (Chen et al., 2024), pixel-unshuffled
    patches reach the latent through a 1x1 convolution, and the latent reaches the image the same
    way. `init_shortcuts_from_images` sets both to the data's PCA basis and zeroes the deep paths'
    output convolutions, so training starts at the PCA solution and improves on it.
    It is an AutoencoderKL: encode/decode, latent_dist, scaling/shift factors all behave the same.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
                 up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
                 block_out_channels: tuple[int, ...] = (64,), layers_per_block: int = 1, act_fn: str = "silu",
                 latent_channels: int = 4, norm_num_groups: int = 32, sample_size: int = 32,
                 scaling_factor: float = 0.18215, shift_factor: float | None = None,
                 latents_mean: tuple[float, ...] | None = None, latents_std: tuple[float, ...] | None = None,
                 force_upcast: bool = True, use_quant_conv: bool = True, use_post_quant_conv: bool = True,
                 mid_block_add_attention: bool = True):
        super().__init__(in_channels, out_channels, down_block_types, up_block_types, block_out_channels,
                         layers_per_block, act_fn, latent_channels, norm_num_groups, sample_size, scaling_factor,
                         shift_factor, latents_mean, latents_std, force_upcast, use_quant_conv, use_post_quant_conv,
                         mid_block_add_attention)
        self.patch = 2 ** (len(block_out_channels) - 1)
        patch_dim = in_channels * self.patch ** 2
        self.shortcut_in = nn.Conv2d(patch_dim, 2 * latent_channels, 1)
        self.shortcut_out = nn.Conv2d(latent_channels, out_channels * self.patch ** 2, 1)
        with torch.no_grad():
            self.shortcut_in.bias[latent_channels:].fill_(-12.0)   # near-deterministic latents at the start

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return super()._encode(x) + self.shortcut_in(F.pixel_unshuffle(x, self.patch))

    def _decode(self, z: torch.Tensor, return_dict: bool = True):
        dec = super()._decode(z, return_dict=False)[0] + F.pixel_shuffle(self.shortcut_out(z), self.patch)
        return DecoderOutput(sample=dec) if return_dict else (dec,)

    @torch.no_grad()
    def init_shortcuts_from_images(self, images: torch.Tensor) -> float:
        """PCA of the images' patches -> shortcut weights; zero the deep paths' last convolutions.
        `images`: (N, 3, H, W) in [-1, 1]. Returns the fraction of patch variance the latent keeps."""
        k, p = self.config.latent_channels, self.patch
        blocks = F.pixel_unshuffle(images.float(), p).permute(0, 2, 3, 1).reshape(-1, images.shape[1] * p * p)
        mean = blocks.mean(0)
        _, s, v = torch.linalg.svd(blocks - mean, full_matrices=False)
        basis = v[:k]                                                      # (k, patch_dim)
        w_in = self.shortcut_in.weight
        w_in.zero_()
        w_in[:k, :, 0, 0] = basis
        self.shortcut_in.bias[:k] = -(basis @ mean)
        self.shortcut_in.bias[k:] = -12.0
        self.shortcut_out.weight.copy_(basis.T[:, :, None, None])
        self.shortcut_out.bias.copy_(mean)
        for conv in (self.encoder.conv_out, self.decoder.conv_out):
            conv.weight.zero_()
            conv.bias.zero_()
        if self.quant_conv is not None or self.post_quant_conv is not None:
            raise ValueError("ShortcutAutoencoderKL expects use_quant_conv=False and use_post_quant_conv=False")
        energy = s.square()
        return float(energy[:k].sum() / energy.sum())


AUTOENCODER_CLASSES = {"AutoencoderKL": AutoencoderKL, "ShortcutAutoencoderKL": ShortcutAutoencoderKL,
                       "AutoencoderTiny": AutoencoderTiny}


def _latent_stat_values(ae) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = ae.config
    c = cfg.latent_channels
    if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
        return tuple(float(v) for v in cfg.latents_mean), tuple(float(v) for v in cfg.latents_std)
    shift = float(getattr(cfg, "shift_factor", None) or 0.0)
    scale = float(getattr(cfg, "scaling_factor", None) or 1.0)
    return (shift,) * c, (1.0 / scale,) * c


def latent_stats(ae, like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) that map the autoencoder's latents to zero mean, unit variance, on `like`'s device
    and dtype (else on the CPU).

    Uses the config's per-channel `latents_mean`/`latents_std` when set (computed from data by
    `set_latent_stats`), else the global shift/scaling factors as SD-style checkpoints carry them. On a device
    they are made once per (device, dtype, values) and kept on the module: a copy from host memory on every
    call would cost a transfer per call and cannot be captured in a CUDA graph.
    """
    mean, std = _latent_stat_values(ae)
    c = len(mean)
    if like is None:
        return torch.tensor(mean).view(1, c, 1, 1), torch.tensor(std).view(1, c, 1, 1)
    cache = ae.__dict__.setdefault("_latent_stats_on_device", {})
    key = (like.device, like.dtype, mean, std)
    if key not in cache:
        # Normal tensors even when first asked for under inference mode: training divides by std and saves it.
        with torch.inference_mode(False):
            cache[key] = tuple(torch.tensor(v, dtype=like.dtype).view(1, c, 1, 1).to(like.device) for v in (mean, std))
    return cache[key]


def normalize_latents(ae, z: torch.Tensor) -> torch.Tensor:
    mean, std = latent_stats(ae, z)
    return (z - mean) / std


def denormalize_latents(ae, z: torch.Tensor) -> torch.Tensor:
    mean, std = latent_stats(ae, z)
    return z * std + mean


def encode_latents(ae, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> normalised latents (posterior mode for KL autoencoders)."""
    if isinstance(ae, AutoencoderTiny):
        z = ae.encode(images).latents
    else:
        z = ae.encode(images).latent_dist.mode()
    return normalize_latents(ae, z)


def decode_latents(ae, z: torch.Tensor) -> torch.Tensor:
    return ae.decode(denormalize_latents(ae, z)).sample


@torch.no_grad()
def set_latent_stats(ae, images: torch.Tensor, batch: int = 16) -> dict[str, list[float]]:
    """Compute per-channel latent mean/std over `images` and store them in the config."""
    if isinstance(ae, AutoencoderTiny):
        raw = torch.cat([ae.encode(images[i:i + batch]).latents for i in range(0, len(images), batch)])
    else:
        raw = torch.cat([ae.encode(images[i:i + batch]).latent_dist.mode() for i in range(0, len(images), batch)])
    mean = raw.mean(dim=(0, 2, 3))
    std = raw.std(dim=(0, 2, 3)).clamp_min(1e-6)
    stats = {"latents_mean": [float(v) for v in mean], "latents_std": [float(v) for v in std]}
    ae.register_to_config(**stats)
    return stats


def raw_latent_mse(ae, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE between normalised latents measured in the autoencoder's raw latent units.

    Per-channel normalisation gives every latent channel unit variance, so a plain MSE weighs the
    high-frequency channels (small in pixels, unpredictable from a low-resolution input) as much as
    the low-frequency ones; in raw units each channel counts as much as it moves pixels (for the PCA
    shortcut exactly: its basis is orthonormal). Normalised by the mean variance, so values stay O(1).
    """
    return raw_latent_mse_per_image(ae, a, b).mean()


def raw_latent_mse_per_image(ae, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`raw_latent_mse` of each image of the batch: shape (B,)."""
    _, std = latent_stats(ae, a)
    w = std.square()
    return ((a - b).square() * w).mean(dim=tuple(range(1, a.ndim))) / w.mean()
