"""Quality of SR methods on held-out photographs (x scale, bicubic and Real-ESRGAN degradations).

Reports PSNR (RGB and Y, with and without a `scale`-pixel border crop) and SSIM on Y, as the field
computes them (tocsr.core.metrics); the full pyiqa metric suite is computed by `reports`. Images are held-out crops, degraded with fixed seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tocsr.core.data import Photo, grid_patches
from tocsr.core.metrics import psnr, ssim_y
from tocsr.core.sr.degradations import degrade


def eval_pairs(photos: list[Photo], patch_px: int, scale: int, kind: str, per_image: int = 4,
               seed: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    hr = grid_patches(photos, patch_px, per_image)
    lr = torch.cat([degrade((hr[i:i + 1] + 1) / 2, scale, kind, torch.Generator().manual_seed(seed + i)) * 2 - 1
                    for i in range(len(hr))])
    return hr, lr


def score(pred: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    return {"psnr": psnr(pred, hr).mean().item(), "psnr_y": psnr(pred, hr, y_channel=True).mean().item(),
            "psnr_y_crop": psnr(pred, hr, y_channel=True, crop=scale).mean().item(),
            "ssim_y_crop": ssim_y(pred, hr, scale).mean().item()}


def evaluate_methods(methods: dict[str, Callable[[torch.Tensor], torch.Tensor]], photos: list[Photo], patch_px: int,
                     scale: int, kinds=("bicubic", "realesrgan"), batch: int = 8) -> dict[str, dict[str, dict[str, float]]]:
    """{kind: {method: scores}}; each method maps LR in [-1, 1] to SR in [-1, 1] at the HR size. A method
    whose `takes_degradation` is true is called as fn(lr, kind): it is told which degradation made lr."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        hr, lr = eval_pairs(photos, patch_px, scale, kind)
        out[kind] = {}
        for name, fn in methods.items():
            with torch.no_grad():
                told = (kind,) if getattr(fn, "takes_degradation", False) else ()
                pred = torch.cat([fn(lr[i:i + batch], *told).float().cpu() for i in range(0, len(lr), batch)])
            out[kind][name] = score(pred.clamp(-1, 1), hr, scale) | {"n_images": len(hr)}
    return out
