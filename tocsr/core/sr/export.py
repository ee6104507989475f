"""ONNX export of the one-step generator plus decoder, checked against torch in onnxruntime.

The exported graph is the part of the pipeline that runs once per tile. For a model with the autoencoder's
encoder it maps the normalised LR latent to the SR image in [-1, 1] (the bicubic upscale and the KL encoder
run before it); for a model that deploys the LR encoder (tocsr.core.models.parts.LREncoder) the encoder joins
the graph, which then maps the LR image in [-1, 1] to the SR image: the whole one-step call. Batch and
spatial size are dynamic axes.
"""

from __future__ import annotations

import copy
import warnings
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


class _FromImage(nn.Module):
    """The whole call, LR image -> SR image (a model whose encoder is the LR encoder: no bicubic, no KL encoder; its
    pixel branch, where it has one, beside the latent path)."""

    def __init__(self, model: OneStepSR):
        super().__init__()
        self.model = model

    def forward(self, lr_image: torch.Tensor) -> torch.Tensor:
        return self.model(lr_image)


def graph_input(pipe) -> str:
    """The exported graph's input: "lr_image" where the LR encoder is deployed, else "lr_latent"."""
    if pipe.router is not None:
        raise TocsrError(f"this SR model routes each image to one of its students ({', '.join(pipe.models)}) by "
                         "statistics of the whole LR image, which one graph of tiles cannot hold: export each student "
                         f"with --degradation ({' or '.join(pipe.models)}) and route before calling it "
                         "(tocsr.core.sr.router.DegradationRouter)")
    if pipe.model.encoder_kind != "lr" and pipe.model.branch is not None:
        raise TocsrError("this SR model adds a pixel branch on the LR image to an autoencoder-encoder pipeline; the "
                         "exported graph starts at the LR latent, which the branch cannot read: export is supported "
                         "for a pixel branch behind the LR encoder (the search's cheaper parts)")
    return "lr_image" if pipe.model.encoder_kind == "lr" else "lr_latent"


def _graph(pipe) -> tuple[nn.Module, int, int]:
    """(the module to trace, its input's channels, input pixels per latent pixel)."""
    model = copy.deepcopy(pipe.model).float().eval()
    if graph_input(pipe) == "lr_image":
        cfg = model.part_encoder.config         # an LR pixel is scale / vae_factor latent pixels
        return _FromImage(model), 3, cfg.vae_factor // cfg.scale
    return _FromLatent(model), model.student.backbone.unet.config.in_channels, 1


def export_onnx(pipe, out_path: str | Path, latent_px: int = 16, opset: int = 17) -> Path:
    """Export `pipe` (a TOCSRPipeline, fp32) to ONNX at `out_path`; traced at a `latent_px` latent."""
    model, channels, per_latent = _graph(pipe)
    side = latent_px * per_latent
    example = torch.randn(1, channels, side, side, generator=torch.Generator().manual_seed(0))
    name = graph_input(pipe)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The tracer warns where diffusers branches on a shape (its shape asserts, a batch >= 64 `contiguous()`, a
    # fallback for tensors over 2**31 elements): each is fixed at the traced shape, none changes the result, and
    # check_onnx compares the file with torch at other batches and sizes. The warnings would only bury the line
    # that says the export held.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(out), dynamo=False, opset_version=opset,
                          input_names=[name], output_names=["image"],
                          dynamic_axes={name: {0: "batch", 2: "height", 3: "width"},
                                        "image": {0: "batch", 2: "height", 3: "width"}})
    return out


def check_onnx(pipe, onnx_path: str | Path, sizes=((1, 16), (2, 24)), seed: int = 1) -> float:
    """Largest absolute difference between onnxruntime and torch over random inputs of several sizes (`sizes`:
    (batch, latent side) pairs; an LR-image graph gets images of that many latent pixels)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TocsrError("checking the ONNX export needs onnxruntime (pip install onnxruntime)") from None
    model, channels, per_latent = _graph(pipe)
    name = graph_input(pipe)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    gen = torch.Generator().manual_seed(seed)
    for batch, side in sizes:
        x = torch.randn(batch, channels, side * per_latent, side * per_latent, generator=gen)
        if name == "lr_image":
            x = x.clamp(-1, 1)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(["image"], {name: x.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
