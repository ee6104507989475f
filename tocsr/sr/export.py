"""ONNX export of the one-step generator plus decoder, checked against torch in onnxruntime.

The exported graph maps the normalised LR latent to the SR image in [-1, 1]: the part of the
pipeline that runs once per tile. Batch and spatial size are dynamic axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tocsr.errors import TocsrError
from tocsr.models.autoencoder import decode_latents


class LatentToImage(nn.Module):
    def __init__(self, autoencoder, student):
        super().__init__()
        self.autoencoder, self.student = autoencoder, student

    def forward(self, lr_latent: torch.Tensor) -> torch.Tensor:
        return decode_latents(self.autoencoder, self.student(lr_latent)).clamp(-1, 1)


def export_onnx(pipe, out_path: str | Path, latent_px: int = 16, opset: int = 17) -> Path:
    """Export `pipe` (a TOCSRPipeline, fp32) to ONNX at `out_path`."""
    model = LatentToImage(pipe.autoencoder.float(), pipe.student.float()).eval()
    channels = pipe.student.backbone.unet.config.in_channels
    example = torch.randn(1, channels, latent_px, latent_px, generator=torch.Generator().manual_seed(0))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(out), dynamo=False, opset_version=opset,
                          input_names=["lr_latent"], output_names=["image"],
                          dynamic_axes={"lr_latent": {0: "batch", 2: "height", 3: "width"},
                                        "image": {0: "batch", 2: "height", 3: "width"}})
    return out


def check_onnx(pipe, onnx_path: str | Path, sizes=((1, 16), (2, 24)), seed: int = 1) -> float:
    """Largest absolute difference between onnxruntime and torch over random latents of several sizes."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TocsrError("checking the ONNX export needs onnxruntime (pip install onnxruntime)") from None
    model = LatentToImage(pipe.autoencoder.float(), pipe.student.float()).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    channels = pipe.student.backbone.unet.config.in_channels
    worst = 0.0
    gen = torch.Generator().manual_seed(seed)
    for batch, side in sizes:
        z = torch.randn(batch, channels, side, side, generator=gen)
        with torch.no_grad():
            ref = model(z).numpy()
        got = session.run(["image"], {"lr_latent": z.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
