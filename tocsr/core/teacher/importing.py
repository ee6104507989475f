"""Real weights into a teacher folder: a 16-channel diffusers `AutoencoderKL` (SD3/FLUX-style) and, optionally,
an SD-style `UNet2DConditionModel` (a 4-channel one is widened on import, `tocsr.core.teacher.expand`).

Every check runs before anything is written and refuses in one line: the folder, the value found, what to do.
Checked against the teacher preset the import runs under (its UNet preset fixes the conditioning width, its
crop size the latent side) and against each other (the UNet's channels against the autoencoder's latent):
  * a folder is a diffusers model folder: `config.json`, `diffusion_pytorch_model.safetensors` (pickled
    `.bin` weights are not loaded: they execute code on load);
  * the autoencoder's latent has 16 channels (a 4-channel SD VAE cannot be widened, its UNet can);
  * the UNet takes 16 channels or 4 (widened), the preset's cross-attention width, and has resolution levels
    that divide the preset's latent side evenly.
The autoencoder's `scaling_factor` and `shift_factor` are kept as the checkpoint has them;
`tocsr.core.models.autoencoder.latent_stats` normalises latents with them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from tocsr.core.data import Photo, grid_patches
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import get_autoencoder_preset
from tocsr.core.models.unet import LATENT_CHANNELS, get_unet_preset
from tocsr.core.teacher.autoencoder_train import AutoencoderReport, evaluate_autoencoder
from tocsr.core.teacher.expand import GROUPS, expand_unet
from tocsr.core.teacher.presets import TeacherPreset

log = logging.getLogger(__name__)
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_model_folder(path: str | Path, option: str, class_name: str) -> dict[str, Any]:
    """The config of a diffusers model folder holding safetensors weights of `class_name`, or a refusal."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{option} {folder}: no such folder")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{option} {folder}: not a diffusers model folder (no config.json); point at the folder "
                          "`save_pretrained` wrote (for a pipeline: its vae/ or unet/ subfolder)")
    if not (folder / WEIGHTS_FILE).is_file():
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".safetensors", ".ckpt", ".pt", ".pth"))
        raise ConfigError(f"{option} {folder}: no {WEIGHTS_FILE} (weight files found: {', '.join(found) or 'none'}); "
                          "save the model with `save_pretrained(dir)` (safetensors; pickled .bin files are not loaded)")
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{option} {folder}/config.json: not JSON ({err})") from None
    if cfg.get("_class_name") != class_name:
        raise ConfigError(f"{option} {folder}: _class_name = {cfg.get('_class_name')!r}: expected {class_name!r}")
    return cfg


def check_autoencoder_folder(path: str | Path, preset: TeacherPreset) -> dict[str, Any]:
    """The config of a 16-channel AutoencoderKL folder that fits the preset's crop size, or a refusal."""
    cfg = read_model_folder(path, "--vae", "AutoencoderKL")
    channels = cfg.get("latent_channels")
    if channels != LATENT_CHANNELS:
        raise ConfigError(f"--vae {path}: latent_channels = {channels}: the teacher's latent has {LATENT_CHANNELS} "
                          "channels; import an SD3/FLUX-style 16-channel VAE (a 4-channel SD VAE cannot be widened; "
                          "its UNet can, with --unet)")
    factor = 2 ** (len(cfg["block_out_channels"]) - 1)
    if preset.image_px % factor:
        raise ConfigError(f"--vae {path}: it downsamples {factor}x, which does not divide the {preset.name!r} preset's "
                          f"{preset.image_px} px crops; choose a preset whose crops are a multiple of {factor}")
    return cfg


def load_autoencoder(path: str | Path, preset: TeacherPreset) -> AutoencoderKL:
    """A 16-channel AutoencoderKL from a local folder, checked against the preset's crop size."""
    check_autoencoder_folder(path, preset)
    try:
        return AutoencoderKL.from_pretrained(path, use_safetensors=True).eval()
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"--vae {path}: cannot load it as an AutoencoderKL: {_first_line(err)}") from None


