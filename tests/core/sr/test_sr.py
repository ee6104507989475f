from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tocsr.core.errors import TocsrError
from tocsr.core.models.autoencoder import build_autoencoder_from_preset, set_latent_stats
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import derive_search_space
from tocsr.core.sr.degradations import bicubic_down, degrade, jpeg, realesrgan_degrade
from tocsr.core.sr.models import OneStepStudent, widen_conv_in
from tocsr.core.sr.pipeline import TOCSRPipeline


@pytest.fixture(scope="module")
def pipe_parts():
    torch.manual_seed(0)
    ae = build_autoencoder_from_preset("tiny").eval()
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    ae.init_shortcuts_from_images(x)
    set_latent_stats(ae, x)
    space = derive_search_space(build_unet_from_preset("tiny", "meta"))
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(space.unet_config).items()}
    student = OneStepStudent(unet_config=cfg, arch_choices=space.uniform({"resnet": "res_bneck4"}).replaced(),
                             cross_attention_dim=32).eval()
    with torch.no_grad():   # as tocsr.core.sr.train.build_student starts it: the identity map plus a small residual
        student.backbone.unet.conv_out.weight.mul_(0.01)
    return ae, student


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(2, 2), (5, 3), (37, 53), (64, 64), (70, 131)])
def test_output_size_is_exact_for_any_input(pipe_parts, size):
    pipe = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=32, overlap_lr=8)
    out, info = pipe.upscale_array(photo(*size))
    assert out.shape == (size[0] * 4, size[1] * 4, 3) and info["output_size"] == [size[1] * 4, size[0] * 4]


# (48, 80) with tile 32: sides that are multiples of the stride; (45, 75) with tile 24: sides that are not, so
# the last tile must be widened to stay on the latent grid (the old
# placement, on photo(45, 75, seed=4): mean |diff| 8.8, max 129).
@pytest.mark.parametrize(("size", "tile", "min_tiles"), [((48, 80), 32, 2), ((45, 75), 24, 5)])
def test_tiled_matches_untiled_with_no_seams(pipe_parts, size, tile, min_tiles):
    lr = photo(*size, seed=3)
    whole, _ = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=128, color_fix="none").upscale_array(lr)
    tiled, info = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=tile, overlap_lr=8, color_fix="none").upscale_array(lr)
    assert info["tiles"] >= min_tiles
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8, (diff.mean(), diff.max())


@pytest.mark.parametrize("size", [100, 128, 131, 200])
def test_tiles_start_on_the_alignment_grid_and_cover_the_side(pipe_parts, size):
    pipe = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=32, overlap_lr=8, context_lr=5)
    spans = pipe._spans(size)
    assert pipe.context % pipe.align == 0 and pipe.context >= 5
    assert all(start % pipe.align == 0 for start, _ in spans)
    assert spans[0][0] == 0 and sum(spans[-1]) == size
    assert all(s1 <= s0 + n0 - pipe.overlap for (s0, n0), (s1, _) in zip(spans, spans[1:], strict=False))
    assert all(pipe.tile <= n < pipe.tile + pipe.align for _, n in spans) or size <= pipe.tile


@pytest.mark.parametrize("fix", ["wavelet", "adain"])
def test_colour_fix_pulls_output_towards_the_input_colours(pipe_parts, fix):
    lr = photo(32, 32, seed=5)
    lr[..., 0] = 230       # a strongly red image
    raw, _ = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=64, color_fix="none").upscale_array(lr)
    fixed, _ = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=64, color_fix=fix).upscale_array(lr)
    target = lr.reshape(-1, 3).mean(0)
    raw_err = np.abs(raw.reshape(-1, 3).mean(0) - target).sum()
    fixed_err = np.abs(fixed.reshape(-1, 3).mean(0) - target).sum()
    # an untrained student drifts the colours far (about 100 levels summed over RGB); either fix brings the
    # mean colour within a few levels of the input's, a no-op fix would not
    assert raw_err > 30 and fixed_err < 0.1 * raw_err, (raw_err, fixed_err)


def test_the_default_colour_fix_is_the_wavelet_one(pipe_parts):
    assert TOCSRPipeline(*pipe_parts, scale=4).color_fix == "wavelet"


