"""The quality metrics of a report, through pyiqa, each reported as a value or as unavailable.

Full-reference: PSNR and SSIM on Y (with and without a `scale`-pixel border crop: both conventions
exist in the SR literature), LPIPS, DISTS. No-reference: NIQE (parameters ship with the suite),
MUSIQ, MANIQA-PIPAL, CLIPIQA. Learned metrics load only when their weights are in pyiqa's cache
($TORCH_HOME/hub/pyiqa, or ~/.cache/torch/hub/pyiqa; torchvision backbones in .../hub/checkpoints):
a missing one is reported unavailable with the file it expected, never as zero, never as a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tocsr.core.iqa import load_metric
from tocsr.core.metrics import psnr, ssim_y

NIQE_PARAMS = Path(__file__).resolve().parent / "data" / "niqe_pris_params.mat"
FULL_REFERENCE = ("lpips", "dists")
NO_REFERENCE = ("niqe", "musiq", "maniqa-pipal", "clipiqa")


@dataclass
class MetricSuite:
    metrics: dict[str, Any]
    unavailable: dict[str, str]

    @classmethod
    def load(cls, names: tuple[str, ...] = FULL_REFERENCE + NO_REFERENCE, device: str = "cpu") -> MetricSuite:
        metrics, unavailable = {}, {}
        for name in names:
            kwargs = {"pretrained_model_path": str(NIQE_PARAMS)} if name == "niqe" else {}
            m, why = load_metric(name, device=device, **kwargs)
            if m is None:
                unavailable[name] = why
            else:
                metrics[name] = m
        return cls(metrics, unavailable)

    @torch.no_grad()
    def score(self, sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, Any]:
        """sr, hr: (N, 3, H, W) in [-1, 1]. Values are means over the N images."""
        sr01, hr01 = ((sr.float() + 1) / 2).clamp(0, 1), ((hr.float() + 1) / 2).clamp(0, 1)
        out: dict[str, Any] = {
            "psnr_y": psnr(sr, hr, y_channel=True).mean().item(),
            "psnr_y_crop": psnr(sr, hr, y_channel=True, crop=scale).mean().item(),
            "ssim_y": ssim_y(sr, hr).mean().item(), "ssim_y_crop": ssim_y(sr, hr, scale).mean().item(),
        }
        for name, metric in self.metrics.items():
            try:
                vals = metric(sr01, hr01) if name in FULL_REFERENCE else metric(sr01)
                out[name] = float(torch.as_tensor(vals).float().mean())
            except (RuntimeError, ValueError) as err:   # e.g. an image too small for this metric
                out[name] = {"unavailable": f"failed on these images: {str(err).splitlines()[0][:120]}"}
        for name, why in self.unavailable.items():
            out[name] = {"unavailable": why}
        return out