def check_unet_folder(path: str | Path, preset: TeacherPreset, latent_side: int, option: str = "--unet") -> dict[str, Any]:
    """The config of a UNet folder the teacher can start from (see the module doc), or a refusal."""
    cfg = read_model_folder(path, option, "UNet2DConditionModel")
    want = get_unet_preset(preset.unet).cross_attention_dim
    if cfg.get("cross_attention_dim") != want:
        raise ConfigError(f"{option} {path}: cross_attention_dim = {cfg.get('cross_attention_dim')}, but the "
                          f"{preset.name!r} preset's UNet takes {want} (its conditioning width); import a UNet of that "
                          "family or run under the preset that matches (`tocsr teacher presets`)")
    cin, cout = cfg.get("in_channels"), cfg.get("out_channels", cfg.get("in_channels"))
    if cin != cout or cin not in (LATENT_CHANNELS, LATENT_CHANNELS // GROUPS):
        raise ConfigError(f"{option} {path}: in_channels = {cin}, out_channels = {cout}: expected {LATENT_CHANNELS} "
                          f"(the autoencoder's latent) or {LATENT_CHANNELS // GROUPS} (widened on import)")
    halvings = 2 ** (len(cfg["block_out_channels"]) - 1)
    if latent_side % halvings:
        raise ConfigError(f"{option} {path}: its {len(cfg['block_out_channels'])} resolution levels halve the latent "
                          f"{halvings}x, which does not divide the {preset.name!r} preset's {latent_side}x{latent_side} "
                          "latents; choose a preset with larger crops")
    return cfg


def load_unet(path: str | Path, preset: TeacherPreset, latent_side: int, option: str = "--unet") -> UNet2DConditionModel:
    """A UNet for the teacher's 16-channel latent from a local folder: as is, or widened from 4 channels."""
    cfg = check_unet_folder(path, preset, latent_side, option)
    if cfg.get("sample_size") != latent_side:
        log.warning("%s %s: sample_size %s, trained here at %dx%d latents (the preset's crops); a UNet runs at any "
                    "size its levels divide", option, path, cfg.get("sample_size"), latent_side, latent_side)
    try:
        unet = UNet2DConditionModel.from_pretrained(path, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{option} {path}: cannot load it as a UNet2DConditionModel: {_first_line(err)}") from None
    if cfg["in_channels"] != LATENT_CHANNELS:
        log.info("%s %s: %d-channel UNet widened to %d channels (function-preserving init)", option, path,
                 cfg["in_channels"], LATENT_CHANNELS)
        unet = expand_unet(unet, LATENT_CHANNELS)
    return unet


def require_autoencoder_source(preset: TeacherPreset, vae: str | Path | None) -> None:
    """A preset that trains its autoencoder for 0 steps runs only with one to import: an untrained autoencoder is
    never saved as a teacher's."""
    if vae is None and preset.ae_training.steps == 0:
        raise ConfigError(f"teacher preset {preset.name!r} does not train its autoencoder (0 steps): import a "
                          f"16-channel one with `tocsr teacher import --vae DIR --preset {preset.name}` (a diffusers "
                          "AutoencoderKL folder, SD3/FLUX-style; `tocsr run --vae DIR` in the main job)")


def check_before_writing(preset: TeacherPreset, vae: str | Path | None, unet: str | Path | None,
                         unet_option: str) -> None:
    """Every check of the folders a teacher run was given, before it reads a photograph or writes a file."""
    # Configs only: the weights are read once, when the autoencoder is imported.
    ae_config = check_autoencoder_folder(vae, preset) if vae is not None else \
        get_autoencoder_preset(preset.autoencoder).config
    if unet is not None:
        check_unet_folder(unet, preset, preset.image_px // 2 ** (len(ae_config["block_out_channels"]) - 1), unet_option)


@torch.no_grad()
def import_autoencoder(path: str | Path, preset: TeacherPreset, val: list[Photo], out_dir: Path,
                       device: torch.device, write: bool = True) -> AutoencoderReport:
    """Copy the checked autoencoder into `out_dir`/autoencoder (when `write`: the main process) and score it on
    the held-out photographs, the same figures a trained one gets."""
    ae = load_autoencoder(path, preset)
    if write:
        ae.save_pretrained(out_dir / "autoencoder")
    val_images = grid_patches(val, preset.image_px, per_image=4)
    scores = evaluate_autoencoder(ae.to(device), val_images.to(device))
    return AutoencoderReport(**scores, val_images=len(val_images), steps=0, perceptual="not trained here",
                             pca_variance_kept=None, source=f"imported from {Path(path).resolve()}")
