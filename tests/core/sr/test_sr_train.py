"""SR adaptation and one-step distillation on tiny models: the whole stage runs, and a resumed
training ends exactly where an uninterrupted one does."""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil

import pytest
import skimage.data
import torch

from tocsr.core.assembly import build_module_bank
from tocsr.core.data import Photo
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import (
    build_autoencoder_from_preset,
    raw_latent_mse,
    raw_latent_mse_per_image,
    set_latent_stats,
)
from tocsr.core.models.condition import ConditionEmbedding
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import derive_search_space
from tocsr.core.sr.train import (
    PairCache,
    SRConfig,
    build_student,
    load_sr_teachers,
    log_latent_mse,
    pixel_loss,
    row_weights,
    sr_scheduler,
    train_sr_teacher,
    train_student,
)
from tocsr.core.teacher.diffusion_train import Denoiser, make_scheduler
from tocsr.core.teacher.presets import get_teacher_preset
from tocsr.core.teacher.train import Teacher

CFG = SRConfig(patch_px=64, batch=2, teacher_steps=4, student_steps=4, sample_steps=2, sample_chains=2, pair_cache=8,
               teacher_cache=4, pixel_share=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    torch.manual_seed(0)
    photos = [Photo("astronaut", skimage.data.astronaut()),
              Photo("coffee", skimage.data.coffee()),
              Photo("chelsea", skimage.data.chelsea())]
    ae = build_autoencoder_from_preset("tiny").eval()
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    ae.init_shortcuts_from_images(x)
    set_latent_stats(ae, x)
    unet = build_unet_from_preset("tiny", "cpu").eval()
    preset = get_teacher_preset("smoke")
    condition = ConditionEmbedding(cond_tokens=1, cross_attention_dim=unet.config.cross_attention_dim)
    teacher = Teacher(preset, ae, Denoiser(unet, condition).eval(), make_scheduler(preset),
                      tmp_path_factory.mktemp("teacher"))
    space = derive_search_space(unet)
    spec = space.uniform({"resnet": "res_bneck4"})
    bank = build_module_bank(space)
    return teacher, space, spec, bank, photos


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# the settings under which the student trains the parts it is given (a tiny config: no SR teacher)
TRAINS_PARTS = {"pixel_decoder": "deployed", "train_decoder": True, "train_encoder": True, "pixel_share": 2,
                "w_teacher": 0.0, "teacher_steps": 0}


def _given_parts() -> tuple[dict[str, torch.nn.Module], dict[str, dict[str, torch.Tensor]]]:
    """A tiny decoder and LR encoder as a caller gives them (folder name -> part), and their weights before."""
    from tocsr.core.models.parts import LREncoder, TinyDecoder

    torch.manual_seed(0)
    given = {"tiny-decoder": TinyDecoder(widths=(8, 8, 8)).eval(),
             "lr-encoder": LREncoder(scale=CFG.scale, width=8, blocks=1).eval()}
    return given, {name: _state(m) for name, m in given.items()}


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Equal up to float rounding, 20x below one Adam update (lr 2e-4) so a lost optimizer or EMA state
    still fails. The student's teacher term, a log MSE of ~0 on these 8x8 latents, amplifies last-bit
    differences of the reloaded model to ~1.4e-6 after two steps (the latent term alone: bit-exact)."""
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k], sb[k], rtol=0, atol=1e-5) for k in sa)


def _record_inputs(student: torch.nn.Module) -> list[torch.Tensor]:
    """The latents `student` is called on from now on, one tensor per call, in order."""
    seen, real = [], student.forward

    def spy(z, *args, **kwargs):
        seen.append(z.detach().clone())
        return real(z, *args, **kwargs)

    student.forward = spy
    return seen


def _record_samples(monkeypatch) -> list[torch.Tensor]:
    """The cache rows each training step samples from now on, one tensor per step, in order."""
    sampled, sample = [], PairCache.sample

    def record_sample(self, gen, n):
        out = sample(self, gen, n)
        sampled.append(out[0])
        return out

    monkeypatch.setattr(PairCache, "sample", record_sample)
    return sampled


STEP2 = "step-0000002"


def _resume_from_first_checkpoint(src, dst, name: str) -> str:
    """dst holds only the step-2 checkpoint of src, as if the run had been killed after step 2; returns
    that checkpoint's metadata, which a run that wrongly restarted from step 0 would rewrite."""
    shutil.copytree(src / "checkpoints" / name / STEP2, dst / "checkpoints" / name / STEP2)
    return (dst / "checkpoints" / name / STEP2 / "meta.json").read_text()


def _resumed_at_step_2(dst, name: str, meta_before: str) -> bool:
    folder = dst / "checkpoints" / name
    return (folder / STEP2 / "meta.json").read_text() == meta_before and (folder / "step-0000004").is_dir()


@pytest.mark.extended
def test_resumed_sr_trainings_end_where_uninterrupted_ones_do(parts, tmp_path):
    teacher, space, spec, bank, photos = parts
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    assert cache.z_hr.shape == (8, 16, 8, 8) and cache.z_lr.shape == cache.z_hr.shape
    sched = dict(sr_scheduler(teacher).config)

    full, part = tmp_path / "full", tmp_path / "part"
    t_full = train_sr_teacher(teacher, cache, full, CFG, "bicubic")
    meta = _resume_from_first_checkpoint(full, part, "sr_teacher-bicubic")
    t_part = train_sr_teacher(teacher, cache, part, CFG, "bicubic", resume=True)
    assert _resumed_at_step_2(part, "sr_teacher-bicubic", meta) and _same(t_full.unet, t_part.unet)
    # Training moved the zero-initialised head: the teacher is no longer the linear estimate.
    assert t_full.unet.conv_out.weight.abs().sum() > 0
    # The saved teacher reloads with its preconditioning and computes what the trained one does.
    loaded, _ = load_sr_teachers(full, teacher.denoiser.condition)
    assert set(loaded) == {"bicubic"}
    torch.testing.assert_close(loaded["bicubic"].residual_std, t_full.residual_std)
    zt, t = torch.randn(2, 16, 8, 8), torch.tensor([3, 200])
    with torch.no_grad():
        torch.testing.assert_close(loaded["bicubic"](zt, t, cache.z_lr[:2].float()),
                                   t_full.eval()(zt, t, cache.z_lr[:2].float()))

    teachers = {"bicubic": t_full, "realesrgan": t_full}
    s_full = train_student(teacher, teachers, sched, build_student(teacher, space, spec, bank, CFG), cache, full, CFG)
    meta = _resume_from_first_checkpoint(full, part, "student")
    s_part = train_student(teacher, teachers, sched, build_student(teacher, space, spec, bank, CFG), cache, part, CFG,
                           resume=True)
    assert _resumed_at_step_2(part, "student", meta) and _same(s_full, s_part)
    assert s_full.backbone.unet.conv_out.weight.abs().sum() > 0
    # The same config trains the same student: the discriminator is seeded too.
    s_again = train_student(teacher, teachers, sched, build_student(teacher, space, spec, bank, CFG), cache,
                            tmp_path / "again", CFG)
    assert all(torch.equal(v, _state(s_again)[k]) for k, v in _state(s_full).items())
    # The cache holds both degradations: a teacher missing for one is refused before any training.
    with pytest.raises(ConfigError, match="no SR teacher for degradation"):
        train_student(teacher, {"bicubic": t_full}, sched, build_student(teacher, space, spec, bank, CFG), cache,
                      tmp_path / "missing", CFG)


def test_a_trained_student_fits_its_pairs_far_better_than_the_untrained_one(parts, tmp_path):
    """A floor an untrained student (a broken optimiser, a detached loss, a lost step) fails: 40 steps of the
    latent term alone must cut the latent error on the training pairs by more than a fifth (they cut it by
    about 30% here; the student starts near the identity map, so the error it starts from is already small)."""
    teacher, space, spec, bank, photos = parts
    ae = teacher.autoencoder
    cache = PairCache.build(ae, photos, CFG, seed=0, batch=4)
    sr_teacher = train_sr_teacher(teacher, cache, tmp_path / "t", CFG, "bicubic")
    cfg = dataclasses.replace(CFG, student_steps=40, student_lr=1e-3, w_teacher=0.0, w_pixel=0.0, w_adv=0.0,
                              checkpoint_every=1000)
    sched = dict(sr_scheduler(teacher).config)
    with torch.no_grad():
        before = raw_latent_mse(ae, build_student(teacher, space, spec, bank, cfg)(cache.z_lr.float()),
                                cache.z_hr.float()).item()
    student = train_student(teacher, {"bicubic": sr_teacher, "realesrgan": sr_teacher}, sched,
                            build_student(teacher, space, spec, bank, cfg), cache, tmp_path / "s", cfg)
    with torch.no_grad():
        after = raw_latent_mse(ae, student(cache.z_lr.float()), cache.z_hr.float()).item()
    assert after < 0.8 * before, (before, after)


def test_sr_stage_writes_the_model_it_evaluated_and_its_quality_table(parts, tmp_path, monkeypatch):
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.evaluate import evaluate_methods
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.models import PerDegradationStudent, load_student
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.router import ROUTER_DIR, DegradationRouter, RoutedSR, misroute_loss_db

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    cfg = dataclasses.replace(CFG, patch_px=64, student_per_degradation=True, router_steps=4)
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path, cfg)
    assert set(info.quality) == {"bicubic", "realesrgan"}
    for rows in info.quality.values():
        assert set(rows) == {"bicubic", "sr-teacher-2x2step", "tocsr-onestep"}
        # Bicubic needs no model: on real photographs it lands in the usual x4 range. The tiny untrained
        # autoencoder caps the learned methods far lower; they only have to be real numbers here.
        assert 20 < rows["bicubic"]["psnr_y"] < 45
        assert all(math.isfinite(r["psnr_y"]) and r["n_images"] == rows["bicubic"]["n_images"] > 0
                   for r in rows.values())
    written = SRModelInfo.load(tmp_path)           # the folder's record reads back as what was returned
    assert written == info and written.device == "cpu" and written.arch.key == spec.key
    assert written.config == cfg and written.degradations == cfg.kinds and written.environment["git"]
    # The folder holds the weights that were scored (the EMA copy, without any autocast wrapper): one student
    # per degradation, each trained apart (its own checkpoints), each scored on its own degradation.
    student = load_student(tmp_path / "student")
    assert isinstance(student, PerDegradationStudent) and student.degradations == cfg.kinds
    assert all((tmp_path / "checkpoints" / f"student-{k}" / "step-0000004").is_dir() for k in cfg.kinds)
    assert not torch.equal(student.students["bicubic"].backbone.unet.conv_out.weight,
                           student.students["realesrgan"].backbone.unet.conv_out.weight)
    # One SR teacher per degradation too, each trained apart on its own pairs, each with its own data scale.
    teachers, sched = load_sr_teachers(tmp_path, teacher.denoiser.condition)
    assert set(teachers) == set(cfg.kinds)
    assert all((tmp_path / "checkpoints" / f"sr_teacher-{k}" / "step-0000004").is_dir() for k in cfg.kinds)
    assert not torch.equal(teachers["bicubic"].residual_std, teachers["realesrgan"].residual_std)
    multi = sr_run.MultiStepSR(teacher.autoencoder, teachers, sched, cfg.scale, cfg.sample_steps, cfg.t_start,
                               cfg.sample_chains)
    # The students behind the router the stage trained on the training photographs (its seconds in the budget):
    # the one-step row is blind, each crop routed by the saved router.
    assert cfg.routes and info.timings_s["router_s"] > 0
    assert info.training_s == pytest.approx(sum(info.timings_s[k] for k in ("pair_cache_s", "sr_teacher_s",
                                                                            "student_s", "router_s")))
    router = DegradationRouter.from_pretrained(tmp_path / ROUTER_DIR).eval()
    routed = RoutedSR(OneStepSR(teacher.autoencoder, student, cfg.scale), router)
    # it decides by what a wrong answer costs these students, measured on training crops
    costs = misroute_loss_db(routed.model, train, cfg.kinds, cfg.scale, cfg.patch_px, seed=cfg.seed)
    assert [v for row in costs for v in row] == pytest.approx([v for row in router.config.loss_db for v in row],
                                                              abs=1e-4)
    again = evaluate_methods({"s": routed, "t": multi}, val, cfg.patch_px, cfg.scale)
    for kind, rows in again.items():
        assert rows["s"]["psnr_y"] == pytest.approx(info.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-4)
        assert rows["t"]["psnr_y"] == pytest.approx(info.quality[kind]["sr-teacher-2x2step"]["psnr_y"], abs=1e-4)


