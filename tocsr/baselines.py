"""Classical SR baselines, architecture-matched to their papers (definitions from spandrel).

Each entry builds the network with random weights (cost) or loads a checkpoint through spandrel
(quality). Inputs are images in [0, 1], (B, 3, h, w); outputs (B, 3, h*scale, w*scale).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tocsr.errors import ConfigError


class Interpolate(nn.Module):
    """Bicubic (or other torch) interpolation as a module, so it is measured like the networks."""

    def __init__(self, scale: int, mode: str = "bicubic"):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=False,
                             antialias=False).clamp(0, 1)


class ESPCN(nn.Module):
    """ESPCN (Shi et al. 2016): three convolutions and a pixel shuffle; the efficient-CNN floor."""

    def __init__(self, scale: int, features: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, features, 5, padding=2), nn.Tanh(),
                                  nn.Conv2d(features, features // 2, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(features // 2, 3 * scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    build: Callable[[int, int], nn.Module]   # build(scale, input_px)
    trainable: bool = True


def _spandrel(arch: str):
    try:
        import importlib

        return importlib.import_module(f"spandrel.architectures.{arch}")
    except ImportError as err:
        raise ConfigError(f"baseline needs spandrel (pip install -c constraints.txt spandrel): {err}") from None


BASELINES: dict[str, Baseline] = {
    "bicubic": Baseline("bicubic", "bicubic interpolation", lambda s, px: Interpolate(s, "bicubic"), trainable=False),
    "espcn": Baseline("espcn", "ESPCN, efficient CNN (~0.03M params)", lambda s, px: ESPCN(s)),
    "span": Baseline("span", "SPAN (NTIRE 2024 efficient SR winner), 48 channels",
                     lambda s, px: _spandrel("SPAN").SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=s,
                                                      img_range=1.0)),
    "srvgg": Baseline("srvgg", "Real-ESRGAN compact (SRVGGNetCompact), 64 features x 16 convs",
                      lambda s, px: _spandrel("Compact").Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16,
                                                             upscale=s)),
    "rrdb": Baseline("rrdb", "RRDBNet as in Real-ESRGAN x4plus (23 blocks, 64 features, ~16.7M params)",
                     lambda s, px: _spandrel("ESRGAN").ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=s)),
    "swinir-m": Baseline("swinir-m", "SwinIR-M as in real-world SwinIR (embed 180, 6x6 blocks, window 8)",
                         lambda s, px: _spandrel("SwinIR").SwinIR(img_size=px, in_chans=3, embed_dim=180, depths=[6] * 6,
                                                              num_heads=[6] * 6, window_size=8, mlp_ratio=2.0,
                                                              upscale=s, img_range=1.0, upsampler="nearest+conv",
                                                              resi_connection="1conv", drop_path_rate=0.0)),
    "swinir-light": Baseline("swinir-light", "lightweight SwinIR (embed 60, 4x6 blocks)",
                             lambda s, px: _spandrel("SwinIR").SwinIR(img_size=px, in_chans=3, embed_dim=60,
                                                                  depths=[6] * 4, num_heads=[6] * 4, window_size=8,
                                                                  mlp_ratio=2.0, upscale=s, img_range=1.0,
                                                                  upsampler="pixelshuffledirect",
                                                                  resi_connection="1conv", drop_path_rate=0.0)),
}


def list_baselines() -> list[str]:
    return list(BASELINES)


def build_baseline(name: str, scale: int, input_px: int = 64) -> nn.Module:
    """`input_px` is the LR side the network is built for. SwinIR precomputes its shifted-window
    attention mask for that size; at other sizes it recomputes it in fp32 per call, which fails in
    bf16/fp16 and costs time, so cost measurements build it at the measured size."""
    if name not in BASELINES:
        raise ConfigError(f"baseline {name!r} does not exist; available: {', '.join(BASELINES)}")
    return BASELINES[name].build(scale, input_px)
