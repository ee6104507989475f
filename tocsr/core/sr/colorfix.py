"""Colour correction after tiling (so tiles never disagree): AdaIN and wavelet low-frequency swap.

* AdaIN: per-channel mean/std of the output matched to the LR input's (bicubic upscaling preserves
  them); the statistics are global, so applying it band by band equals applying it to the whole.
* Wavelet (StableSR's fix): the output keeps its high frequencies and takes the low frequencies of
  the bicubic-upscaled LR, separated by a cascade of dilated blurs; done in bands with a margin equal
  to the cascade's reach, so large images never need to be whole in float memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LEVELS = 5
REACH = sum(2 ** i for i in range(LEVELS))   # pixels one output pixel's low band depends on, each side


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype, device=x.device) / 16
    w = k[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (dilation,) * 4, mode="replicate"), w, groups=x.shape[1], dilation=dilation)


def low_frequency(x: torch.Tensor) -> torch.Tensor:
    for i in range(LEVELS):
        x = _blur(x, 2 ** i)
    return x


def wavelet_fix(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """out, reference: (1, 3, H, W) float in [0, 1] of the same size."""
    return (out - low_frequency(out) + low_frequency(reference)).clamp(0, 1)


def adain_fix(out: torch.Tensor, out_mean, out_std, ref_mean, ref_std) -> torch.Tensor:
    return ((out - out_mean) / out_std * ref_std + ref_mean).clamp(0, 1)


def channel_stats(img_u8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(img_u8.reshape(-1, 3).astype(np.float64) / 255.0)
    return x.mean(0).float().view(1, 3, 1, 1), x.std(0).clamp_min(1e-4).float().view(1, 3, 1, 1)