def test_log_latent_mse_weights_each_image_by_its_own_error(parts):
    """The PSNR-per-image objective: an image's gradient is scaled by 1 / (its MSE + floor), so the
    well-predicted (smooth) crop is not drowned by the textured one, unlike the batch MSE."""
    ae = parts[0].autoencoder
    target = torch.zeros(2, 16, 8, 8)
    pred = torch.zeros(2, 16, 8, 8)
    pred[0] += 0.01                       # a nearly right crop
    pred[1] += 1.0                        # a badly predicted one
    per_image = raw_latent_mse_per_image(ae, pred, target)
    assert torch.allclose(raw_latent_mse(ae, pred, target), per_image.mean())
    floor = 1e-4
    pred.requires_grad_(True)
    log_latent_mse(ae, pred, target, floor).backward()
    g_log = pred.grad.abs().sum(dim=(1, 2, 3))
    pred.grad = None
    raw_latent_mse(ae, pred, target).backward()
    g_mse = pred.grad.abs().sum(dim=(1, 2, 3))
    # batch MSE: the gradient follows the error, 100x larger on the bad crop, so the nearly right crop is
    # never refined; log: each crop's pull is divided by its own MSE + floor, and the nearly right crop
    # gets the larger one (a dB gained there counts as much as on any other crop)
    assert g_mse[1] / g_mse[0] == pytest.approx(100, rel=1e-4)
    expected = 100 * (per_image[0] + floor) / (per_image[1] + floor)
    assert g_log[1] / g_log[0] == pytest.approx(expected.item(), rel=1e-4)
    assert g_log[0] > g_log[1]