def test_modes_grey_rgba_and_16bit(pipe_parts):
    pipe = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=32)
    grey = Image.fromarray(photo(20, 24)[..., 0], "L")
    rgba = Image.fromarray(np.dstack([photo(20, 24), np.full((20, 24), 128, np.uint8)]), "RGBA")
    deep = Image.fromarray(photo(20, 24)[..., 0].astype(np.uint16) * 257)
    out = pipe([grey, rgba, deep])
    assert out.images[0].mode == "L" and out.images[0].size == (96, 80)
    assert out.images[1].mode == "RGBA" and np.asarray(out.images[1])[..., 3].mean() == pytest.approx(128, abs=2)
    assert out.images[2].size == (96, 80) and out.info[2]["source_mode"].startswith("I")


def test_too_small_input_is_refused(pipe_parts):
    with pytest.raises(TocsrError, match="at least 2x2"):
        TOCSRPipeline(*pipe_parts, scale=4).upscale_array(photo(1, 5))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_really_runs_in_half_and_stays_close_to_fp32(pipe_parts, dtype):
    lr = photo(24, 24, seed=3)          # one tile: half-precision convolutions are slow on a CPU
    ref, _ = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=32).upscale_array(lr)
    pipe = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=32, dtype=dtype)
    assert next(pipe.model.student.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    out, info = pipe.upscale_array(lr)
    assert info["dtype"] == dtype and info["fp32_fallbacks"] == 0
    diff = out.astype(float) - ref
    assert 0 < np.abs(diff).max() and 10 * np.log10(255**2 / (diff**2).mean()) > 40    # half, yet within 40 dB


def test_nan_in_half_precision_falls_back_to_fp32_for_that_tile(pipe_parts):
    pipe = TOCSRPipeline(*pipe_parts, scale=4, tile_lr=32)
    real = pipe._run
    calls = {"n": 0}

    def flaky(lr01, model, dtype):
        calls["n"] += 1
        out = real(lr01, model, dtype)
        return out * float("nan") if calls["n"] == 1 else out

    pipe._run = flaky
    out, info = pipe.upscale_array(photo(40, 40))
    assert info["fp32_fallbacks"] == 1 and np.isfinite(out.astype(float)).all()


def test_widened_conv_in_starts_as_the_unconditional_unet():
    torch.manual_seed(0)
    unet = build_unet_from_preset("tiny").eval()
    wide = widen_conv_in(unet, 16).eval()
    z, cond = torch.randn(2, 16, 16, 16), torch.randn(2, 1, 32)
    t = torch.tensor([5, 900])
    with torch.no_grad():
        torch.testing.assert_close(wide(torch.cat([z, torch.randn_like(z)], 1), t, cond).sample, unet(z, t, cond).sample)


def test_degradations_are_seeded_and_sized():
    hr = torch.rand(1, 3, 64, 64)
    a = realesrgan_degrade(hr, 4, torch.Generator().manual_seed(1))
    b = realesrgan_degrade(hr, 4, torch.Generator().manual_seed(1))
    c = realesrgan_degrade(hr, 4, torch.Generator().manual_seed(2))
    assert a.shape == (1, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert bicubic_down(hr, 2).shape == (1, 3, 32, 32)
    assert degrade(hr, 4, "bicubic", torch.Generator()).shape == (1, 3, 16, 16)


def test_torch_jpeg_tracks_a_real_encoder():
    rng = np.random.default_rng(0)
    img = np.clip(np.linspace(0, 255, 96)[None, :, None] + rng.normal(0, 15, (64, 96, 3)), 0, 255).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    for q in (30, 90):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q, subsampling=2)
        pil = torch.from_numpy(np.asarray(Image.open(buf)).copy()).permute(2, 0, 1)[None].float() / 255
        ours = jpeg(x, q)
        err_ours, err_pil = (ours - x).square().mean().sqrt(), (pil - x).square().mean().sqrt()
        assert err_ours == pytest.approx(err_pil.item(), rel=0.25)
    assert (jpeg(x, 30) - x).abs().mean() > (jpeg(x, 95) - x).abs().mean()


def test_sr_teacher_sampling_returns_an_oracle_x0_even_far_outside_unit_range():
    """An x0-predicting SR teacher that knows the answer must return it exactly, even where the latent
    is far outside [-1, 1]: diffusers' default clip_sample once clamped it there (PSNR fell 7 dB)."""
    from types import SimpleNamespace

    from diffusers import DDPMScheduler

    from tocsr.core.sr.train import sample_sr_teacher, sr_scheduler

    torch.manual_seed(0)
    z_hr = torch.randn(2, 16, 8, 8) * 3.0
    z_lr = z_hr + 0.3 * torch.randn_like(z_hr)
    teacher = SimpleNamespace(scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                      beta_end=0.012))     # clip_sample=True, as diffusers defaults
    config = dict(sr_scheduler(teacher).config)
    calls = []

    def oracle(zt, t, lr):
        calls.append(int(t[0]))
        return z_hr

    out = sample_sr_teacher(oracle, DDPMScheduler.from_config(config).alphas_cumprod, z_lr, steps=10, t_start=250,
                            seed=0)
    assert out.abs().max() > 3 and len(calls) == 10 and max(calls) <= 250
    torch.testing.assert_close(out, z_hr)


