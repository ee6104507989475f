"""Cheaper parts for the one-step SR call (LR image -> encoder -> backbone -> decoder -> SR image).

In the deployed call the autoencoder's parts cost more than the backbone: the KL encoder runs on the
bicubic x scale upscale, at HR resolution, and the KL decoder is the largest part of all. Two cheaper
parts, each trained to stand in for the autoencoder's own (tocsr.core.sr.parts):

* `LREncoder` reads the LR image at LR resolution and gives the latent the KL encoder gives for its
  bicubic upscale: for x4 and an f8 autoencoder, one stride-2 stage (f2 on the LR grid is f8 on the
  HR grid), so it sees scale^2 times fewer pixels than the KL encoder.
* `TinyDecoder` maps a latent to the image as the KL decoder does, AutoencoderTiny-style: plain
  convolutions, ReLU and nearest upsampling, no normalisation or attention.

A third part adds to what the decoder gives rather than replacing a part of the autoencoder:

* `PixelBranch` maps the LR image straight to an HR correction, the form of pixel-space SR networks
  (SRVGG / Real-ESRGAN compact): 3x3 convolutions at LR resolution, then a pixel shuffle to HR. The latent
  path passes every pixel through a 16-channel latent at 1/8 of the HR grid; the branch reaches HR pixels
  without it. By default its last convolution starts at zero, so a pipeline with the branch starts as the one
  without; `init="he"` starts it as a small network of its own, as the SRVGG baseline starts.

Both the encoder and the decoder speak the normalised latents of tocsr.core.models.autoencoder (`encode_latents` /
`decode_latents`), so either drops in where the autoencoder's part was.

Example:
    >>> enc = LREncoder(scale=4)
    >>> enc(torch.zeros(1, 3, 32, 32)).shape        # the latent of a 128 px image at f8
    torch.Size([1, 16, 16, 16])
    >>> TinyDecoder()(torch.zeros(1, 16, 16, 16)).shape
    torch.Size([1, 3, 128, 128])
"""

from __future__ import annotations

import math

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from tocsr.core.baselines import he_init
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import LATENT_CHANNELS


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class _Block(nn.Module):
    """AutoencoderTiny's block: three 3x3 convolutions around a residual connection."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_conv(c, c), nn.ReLU(), _conv(c, c), nn.ReLU(), _conv(c, c))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + x)


def _stages(vae_factor: int, scale: int) -> int:
    """Stride-2 stages from the LR grid to the latent grid: log2(vae_factor / scale)."""
    ratio = vae_factor / scale
    if ratio < 1 or ratio != int(ratio) or int(ratio) & (int(ratio) - 1):
        raise ConfigError(f"scale {scale} with an f{vae_factor} autoencoder: the LR encoder needs vae_factor / scale "
                          "to be a power of two (x2, x4 or x8 with f8)")
    return int(math.log2(ratio))


class LREncoder(ModelMixin, ConfigMixin):
    """LR image in [-1, 1], (B, 3, h, w) -> normalised latent (B, latent_channels, h*scale/f, w*scale/f).

    A linear space-to-channel shortcut (pixel unshuffle, 1x1 convolution) carries what is linear in the
    pixels, as the tiny autoencoder preset's shortcuts do; the convolutions add the rest."""

    @register_to_config
    def __init__(self, scale: int = 4, latent_channels: int = LATENT_CHANNELS, width: int = 48, blocks: int = 2,
                 vae_factor: int = 8):
        super().__init__()
        stages = _stages(vae_factor, scale)
        layers: list[nn.Module] = [_conv(3, width), nn.ReLU(), *(_Block(width) for _ in range(blocks))]
        for _ in range(stages):
            layers += [_conv(width, width, stride=2), nn.ReLU(), *(_Block(width) for _ in range(blocks))]
        layers.append(_conv(width, latent_channels))
        self.net = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.PixelUnshuffle(2 ** stages), nn.Conv2d(3 * 4 ** stages, latent_channels, 1))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.shortcut(lr) + self.net(lr)


class TinyDecoder(ModelMixin, ConfigMixin):
    """Normalised latent (B, latent_channels, h, w) -> image (B, 3, h*f, w*f), about [-1, 1].

    Narrower as it goes up (`widths`, one per x2 stage): at full resolution the convolutions cost the most,
    and the KL decoder it replaces is already narrow there. A linear shortcut (1x1 convolution, pixel
    shuffle) carries the latent's linear image."""

    @register_to_config
    def __init__(self, latent_channels: int = LATENT_CHANNELS, widths: tuple[int, ...] = (48, 32, 16), blocks: int = 1,
                 vae_factor: int = 8):
        super().__init__()
        widths = tuple(widths)
        if len(widths) != _stages(vae_factor, 1):
            raise ConfigError(f"TinyDecoder widths {widths}: give one width per x2 stage of an f{vae_factor} "
                              f"autoencoder ({_stages(vae_factor, 1)})")
        layers: list[nn.Module] = [_conv(latent_channels, widths[0]), nn.ReLU(),
                                   *(_Block(widths[0]) for _ in range(blocks))]
        prev = widths[0]
        for w in widths:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(prev, w), nn.ReLU(),
                       *(_Block(w) for _ in range(blocks))]
            prev = w
        layers.append(_conv(prev, 3))
        self.net = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(latent_channels, 3 * vae_factor ** 2, 1), nn.PixelShuffle(vae_factor))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.shortcut(z) + self.net(z)


BRANCH_INITS = ("zero", "he")


class PixelBranch(ModelMixin, ConfigMixin):
    """LR image in [-1, 1], (B, 3, h, w) -> HR correction (B, 3, h*scale, w*scale), added to the decoder's image.

    `convs` 3x3 convolutions of `width` channels with PReLU at LR resolution (SRVGG's body, narrower and shorter:
    it runs beside the latent path, not instead of it), then one to 3 * scale^2 channels and a pixel shuffle.
    `init` (one of BRANCH_INITS): "zero", the last convolution starts at zero, so the correction is 0 until training
    moves it; "he", every convolution as the SRVGG baseline starts (tocsr.core.baselines.he_init: Kaiming weights,
    the last scaled by 0.1), so the branch starts as a small learned network of its own. A zero last layer also
    zeroes the gradient into every layer before it, so the body first waits for the last layer to move."""

    @register_to_config
    def __init__(self, scale: int = 4, width: int = 32, convs: int = 4, init: str = "zero"):
        super().__init__()
        if width < 1 or convs < 1:
            raise ConfigError(f"PixelBranch width {width}, convs {convs}: both must be at least 1")
        if init not in BRANCH_INITS:
            raise ConfigError(f"PixelBranch init {init!r}: expected one of {', '.join(BRANCH_INITS)}")
        layers: list[nn.Module] = [_conv(3, width), nn.PReLU(width)]
        for _ in range(convs - 1):
            layers += [_conv(width, width), nn.PReLU(width)]
        last = _conv(width, 3 * scale ** 2)
        layers += [last, nn.PixelShuffle(scale)]
        self.net = nn.Sequential(*layers)
        if init == "he":
            he_init(self.net)
        else:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr)