def test_the_log_mse_pixel_term_gives_a_clean_image_as_much_pull_per_db_as_a_noisy_one():
    """SRConfig.pixel_loss: with "l1" every pixel pulls alike, so the image with the larger error (a noisy input's)
    gets the larger share of the gradient; with "log_mse" each image's gradient is divided by its own MSE + floor, and
    a dB on the clean image counts as much as one on the noisy. An unknown form is refused."""
    hr = torch.zeros(2, 3, 16, 16)
    pred = torch.zeros(2, 3, 16, 16)
    pred[0] += 0.01                        # a nearly right image
    pred[1] += 0.2                         # one 20x further off
    grads = {}
    for form in ("l1", "log_mse"):
        cfg = SRConfig(pixel_loss=form, pixel_loss_floor=1e-6)
        x = pred.clone().requires_grad_(True)
        pixel_loss(x, hr, cfg).backward()
        grads[form] = x.grad.abs().sum(dim=(1, 2, 3))
    assert grads["l1"][0] == pytest.approx(grads["l1"][1].item())
    # per pixel 2 e / (e^2 + floor): 20x larger on the nearly right image, less what the floor takes
    assert grads["log_mse"][0] / grads["log_mse"][1] == pytest.approx((0.01 / (1e-4 + 1e-6)) / (0.2 / (0.04 + 1e-6)),
                                                                      rel=1e-4)
    assert pixel_loss(pred, hr, SRConfig(pixel_loss="log_mse", pixel_loss_floor=1e-6)).item() == pytest.approx(
        (math.log(1e-4 + 1e-6) + math.log(0.04 + 1e-6)) / 2, rel=1e-5)
    with pytest.raises(ConfigError, match="pixel_loss = 'l2'"):
        SRConfig(pixel_loss="l2")


def test_pair_cache_of_kind_holds_exactly_that_degradations_pairs(parts):
    teacher, _, _, _, photos = parts
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    bic, resr = cache.of_kind("bicubic"), cache.of_kind("realesrgan")
    assert bic.items.tolist() == [0, 2, 4, 6] and resr.items.tolist() == [1, 3, 5, 7]
    assert cache.row_kinds()[:3] == ["bicubic", "realesrgan", "bicubic"] and set(resr.row_kinds()) == {"realesrgan"}
    assert torch.equal(resr.z_lr, cache.z_lr[1::2]) and torch.equal(resr.z_hr, cache.z_hr[1::2])
    # Row r of the sub-cache re-crops the HR pixels of its own item, not of item r.
    assert torch.equal(resr.hr_pixels(torch.tensor([0, 2])), cache.hr_pixels(torch.tensor([1, 5])))
    with pytest.raises(ConfigError, match="holds bicubic, realesrgan"):
        cache.of_kind("jpeg")


def test_a_pair_cache_with_the_lr_encoder_gives_the_student_that_encoders_latents_of_each_rows_lr_image(parts):
    from tocsr.core.models.parts import LREncoder

    teacher, _, _, _, photos = parts
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    assert cache.z_in is cache.z_lr                              # by default the student reads the KL latents
    torch.manual_seed(0)
    encoder = LREncoder(scale=CFG.scale, width=8, blocks=1).eval()
    lr_cache = cache.with_encoder(encoder, batch=3)
    assert torch.equal(lr_cache.z_lr, cache.z_lr) and torch.equal(lr_cache.z_hr, cache.z_hr)   # the teachers' view
    resr = lr_cache.of_kind("realesrgan")                        # rows 1, 3, 5, 7: each its own item's LR image
    with torch.no_grad():
        expected = encoder(torch.stack([cache.pairs[i][1] for i in (1, 3, 5, 7)])).to(cache.z_lr.dtype)
    assert torch.equal(resr.z_in, expected)
    assert torch.equal(resr.inputs(torch.tensor([2])), expected[2:3].float())
    assert not torch.allclose(lr_cache.z_in.float(), cache.z_lr.float(), atol=1e-2)


@pytest.mark.extended
def test_a_student_from_the_shared_part_is_the_one_it_would_have_been_and_other_settings_are_refused(
        parts, tmp_path, monkeypatch):
    """The main job trains the pair cache and SR teachers once for all its devices (tocsr.core.sr.shared):
    a student that starts from that folder ends where one trained with its own part does, with the same
    training seconds on record; a folder trained with other settings or another teacher is refused."""
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.shared import SharedSRRecord, load_shared, train_shared
    from tocsr.core.training import make_accelerator

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    alone = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "alone", CFG)
    assert alone.shared_part == "trained here" and not (tmp_path / "alone" / "pair_cache.pt").exists()
    train_shared(teacher, train, tmp_path / "shared", CFG, False, make_accelerator())
    record = SharedSRRecord.load(tmp_path / "shared")
    from_shared = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "device", CFG, shared=tmp_path / "shared")
    assert from_shared.shared_part == str(tmp_path / "shared")
    assert from_shared.timings_s["sr_teacher_s"] == record.timings_s["sr_teacher_s"]
    assert not (tmp_path / "device" / "checkpoints" / "sr_teacher-bicubic").exists()      # not trained again
    assert _same(load_student(tmp_path / "device" / "student"), load_student(tmp_path / "alone" / "student"))
    for kind in CFG.kinds:
        assert from_shared.quality[kind]["tocsr-onestep"]["psnr_y"] == pytest.approx(
            alone.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-3)
    with pytest.raises(ConfigError, match=r"other settings \(teacher_steps: \[4\] vs \[6\]"):
        load_shared(tmp_path / "shared", teacher, train, dataclasses.replace(CFG, teacher_steps=6), tmp_path / "x",
                    "cpu")
    other = dataclasses.replace(teacher, folder=tmp_path / "another-teacher")
    with pytest.raises(ConfigError, match="trained from the teacher"):
        load_shared(tmp_path / "shared", other, train, CFG, tmp_path / "x", "cpu")


def test_a_config_without_sr_teachers_trains_none_scores_none_and_refuses_a_teacher_term(parts, tmp_path, monkeypatch):
    """SRConfig.teacher_steps = 0 (the quick preset's): the shared part and the SR stage train no SR teacher and
    write none, the stage's validation scores no multi-step row, the report's loaders give the student alone, and
    the student is the one the same config trains with teachers it never asks (w_teacher = 0). A teacher term
    with no teacher to learn from is refused where the config is made."""
    from reports.comparison import load_sr_methods
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.shared import train_shared
    from tocsr.core.training import make_accelerator

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    with_teachers = dataclasses.replace(CFG, w_teacher=0.0)
    none = dataclasses.replace(with_teachers, teacher_steps=0)
    assert with_teachers.has_sr_teachers and not none.has_sr_teachers
    train_shared(teacher, train, tmp_path / "shared", none, False, make_accelerator())
    assert not (tmp_path / "shared" / "sr_teacher").exists()
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "sr", none, shared=tmp_path / "shared")
    assert not (tmp_path / "sr" / "sr_teacher").exists()
    for kind in none.kinds:
        assert sorted(info.quality[kind]) == ["bicubic", "tocsr-onestep"]
    methods, _ = load_sr_methods(teacher, tmp_path / "sr", "cpu-2core", with_teacher=True)
    assert [m.kind for m in methods] == ["one-step"]
    reference = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "ref", with_teachers)
    assert any(m.startswith("sr-teacher") for m in reference.quality["bicubic"])
    assert _same(load_student(tmp_path / "sr" / "student"), load_student(tmp_path / "ref" / "student"))
    with pytest.raises(ConfigError, match="teacher_steps = 0 trains no SR teacher, but w_teacher = 0.05"):
        dataclasses.replace(CFG, teacher_steps=0)
    with pytest.raises(ConfigError, match="teacher_steps = -1"):
        dataclasses.replace(none, teacher_steps=-1)