def test_teacher_ddim_never_clamps_latents():
    """diffusers defaults to clip_sample=True; on unit-variance latents that clamps a third of the values."""
    from diffusers import DDPMScheduler

    from tocsr.core.teacher.evaluate import latent_ddim

    assert latent_ddim(dict(DDPMScheduler().config)).config.clip_sample is False



@pytest.fixture(scope="module")
def per_degradation_parts(pipe_parts):
    """Two students that compute different things: the pipe_parts student, and one with a larger residual."""
    from tocsr.core.sr.models import PerDegradationStudent

    ae, blind = pipe_parts
    other = OneStepStudent(**{k: v for k, v in dict(blind.config).items() if not k.startswith("_")}).eval()
    other.load_state_dict(blind.state_dict())
    with torch.no_grad():
        other.backbone.unet.conv_out.weight.mul_(50)   # a residual that shows after rounding to 8 bits
    return ae, PerDegradationStudent.from_students({"bicubic": blind, "realesrgan": other}).eval()


def test_per_degradation_student_routes_each_input_to_its_own_student(pipe_parts, per_degradation_parts, tmp_path):
    from tocsr.core.errors import ConfigError
    from tocsr.core.sr.models import load_student

    _, student = per_degradation_parts
    z = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        bic, resr = student.students["bicubic"](z), student.students["realesrgan"](z)
        assert (bic - resr).abs().max() > 1e-3
        mixed = student(z, torch.tensor([0, 1, 0]))
        # Equal up to float rounding: a sub-batch of 2 may take another kernel path than a batch of 3.
        assert all(torch.allclose(mixed[i], ref[i], atol=1e-5) for i, ref in ((0, bic), (1, resr), (2, bic)))
        assert torch.equal(student(z), resr)                     # the default: real photographs
        assert torch.equal(student(z, student.degradation_ids("bicubic", 3, "cpu")), bic)
    assert student.for_degradation("bicubic") is student.students["bicubic"]
    with pytest.raises(ConfigError, match="has students for bicubic, realesrgan"):
        student.for_degradation("jpeg")
    with pytest.raises(ConfigError, match="blind"):
        pipe_parts[1].for_degradation("bicubic")
    with pytest.raises(ConfigError, match="two or more"):
        type(student)(degradations=["bicubic"], student_config=dict(student.config)["student_config"])
    # Saved and reloaded as one diffusers folder, through the loader that tells the two kinds apart.
    student.save_pretrained(tmp_path / "per")
    pipe_parts[1].save_pretrained(tmp_path / "blind")
    again = load_student(tmp_path / "per")
    assert again.degradations == ("bicubic", "realesrgan") and type(load_student(tmp_path / "blind")) is OneStepStudent
    with torch.no_grad():
        assert torch.allclose(again(z, torch.tensor([0, 1, 0])), mixed, atol=1e-6)
    with pytest.raises(ConfigError, match="no student config.json"):
        load_student(tmp_path)


