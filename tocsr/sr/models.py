"""SR models: the conditional multi-step SR teacher, the one-step student, a latent discriminator."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from tocsr.assembly import CompactUNet2DConditionModel


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

    def forward(self, z_lr: torch.Tensor) -> torch.Tensor:
        b = z_lr.shape[0]
        # repeat, not expand: see tocsr.sr.onestep (views of parameters under no_grad trip autograd hooks)
        cond = self.null_condition.to(z_lr.dtype).repeat(b, 1, 1)
        t = self.t_star.expand(b)
        return z_lr + self.backbone(z_lr, t, cond, return_dict=False)[0]


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