def test_an_sr_model_with_the_tiny_decoder_deploys_and_scores_that_decoder(parts, tmp_path, monkeypatch):
    """The search can choose the tiny decoder for a device (tocsr.core.models.parts): the SR folder then holds
    it, says so, and every loader (tocsr upscale's pipeline, the main job's evaluation) runs it."""
    from reports.comparison import load_sr_methods
    from tocsr.core.models.parts import TinyDecoder
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.evaluate import evaluate_methods
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.pipeline import TOCSRPipeline

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    torch.manual_seed(0)
    decoder = TinyDecoder(widths=(8, 8, 8)).eval()
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path, CFG, decoder=decoder, decoder_train_s=7.0)
    assert info.decoder == "tiny" and SRModelInfo.load(tmp_path).decoder == "tiny"
    # the decoder's training seconds are the model's too: the trained baselines' budget includes them
    assert info.training_s == pytest.approx(sum(info.timings_s[k] for k in info.TRAINING_PARTS) + 7.0)
    assert (tmp_path / "tiny-decoder" / "config.json").is_file()
    pipe = TOCSRPipeline.from_pretrained(tmp_path)
    assert pipe.model.decoder_kind == "tiny"
    assert torch.equal(pipe.model.part_decoder.net[-1].weight, decoder.net[-1].weight)
    [one], _ = load_sr_methods(teacher, tmp_path, "cpu", with_teacher=False)
    assert one.module.decoder_kind == "tiny"
    student = load_student(tmp_path / "student")
    with_tiny = OneStepSR(teacher.autoencoder, student, CFG.scale, decoder)
    again = evaluate_methods({"tiny": with_tiny, "kl": OneStepSR(teacher.autoencoder, student, CFG.scale)}, val,
                             CFG.patch_px, CFG.scale)
    for kind, rows in again.items():
        # the recorded quality is the tiny decoder's, not the autoencoder's (an untrained decoder: far apart)
        assert rows["tiny"]["psnr_y"] == pytest.approx(info.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-4)
        assert abs(rows["kl"]["psnr_y"] - rows["tiny"]["psnr_y"]) > 1.0


def test_a_student_behind_the_lr_encoder_is_trained_on_that_encoders_latents(parts, tmp_path):
    """Every latent the student reads while training is a row of the LR encoder's latents, none the KL one's."""
    from tocsr.core.models.parts import LREncoder

    teacher, space, spec, bank, photos = parts
    torch.manual_seed(0)
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4).with_encoder(
        LREncoder(scale=CFG.scale, width=8, blocks=1).eval())
    sr_teacher = train_sr_teacher(teacher, cache, tmp_path / "t", CFG, "bicubic")
    student = build_student(teacher, space, spec, bank, CFG)
    seen = _record_inputs(student)
    train_student(teacher, {"bicubic": sr_teacher, "realesrgan": sr_teacher}, dict(sr_scheduler(teacher).config),
                  student, cache, tmp_path / "s", dataclasses.replace(CFG, student_steps=2, checkpoint_every=1000))
    ours, kl = cache.z_in.float(), cache.z_lr.float()
    rows = [row for z in seen for row in z]
    assert len(rows) >= 4
    assert all(any(torch.equal(row, r) for r in ours) and not any(torch.allclose(row, r) for r in kl) for row in rows)


def test_a_new_draw_degrades_the_same_crops_anew_and_only_the_random_degradations(parts):
    """SRPairs.degraded(i, draw): the same HR crop and pose, another draw of a random degradation (Real-ESRGAN),
    the same LR image for bicubic, reproducible; a cache's inputs for a draw change on exactly those rows."""
    from tocsr.core.models.parts import LREncoder
    from tocsr.core.sr.onestep import LatentEncoder

    teacher, _, _, _, photos = parts
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    pairs = cache.pairs
    for i in range(4):
        (hr0, lr0), (hr1, lr1) = pairs[i], pairs.degraded(i, 1)
        assert torch.equal(hr0, hr1) and torch.equal(pairs.degraded(i, 0)[1], lr0)
        assert torch.equal(pairs.degraded(i, 1)[1], lr1)
        assert torch.equal(lr0, lr1) == (pairs.kind(i) == "bicubic"), pairs.kind(i)
    torch.manual_seed(0)
    encoder = LREncoder(scale=CFG.scale, width=8, blocks=1).eval()
    first = cache.with_encoder(encoder, batch=3)
    second = first.with_encoder(encoder, batch=3, draw=2)
    for a, b, kind in zip(first.z_in, second.z_in, cache.row_kinds(), strict=True):
        assert torch.equal(a, b) if kind == "bicubic" else not torch.allclose(a.float(), b.float(), atol=1e-2)
    with torch.no_grad():
        expected = encoder(pairs.degraded(1, 2)[1][None])
    torch.testing.assert_close(second.z_in[1:2].float(), expected, rtol=0, atol=2e-3)   # fp16, another batch
    assert torch.equal(second.z_hr, cache.z_hr)
    # behind the autoencoder's own encoder the inputs are the cache's KL latents of the bicubic upscale
    kl = cache.with_encoder(LatentEncoder(teacher.autoencoder, CFG.scale), batch=3)
    torch.testing.assert_close(kl.z_in.float(), cache.z_lr.float(), rtol=0, atol=1e-2)


def test_a_student_with_redraws_reads_a_new_draw_of_the_random_degradations_every_redraw_every_steps(parts, tmp_path):
    from tocsr.core.models.parts import LREncoder

    teacher, space, spec, bank, photos = parts
    torch.manual_seed(0)
    encoder = LREncoder(scale=CFG.scale, width=8, blocks=1).eval()
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4).with_encoder(encoder)
    cfg = dataclasses.replace(CFG, student_steps=4, checkpoint_every=1000, w_teacher=0.0, redraw_every=2)
    student = build_student(teacher, space, spec, bank, cfg)
    seen = _record_inputs(student)
    sched = dict(sr_scheduler(teacher).config)
    train_student(teacher, {}, sched, student, cache, tmp_path / "s", cfg, input_encoder=encoder)
    assert len(seen) == 4
    redrawn = cache.with_encoder(encoder, draw=1).z_in.float()
    for step, z in enumerate(seen):
        rows = redrawn if step >= 2 else cache.z_in.float()
        assert all(any(torch.equal(row, r) for r in rows) for row in z), step
    assert any(not any(torch.equal(row, r) for r in cache.z_in.float()) for z in seen[2:] for row in z)
    with pytest.raises(ConfigError, match="input_encoder"):
        train_student(teacher, {}, sched, build_student(teacher, space, spec, bank, cfg), cache, tmp_path / "t", cfg)
    with pytest.raises(ConfigError, match="redraw_every = -1"):
        dataclasses.replace(CFG, redraw_every=-1)


