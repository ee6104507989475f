"""OneStepSR: the one-step SR model as a module, the only code that turns an LR image into an SR image.

    LR image --bicubic x scale--> encode --> student (one backbone call) --> decode --> SR image
    LR image ---------------------------- pixel branch (optional) ------------------------> + (added to the SR image)

The decoder is the autoencoder's own ("kl") or a cheaper one distilled from it ("tiny":
tocsr.core.models.parts.TinyDecoder, chosen per device by the search where the budget needs it). The encoder
is the autoencoder's own on the bicubic upscale ("kl") or one that reads the LR image at LR resolution
("lr": tocsr.core.models.parts.LREncoder); a student deployed behind the LR encoder is trained on its latents
(tocsr.core.sr.run.run_sr). A pixel branch (tocsr.core.models.parts.PixelBranch; SRConfig.pixel_branch_width) adds
a correction computed from the LR image in pixel space to the decoder's image.

`TOCSRPipeline` (tiling, colour fix, files) runs it per tile; evaluation, cost measurement, ONNX export
and the GPU evidence script run it directly, so what is timed and scored is what users run.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import decode_latents, encode_latents
from tocsr.core.resize import bicubic_upscale


class LatentEncoder(nn.Module):
    """The pipeline's first fixed part: LR image -> bicubic x scale -> encoder -> LR latent."""

    def __init__(self, autoencoder: nn.Module, scale: int):
        super().__init__()
        self.autoencoder, self.scale = autoencoder, scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return encode_latents(self.autoencoder, bicubic_upscale(lr, self.scale))


