"""`tocsr teacher train`: the autoencoder, then the diffusion UNet, then the teacher's report.

Run folder layout (every stage resumable; a finished stage is skipped when its output exists):
    <out>/autoencoder/            diffusers folder (ShortcutAutoencoderKL / AutoencoderKL)
    <out>/unet/, condition/, scheduler/   diffusers folders (EMA weights)
    <out>/checkpoints/...          step-N folders while training
    <out>/samples.png              DDIM samples from fixed noise
    <out>/teacher.json             preset, data, every figure, timings, provenance
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.data import load_train_val
from tocsr.core.errors import ArtifactError
from tocsr.core.imageio import save_png
from tocsr.core.models.autoencoder import AUTOENCODER_CLASSES, decode_latents
from tocsr.core.models.condition import ConditionEmbedding
from tocsr.core.provenance import environment
from tocsr.core.teacher.autoencoder_train import AutoencoderReport, train_autoencoder
from tocsr.core.teacher.diffusion_train import (
    Denoiser,
    build_latent_cache,
    build_val_latents,
    train_diffusion,
)
from tocsr.core.teacher.evaluate import (
    image_grid,
    image_spectrum_features,
    kid,
    latent_features,
    sample,
    spectrum_kid,
)
from tocsr.core.teacher.importing import check_before_writing, import_autoencoder, require_autoencoder_source
from tocsr.core.teacher.presets import TeacherPreset, get_teacher_preset
from tocsr.core.teacher.record import TeacherRecord, TeacherSamples
from tocsr.core.training import make_accelerator

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    preset: TeacherPreset
    autoencoder: Any
    denoiser: Denoiser
    scheduler: DDPMScheduler
    folder: Path

    @property
    def unet(self) -> UNet2DConditionModel:
        return self.denoiser.unet


def _autoencoder_class(folder: Path):
    import json

    name = json.loads((folder / "config.json").read_text()).get("_class_name")
    if name not in AUTOENCODER_CLASSES:
        raise ArtifactError(f"{folder}: _class_name = {name!r}: expected one of {', '.join(AUTOENCODER_CLASSES)}")
    return AUTOENCODER_CLASSES[name]


def load_teacher(folder: str | Path) -> Teacher:
    """A trained (or expanded/imported) teacher from its run folder; refuses incomplete folders."""
    root = Path(folder)
    missing = [p for p in ("autoencoder", "unet", "condition", "scheduler") if not (root / p / "config.json").is_file()
               and not (root / p / "scheduler_config.json").is_file()]
    if missing and (root / TeacherRecord.FILE_NAME).is_file():
        raise ArtifactError(f"{root}: incomplete teacher folder, missing {', '.join(missing)}; rerun "
                            f"`tocsr teacher train --out {root} --resume`")
    record = TeacherRecord.load(root)
    preset = get_teacher_preset(record.preset)
    ae = _autoencoder_class(root / "autoencoder").from_pretrained(root / "autoencoder").eval()
    unet = UNet2DConditionModel.from_pretrained(root / "unet").eval()
    condition = ConditionEmbedding.from_pretrained(root / "condition").eval()
    scheduler = DDPMScheduler.from_pretrained(root / "scheduler")
    return Teacher(preset, ae, Denoiser(unet, condition).eval(), scheduler, root)


LATENTS_FILE = "latents.safetensors"


def save_latents(folder: Path, train: torch.Tensor, val: torch.Tensor) -> None:
    """The latent cache (fp16), reused by distillation, fidelity evaluation and SR."""
    from safetensors.torch import save

    from tocsr.core.artifacts import atomic_write_bytes

    atomic_write_bytes(folder / LATENTS_FILE, save({"train": train.half().contiguous(), "val": val.half().contiguous()}))


def teacher_latents(teacher: Teacher, data: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) normalised latents: from the teacher folder, or rebuilt from the data it names."""
    path = teacher.folder / LATENTS_FILE
    if path.is_file():
        from safetensors.torch import load_file

        d = load_file(str(path))
        return d["train"].float(), d["val"].float()
    source = data if data is not None else TeacherRecord.load(teacher.folder).data_source
    train, val, _ = load_train_val(source, teacher.preset.split, min_side=teacher.preset.image_px)
    p = teacher.preset
    with torch.no_grad():
        lat = build_latent_cache(teacher.autoencoder, train, p.image_px, p.diffusion.latent_crops, p.seed + 7, "cpu")
        val_lat = build_val_latents(teacher.autoencoder, val, p.image_px, "cpu")
    save_latents(teacher.folder, lat, val_lat)
    return lat, val_lat