@pytest.mark.extended
def test_a_student_resumed_after_a_redraw_reads_the_draw_it_was_on(parts, tmp_path):
    """Killed after step 2 of 4 with a redraw every 2 steps: the resumed student reads draw 1, as the uninterrupted
    one did, and ends where it ended."""
    from tocsr.core.models.parts import LREncoder

    teacher, space, spec, bank, photos = parts
    torch.manual_seed(0)
    encoder = LREncoder(scale=CFG.scale, width=8, blocks=1).eval()
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4).with_encoder(encoder)
    cfg = dataclasses.replace(CFG, w_teacher=0.0, redraw_every=2)
    sched = dict(sr_scheduler(teacher).config)
    full, part = tmp_path / "full", tmp_path / "part"
    s_full = train_student(teacher, {}, sched, build_student(teacher, space, spec, bank, cfg), cache, full, cfg,
                           input_encoder=encoder)
    meta = _resume_from_first_checkpoint(full, part, "student")
    s_part = train_student(teacher, {}, sched, build_student(teacher, space, spec, bank, cfg), cache, part, cfg,
                           resume=True, input_encoder=encoder)
    assert _resumed_at_step_2(part, "student", meta) and _same(s_full, s_part)


def test_an_sr_model_with_the_lr_encoder_deploys_it_and_scores_what_it_deploys(parts, tmp_path, monkeypatch):
    """`tocsr sr --encoder lr`: the SR folder holds the LR encoder, says so, counts its seconds, and every loader
    runs it; the recorded quality is that of the LR-encoder pipeline."""
    from reports.comparison import load_sr_methods
    from tocsr.core.models.parts import LREncoder
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.evaluate import evaluate_methods
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.pipeline import TOCSRPipeline

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    torch.manual_seed(0)
    encoder = LREncoder(scale=CFG.scale, width=8, blocks=1).eval()
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path, CFG, encoder=encoder, encoder_train_s=5.0)
    assert (info.encoder, info.decoder) == ("lr", "kl") and SRModelInfo.load(tmp_path).encoder == "lr"
    assert info.training_s == pytest.approx(sum(info.timings_s[k] for k in info.TRAINING_PARTS) + 5.0
                                            + info.timings_s["encoder_inputs_s"])
    pipe = TOCSRPipeline.from_pretrained(tmp_path)
    assert pipe.model.encoder_kind == "lr"
    assert torch.equal(pipe.model.part_encoder.net[0].weight, encoder.net[0].weight)
    [one], _ = load_sr_methods(teacher, tmp_path, "cpu", with_teacher=False)
    assert one.module.encoder_kind == "lr"
    student = load_student(tmp_path / "student")
    again = evaluate_methods({"lr": OneStepSR(teacher.autoencoder, student, CFG.scale, None, encoder),
                              "kl": OneStepSR(teacher.autoencoder, student, CFG.scale)}, val, CFG.patch_px, CFG.scale)
    for kind, rows in again.items():
        # the recorded quality is the LR encoder's pipeline's (an untrained encoder: apart from the KL one's)
        assert rows["lr"]["psnr_y"] == pytest.approx(info.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-4)
        assert abs(rows["kl"]["psnr_y"] - rows["lr"]["psnr_y"]) > 0.1


def test_an_sr_record_written_before_the_decoder_choice_reads_as_the_kl_decoder(tmp_path):
    import json

    from tocsr.core.artifacts import ArtifactError
    from tocsr.core.space import ArchSpec
    from tocsr.core.sr.info import SRModelInfo

    info = SRModelInfo(scale=4, arch=ArchSpec("s", ("a",), ("b",)), degradations=("bicubic",), config=CFG, quality={},
                       timings_s={}, val_images=(), teacher_folder="t", device="cpu", processes=1, decoder="tiny")
    path = info.save(tmp_path, {})
    doc = json.loads(path.read_text())
    doc["schema_version"] = 2
    del doc["decoder"], doc["encoder"]
    path.write_text(json.dumps(doc))
    assert (SRModelInfo.load(tmp_path).decoder, SRModelInfo.load(tmp_path).encoder) == ("kl", "kl")
    doc["schema_version"], doc["decoder"] = 3, "tiny"          # before the encoder was recorded
    path.write_text(json.dumps(doc))
    assert (SRModelInfo.load(tmp_path).decoder, SRModelInfo.load(tmp_path).encoder) == ("tiny", "kl")
    # a model told the degradation from before routers (no router_steps, no router folder) reads as unrouted
    doc["schema_version"], doc["encoder"], doc["config"]["student_per_degradation"] = 4, "kl", True
    del doc["config"]["router_steps"]
    path.write_text(json.dumps(doc))
    old = SRModelInfo.load(tmp_path).config
    assert old.student_per_degradation and old.router_steps == 0 and not old.routes
    # schema 5: an unrouted model reads as it was; a routed one is refused (its router reads older statistics)
    doc["schema_version"], doc["config"]["router_steps"] = 5, 0
    path.write_text(json.dumps(doc))
    assert not SRModelInfo.load(tmp_path).config.routes
    doc["config"]["router_steps"] = 300
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="router reads statistics .* train the model again"):
        SRModelInfo.load(tmp_path)
    doc["schema_version"] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="schema_version = 1"):
        SRModelInfo.load(tmp_path)
    with pytest.raises(ConfigError, match="decoder = 'small'"):
        dataclasses.replace(info, decoder="small")
    with pytest.raises(ConfigError, match="encoder = 'vae'"):
        dataclasses.replace(info, encoder="vae")


def test_a_student_without_the_teacher_term_never_runs_the_sr_teachers_and_does_not_pay_for_them(parts, tmp_path):
    """With w_teacher = 0 the student needs no SR teacher (none given: no error, and no teacher call), and its
    training budget leaves out what the SR teachers cost; with the term, a missing teacher is refused."""
    from tocsr.core.sr.info import SRModelInfo

    teacher, space, spec, bank, photos = parts
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    sched = dict(sr_scheduler(teacher).config)
    cfg = dataclasses.replace(CFG, student_steps=2, w_teacher=0.0, checkpoint_every=1000)
    assert not cfg.uses_sr_teachers and CFG.uses_sr_teachers
    train_student(teacher, {}, sched, build_student(teacher, space, spec, bank, cfg), cache, tmp_path / "s", cfg)
    with pytest.raises(ConfigError, match="no SR teacher"):
        train_student(teacher, {}, sched, build_student(teacher, space, spec, bank, CFG), cache, tmp_path / "t", CFG)
    timings = {"pair_cache_s": 10.0, "sr_teacher_s": 100.0, "student_s": 30.0}
    with_term = SRModelInfo(scale=4, arch=spec, degradations=("bicubic",), config=CFG, quality={}, timings_s=timings,
                            val_images=(), teacher_folder="t", device="cpu", processes=1)
    assert with_term.training_s == pytest.approx(140.0)
    assert dataclasses.replace(with_term, config=cfg).training_s == pytest.approx(40.0)


