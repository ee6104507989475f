"""`tocsr sr`: SR adaptation and one-step distillation of a selected backbone, into a model folder.

<out>/autoencoder/, <out>/student/   diffusers folders (self-contained: `tocsr upscale --model <out>`)
<out>/sr_teacher/<kind>/             the multi-step SR teacher of each degradation (widened expanded UNet and its
                                     preconditioning); <out>/sr_scheduler/ their x0 schedule
<out>/tiny-decoder/                  the decoder deployed when the search chose the tiny one (tocsr.core.sr.parts)
<out>/lr-encoder/                    the encoder deployed when it is the LR one (tocsr.core.sr.parts)
<out>/pixel-branch/                  the pixel branch beside the latent path, where the config has one
                                     (SRConfig.pixel_branch_width; tocsr.core.models.parts.PixelBranch)
<out>/router/                        the degradation router in front of the students, where the config routes
                                     (SRConfig.router_steps; tocsr.core.sr.router)
<out>/sr.json                        tocsr.core.sr.info.SRModelInfo: scale, architecture, quality, timings
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import decode_latents, encode_latents
from tocsr.core.models.parts import PixelBranch
from tocsr.core.provenance import environment
from tocsr.core.resize import bicubic_upscale, matlab_imresize
from tocsr.core.space import ArchSpec
from tocsr.core.sr.data import sr_photographs
from tocsr.core.sr.evaluate import evaluate_methods
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.sr.models import PerDegradationStudent, default_degradation
from tocsr.core.sr.onestep import LatentEncoder, OneStepSR
from tocsr.core.sr.parts import BRANCH_DIR, DECODER_DIR, ENCODER_DIR, save_part
from tocsr.core.sr.router import ROUTER_DIR, RoutedSR, misroute_loss_db, train_router
from tocsr.core.sr.shared import load_shared, train_shared
from tocsr.core.sr.train import (
    SRConfig,
    SRDenoiser,
    build_student,
    sample_sr_teacher,
    sr_scheduler,
    train_student,
)
from tocsr.core.training import make_accelerator


def _device(module: torch.nn.Module) -> torch.device:
    """Where a pipeline's weights live: inputs are moved there (evaluation hands in CPU tensors)."""
    return next(module.parameters()).device


class MultiStepSR(torch.nn.Module):
    """LR image -> SR image through the multi-step SR teacher of the input's degradation (for timing and
    evaluation): `chains` DDIM chains of `steps` calls, averaged (tocsr.core.sr.train.sample_sr_teacher)."""

    takes_degradation = True

    def __init__(self, autoencoder, sr_teachers: dict[str, SRDenoiser], scheduler_config: dict, scale: int,
                 steps: int, t_start: int, chains: int):
        super().__init__()
        self.autoencoder, self.sr_teachers = autoencoder, torch.nn.ModuleDict(sr_teachers)
        self.scheduler_config, self.scale, self.steps, self.t_start = dict(scheduler_config), scale, steps, t_start
        self.chains = chains
        # Built once here, not on every forward: the latency of this module is what the speed-up divides.
        self.alphas_cumprod = DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod

    def _name(self, degradation: str | None) -> str:
        name = degradation or default_degradation(tuple(self.sr_teachers))
        if name not in self.sr_teachers:
            raise ConfigError(f"degradation {name!r}: this SR model has teachers for {', '.join(self.sr_teachers)}")
        return name

    def for_degradation(self, degradation: str | None) -> MultiStepSR:
        """The same read-out holding only the teacher for `degradation` (None: the default): what costs run."""
        name = self._name(degradation)
        return MultiStepSR(self.autoencoder, {name: self.sr_teachers[name]}, self.scheduler_config, self.scale,
                           self.steps, self.t_start, self.chains)

    def forward(self, lr: torch.Tensor, degradation: str | None = None) -> torch.Tensor:
        lr = lr.to(_device(self))
        z_lr = encode_latents(self.autoencoder, bicubic_upscale(lr, self.scale))
        z = sample_sr_teacher(self.sr_teachers[self._name(degradation)], self.alphas_cumprod, z_lr, self.steps,
                              self.t_start, seed=0, chains=self.chains)
        return decode_latents(self.autoencoder, z)


def teacher_method_name(cfg: SRConfig) -> str:
    return f"sr-teacher-{cfg.sample_chains}x{cfg.sample_steps}step"