def test_pipeline_runs_the_student_for_its_degradation(per_degradation_parts):
    from tocsr.core.errors import ConfigError

    ae, student = per_degradation_parts
    lr = photo(24, 24, seed=5)
    outs = {}
    for name in ("bicubic", "realesrgan", None):
        pipe = TOCSRPipeline(ae, student, scale=4, color_fix="none", degradation=name)
        outs[name], info = pipe.upscale_array(lr)
        assert info["degradation"] == (name or "realesrgan") and pipe.model.student is student.for_degradation(name)
    assert np.array_equal(outs[None], outs["realesrgan"]) and not np.array_equal(outs["bicubic"], outs["realesrgan"])
    with pytest.raises(ConfigError, match="has students for bicubic, realesrgan"):
        TOCSRPipeline(ae, student, scale=4, degradation="gaussian")


def _mean_router(sizes: list):
    """A DegradationRouter whose answer is set by the image's brightness (dark: bicubic), recording what it read."""
    from tocsr.core.sr.router import DegradationRouter

    router = DegradationRouter(("bicubic", "realesrgan")).eval()

    def route(lr):
        sizes.append(tuple(lr.shape[2:]))
        return ["bicubic" if x.mean() < 0 else "realesrgan" for x in lr]

    router.route = route
    return router


def test_a_routed_pipeline_decides_once_per_whole_image_and_runs_that_student(per_degradation_parts, tmp_path):
    """TOCSRPipeline with a router and no degradation named: one decision per whole image (not per tile), and the
    output is the told pipeline's for that decision. A named degradation overrides the router; a routed model is
    not exported as one graph."""
    from tocsr.core.sr.export import export_onnx
    from tocsr.core.sr.router import RouteThenRun

    ae, student = per_degradation_parts
    sizes: list = []
    pipe = TOCSRPipeline(ae, student, scale=4, color_fix="none", tile_lr=32, router=_mean_router(sizes))
    dark, bright = photo(70, 50, seed=3) // 4, 255 - photo(40, 36, seed=4) // 4
    for lr, kind in ((dark, "bicubic"), (bright, "realesrgan")):
        out, info = pipe.upscale_array(lr)
        told, _ = TOCSRPipeline(ae, student, scale=4, color_fix="none", tile_lr=32, degradation=kind).upscale_array(lr)
        assert info["routed"] and info["degradation"] == kind and info["tiles"] > 1
        assert np.array_equal(out, told)
    assert sizes == [(70, 50), (40, 36)]                  # whole images, once each
    assert isinstance(pipe.model, RouteThenRun) and pipe.degradation == "routed"
    named = TOCSRPipeline(ae, student, scale=4, color_fix="none", degradation="bicubic", router=_mean_router(sizes))
    _, info = named.upscale_array(bright)
    assert info["degradation"] == "bicubic" and not info["routed"] and len(sizes) == 2
    with pytest.raises(TocsrError, match="export each student with --degradation"):
        export_onnx(pipe, tmp_path / "sr.onnx")


def test_a_routed_model_runs_each_image_of_a_batch_by_its_own_answer(per_degradation_parts):
    """tocsr.core.sr.router.RoutedSR: blind to its callers, each image of a batch through the student of its
    router's answer; it refuses a blind model and a router answering degradations the model has no student for."""
    from tocsr.core.errors import ConfigError
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.router import DegradationRouter, RoutedSR

    ae, student = per_degradation_parts
    one = OneStepSR(ae, student, 4).eval()
    routed = RoutedSR(one, _mean_router([])).eval()
    lr = torch.stack([torch.full((3, 16, 16), v) for v in (-0.5, 0.5, -0.4)]) + 0.05 * torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        got = routed(lr)
        bic, resr = one(lr, "bicubic"), one(lr, "realesrgan")
    assert not routed.takes_degradation and (bic - resr).abs().max() > 1e-3
    assert all(torch.allclose(got[i], ref[i], atol=1e-5) for i, ref in ((0, bic), (1, resr), (2, bic)))
    with pytest.raises(ConfigError, match="the model is blind"):
        RoutedSR(OneStepSR(ae, student.for_degradation("bicubic"), 4), _mean_router([]))
    with pytest.raises(ConfigError, match=r"answers \['jpeg'\]"):
        RoutedSR(one, DegradationRouter(("bicubic", "jpeg")))