def test_the_pixel_loss_runs_through_the_deployed_decoder_when_asked(parts, tmp_path, monkeypatch):
    """SRConfig.pixel_decoder: "deployed" decodes the student's latents for the pixel loss with the decoder the
    model deploys (here a tiny one: it sees every pixel-loss batch, and the student it trains differs from the
    one trained through the autoencoder's decoder); "autoencoder" never calls it. An unknown value is refused."""
    from tocsr.core.models.parts import TinyDecoder
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.models import load_student

    teacher, space, spec, bank, photos = parts
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (photos[:2], photos[2:]))
    torch.manual_seed(0)
    decoder = TinyDecoder(widths=(8, 8, 8)).eval()
    calls = []
    decoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]) if torch.is_grad_enabled()
                                  else None)
    cfg = dataclasses.replace(CFG, pixel_share=2)
    students = {}
    for where in ("autoencoder", "deployed"):
        calls.clear()
        sr_run.run_sr(teacher, space, spec, bank, tmp_path / where, dataclasses.replace(cfg, pixel_decoder=where),
                      decoder=decoder)
        students[where] = load_student(tmp_path / where / "student").state_dict()
        assert calls == ([2] * cfg.student_steps if where == "deployed" else []), (where, calls)
    a, b = students["autoencoder"], students["deployed"]
    assert any(not torch.equal(a[k], b[k]) for k in a), "the pixel decoder changed nothing"
    with pytest.raises(ConfigError, match="pixel_decoder = 'tiny'"):
        SRConfig(pixel_decoder="tiny")


def test_parts_trained_with_the_student_are_the_ones_saved_scored_and_resumed(parts, tmp_path, monkeypatch):
    """SRConfig.train_decoder / train_encoder: the pixel loss trains the deployed tiny decoder and LR encoder with the
    student. The model saves and scores the trained parts (EMA weights), the caller's parts are left as they were
    (other devices may deploy them), a resumed training ends where an uninterrupted one does, parts included, and
    settings that cannot train them are refused."""
    from tocsr.core.models.parts import LREncoder, TinyDecoder
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.evaluate import evaluate_methods
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.onestep import OneStepSR

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    given, before = _given_parts()
    cfg = dataclasses.replace(CFG, **TRAINS_PARTS)
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "m", cfg, decoder=given["tiny-decoder"],
                         encoder=given["lr-encoder"])
    saved = {"tiny-decoder": TinyDecoder.from_pretrained(tmp_path / "m" / "tiny-decoder").eval(),
             "lr-encoder": LREncoder.from_pretrained(tmp_path / "m" / "lr-encoder").eval()}
    for name, m in given.items():
        assert all(torch.equal(v, _state(m)[k]) for k, v in before[name].items()), f"the caller's {name} was trained"
        assert any(not torch.equal(v, _state(saved[name])[k]) for k, v in before[name].items()), f"{name} not trained"
    student = load_student(tmp_path / "m" / "student")
    again = evaluate_methods({"saved": OneStepSR(teacher.autoencoder, student, cfg.scale, saved["tiny-decoder"],
                                                 saved["lr-encoder"])}, val, cfg.patch_px, cfg.scale)
    for kind, rows in again.items():
        assert rows["saved"]["psnr_y"] == pytest.approx(info.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-4)

    # resumed from the first checkpoint (step 2 of 4): the same student and the same parts
    cache = PairCache.build(teacher.autoencoder, photos, cfg, seed=0, batch=4)
    full, part = tmp_path / "full", tmp_path / "part"
    runs = {}
    for where, resume in ((full, False), (part, True)):
        if resume:
            meta = _resume_from_first_checkpoint(full, part, "student")
        dec, enc = copy.deepcopy(given["tiny-decoder"]), copy.deepcopy(given["lr-encoder"])
        s = train_student(teacher, {}, dict(sr_scheduler(teacher).config), build_student(teacher, space, spec, bank,
                          cfg), cache.with_encoder(enc), where, cfg, resume=resume, pixel_decoder=dec,
                          input_encoder=enc)
        runs[where] = (s, dec, enc)
    assert _resumed_at_step_2(part, "student", meta)
    assert all(_same(a, b) for a, b in zip(runs[full], runs[part], strict=True))

    with pytest.raises(ConfigError, match="set pixel_decoder = 'deployed'"):
        SRConfig(train_decoder=True)


def test_parts_frozen_steps_hold_the_encoder_and_decoder_still_while_the_backbone_learns(parts, tmp_path):
    """SRConfig.parts_frozen_steps: the trained encoder and decoder do not move for the student's first N steps (the
    backbone does), and learn after them."""
    teacher, space, spec, bank, photos = parts
    given, before = _given_parts()
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    moved = {}
    for frozen in (0, 2, CFG.student_steps):
        cfg = dataclasses.replace(CFG, **TRAINS_PARTS, parts_frozen_steps=frozen, checkpoint_every=1000)
        dec, enc = copy.deepcopy(given["tiny-decoder"]), copy.deepcopy(given["lr-encoder"])
        seen = []

        def watch(step, student, trained, dec=dec, enc=enc, seen=seen):
            seen.append((step, not all(torch.equal(v, _state(dec)[k]) for k, v in before["tiny-decoder"].items()),
                         not all(torch.equal(v, _state(enc)[k]) for k, v in before["lr-encoder"].items())))

        student = train_student(teacher, {}, dict(sr_scheduler(teacher).config),
                                build_student(teacher, space, spec, bank, cfg), cache.with_encoder(enc),
                                tmp_path / str(frozen), cfg, pixel_decoder=dec, input_encoder=enc, evaluate=watch,
                                evaluate_every=1)
        assert student.backbone.unet.conv_out.weight.abs().sum() > 0        # the backbone learnt throughout
        moved[frozen] = [(step, d, e) for step, d, e in seen]
    steps = CFG.student_steps
    assert moved[0] == [(s, True, True) for s in range(1, steps + 1)]
    assert moved[2] == [(s, s > 2, s > 2) for s in range(1, steps + 1)]
    assert moved[steps] == [(s, False, False) for s in range(1, steps + 1)]
    with pytest.raises(ConfigError, match="parts_frozen_steps = -1"):
        SRConfig(parts_frozen_steps=-1)