def train_teacher(preset_name: str | TeacherPreset, out_dir: str | Path, data: str | Path | None = None,
                  resume: bool = False, threads: int | None = None, init_unet: str | Path | None = None,
                  diffusion_steps: int | None = None, vae: str | Path | None = None,
                  unet_option: str = "--init-unet") -> TeacherRecord:
    """`preset_name`: a preset's name, or the preset itself as a run changed it (a step cap; the record keeps
    the config trained and its name). `diffusion_steps` overrides the preset's (for learning curves). With
    `vae`, the autoencoder is imported from that folder (`tocsr.core.teacher.importing`), not trained; a
    preset that trains its autoencoder for 0 steps refuses to run without one."""
    preset = preset_name if isinstance(preset_name, TeacherPreset) else get_teacher_preset(preset_name)
    if diffusion_steps is not None:
        preset = dataclasses.replace(preset, diffusion=dataclasses.replace(preset.diffusion, steps=diffusion_steps))
    require_autoencoder_source(preset, vae)
    check_before_writing(preset, vae, init_unet, unet_option)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(threads)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train, val, data_report = load_train_val(data, preset.split, min_side=preset.image_px)
    log.info("%s; %d train / %d validation images", data_report.summary(), len(train), len(val))

    ae_folder = out / "autoencoder"
    t = time.perf_counter()
    if resume and (ae_folder / "config.json").is_file() and (out / "autoencoder_report.json").is_file():
        ae = _autoencoder_class(ae_folder).from_pretrained(ae_folder).eval().to(accelerator.device)
        ae_report = AutoencoderReport(**read_artifact(out / "autoencoder_report.json", "tocsr.teacher.autoencoder",
                                                      1)["report"])
        log.info("autoencoder: finished earlier, reusing %s", ae_folder)
    else:
        if vae is not None:
            ae_report = import_autoencoder(vae, preset, val, out, accelerator.device, accelerator.is_main_process)
            accelerator.wait_for_everyone()     # other ranks read the written folder next
        else:
            ae_report = train_autoencoder(train, val, preset, out, accelerator, resume)
        ae = _autoencoder_class(ae_folder).from_pretrained(ae_folder).eval().to(accelerator.device)
        if accelerator.is_main_process:
            write_artifact(out / "autoencoder_report.json", "tocsr.teacher.autoencoder", 1,
                           {"report": dataclasses.asdict(ae_report)})
    timings["autoencoder_s"] = time.perf_counter() - t

    t = time.perf_counter()
    latents = build_latent_cache(ae, train, preset.image_px, preset.diffusion.latent_crops, preset.seed + 7,
                                 accelerator.device)
    val_latents = build_val_latents(ae, val, preset.image_px, accelerator.device)
    if accelerator.is_main_process:
        save_latents(out, latents, val_latents)
    timings["latent_cache_s"] = time.perf_counter() - t

    t = time.perf_counter()
    diff_report = train_diffusion(latents, val_latents, preset, out, accelerator, resume,
                                  Path(init_unet) if init_unet else None, unet_option)
    timings["diffusion_s"] = time.perf_counter() - t

    t = time.perf_counter()
    teacher_unet = UNet2DConditionModel.from_pretrained(out / "unet").eval().to(accelerator.device)
    condition = ConditionEmbedding.from_pretrained(out / "condition").eval().to(accelerator.device)
    denoiser = Denoiser(teacher_unet, condition).eval()
    scheduler = DDPMScheduler.from_pretrained(out / "scheduler")
    n_samples = 64
    gen_latents = sample(lambda z, tt: denoiser(z, tt), scheduler.config, (n_samples, *latents.shape[1:]),
                         preset.sample_steps, seed=preset.seed + 99, device=accelerator.device).cpu()
    # An undertrained teacher (a smoke run, an early kill) can drive unclamped DDIM to inf/NaN: that is
    # a result to report (KID null, samples_finite false), not a reason to crash or write NaN to JSON.
    finite = bool(torch.isfinite(gen_latents).all())
    if not finite:
        log.warning("teacher samples diverged (non-finite latents); latent KID is not reported")
        gen_latents = torch.nan_to_num(gen_latents, nan=0.0, posinf=0.0, neginf=0.0)
    noise_latents = torch.randn(gen_latents.shape, generator=torch.Generator().manual_seed(preset.seed + 98))

    def decoded(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([decode_latents(ae, z[i:i + 16].to(accelerator.device)).cpu()
                              for i in range(0, len(z), 16)])

    images = decoded(gen_latents)
    save_png(out / "samples.png", image_grid(images[:16], 4))
    feats_gen, feats_val = latent_features(gen_latents), latent_features(val_latents)
    kid_gen = kid(feats_gen, feats_val) if finite else None
    kid_ref = kid(latent_features(latents[:n_samples]), feats_val)
    noise_kid = kid(latent_features(noise_latents), feats_val)
    # The same check in image space: the decoded held-out latents are the reference, so the autoencoder's
    # own error is common to every row and only the diffusion model is judged.
    spec_val = image_spectrum_features(decoded(val_latents))
    spec_gen = spectrum_kid(image_spectrum_features(images), spec_val) if finite else None
    spec_train = spectrum_kid(image_spectrum_features(decoded(latents[:n_samples])), spec_val)
    spec_noise = spectrum_kid(image_spectrum_features(decoded(noise_latents)), spec_val)
    timings["evaluation_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    record = TeacherRecord(
        preset=preset.name, preset_config=dataclasses.asdict(preset), data=data_report.to_dict(),
        split_train=tuple(p.name for p in train), split_val=tuple(p.name for p in val),
        autoencoder=ae_report, diffusion=diff_report,
        samples=TeacherSamples(png="samples.png", n_for_kid=n_samples, samples_finite=finite,
                               sampler=f"DDIM {preset.sample_steps} steps", latent_kid_generated_vs_val=kid_gen,
                               latent_kid_train_vs_val=kid_ref, latent_kid_gaussian_noise_vs_val=noise_kid,
                               spectrum_kid_generated_vs_val=spec_gen, spectrum_kid_train_vs_val=spec_train,
                               spectrum_kid_noise_vs_val=spec_noise),
        timings_s=timings, device=str(accelerator.device), threads=torch.get_num_threads())
    if accelerator.is_main_process:
        record.save(out, environment())
    accelerator.wait_for_everyone()
    return record

