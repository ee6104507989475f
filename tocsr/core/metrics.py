"""PSNR and SSIM as the SR field computes them (BasicSR, pyiqa with MATLAB's conventions).

Images arrive in [-1, 1] and are first rounded to 8 bits, as they are when saved. PSNR-Y and SSIM-Y are
computed on the BT.601 luma of MATLAB's rgb2ycbcr, rounded to 8-bit levels [16, 235]; SSIM uses an 11x11
Gaussian window (sigma 1.5) over the valid region, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2. `crop`
removes `scale` pixels at each border first (the other convention papers use).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tocsr.core.resize import bicubic_upscale


def _levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> 8-bit levels 0..255 (float64, rounded)."""
    return ((x.double().clamp(-1, 1) + 1) * 127.5).round()


def rgb_to_y(x01: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in [16/255, 235/255] as MATLAB's rgb2ycbcr, the convention of SR papers (unrounded)."""
    r, g, b = x01[:, 0], x01[:, 1], x01[:, 2]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b)[:, None] / 255.0


def y_levels(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) luma as MATLAB gives it for a uint8 image: 8-bit levels."""
    return (rgb_to_y(_levels(x) / 255) * 255).round()


def _crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    return x[..., crop:-crop, crop:-crop] if crop else x


def psnr(pred: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], on 8-bit RGB or (y_channel) on 8-bit luma."""
    a, b = (y_levels(pred), y_levels(target)) if y_channel else (_levels(pred), _levels(target))
    a, b = _crop(a, crop), _crop(b, crop)
    mse = (a - b).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return (10 * torch.log10(255.0 ** 2 / mse)).float()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_y(pred: torch.Tensor, target: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """Per-image SSIM on 8-bit luma (Wang et al. 2004 as BasicSR computes it)."""
    a, b = _crop(y_levels(pred), crop), _crop(y_levels(target), crop)
    w = _gaussian_window()
    if min(a.shape[-2:]) < w.shape[-1]:
        raise ValueError(f"SSIM needs images of at least {w.shape[-1]} px after the crop, got {tuple(a.shape[-2:])}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a ** 2
    var_b = F.conv2d(b * b, w) - mu_b ** 2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(1, 2, 3)).float()


def bicubic_down_up(images: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic (antialiased) downscale then bicubic upscale: the baseline an autoencoder must beat."""
    down = F.interpolate(images, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return bicubic_upscale(down, size=tuple(images.shape[-2:]))