def test_a_pixel_branch_starts_at_zero_trains_with_the_student_and_is_saved_scored_and_loaded(parts, tmp_path,
                                                                                              monkeypatch):
    """SRConfig.pixel_branch_width: a PixelBranch beside the latent path adds its correction of the LR image to the
    decoder's image. Untrained it changes nothing; the pixel term trains it; the folder keeps it, the stage scored the
    model with it, the pipeline users run loads it, and settings it cannot work with are refused."""
    from tocsr.core.models.parts import PixelBranch
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.evaluate import evaluate_methods
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.parts import deployed_branch, deployed_decoder, deployed_encoder
    from tocsr.core.sr.pipeline import TOCSRPipeline

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    given, _ = _given_parts()
    cfg = dataclasses.replace(CFG, **TRAINS_PARTS, pixel_branch_width=4, pixel_branch_convs=2)
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "m", cfg, decoder=given["tiny-decoder"],
                         encoder=given["lr-encoder"])
    folder = tmp_path / "m"
    branch = deployed_branch(folder, cfg.pixel_branch_width)
    lr = torch.rand(2, 3, 16, 16) * 2 - 1
    assert branch(lr).abs().max() > 0, "the pixel term did not train the branch"
    assert PixelBranch(cfg.scale, 4, 2)(lr).abs().max() == 0, "an untrained branch must add nothing"
    student = load_student(folder / "student")
    decoder, encoder = (deployed_decoder(folder, info.decoder), deployed_encoder(folder, info.encoder))
    with_branch = OneStepSR(teacher.autoencoder, student, cfg.scale, decoder, encoder, branch)
    without = OneStepSR(teacher.autoencoder, student, cfg.scale, decoder, encoder)
    with torch.no_grad():
        latent_path = decoder(student(encoder(lr)))
        assert torch.allclose(with_branch(lr), (latent_path + branch(lr)).clamp(-1, 1), atol=1e-6)
        assert not torch.allclose(with_branch(lr), without(lr))
    assert with_branch.params_in_call() == without.params_in_call() + sum(p.numel() for p in branch.parameters())
    again = evaluate_methods({"saved": with_branch}, val, cfg.patch_px, cfg.scale)
    for kind, rows in again.items():
        assert rows["saved"]["psnr_y"] == pytest.approx(info.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-4)
    pipe = TOCSRPipeline.from_pretrained(folder)
    assert torch.equal(next(pipe.model.branch.parameters()), next(branch.parameters()))
    with pytest.raises(ConfigError, match="call it on the LR image"):
        with_branch.from_latent(encoder(lr))
    with pytest.raises(ConfigError, match="no pixel-branch/"):
        deployed_branch(tmp_path, 4)
    with pytest.raises(ConfigError, match="pixel branch is trained with a blind student"):
        dataclasses.replace(cfg, student_per_degradation=True)


def test_students_per_degradation_each_train_deploy_and_are_scored_with_their_own_parts(parts, tmp_path, monkeypatch):
    """SRConfig.own_parts: one student per degradation that trains the deployed parts trains its own copy of each. The
    folder keeps each student's parts (<part>/<degradation>/), each degradation's route runs its own, the stage scored
    what the folder holds, the pipeline users run loads them, and one call counts one route's parameters."""
    from tocsr.core.sr import run as sr_run
    from tocsr.core.sr.evaluate import evaluate_methods
    from tocsr.core.sr.models import load_student
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.parts import deployed_decoder, deployed_encoder
    from tocsr.core.sr.pipeline import TOCSRPipeline
    from tocsr.core.sr.router import ROUTER_DIR, DegradationRouter, RoutedSR

    teacher, space, spec, bank, photos = parts
    train, val = photos[:2], photos[2:]
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (train, val))
    given, before = _given_parts()
    cfg = dataclasses.replace(CFG, **TRAINS_PARTS, student_per_degradation=True, router_steps=4)
    assert cfg.own_parts("decoder") and cfg.own_parts("encoder") and cfg.students == 2
    assert not dataclasses.replace(cfg, student_per_degradation=False).own_parts("decoder")
    info = sr_run.run_sr(teacher, space, spec, bank, tmp_path / "m", cfg, decoder=given["tiny-decoder"],
                         encoder=given["lr-encoder"])
    folder = tmp_path / "m"
    decoders = deployed_decoder(folder, info.decoder, info.degradations)
    encoders = deployed_encoder(folder, info.encoder, info.degradations)
    assert set(decoders) == set(encoders) == set(cfg.kinds) == set(info.degradations)
    assert not (folder / "tiny-decoder" / "config.json").exists()
    for name, own in (("tiny-decoder", decoders), ("lr-encoder", encoders)):
        assert all(torch.equal(v, _state(given[name])[k]) for k, v in before[name].items()), f"the caller's {name}"
        a, b = (_state(own[k]) for k in cfg.kinds)
        assert any(not torch.equal(a[k], b[k]) for k in a), f"the students trained one {name} between them"
        assert all(any(not torch.equal(v, _state(own[d])[k]) for k, v in before[name].items()) for d in cfg.kinds)
    student = load_student(folder / "student")
    model = OneStepSR(teacher.autoencoder, student, cfg.scale, decoders, encoders)
    for kind in cfg.kinds:
        route = model.for_degradation(kind)
        assert route.part_decoder is decoders[kind] and route.part_encoder is encoders[kind]
        assert route.student is student.students[kind]
    assert model.params_in_call() == model.for_degradation(None).params_in_call() < sum(
        p.numel() for p in model.parameters())
    # what the stage scored (blind: each crop routed) is what the folder holds
    routed = RoutedSR(model, DegradationRouter.from_pretrained(folder / ROUTER_DIR).eval())
    again = evaluate_methods({"saved": routed}, val, cfg.patch_px, cfg.scale)
    for kind, rows in again.items():
        assert rows["saved"]["psnr_y"] == pytest.approx(info.quality[kind]["tocsr-onestep"]["psnr_y"], abs=1e-4)
    # the pipeline users run: each degradation's model runs that student's own parts
    pipe = TOCSRPipeline.from_pretrained(folder)
    for kind in cfg.kinds:
        told = TOCSRPipeline.from_pretrained(folder, degradation=kind).model
        assert torch.equal(next(told.part_decoder.parameters()), next(decoders[kind].parameters()))
        assert torch.equal(next(pipe.models[kind].part_encoder.parameters()), next(encoders[kind].parameters()))
    with pytest.raises(ConfigError, match="one per student"):
        OneStepSR(teacher.autoencoder, student, cfg.scale, {"bicubic": decoders["bicubic"]}, None)


def test_the_rows_of_drawn_degradations_weigh_drawn_weight_in_the_students_per_image_terms(parts, tmp_path,
                                                                                          monkeypatch):
    """SRConfig.drawn_weight: each per-image term of the student (latent and pixel) is the mean over images weighted
    drawn_weight on the Real-ESRGAN rows and 1 on the others; the training step passes each sampled row's own weight.
    1 (the default) weighs them alike, and a weight <= 0 is refused."""
    from tocsr.core.sr import train as sr_train

    teacher, space, spec, bank, photos = parts
    cache = PairCache.build(teacher.autoencoder, photos, CFG, seed=0, batch=4)
    assert row_weights(cache, CFG) is None
    cfg = dataclasses.replace(CFG, drawn_weight=3.0, student_steps=3, w_teacher=0.0, pixel_share=2,
                              checkpoint_every=1000)
    assert row_weights(cache, cfg).tolist() == [1.0, 3.0] * 4                  # rows alternate bicubic, Real-ESRGAN

    hr = torch.zeros(2, 3, 8, 8)
    pred = torch.zeros(2, 3, 8, 8)
    pred[0] += 0.1
    pred[1] += 0.3
    per_image = [math.log(0.01 + 1e-4), math.log(0.09 + 1e-4)]
    w = torch.tensor([1.0, 3.0])
    log_cfg = SRConfig(pixel_loss="log_mse")
    assert pixel_loss(pred, hr, log_cfg, w).item() == pytest.approx((per_image[0] + 3 * per_image[1]) / 4, rel=1e-5)
    assert pixel_loss(pred, hr, CFG, w).item() == pytest.approx((0.1 + 3 * 0.3) / 4, rel=1e-5)
    assert pixel_loss(pred, hr, CFG).item() == pytest.approx(0.2, rel=1e-5)
    ae = teacher.autoencoder
    z, zt = torch.zeros(2, 16, 8, 8), torch.zeros(2, 16, 8, 8)
    z[1] += 1.0
    lat = torch.log(raw_latent_mse_per_image(ae, z, zt) + 1e-4)
    assert log_latent_mse(ae, z, zt, 1e-4, w).item() == pytest.approx(((lat[0] + 3 * lat[1]) / 4).item(), rel=1e-5)

    # the training step: every per-image term gets the weights of the rows it was sampled from
    sampled, seen = _record_samples(monkeypatch), {"latent": [], "pixel": []}
    latent, pixel = sr_train.log_latent_mse, sr_train.pixel_loss
    monkeypatch.setattr(sr_train, "log_latent_mse", lambda *a: (seen["latent"].append(a[4]), latent(*a))[1])
    monkeypatch.setattr(sr_train, "pixel_loss", lambda *a: (seen["pixel"].append(a[3]), pixel(*a))[1])
    train_student(teacher, {}, dict(sr_scheduler(teacher).config), build_student(teacher, space, spec, bank, cfg),
                  cache, tmp_path / "s", cfg)
    assert len(sampled) == cfg.student_steps
    for idx, w_latent, w_pixel in zip(sampled, seen["latent"], seen["pixel"], strict=True):
        expected = torch.where(idx % 2 == 1, 3.0, 1.0)
        assert torch.equal(w_latent, expected) and torch.equal(w_pixel, expected[:cfg.pixel_share])
    with pytest.raises(ConfigError, match="drawn_weight = 0"):
        SRConfig(drawn_weight=0)