def run_sr(teacher, space, spec: ArchSpec, bank, out_dir: str | Path, cfg: SRConfig = SRConfig(),
           data: str | Path | None = None, resume: bool = False, finetuned: str | Path | None = None,
           shared: str | Path | None = None, student_evaluate=None, evaluate_every: int = 0,
           decoder: torch.nn.Module | None = None, decoder_train_s: float = 0.0,
           encoder: torch.nn.Module | None = None, encoder_train_s: float = 0.0) -> SRModelInfo:
    """SR adaptation and one-step distillation of `spec`. `finetuned`: a fine-tune folder
    (tocsr.core.distill.finetune) whose backbone weights the students start from instead of the teacher's
    blocks and the distilled surrogates. `shared`: a folder of tocsr.core.sr.shared.train_shared (the pair
    cache and SR teachers, trained once for a run's devices); without it they are trained here.
    `student_evaluate` / `evaluate_every`: tocsr.core.sr.train.train_student's hook (a learning curve; one
    student only, not with `student_per_degradation`). `decoder`: the trained TinyDecoder the model deploys in
    place of the autoencoder's decoder (the search's choice for the device), saved into `<out>/tiny-decoder/`;
    the student trains against the autoencoder's latents either way (the tiny decoder reproduces its decoder).
    `decoder_train_s`: the seconds that decoder was trained for, counted in the model's training budget.
    `encoder`: the trained LREncoder the model deploys in place of bicubic + the autoencoder's encoder, saved
    into `<out>/lr-encoder/`; the student then trains on that encoder's latents of each pair's LR image (the
    SR teachers' targets stay those of the autoencoder's latents), and `encoder_train_s` joins the budget."""
    out = Path(out_dir)
    if student_evaluate is not None and cfg.student_per_degradation and len(cfg.kinds) > 1:
        raise ConfigError("a student learning curve follows one student; this config trains one per degradation "
                          "(student_per_degradation): set it off for the curve")
    backbone = None
    if finetuned is not None:
        from tocsr.core.distill.finetune import load_finetuned

        backbone, record = load_finetuned(finetuned)
        if record.arch_key != spec.key:
            raise ConfigError(f"{finetuned}: fine-tuned {record.arch_key}, but the SR stage trains {spec.key}; "
                              "fine-tune the chosen architecture again")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, val = sr_photographs(data, teacher.preset.split, cfg)   # the teacher's split
    acc = make_accelerator()
    ae = teacher.autoencoder.eval().to(acc.device)
    if shared is None:
        part = train_shared(teacher, train, out, cfg, resume, acc, for_sharing=False)
    else:
        part = load_shared(shared, teacher, train, cfg, out, acc.device)
    cache, sr_teachers = part.cache, part.sr_teachers
    # what the shared part cost stays in this model's training time, the budget its baselines get
    timings = dict(part.timings_s)
    if decoder is not None:
        timings["decoder_s"] = float(decoder_train_s)
    if encoder is not None:
        timings["encoder_s"] = float(encoder_train_s)
        t = time.perf_counter()
        cache = cache.with_encoder(encoder)
        timings["encoder_inputs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sr_config = dict(sr_scheduler(teacher).config)
    # the student trains this model's own copies (SRConfig.train_decoder / train_encoder): the caller's parts may serve
    # other devices
    if cfg.train_decoder and decoder is not None:
        decoder = copy.deepcopy(decoder)
    if cfg.train_encoder and encoder is not None:
        encoder = copy.deepcopy(encoder)
    # the pixel loss through the decoder the model deploys, where the config asks for it (SRConfig.pixel_decoder)
    pixel_decoder = decoder if cfg.pixel_decoder == "deployed" else None
    # what makes the student's inputs from LR images, for the new draws of the degradations (SRConfig.redraw_every)
    input_encoder = encoder if encoder is not None else LatentEncoder(ae, cfg.scale)
    branch = None
    if cfg.pixel_branch_width:
        with torch.random.fork_rng(devices=[]):         # seeded: the same config trains the same branch
            torch.manual_seed(cfg.seed)
            branch = PixelBranch(cfg.scale, cfg.pixel_branch_width, cfg.pixel_branch_convs, cfg.pixel_branch_init)
    if cfg.student_per_degradation and len(cfg.kinds) > 1:
        blind, own_cfg = None, cfg
        if cfg.specialist_steps > 0:
            # one blind student on every pair first; it trains the parts' copies in place, so each degradation's
            # copies below start from them (SRConfig.specialist_steps)
            blind = train_student(teacher, sr_teachers, sr_config, build_student(teacher, space, spec, bank, cfg, backbone),
                                  cache, out, cfg, resume, acc, name="student-blind", save=False,
                                  pixel_decoder=pixel_decoder, input_encoder=input_encoder)
            own_cfg = dataclasses.replace(cfg, student_steps=cfg.specialist_steps)
        # each student trains its own copy of a part the config trains (SRConfig.own_parts), deployed with it
        own_decoder = {kind: copy.deepcopy(decoder) for kind in cfg.kinds} if cfg.own_parts("decoder") and decoder is not None else None
        own_encoder = {kind: copy.deepcopy(encoder) for kind in cfg.kinds} if cfg.own_parts("encoder") and encoder is not None else None
        parts = {kind: train_student(teacher, sr_teachers, sr_config,
                                     copy.deepcopy(blind) if blind is not None else build_student(teacher, space, spec, bank, cfg, backbone),
                                     cache.of_kind(kind), out, own_cfg, resume, acc, name=f"student-{kind}", save=False,
                                     pixel_decoder=own_decoder[kind] if own_decoder and pixel_decoder is not None else pixel_decoder,
                                     input_encoder=own_encoder[kind] if own_encoder else input_encoder)
                 for kind in cfg.kinds}
        student = PerDegradationStudent.from_students(parts)
        decoder, encoder = own_decoder or decoder, own_encoder or encoder
    else:
        student = train_student(teacher, sr_teachers, sr_config, build_student(teacher, space, spec, bank, cfg, backbone),
                                cache, out, cfg, resume, acc, save=False, evaluate=student_evaluate,
                                evaluate_every=evaluate_every, pixel_decoder=pixel_decoder,
                                input_encoder=input_encoder, pixel_branch=branch)
    if acc.is_main_process:
        student.save_pretrained(out / "student")
    timings["student_s"] = time.perf_counter() - t
    one = OneStepSR(ae, student.eval(), cfg.scale, _placed(decoder, acc.device), _placed(encoder, acc.device),
                    _placed(branch, acc.device))
    router = None
    if cfg.routes:
        # on the training photographs, as the students: the validation ones score it. It decides by what a wrong
        # answer costs these students, measured on training crops too.
        router, timings["router_s"] = train_router(train, cfg.kinds, cfg.scale, steps=cfg.router_steps, seed=cfg.seed)
        t = time.perf_counter()
        router = router.to(acc.device).with_loss_db(misroute_loss_db(one, train, cfg.kinds, cfg.scale, cfg.patch_px,
                                                                     seed=cfg.seed))
        timings["router_s"] += time.perf_counter() - t
        if acc.is_main_process:
            router.save_pretrained(out / ROUTER_DIR)
    if acc.is_main_process:
        teacher.autoencoder.save_pretrained(out / "autoencoder")
        save_part(decoder, out / DECODER_DIR)
        save_part(encoder, out / ENCODER_DIR)
        save_part(branch, out / BRANCH_DIR)
    methods = {"bicubic": lambda lr: matlab_imresize(lr, cfg.scale).clamp(-1, 1)}
    if sr_teachers:
        methods[teacher_method_name(cfg)] = MultiStepSR(ae, {k: m.eval() for k, m in sr_teachers.items()}, sr_config,
                                                        cfg.scale, cfg.sample_steps, cfg.t_start, cfg.sample_chains)
    # routed: one blind model (each validation crop routed by itself); otherwise told the crops' degradation if it
    # takes one
    methods["tocsr-onestep"] = one if router is None else RoutedSR(one, router)
    t = time.perf_counter()
    quality = evaluate_methods(methods, val, cfg.patch_px, cfg.scale)
    timings["evaluation_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    info = SRModelInfo(scale=cfg.scale, arch=spec, degradations=tuple(cfg.kinds), config=cfg, quality=quality,
                       timings_s=timings, val_images=tuple(p.name for p in val), teacher_folder=str(teacher.folder),
                       device=str(acc.device), processes=acc.num_processes,
                       backbone_source=f"fine-tuned ({finetuned})" if finetuned else "teacher + distilled surrogates",
                       shared_part="trained here" if shared is None else str(shared),
                       decoder=one.decoder_kind, encoder=one.encoder_kind)
    if acc.is_main_process:
        info.save(out, environment())
    return info


def _placed(part, device):
    """A deployed part (or {degradation: part}) in eval mode on `device`; None stays None."""
    if isinstance(part, dict):
        return {kind: m.eval().to(device) for kind, m in part.items()}
    return None if part is None else part.eval().to(device)
