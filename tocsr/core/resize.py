"""Bicubic resizing, two named conventions: `bicubic_upscale` (torch's kernel, a = -0.75; what the models
use to bring an LR image to the HR grid) and `matlab_imresize` (MATLAB's imresize, a = -0.5, antialiased
when shrinking; what the field's bicubic LR images and bicubic baselines use)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bicubic_upscale(x: torch.Tensor, scale: int | None = None, lo: float = -1.0, hi: float = 1.0,
                    size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bicubic (torch, a = -0.75, no antialias) by `scale` or to `size`, clamped to the image's value
    range [lo, hi]: [-1, 1] for model inputs, [0, 1] for unit-range images (bicubic overshoots edges)."""
    if (scale is None) == (size is None):
        raise ValueError(f"bicubic_upscale: give exactly one of scale ({scale}) and size ({size})")
    if size is not None:
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(lo, hi)
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(lo, hi)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic with a = -0.5, MATLAB's imresize kernel."""
    ax = x.abs()
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _matlab_weights(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    """(out_len, in_len) matrix of MATLAB's imresize 'bicubic' (antialiased when shrinking), the image
    mirrored half-sample at its borders as MATLAB pads it."""
    width = 4.0 / scale if scale < 1 else 4.0
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    d = u[:, None] - idx
    w = scale * _cubic(d * scale) if scale < 1 else _cubic(d)
    w = w / w.sum(dim=1, keepdim=True)
    # 1-based index -> mirrored 0-based index: 0 -> 0, -1 -> 1, in_len + 1 -> in_len - 1, ...
    i = idx.long() - 1
    i = torch.where(i < 0, -i - 1, i)
    i = torch.where(i >= in_len, 2 * in_len - 1 - i, i)
    out = torch.zeros(out_len, in_len, dtype=torch.float64)
    out.scatter_add_(1, i.clamp(0, in_len - 1), w)
    return out


def matlab_imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB's `imresize(x, scale, 'bicubic')` on (B, C, H, W) float images (a = -0.5; antialiased when
    shrinking; output size ceil(H * scale)): the convention of the field's bicubic LR images and bicubic
    baselines. No clamping and no rounding: callers clamp to their range (and round when saving)."""
    h, w = x.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    wh = _matlab_weights(h, oh, scale).to(x.device)
    ww = _matlab_weights(w, ow, scale).to(x.device)
    y = torch.einsum("oh,bchw->bcow", wh, x.double())
    return torch.einsum("pw,bcow->bcop", ww, y).to(x.dtype)
