"""ONNX export of the one-step generator plus decoder, checked against torch in onnxruntime.

The exported graph maps the normalised LR latent to the SR image in [-1, 1]: the part of the
pipeline that runs once per tile. Batch and spatial size are dynamic axes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tocsr.core.errors import TocsrError
from tocsr.core.sr.onestep import OneStepSR


class _FromLatent(nn.Module):
    """torch.onnx.export traces a module's forward: this one's is OneStepSR.from_latent."""

    def __init__(self, model: OneStepSR):
        super().__init__()
        self.model = model

    def forward(self, lr_latent: torch.Tensor) -> torch.Tensor:
        return self.model.from_latent(lr_latent)


def _graph(pipe) -> tuple[_FromLatent, int]:
    model = copy.deepcopy(pipe.model).float().eval()
    return _FromLatent(model), model.student.backbone.unet.config.in_channels


def export_onnx(pipe, out_path: str | Path, latent_px: int = 16, opset: int = 17) -> Path:
    """Export `pipe` (a TOCSRPipeline, fp32) to ONNX at `out_path`."""
    model, channels = _graph(pipe)
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
    model, channels = _graph(pipe)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    gen = torch.Generator().manual_seed(seed)
    for batch, side in sizes:
        z = torch.randn(batch, channels, side, side, generator=gen)
        with torch.no_grad():
            ref = model(z).numpy()
        got = session.run(["image"], {"lr_latent": z.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
