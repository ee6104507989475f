"""Expansion: a 4-channel-latent diffusers UNet (SD-style) widened to a 16-channel latent.

Initialisation (documented so the starting point is exact, not approximate):
  conv_in:  W16[:, 4g + c] = W4[:, c] / 4 for each of the 4 groups g;
  conv_out: W16[4g + c] = W4[c], b16[4g + c] = b4[c].
So, fed a 16-channel latent made of four copies of a 4-channel latent z, the expanded UNet computes
exactly the original UNet's output on z, in each of the four groups. Every other weight is copied.
Fine-tuning on real 16-channel latents (`tocsr teacher train --init-unet DIR`, or `tocsr teacher import
--vae VAE --unet UNET`, which widens on import) then departs from it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from tocsr.core.errors import ConfigError

GROUPS = 4


def expand_unet(unet4: UNet2DConditionModel, latent_channels: int = 16) -> UNet2DConditionModel:
    cfg = dict(unet4.config)
    cin, cout = cfg["in_channels"], cfg["out_channels"]
    if latent_channels != GROUPS * cin or cin != cout:
        raise ConfigError(f"expansion maps a {cin}-channel UNet to {GROUPS * cin} channels; asked for "
                          f"{latent_channels} (in_channels={cin}, out_channels={cout})")
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["in_channels"] = cfg["out_channels"] = latent_channels
    unet16 = UNet2DConditionModel(**cfg)
    sd = {k: v for k, v in unet4.state_dict().items() if not k.startswith(("conv_in.", "conv_out."))}
    missing, unexpected = unet16.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith(("conv_in.", "conv_out.")) for k in missing)
    with torch.no_grad():
        unet16.conv_in.weight.copy_(unet4.conv_in.weight.repeat(1, GROUPS, 1, 1) / GROUPS)
        unet16.conv_in.bias.copy_(unet4.conv_in.bias)
        unet16.conv_out.weight.copy_(unet4.conv_out.weight.repeat(GROUPS, 1, 1, 1))
        unet16.conv_out.bias.copy_(unet4.conv_out.bias.repeat(GROUPS))
    return unet16


def expand_folder(src: str | Path, dst: str | Path) -> UNet2DConditionModel:
    src = Path(src)
    if not (src / "config.json").is_file():
        raise ConfigError(f"--unet {src}: not a diffusers model folder (no config.json)")
    try:
        unet4 = UNet2DConditionModel.from_pretrained(src)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--unet {src}: cannot load a UNet2DConditionModel: {str(err).splitlines()[0]}") from None
    unet16 = expand_unet(unet4)
    unet16.save_pretrained(dst)
    return unet16
