"""The one-step SR generator: LR image -> bicubic up -> encode -> one UNet step -> decode.

The UNet sees the LR latent at a fixed timestep and predicts noise; the HR latent is the
one-step x0 estimate, as in OSEDiff-style one-step SR. This module is the whole inference graph,
so its cost is the pipeline's cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderTiny
from torch import nn

from tocsr.models.autoencoder import decode_latents, encode_latents


class OneStepSR(nn.Module):
    def __init__(self, autoencoder: AutoencoderKL | AutoencoderTiny, unet: nn.Module, scale: int,
                 cond_tokens: int, cond_dim: int, timestep: int = 999, alpha_bar: float = 0.0047):
        super().__init__()
        self.autoencoder, self.unet, self.scale = autoencoder, unet, scale
        # Learned null conditioning (no text encoder offline): cond_tokens x cond_dim.
        self.null_condition = nn.Parameter(torch.zeros(1, cond_tokens, cond_dim))
        self.register_buffer("timestep", torch.tensor([timestep]), persistent=False)
        self.alpha_bar = alpha_bar

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return encode_latents(self.autoencoder, image)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return decode_latents(self.autoencoder, z)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """lr in [-1, 1], (B, 3, h, w) -> SR image in [-1, 1], (B, 3, h*scale, w*scale)."""
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        z = self.encode(up)
        # repeat, not expand: a view of a Parameter made under no_grad keeps requires_grad without a
        # grad_fn, which autograd hooks (FlopCounterMode's module tracker) reject.
        cond = self.null_condition.to(z.dtype).repeat(z.shape[0], 1, 1)
        eps = self.unet(z, self.timestep.expand(z.shape[0]), encoder_hidden_states=cond, return_dict=False)[0]
        a = self.alpha_bar
        z_hr = (z - (1 - a) ** 0.5 * eps) / a ** 0.5
        return self.decode(z_hr).clamp(-1, 1)
