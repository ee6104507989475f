"""SRConfig: every setting of the SR stage (SR teacher, one-step student, their data), with the reasons
for its defaults. Light on purpose (no torch): the CLI takes its defaults from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tocsr.core.errors import ConfigError


@dataclass(frozen=True)
class SRConfig:
    scale: int = 4
    patch_px: int = 128
    batch: int = 16
    # How many of the split's training photographs the SR stage learns from: 0, every one; N, the first N in the
    # split's own order (DataSplit.ranked: a hash of the name), so that N photographs are among any larger N's.
    # A study of what more photographs buy (a learning curve over data); the job's baselines get the same ones.
    train_photographs: int = 0
    # The multi-step SR teachers' training steps, one teacher per degradation. 0 trains none: the student then
    # learns from the pairs alone (w_teacher must be 0), and no multi-step row is scored. A preset does that where its
    # teachers would get too few steps to be a reference worth the seconds (RunPreset).
    teacher_steps: int = 1500
    teacher_lr: float = 2e-4
    student_steps: int = 800
    student_lr: float = 2e-4
    # SR teacher: `sample_chains` DDIM chains of `sample_steps` network calls each, averaged. One chain is
    # a sample: on 64 held-out Real-ESRGAN crops (Real-ESRGAN teacher, 1200 steps) one 50-call chain scored
    # 1.30 dB below bicubic while its first call alone was 0.22 dB above; the mean of 4 / 8 / 16 chains of
    # 20 calls: -0.06 (4 x 50) / +0.30 (8 x 20) / see docs/status.md (16 x 20). Only the mean estimates the
    # posterior mean, which PSNR rewards; the 16-channel latent is near incompressible at fine scale, so the
    # last calls cannot remove a chain's own noise either (an x0 estimate from HR noised to t = 25 decodes
    # 3.5 dB below the autoencoder's ceiling). 20 calls per chain: the fewest the acceptance allows, and
    # 8 x 20 scored above 8 x 50 (+0.30 vs +0.24 dB over bicubic, 64 crops).
    sample_steps: int = 20
    sample_chains: int = 16
    t_start: int = 250                    # the chain starts from the LR latent noised to this timestep
    # Share of the SR teacher's training samples taken at the chain's real start state (the LR latent
    # noised to t_start, target the HR latent) instead of the HR latent noised to t <= t_start: the start
    # state is the one input the forward process never produces. Real-ESRGAN teacher, 64 held-out crops,
    # first call vs bicubic: share 0.25 (800 steps, no preconditioning) -0.05 dB; 0.5 with the
    # preconditioning (1200 steps) +0.22; 1.0 +0.48, but then the chain's later calls are never trained.
    teacher_start_share: float = 0.5
    pair_cache: int = 2048                # (HR, LR) latent pairs encoded once, shared by both trainings
    # Every this many student steps, the cache's randomly degraded rows (Real-ESRGAN) are degraded anew and their
    # student inputs encoded again: the same HR crops and targets, new noise, blur and JPEG draws, so the student
    # sees as many degradations as a baseline trained on fresh pairs does rather than the cache's one per crop.
    # Cheap behind the LR encoder (it runs at LR size), costlier behind the autoencoder's (bicubic + KL encoder);
    # the seconds are the student's, in its budget. 0: never (the inputs of the cache as encoded).
    redraw_every: int = 0
    # LR crops whose teacher output the student regresses to, per degradation. Each costs sample_chains x
    # sample_steps teacher calls (~3 s on 2 CPU cores at 16 x 20), computed once before the student trains.
    teacher_cache: int = 32
    w_latent: float = 1.0
    # The teacher and adversarial terms pull the student away from the posterior mean (PSNR) towards
    # the teacher's samples and the HR distribution; a heavier teacher term cost PSNR-Y on clean inputs
    # (docs/status.md, SR adaptation section, has the figures).
    # The quick preset turns it off (RunPreset.sr_w_teacher): at its few SR-teacher steps the teachers were no better
    # than bicubic and the term bought nothing the same seconds of student steps did not (docs/status.md).
    w_teacher: float = 0.05
    # The teacher term is a log MSE too, whose gradient scales with 1 / (MSE + floor). The teacher's outputs
    # sit close to the student's (MSE ~1e-3 vs ~1.5e-2 to the HR latent), so with the student's floor of
    # 1e-4 the 0.05 term pulled 70 % as hard as the HR term, and held the student at the teacher, which is
    # below bicubic on Real-ESRGAN inputs (Real-ESRGAN student, 64 held-out crops: +0.12 dB over bicubic
    # with it, +0.57 without). A floor of 1e-2 bounds its pull to about 7 % of the HR term's: +0.46.
    teacher_target_floor: float = 1e-2
    w_pixel: float = 0.2
    pixel_share: int = 4                  # images per batch decoded for the pixel loss (decoding is costly)
    # The decoder the pixel loss runs through: the autoencoder's ("autoencoder"), or the one the model deploys
    # ("deployed": the tiny decoder where the search chose it, else the autoencoder's). Through the deployed
    # one the student can make up for what the tiny decoder loses; it is also the cheaper one to decode with.
    pixel_decoder: str = "autoencoder"
    # Train the decoder the model deploys with the student, by the pixel loss through it, where that decoder is the
    # tiny one (tocsr.core.models.parts.TinyDecoder; the autoencoder's own is shared by the latents and the SR teachers
    # and stays frozen). It then learns the HR photographs from the student's latents rather than the KL decoder's
    # image of a latent. Needs pixel_decoder "deployed". With one student per degradation each student trains its
    # own copy, deployed with it (its route: tocsr.core.sr.onestep.OneStepSR).
    train_decoder: bool = False
    # Train the encoder the model deploys with the student, where it is the LR one (tocsr.core.models.parts.LREncoder;
    # bicubic + the autoencoder's encoder stays frozen): each step then encodes its pairs' LR images afresh rather
    # than reading the cache's latents. With train_decoder the whole deployed pipeline learns, LR pixels to SR pixels,
    # as a pixel-space SR network does. With one student per degradation each student trains its own copy.
    train_encoder: bool = False
    # The trained encoder and decoder (train_encoder / train_decoder) stay frozen for the student's first this many
    # steps, so that the backbone learns the SR residual before they join: trained together from the first step, the
    # parts learn nearly all of it. Holding them first scored lower than not holding them, so it is an option for
    # studies, off in every preset (figures: reports/evidence/sr-ablation/run55-backbone/). 0: they train from step one.
    parts_frozen_steps: int = 0
    # A pixel branch (tocsr.core.models.parts.PixelBranch) of this many channels beside the latent path: convolutions
    # on the LR image whose HR correction is added to the decoder's image, trained with the student by the pixel term
    # (which then decodes the whole batch as it adds the branch to each image). 0: no branch.
    # The latent path reaches HR pixels only through a 16-channel latent at 1/8 of the HR grid; pixel-space SR
    # networks (the SRVGG baseline) reach them directly, and kept learning where the student stopped. At the quick
    # preset's student steps the branch moved PSNR-Y by hundredths of a dB however it started (docs/status.md,
    # fifty-fourth and fifty-seventh sessions: trained beside the latent path, a branch started as its own network
    # was silenced, not grown into a restorer), so no preset turns it on. Its cost is not in the search's pipeline
    # cost model (bench.pipeline): a preset that turns it on must add it there first, or the chosen model runs over the
    # budget the search held it to.
    pixel_branch_width: int = 0
    pixel_branch_convs: int = 4
    # How the branch starts (tocsr.core.models.parts.BRANCH_INITS): "zero", its correction 0 until training moves it,
    # or "he", a small network of its own as the SRVGG baseline starts.
    pixel_branch_init: str = "zero"
    # The pixel term's form: "l1", the mean absolute error over the decoded batch, or "log_mse", the mean over images
    # of log(pixel MSE + pixel_loss_floor), the PSNR-per-image objective the latent term already uses (see
    # loss_floor). With L1 the images with the largest errors (Real-ESRGAN inputs) steer the term, which costs
    # the clean ones their dB once the pixel term trains a decoder.
    pixel_loss: str = "l1"
    # MSE of images in [-1, 1]; 1e-4 is about 46 dB PSNR, far above what any SR output here reaches, so the floor
    # only bounds the weight of flat crops.
    pixel_loss_floor: float = 1e-4
    # Weight of the rows of randomly drawn degradations (degradations.DRAWN: Real-ESRGAN) in the student's per-image
    # latent and pixel terms, against 1 for the other rows (the weighted mean over images); the teacher term is not
    # weighted. One blind student trades the two: a weight above 1 bought Real-ESRGAN dB at a larger cost in clean dB
    # (docs/status.md, forty-ninth session), and a blind default must stay above bicubic on clean inputs, so the
    # default weighs them alike.
    drawn_weight: float = 1.0
    # The latent discriminator's hinge term. Swept alone (tocsr.app.sr_pd, 0 / 0.002 / 0.02 / 0.2, whole
    # validation photographs; docs/status.md): 0.002 did nothing measurable, 0.02 lowered NIQE on both
    # degradations at no PSNR-Y cost, 0.2 lowered it further on Real-ESRGAN inputs but cost PSNR-Y on clean
    # ones. 0.02 is the knee of that curve.
    w_adv: float = 0.02
    # What the adversarial term's discriminator judges: the student's latents ("latent"), or the images the pixel term
    # decodes from them ("pixel", tocsr.core.sr.models.PixelDiscriminator), through the decoder the pixel term uses,
    # which then trains by it too where the config trains that decoder. With the deployed decoder trained, the latent
    # one no longer moved NIQE (docs/status.md, forty-ninth session): it does not see what the decoder makes.
    discriminator: str = "latent"
    ema_decay: float = 0.995
    # Both trainings minimise the mean over images of log(latent MSE + floor), not the MSE of the batch:
    # the score is PSNR averaged over images, the mean of -10 log10(MSE) per image, and with a plain MSE
    # the small errors on smooth crops vanish beside the textured ones while costing those crops dB.
    # Main job's models, student retrained, PSNR-Y bicubic deg.: plain MSE 30.60 (a very smooth moon
    # crop 1.39 dB below bicubic), floor 1e-5 / 1e-4 / 1e-3: 30.82 / 30.83 / 30.84 (that crop -0.01).
    # The floor keeps the weight of near-perfect crops bounded (1e-4: below the 5 % quantile, 2.6e-4, of
    # the identity map's per-crop error on the training pairs).
    loss_floor: float = 1e-4
    # The SR teacher's per-sample error also spans the noise levels t <= t_start; a floor of 1e-4 starves
    # the high-noise samples, where the chain starts (one crop 4.2 dB below bicubic, mean 30.43); 1e-2
    # caps the weight of well-predicted samples (30.68; plain MSE 30.55), same data and steps.
    teacher_loss_floor: float = 1e-2
    t_star: int = 250
    checkpoint_every: int = 500
    # Processes that crop and degrade pairs while the cache is encoded. Worth it only where encoding
    # is cheap (a GPU: ~4 ms of CPU per Real-ESRGAN pair vs ~70 ms to encode it on 2 CPU cores).
    pair_workers: int = 0
    seed: int = 0
    kinds: tuple[str, ...] = ("bicubic", "realesrgan")
    # One student per entry of `kinds` (each on its kind's half of the cache), told at run time which
    # degradation made its input; it measured better than a blind one (figures: docs/status.md, issue 6 and
    # the eleventh session). Off by default: users rarely know what degraded a photograph, the baselines are
    # blind, and so the headline comparison is blind too. With a router (router_steps) the model is blind again;
    # without one, a told student is reported as its own, labelled row.
    student_per_degradation: bool = False
    # With one student per degradation, a DegradationRouter (tocsr.core.sr.router) trained for this many steps on the
    # training photographs reads each input and picks the student, so the told students run blind: what `tocsr
    # upscale` runs with no --degradation and what the headline row scores. 0: no router (the caller must name the
    # degradation, or the default student runs). Its seconds are in the model's training budget.
    router_steps: int = 300
    # With one student per degradation: 0 trains each from the searched backbone on its own degradation's pairs for
    # student_steps. Above 0, one blind student first trains student_steps on every pair (with the parts the config
    # trains), and each degradation's student then starts from it, weights and parts, and trains this many steps on
    # its own pairs. A student trained on one degradation alone learns general SR from half the pairs; this one starts
    # from what the blind student learnt from all of them and only has its degradation left to learn.
    specialist_steps: int = 0

    def __post_init__(self) -> None:
        if self.pixel_decoder not in PIXEL_DECODERS:
            raise ConfigError(f"SRConfig.pixel_decoder = {self.pixel_decoder!r}: expected one of "
                              f"{', '.join(PIXEL_DECODERS)}")
        if self.discriminator not in DISCRIMINATORS:
            raise ConfigError(f"SRConfig.discriminator = {self.discriminator!r}: expected one of "
                              f"{', '.join(DISCRIMINATORS)}")
        if self.pixel_loss not in PIXEL_LOSSES:
            raise ConfigError(f"SRConfig.pixel_loss = {self.pixel_loss!r}: expected one of {', '.join(PIXEL_LOSSES)}")
        if self.train_decoder and self.pixel_decoder != "deployed":
            raise ConfigError(f"SRConfig.train_decoder = True trains the deployed decoder by the pixel loss through it, "
                              f"but pixel_decoder = {self.pixel_decoder!r}: set pixel_decoder = 'deployed'")
        if not self.drawn_weight > 0:
            raise ConfigError(f"SRConfig.drawn_weight = {self.drawn_weight}: give a weight > 0 (1 weighs every "
                              "degradation's rows the same)")
        for name, zero in _COUNTS.items():
            if getattr(self, name) < 0:
                raise ConfigError(f"SRConfig.{name} = {getattr(self, name)}: give a number >= 0 (0: {zero})")
        if self.pixel_branch_width < 0 or self.pixel_branch_convs < 1:
            raise ConfigError(f"SRConfig.pixel_branch_width = {self.pixel_branch_width}, pixel_branch_convs = "
                              f"{self.pixel_branch_convs}: give a width >= 0 (0: no branch) and at least one convolution")
        if self.pixel_branch_width:
            # imports torch, so only where a branch is asked for
            from tocsr.core.models.parts import BRANCH_INITS

            if self.pixel_branch_init not in BRANCH_INITS:
                raise ConfigError(f"SRConfig.pixel_branch_init = {self.pixel_branch_init!r}: expected one of "
                                  f"{', '.join(BRANCH_INITS)}")
        if self.pixel_branch_width and self.students > 1:
            raise ConfigError(f"SRConfig.pixel_branch_width = {self.pixel_branch_width} with one student per "
                              "degradation: the pixel branch is trained with a blind student; set "
                              "student_per_degradation = False, or pixel_branch_width = 0")
        if self.specialist_steps > 0 and self.students < 2:
            raise ConfigError(f"SRConfig.specialist_steps = {self.specialist_steps} specialises one student per "
                              "degradation from a blind one, but this config trains one student: set "
                              "student_per_degradation = True (with two or more kinds), or specialist_steps = 0")
        if self.teacher_steps < 0:
            raise ConfigError(f"SRConfig.teacher_steps = {self.teacher_steps}: give a number of steps >= 0 "
                              "(0 trains no SR teacher)")
        if not self.has_sr_teachers and self.uses_sr_teachers:
            raise ConfigError(f"SRConfig.teacher_steps = 0 trains no SR teacher, but w_teacher = {self.w_teacher:g} "
                              f"(teacher_cache {self.teacher_cache}) asks the student to learn from them: set "
                              "w_teacher = 0, or give the SR teachers steps")

    @property
    def has_sr_teachers(self) -> bool:
        """Whether the SR stage trains the multi-step SR teachers (and the report scores them)."""
        return self.teacher_steps > 0

    @property
    def students(self) -> int:
        """How many one-step students the config trains (student_steps each): one per degradation, or one blind."""
        return len(self.kinds) if self.student_per_degradation and len(self.kinds) > 1 else 1

    def own_parts(self, part: str) -> bool:
        """Whether each student trains and deploys its own `part` ("encoder" or "decoder"; where the model deploys a
        stand-in for the autoencoder's, tocsr.core.sr.parts): one student per degradation that trains it."""
        if part not in ("encoder", "decoder"):
            raise ConfigError(f"part {part!r}: expected 'encoder' or 'decoder'")
        return self.students > 1 and getattr(self, f"train_{part}")

    @property
    def routes(self) -> bool:
        """Whether the model is one student per degradation behind a DegradationRouter (blind to its callers)."""
        return self.students > 1 and self.router_steps > 0

    @property
    def uses_sr_teachers(self) -> bool:
        """Whether the student learns from the SR teachers: with no teacher term it never asks them, and what they
        cost is then no part of its training budget."""
        return self.w_teacher > 0 and self.teacher_cache > 0


PIXEL_DECODERS = ("autoencoder", "deployed")
PIXEL_LOSSES = ("l1", "log_mse")
DISCRIMINATORS = ("latent", "pixel")

# The settings that train the whole deployed pipeline, LR pixels to SR pixels: the encoder and decoder parts the search
# chose with the student (train_encoder / train_decoder), by the per-image log pixel MSE through the decoder on every
# image of the batch beside the latent term. With those parts frozen the blind student's validation PSNR-Y stopped
# rising early; trained with it, it kept rising (docs/status.md, forty-eighth session, has the curves). A step costs
# more, so a preset trains fewer. Where the search
# deploys the autoencoder's own parts they stay frozen. The quick and full presets' students train with them
# (tocsr.app.mainjob.RUN_PRESETS), `tocsr sr --train-parts` too; not yet the default of SRConfig: the gpu preset,
# whose imported autoencoder may be deployed whole, was not measured with them.
# Its adversarial term judges the decoded images (discriminator "pixel"): once the decoder trains, the latent
# discriminator no longer moved NIQE. Swept on validation photographs (docs/status.md, fifty-second session): 0.1 lowered
# NIQE on both degradations at a cost of hundredths of a dB of PSNR-Y, while 1.0 cost half a dB on clean inputs.
# Counts of SRConfig that may be 0, and what 0 means (its errors say so).
_COUNTS = {"parts_frozen_steps": "the trained parts learn from the first step",
           "train_photographs": "every training photograph of the split",
           "redraw_every": "the pairs are never degraded anew",
           "router_steps": "no degradation router is trained",
           "specialist_steps": "each degradation's student starts from the searched backbone"}

TRAINED_PARTS = (("pixel_decoder", "deployed"), ("train_decoder", True), ("train_encoder", True),
                 ("pixel_loss", "log_mse"), ("w_pixel", 1.0), ("pixel_share", 16),
                 ("discriminator", "pixel"), ("w_adv", 0.1))


def parse_field(word: str, what: str) -> tuple[str, Any]:
    """"KEY=VALUE" -> (KEY, VALUE typed as the SRConfig field KEY): how the tools that retrain a run's student with
    other settings (tocsr.app.sr_pd, tocsr.app.sr_curve) read them. `what` names the option in the errors."""
    defaults = {f.name: f.default for f in dataclasses.fields(SRConfig)}
    key, sep, value = word.partition("=")
    if not sep or key not in defaults:
        raise ConfigError(f"{what}: {word!r} is not KEY=VALUE with KEY an SRConfig field "
                          f"(fields: {', '.join(sorted(defaults))})")
    kind = type(defaults[key])
    if kind not in (bool, int, float, str):
        raise ConfigError(f"{what}: {key} is a {kind.__name__}, which cannot be set here; set numbers, strings or "
                          "switches")
    try:
        return key, (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    except ValueError as e:
        raise ConfigError(f"{what}: {key}={value!r} is not a {kind.__name__}") from e
