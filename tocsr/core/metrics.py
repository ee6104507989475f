"""Quick in-training image metrics (the full pyiqa suite lives in `reports`).

PSNR on RGB and on the BT.601 luma (Y) channel, the SR field's two conventions; images in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tocsr.core.resize import bicubic_upscale


def _to01(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def rgb_to_y(x01: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in [16/255, 235/255] as MATLAB's rgb2ycbcr, the convention of SR papers."""
    r, g, b = x01[:, 0], x01[:, 1], x01[:, 2]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b)[:, None] / 255.0


def psnr(pred: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1]; `crop` pixels removed at each border first."""
    a, b = _to01(pred), _to01(target)
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    if crop:
        a, b = a[..., crop:-crop, crop:-crop], b[..., crop:-crop, crop:-crop]
    mse = (a - b).square().mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def bicubic_down_up(images: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic (antialiased) downscale then bicubic upscale: the baseline an autoencoder must beat."""
    down = F.interpolate(images, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return bicubic_upscale(down, size=tuple(images.shape[-2:]))