class LatentDecoder(nn.Module):
    """The pipeline's last fixed part: HR latent -> decoder -> SR image in [-1, 1]."""

    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def unclamped(self, z: torch.Tensor) -> torch.Tensor:
        return decode_latents(self.autoencoder, z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.unclamped(z).clamp(-1, 1)


class PartEncoder(nn.Module):
    """A stand-in for the pipeline's first part (tocsr.core.models.parts.LREncoder): LR image -> LR latent at LR
    resolution, with no bicubic upscale and no KL encoder."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.part = encoder

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.part(lr)


class PartDecoder(nn.Module):
    """A stand-in for the autoencoder's decoder (tocsr.core.models.parts.TinyDecoder): HR latent -> SR image in
    [-1, 1], as `LatentDecoder` gives."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.part = decoder

    def unclamped(self, z: torch.Tensor) -> torch.Tensor:
        return self.part(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.unclamped(z).clamp(-1, 1)


DECODERS = ("kl", "tiny")       # what `OneStepSR.decoder_kind` can be
ENCODERS = ("kl", "lr")         # what `OneStepSR.encoder_kind` can be


class OneStepSR(nn.Module):
    """LR image in [-1, 1], (B, 3, h, w) -> SR image in [-1, 1], (B, 3, h*scale, w*scale).

    `student` is a OneStepStudent (blind) or a PerDegradationStudent (one network per degradation; the
    caller names the degradation that made the input, None meaning the student's default). `decoder`: a
    stand-in for the autoencoder's decoder (a TinyDecoder), or None for the autoencoder's own; `encoder`: a
    stand-in for bicubic + the autoencoder's encoder (an LREncoder), or None for those. Either may be
    {degradation: part} for a PerDegradationStudent whose students each trained their own (SRConfig.own_parts):
    each degradation then runs a whole model of its own (`for_degradation`). `branch`: a PixelBranch whose
    correction is added to the decoder's image before the clamp (a blind student only), or None.

    Example:
        >>> sr = OneStepSR(autoencoder, load_student("runs/sr/<key>/student"), scale=4)
        >>> sr(lr, "bicubic").shape       # (B, 3, 4h, 4w)
    """

    def __init__(self, autoencoder: nn.Module, student: nn.Module, scale: int,
                 decoder: nn.Module | Mapping[str, nn.Module] | None = None,
                 encoder: nn.Module | Mapping[str, nn.Module] | None = None, branch: nn.Module | None = None):
        super().__init__()
        self.autoencoder, self.student, self.scale = autoencoder, student, scale
        if branch is not None and student.degradations:
            raise ConfigError(f"a pixel branch with one student per degradation ({', '.join(student.degradations)}): "
                              "the branch is trained with a blind student; train one (student_per_degradation off) "
                              "or set pixel_branch_width = 0")
        self.branch = branch
        own = {what: part for what, part in (("decoder", decoder), ("encoder", encoder)) if isinstance(part, Mapping)}
        self.by_degradation = nn.ModuleDict(self._routes(own, decoder, encoder)) if own else None
        if self.by_degradation is not None:
            default = self.by_degradation[student.default_degradation]
            self.encoder, self.decoder = default.encoder, default.decoder
            return
        self.encoder = LatentEncoder(autoencoder, scale) if encoder is None else PartEncoder(encoder)
        self.decoder = LatentDecoder(autoencoder) if decoder is None else PartDecoder(decoder)

    def _routes(self, own: dict[str, Mapping[str, nn.Module]], decoder, encoder) -> dict[str, OneStepSR]:
        names = tuple(getattr(self.student, "degradations", ()) or ())
        for what, parts in own.items():
            if set(parts) != set(names):
                raise ConfigError(f"{what} parts for {sorted(parts)}: one per student of the model "
                                  f"({', '.join(names) or 'a blind student has one network: give one part'})")

        def pick(part, name: str):
            return part[name] if isinstance(part, Mapping) else part

        return {name: OneStepSR(self.autoencoder, self.student.for_degradation(name), self.scale, pick(decoder, name),
                                pick(encoder, name)) for name in names}

    @property
    def decoder_kind(self) -> str:
        return "tiny" if isinstance(self.decoder, PartDecoder) else "kl"

    @property
    def encoder_kind(self) -> str:
        return "lr" if isinstance(self.encoder, PartEncoder) else "kl"

    @property
    def part_decoder(self) -> nn.Module | None:
        return self.decoder.part if isinstance(self.decoder, PartDecoder) else None

    @property
    def part_encoder(self) -> nn.Module | None:
        return self.encoder.part if isinstance(self.encoder, PartEncoder) else None

    def params_in_call(self) -> int:
        """Parameters one call runs: the module's, less the autoencoder's parts that a stand-in replaces (the module
        still holds the whole autoencoder, whose replaced parts that call never runs)."""
        if self.by_degradation is not None:         # one call runs one route
            return self.for_degradation(None).params_in_call()
        unused = []
        if self.part_decoder is not None:
            unused += [getattr(self.autoencoder, n, None) for n in ("decoder", "post_quant_conv", "shortcut_out")]
        if self.part_encoder is not None:
            unused += [getattr(self.autoencoder, n, None) for n in ("encoder", "quant_conv", "shortcut_in")]
        held = sum(p.numel() for p in self.parameters())
        return held - sum(p.numel() for m in unused if m is not None for p in m.parameters())

    @property
    def takes_degradation(self) -> bool:
        return bool(self.student.degradations)

    def for_degradation(self, degradation: str | None) -> OneStepSR:
        """The same model holding only the network that handles `degradation` (None: the default), and that network's
        own parts where each has its own: what one inference runs (and so what is exported and timed)."""
        if self.by_degradation is not None:
            return self.by_degradation[self.student.resolve(degradation)]
        return OneStepSR(self.autoencoder, self.student.for_degradation(degradation), self.scale, self.part_decoder,
                         self.part_encoder, self.branch)

    def from_latent(self, z_lr: torch.Tensor, degradation: str | None = None) -> torch.Tensor:
        """The LR latent (the encoder's of that degradation: `self.for_degradation(degradation).encoder(lr)`) -> SR
        image. Not for a model with a pixel branch, which needs the LR image too (`forward`)."""
        if self.by_degradation is not None:
            return self.for_degradation(degradation).from_latent(z_lr)
        if self.branch is not None:
            raise ConfigError("this SR model adds a pixel branch on the LR image to the decoder's output: call it on "
                              "the LR image (forward), not on the LR latent")
        return self.decoder(self.student.for_degradation(degradation)(z_lr))

    def forward(self, lr: torch.Tensor, degradation: str | None = None) -> torch.Tensor:
        if self.by_degradation is not None:
            return self.for_degradation(degradation)(lr)
        lr = lr.to(next(self.parameters()).device)
        if self.branch is None:
            return self.from_latent(self.encoder(lr), degradation)
        z = self.student.for_degradation(degradation)(self.encoder(lr))
        return (self.decoder.unclamped(z) + self.branch(lr)).clamp(-1, 1)
