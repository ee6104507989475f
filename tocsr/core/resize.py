"""The project's one bicubic upscaler: every LR image brought to the HR grid goes through it."""

from __future__ import annotations

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