def test_onnx_export_matches_torch(per_degradation_parts, tmp_path):
    pytest.importorskip("onnxruntime")
    from tocsr.core.sr.export import check_onnx, export_onnx

    pipe = TOCSRPipeline(*per_degradation_parts, scale=4, degradation="bicubic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(pipe, tmp_path / "sr.onnx", latent_px=8)
    # diffusers' shape branches are constants at the traced shape; the user is not shown the tracer's warnings
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    # Batch 1 and 2 at two sizes: batch and spatial axes are dynamic.
    assert check_onnx(pipe, path, sizes=((1, 8), (2, 16))) < 1e-3


def test_onnx_export_of_a_model_with_the_lr_encoder_is_the_whole_call_from_the_lr_image(per_degradation_parts,
                                                                                      tmp_path):
    """The LR encoder needs no bicubic upscale or KL encoder outside the graph: it joins it, and the file maps the
    LR image to the SR image as the torch pipeline's model does."""
    ort = pytest.importorskip("onnxruntime")
    from tocsr.core.models.parts import LREncoder, TinyDecoder
    from tocsr.core.sr.export import check_onnx, export_onnx, graph_input

    torch.manual_seed(0)
    encoder, decoder = LREncoder(scale=4, width=8, blocks=1).eval(), TinyDecoder(widths=(8, 8, 8)).eval()
    pipe = TOCSRPipeline(*per_degradation_parts, scale=4, degradation="bicubic", decoder=decoder, encoder=encoder)
    assert graph_input(pipe) == "lr_image"
    path = export_onnx(pipe, tmp_path / "sr.onnx", latent_px=8)
    assert check_onnx(pipe, path, sizes=((1, 8), (2, 16))) < 1e-3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [inp] = session.get_inputs()
    lr = torch.rand(1, 3, 16, 32) * 2 - 1           # latents the UNet halves cleanly, not square
    with torch.no_grad():
        ref = pipe.model(lr).numpy()
    got = session.run(["image"], {inp.name: lr.numpy()})[0]
    assert inp.name == "lr_image" and got.shape == (1, 3, 64, 128) and np.abs(got - ref).max() < 1e-3


def test_a_pipeline_with_stand_in_parts_counts_the_parameters_its_call_runs():
    """The module holds the whole autoencoder; with a tiny decoder (or an LR encoder) deployed its call never runs
    the autoencoder's decoder (encoder), so that part is not counted (bench.probe records the count beside every
    pipeline it measures)."""
    from tocsr.core.models.parts import LREncoder, TinyDecoder
    from tocsr.core.sr.onestep import OneStepSR

    class Student(torch.nn.Conv2d):           # a blind student's interface, one 1x1 convolution
        degradations = ()

        def for_degradation(self, degradation):
            return self

    ae = build_autoencoder_from_preset("tiny", "cpu")
    student, tiny, lr_encoder = Student(16, 16, 1), TinyDecoder(), LREncoder(scale=4)

    def n(*modules) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    assert OneStepSR(ae, student, 4).params_in_call() == n(ae, student)
    with_tiny = OneStepSR(ae, student, 4, tiny)
    assert with_tiny.params_in_call() == n(ae, student, tiny) - n(ae.decoder, ae.shortcut_out)
    assert with_tiny.params_in_call() < n(with_tiny) and with_tiny.params_in_call() < n(ae, student)
    both = OneStepSR(ae, student, 4, tiny, lr_encoder)
    assert (both.encoder_kind, both.decoder_kind) == ("lr", "tiny")
    assert both.params_in_call() == n(student, tiny, lr_encoder)          # nothing of the autoencoder runs
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert both(lr).shape == (1, 3, 64, 64)
        assert torch.allclose(both.encoder(lr), lr_encoder(lr))         # no bicubic upscale, no KL encoder
        assert both.for_degradation(None).encoder_kind == "lr"
