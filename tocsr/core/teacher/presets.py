"""Teacher presets: which autoencoder and UNet, at what size, trained how long.

tiny: this CPU class, minutes. base: one GPU. sd21: paper scale (SD3-shaped VAE + SD-2.1-shaped
UNet on a 16-channel latent), meant for real weights loaded from local folders (`tocsr teacher import`).
A preset with `ae_training.steps == 0` does not train its autoencoder: it must import one, and refuses
to run without it (an untrained autoencoder is never saved as a teacher's).
"""

from __future__ import annotations

from dataclasses import dataclass

from tocsr.core.data import DataSplit
from tocsr.core.errors import ConfigError


@dataclass(frozen=True)
class AutoencoderTraining:
    steps: int
    batch: int
    patch_px: int
    lr: float
    kl_weight: float = 1e-6
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    perceptual_weight: float = 0.1       # used only when LPIPS weights are in pyiqa's cache
    pca_images: int = 1000               # crops used to initialise the shortcut autoencoder


@dataclass(frozen=True)
class DiffusionTraining:
    steps: int
    batch: int
    lr: float
    latent_crops: int                    # size of the latent cache (random crops of training photos)
    ema_decay: float = 0.999
    # v_prediction, not epsilon: an epsilon model's x0 estimate divides its error by sqrt(alpha_bar_t),
    # about 14.6x at t = 999 with scaled_linear, so the undertrained CPU teachers' DDIM samples blew up
    # (latent std 2.6, max |z| 17; 8x8-pixel saturated blocks). The same training as v_prediction gives
    # samples with the latents' own statistics (std 0.96): issue 22 step 0, docs/status.md.
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    # Rescale the betas so the last timestep is pure noise (Lin et al. 2024, "Common diffusion noise
    # schedules and sample steps are flawed"); sampling then starts at the last timestep ("trailing"
    # spacing). With scaled_linear the last step keeps sqrt(abar) ~ 0.07 of the signal, which sampling
    # from pure noise never has. Needs v_prediction (an epsilon model is undefined at zero SNR).
    zero_terminal_snr: bool = False
    warmup_steps: int = 100
    checkpoint_every: int = 500
    grad_clip: float = 1.0
    # Recompute activations in the backward pass (diffusers' gradient checkpointing): the paper-scale UNet at
    # a useful batch does not fit its activations otherwise; costs about a third more time per step.
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class TeacherPreset:
    name: str
    description: str
    autoencoder: str
    unet: str
    image_px: int                         # training crop size; latent side = image_px / 8
    ae_training: AutoencoderTraining
    diffusion: DiffusionTraining
    # Which photographs train, validate and test (tocsr.core.data.DataSplit); every stage after the teacher
    # reads its split from here, so the test photographs are the same ones throughout a run.
    split: DataSplit = DataSplit()
    sample_steps: int = 25
    seed: int = 0


TEACHER_PRESETS = {
    "tiny": TeacherPreset(
        "tiny", "CPU preset: 128 px crops (16x16x16 latents), trains in minutes on 2 cores",
        autoencoder="tiny", unet="tiny", image_px=128,
        ae_training=AutoencoderTraining(steps=400, batch=8, patch_px=64, lr=3e-4),
        diffusion=DiffusionTraining(steps=4000, batch=16, lr=5e-4, latent_crops=4096)),
    "quick": TeacherPreset(
        "quick", "the main job's quick preset: the tiny shapes, fewer steps (minutes on 2 cores)",
        autoencoder="tiny", unet="tiny", image_px=128,
        ae_training=AutoencoderTraining(steps=300, batch=8, patch_px=64, lr=3e-4),
        diffusion=DiffusionTraining(steps=1100, batch=16, lr=5e-4, latent_crops=2048, checkpoint_every=500)),
    "smoke": TeacherPreset(
        "smoke", "tests only: the tiny shapes, a few steps of everything",
        autoencoder="tiny", unet="tiny", image_px=128, sample_steps=4,
        ae_training=AutoencoderTraining(steps=10, batch=4, patch_px=64, lr=3e-4, pca_images=64),
        diffusion=DiffusionTraining(steps=12, batch=4, lr=5e-4, latent_crops=64, checkpoint_every=6, warmup_steps=2)),
    "base": TeacherPreset(
        "base", "one-GPU preset: 256 px crops (32x32x16 latents)",
        autoencoder="base", unet="base", image_px=256,
        ae_training=AutoencoderTraining(steps=50_000, batch=16, patch_px=256, lr=1e-4),
        diffusion=DiffusionTraining(steps=200_000, batch=64, lr=1e-4, latent_crops=200_000, ema_decay=0.9999,
                                    checkpoint_every=5000)),
    "sd21": TeacherPreset(
        "sd21", "paper scale: SD3-shaped VAE + SD-2.1-shaped UNet on 16 channels (load real weights from folders)",
        autoencoder="sd3-shape", unet="sd21", image_px=512,
        ae_training=AutoencoderTraining(steps=0, batch=8, patch_px=256, lr=1e-5),
        diffusion=DiffusionTraining(steps=100_000, batch=32, lr=2e-5, latent_crops=500_000, ema_decay=0.9999,
                                    checkpoint_every=2000, gradient_checkpointing=True)),
    "sd21-tiny": TeacherPreset(
        "sd21-tiny", "tests: the sd21 preset's shapes at reduced width (64 px crops, 8x8x16 latents); imports its "
        "autoencoder like sd21",
        autoencoder="sd3-tiny", unet="sd21-tiny", image_px=64, sample_steps=4,
        ae_training=AutoencoderTraining(steps=0, batch=4, patch_px=64, lr=1e-5),
        diffusion=DiffusionTraining(steps=4, batch=4, lr=1e-4, latent_crops=32, checkpoint_every=2, warmup_steps=1,
                                    gradient_checkpointing=True)),
}


def get_teacher_preset(name: str) -> TeacherPreset:
    if name not in TEACHER_PRESETS:
        raise ConfigError(f"--preset {name!r} does not exist; available: {', '.join(TEACHER_PRESETS)}")
    return TEACHER_PRESETS[name]