def test_the_pixel_discriminator_judges_the_decoded_images_against_the_rows_hr_pixels_and_trains_the_decoder(
        parts, tmp_path, monkeypatch):
    """SRConfig.discriminator = "pixel": each step the discriminator judges the images the pixel term decodes (RGB,
    HR size) against the HR pixels of the same rows, and its term reaches the decoder the student trains: with the
    latent and pixel terms off, the adversarial term alone changes that decoder. An unknown kind is refused."""
    from tocsr.core.sr import train as sr_train
    from tocsr.core.sr.models import PixelDiscriminator

    teacher, space, spec, bank, photos = parts
    cfg = dataclasses.replace(CFG, **TRAINS_PARTS, discriminator="pixel", student_steps=2, checkpoint_every=1000)
    cache = PairCache.build(teacher.autoencoder, photos, cfg, seed=0, batch=4)
    seen, sampled = [], _record_samples(monkeypatch)

    class Recording(PixelDiscriminator):
        def forward(self, image):
            seen.append(image.detach().clone())
            return super().forward(image)

    monkeypatch.setattr(sr_train, "PixelDiscriminator", Recording)
    sched = dict(sr_scheduler(teacher).config)
    decoders = {}
    for w_adv in (0.0, 1.0):
        seen.clear()
        sampled.clear()
        given, _ = _given_parts()
        dec, enc = copy.deepcopy(given["tiny-decoder"]), copy.deepcopy(given["lr-encoder"])
        run = dataclasses.replace(cfg, w_latent=0.0, w_pixel=0.0, w_adv=w_adv)
        train_student(teacher, {}, sched, build_student(teacher, space, spec, bank, run), cache.with_encoder(enc),
                      tmp_path / f"adv{w_adv}", run, pixel_decoder=dec, input_encoder=enc)
        decoders[w_adv] = _state(dec)
        # per step: the student's term on the fakes, then the discriminator's on the reals and the fakes
        assert len(seen) == 3 * cfg.student_steps
        k = cfg.pixel_share
        for step, idx in enumerate(sampled):
            fake, real, fake_again = seen[3 * step:3 * step + 3]
            assert fake.shape == (k, 3, cfg.patch_px, cfg.patch_px)
            assert torch.equal(real, cache.hr_pixels(idx[:k])) and torch.equal(fake, fake_again)
            assert not torch.equal(fake, real)
    assert any(not torch.equal(v, decoders[1.0][k]) for k, v in decoders[0.0].items()), \
        "the pixel discriminator's term did not reach the decoder"
    with pytest.raises(ConfigError, match="discriminator = 'image'"):
        SRConfig(discriminator="image")


def test_specialists_start_from_a_blind_student_and_its_parts_and_train_specialist_steps_on_their_own_pairs(
        parts, tmp_path, monkeypatch):
    """SRConfig.specialist_steps: one blind student trains student_steps on every pair, with the parts' copies; each
    degradation's student then starts from its weights and from those trained parts, and trains specialist_steps on
    that degradation's pairs alone, with its own copies. Without student_per_degradation it is refused."""
    from tocsr.core.sr import run as sr_run

    teacher, space, spec, bank, photos = parts
    monkeypatch.setattr(sr_run, "sr_photographs", lambda data, split, cfg: (photos[:2], photos[2:]))
    calls = []
    real = sr_run.train_student

    def spy(teacher_, sr_teachers, sched, student, cache, out, cfg, *args, name="student", pixel_decoder=None,
            input_encoder=None, **kwargs):
        call = {"name": name, "kinds": sorted(set(cache.row_kinds())), "steps": cfg.student_steps,
                "start": _state(student), "decoder": _state(pixel_decoder), "encoder": _state(input_encoder),
                "decoder_obj": pixel_decoder}
        done = real(teacher_, sr_teachers, sched, student, cache, out, cfg, *args, name=name,
                    pixel_decoder=pixel_decoder, input_encoder=input_encoder, **kwargs)
        call |= {"end": _state(done), "decoder_end": _state(pixel_decoder), "encoder_end": _state(input_encoder)}
        calls.append(call)
        return done

    monkeypatch.setattr(sr_run, "train_student", spy)
    given, _ = _given_parts()
    cfg = dataclasses.replace(CFG, **TRAINS_PARTS, student_per_degradation=True, router_steps=0, student_steps=3,
                              specialist_steps=2, checkpoint_every=1000)
    sr_run.run_sr(teacher, space, spec, bank, tmp_path / "m", cfg, decoder=given["tiny-decoder"],
                  encoder=given["lr-encoder"])
    blind, *own = calls
    assert (blind["name"], blind["kinds"], blind["steps"]) == ("student-blind", sorted(cfg.kinds), 3)
    assert [c["name"] for c in own] == [f"student-{k}" for k in cfg.kinds]
    for c, kind in zip(own, cfg.kinds, strict=True):
        assert c["kinds"] == [kind] and c["steps"] == 2
        for what in ("start", "decoder", "encoder"):
            end = blind["end" if what == "start" else f"{what}_end"]
            assert c[what].keys() == end.keys() and all(torch.equal(v, end[k]) for k, v in c[what].items()), \
                f"the {kind} student's {what} is not where the blind one ended"
        assert any(not torch.equal(v, blind["end"][k]) for k, v in c["end"].items()), f"{kind} did not train"
        assert c["decoder_obj"] is not blind["decoder_obj"]
    assert own[0]["decoder_obj"] is not own[1]["decoder_obj"]
    with pytest.raises(ConfigError, match="set student_per_degradation = True"):
        SRConfig(specialist_steps=5)
    with pytest.raises(ConfigError, match="specialist_steps = -1"):
        SRConfig(specialist_steps=-1)
