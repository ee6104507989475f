"""SR models: the conditional multi-step SR teacher, the one-step student (blind, or one per degradation),
a latent discriminator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from tocsr.core.assembly import CompactUNet2DConditionModel
from tocsr.core.errors import ConfigError


def widen_conv_in(unet: UNet2DConditionModel, extra_channels: int) -> UNet2DConditionModel:
    """The same UNet taking `extra_channels` more input channels (the LR latent), whose weights start
    at zero: before training it computes exactly what the unconditional teacher computes."""
    cfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    cfg["in_channels"] = unet.config.in_channels + extra_channels
    wide = UNet2DConditionModel(**cfg)
    state = unet.state_dict()
    w = state.pop("conv_in.weight")
    missing, unexpected = wide.load_state_dict(state, strict=False)
    assert missing == ["conv_in.weight"] and not unexpected, (missing, unexpected)
    with torch.no_grad():
        wide.conv_in.weight.zero_()
        wide.conv_in.weight[:, : w.shape[1]] = w
    return wide


def default_degradation(names: tuple[str, ...]) -> str:
    """What an input is assumed to be when nobody says: a real-world photograph (Real-ESRGAN-like
    degradations) where there is a model for it, else the first degradation."""
    return "realesrgan" if "realesrgan" in names else names[0]


class OneStepStudent(ModelMixin, ConfigMixin):
    """LR latent -> HR latent in one UNet call: z_hr = z_lr + UNet(z_lr, t*, null condition).

    The UNet is the selected compact backbone (a CompactUNet2DConditionModel, so the architecture
    spec travels in the config); t* is fixed, so the time embedding acts as a learned bias.
    """

    @register_to_config
    def __init__(self, unet_config: dict[str, Any] | None = None, arch_choices: dict[str, str] | None = None,
                 cond_tokens: int = 1, cross_attention_dim: int = 32, timestep: int = 250):
        super().__init__()
        self.backbone = CompactUNet2DConditionModel(unet_config=unet_config, arch_choices=arch_choices)
        self.null_condition = nn.Parameter(torch.zeros(1, cond_tokens, cross_attention_dim))
        self.register_buffer("t_star", torch.tensor([timestep]), persistent=False)

    # Blind: one network for every degradation. The same small interface as PerDegradationStudent, so the
    # pipeline, evaluation and export handle both.
    degradations: tuple[str, ...] = ()
    default_degradation = None

    def for_degradation(self, degradation: str | None) -> OneStepStudent:
        if degradation is not None:
            raise ConfigError(f"degradation {degradation!r}: this SR model is blind (one network for every "
                              "degradation); leave the degradation unset")
        return self

    def forward(self, z_lr: torch.Tensor) -> torch.Tensor:
        b = z_lr.shape[0]
        # repeat, not expand: see tocsr.core.sr.onestep (views of parameters under no_grad trip autograd hooks)
        cond = self.null_condition.to(z_lr.dtype).repeat(b, 1, 1)
        t = self.t_star.expand(b)
        return z_lr + self.backbone(z_lr, t, cond, return_dict=False)[0]


class PerDegradationStudent(ModelMixin, ConfigMixin):
    """One OneStepStudent per degradation, each trained only on its own degradation's pairs; the caller
    says which degradation made the input, and only that student runs (the cost of one).

    Why: a blind student trained on bicubic and Real-ESRGAN pairs settles near the identity on
    Real-ESRGAN inputs (64 held-out crops: -0.03 dB vs bicubic); told the degradation through a learned
    embedding it moved only +0.01 dB. Trained apart (main job's models, 500 steps each), the bicubic student
    gained +0.31 dB over bicubic on bicubic inputs and the Real-ESRGAN one +0.46 dB on Real-ESRGAN inputs
    (reports/evidence/sr-per-degradation/). SR suites ship such models apart too (SwinIR classical / real-world, Real-ESRGAN
    vs PSNR models).
    """

    @register_to_config
    def __init__(self, degradations: list[str] | None = None, student_config: dict[str, Any] | None = None):
        super().__init__()
        names = list(degradations or [])
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"degradations {names}: a per-degradation student needs two or more distinct "
                              "names (use OneStepStudent for one)")
        self.students = nn.ModuleDict({name: OneStepStudent(**dict(student_config or {})) for name in names})

    @classmethod
    def from_students(cls, students: dict[str, OneStepStudent]) -> PerDegradationStudent:
        first = next(iter(students.values()))
        config = {k: v for k, v in dict(first.config).items() if not k.startswith("_")}
        model = cls(degradations=list(students), student_config=config)
        for name, student in students.items():
            model.students[name].load_state_dict(student.state_dict())
        return model

    @property
    def degradations(self) -> tuple[str, ...]:
        return tuple(self.config.degradations)

    @property
    def default_degradation(self) -> str:
        return default_degradation(self.degradations)

    def resolve(self, degradation: str | None) -> str:
        """The degradation whose student handles `degradation` (None: the default)."""
        name = degradation or self.default_degradation
        if name not in self.degradations:
            raise ConfigError(f"degradation {name!r}: this SR model has students for {', '.join(self.degradations)}")
        return name

    def _index(self, degradation: str | None) -> int:
        return self.degradations.index(self.resolve(degradation))

    def degradation_ids(self, degradation: str | None, batch: int, device: torch.device | str) -> torch.Tensor:
        """(batch,) indices into `degradations` for `degradation` (None: the default)."""
        return torch.full((batch,), self._index(degradation), dtype=torch.long, device=device)

    def for_degradation(self, degradation: str | None) -> OneStepStudent:
        """The one student that handles `degradation` (None: the default): what export and timing run."""
        return self.students[self.degradations[self._index(degradation)]]

    def forward(self, z_lr: torch.Tensor, degradation_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`degradation_ids`: (B,) indices into `degradations`; None means the default degradation."""
        if degradation_ids is None:
            return self.for_degradation(None)(z_lr)
        out = torch.empty_like(z_lr)
        for i in degradation_ids.unique().tolist():
            rows = degradation_ids == i
            out[rows] = self.students[self.degradations[i]](z_lr[rows])
        return out


STUDENT_CLASSES = {"OneStepStudent": OneStepStudent, "PerDegradationStudent": PerDegradationStudent}


def load_student(folder) -> OneStepStudent | PerDegradationStudent:
    """The student saved in `folder` (either class), in eval mode."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no student config.json; train one with `tocsr sr`")
    name = json.loads(path.read_text()).get("_class_name")
    if name not in STUDENT_CLASSES:
        raise ConfigError(f"{folder}: a {name!r}, not a one-step student ({', '.join(STUDENT_CLASSES)})")
    return STUDENT_CLASSES[name].from_pretrained(folder).eval()


class LatentDiscriminator(nn.Module):
    """A small spectrally-normalised PatchGAN on latents: the distribution-level term of the student."""

    def __init__(self, channels: int = 16, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, width, 3, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, 1, 3, padding=1)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PixelDiscriminator(nn.Module):
    """A small spectrally-normalised PatchGAN on decoded RGB images in [-1, 1]: the distribution-level term where the
    decoder trains with the student (SRConfig.discriminator = "pixel"). It judges what users see, after the decoder,
    which a latent discriminator cannot: a trained decoder can undo in pixels what the latent term asked for.
    Three stride-2 convolutions: each output judges a patch of about 30 px of the HR image. Narrow, because it runs on
    HR pixels every step: at width 32 it cost about three times what it does at 16 on 2 CPU cores (docs/status.md)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(3, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(4 * width, 1, 3, padding=1)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)
