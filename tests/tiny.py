"""A tiny untrained teacher for tests of what only needs its shapes (cost, export): built in a second on CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from tocsr.core.models.autoencoder import build_autoencoder_from_preset, set_latent_stats
from tocsr.core.models.condition import ConditionEmbedding
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.teacher.diffusion_train import Denoiser, make_scheduler
from tocsr.core.teacher.presets import get_teacher_preset
from tocsr.core.teacher.train import Teacher


def tiny_teacher(folder: Path, seed: int = 0) -> Teacher:
    """The `tiny` autoencoder and UNet with the `smoke` preset's scheduler, weights as initialised (seeded)."""
    torch.manual_seed(seed)
    ae = build_autoencoder_from_preset("tiny").eval()
    set_latent_stats(ae, torch.rand(4, 3, 64, 64) * 2 - 1)
    unet = build_unet_from_preset("tiny", "cpu").eval()
    condition = ConditionEmbedding(cond_tokens=1, cross_attention_dim=unet.config.cross_attention_dim)
    preset = get_teacher_preset("smoke")
    return Teacher(preset, ae, Denoiser(unet, condition).eval(), make_scheduler(preset), folder)



def tiny_sr_folder(folder: Path) -> Path:
    """A one-step SR model folder as the SR stage writes it (`tocsr sr --out`), from the tiny teacher and a cheap
    backbone, trained two steps on two scikit-image photographs and scored on a third: seconds on CPU."""
    import skimage.data
    from PIL import Image

    from tocsr.core.assembly import build_module_bank
    from tocsr.core.space import derive_search_space
    from tocsr.core.sr.config import SRConfig
    from tocsr.core.sr.run import run_sr

    data = folder / "data"
    for part, name in (("train", "astronaut"), ("train", "coffee"), ("val", "chelsea"), ("test", "rocket")):
        (data / part).mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skimage.data, name)()).save(data / part / f"{name}.png")
    teacher = tiny_teacher(folder / "teacher")
    space = derive_search_space(teacher.unet)
    cfg = SRConfig(patch_px=64, batch=2, teacher_steps=0, w_teacher=0.0, student_steps=2, sample_steps=2,
                   sample_chains=2, pair_cache=4, teacher_cache=2, pixel_share=1, checkpoint_every=1000)
    run_sr(teacher, space, space.uniform({"resnet": "res_bneck4"}), build_module_bank(space), folder / "sr", cfg, data)
    return folder / "sr"
