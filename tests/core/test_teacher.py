from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import UNet2DConditionModel

from tocsr.core.data import DataSplit, Photo, RandomPatches, load_photos, load_split
from tocsr.core.errors import ConfigError
from tocsr.core.metrics import bicubic_down_up, psnr
from tocsr.core.models.autoencoder import (
    ShortcutAutoencoderKL,
    build_autoencoder_from_preset,
    decode_latents,
    encode_latents,
    set_latent_stats,
)
from tocsr.core.teacher.evaluate import kid
from tocsr.core.teacher.expand import expand_unet


@pytest.fixture(scope="module")
def photos():
    return load_photos(None)[0]


def _parts(assigned: dict[str, str], part: str) -> set[str]:
    return {n for n, p in assigned.items() if p == part}


def test_default_photos_load_offline_and_split_three_ways_deterministically(photos):
    assert len(photos) >= 15 and all(p.rgb.dtype.name == "uint8" and p.rgb.shape[2] == 3 for p in photos)
    names = [p.name for p in photos]
    a, b = DataSplit(seed=3).assign(names), DataSplit(seed=3).assign(list(reversed(names)))
    assert a == b and set(a) == set(names)
    train, val, test = (_parts(a, k) for k in ("train", "val", "test"))
    assert len(test) == round(0.25 * len(names)) and len(val) == round(0.15 * len(names))
    assert len(train) + len(val) + len(test) == len(names)
    assert DataSplit(seed=4).assign(names) != a                      # the seed matters
    # the ranking is per name: adding a photograph moves at most one other across each boundary
    grown = DataSplit(seed=3).assign(names + ["new.png"])
    assert sum(grown[n] != a[n] for n in names) <= 2


def test_the_natural_photographs_pyiqa_ships_join_the_default_and_its_distorted_copies_do_not():
    from PIL import Image

    from tocsr.core.data import list_photos, pyiqa_photo_files

    listed = ["ResultsCalibra/ref_dir/I03.bmp", "ResultsCalibra/dist_dir/I03.bmp", "tests/test_efficiency_img_dir/f.jpg",
              "tests/test_efficiency_img_dir/notes.txt", "pyiqa/models/arch.py"]
    found = pyiqa_photo_files(listed)
    assert sorted(found) == ["pyiqa_I03", "pyiqa_f"]
    assert found["pyiqa_I03"].as_posix().endswith("ref_dir/I03.bmp")
    # the installed pyiqa (the main job's and the tests' environments install it): its photographs are read
    installed = pyiqa_photo_files()
    if not installed:
        pytest.skip("pyiqa is not installed here")
    assert len(installed) >= 5 and set(installed) <= set(list_photos(None))
    with Image.open(installed["pyiqa_I03"]) as im:
        assert im.size == (512, 384)


def test_a_folder_with_train_val_test_subfolders_keeps_its_own_split_and_reads_only_what_is_asked(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from tocsr.core import data

    rgb = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8")
    for part, names in {"train": "abc", "valid": "d", "test": "ef"}.items():
        (tmp_path / part).mkdir()
        for n in names:
            Image.fromarray(rgb).save(tmp_path / part / f"{n}.png")
    opened = []
    real = data.open_photo
    monkeypatch.setattr(data, "open_photo", lambda d, name: opened.append(name) or real(d, name))
    got, _ = load_split(tmp_path, ("train", "val"))
    assert sorted(p.name for p in got["train"]) == ["train/a.png", "train/b.png", "train/c.png"]
    assert [p.name for p in got["val"]] == ["valid/d.png"]
    assert not [n for n in opened if n.startswith("test/")]          # test photographs were never read
    assert [p.name for p in load_split(tmp_path, ("test",))[0]["test"]] == ["test/e.png", "test/f.png"]
    Image.fromarray(rgb).save(tmp_path / "loose.png")
    with pytest.raises(ConfigError, match="outside the train/, val/"):
        load_split(tmp_path, ("train",))
    with pytest.raises(ConfigError, match="sum < 1"):
        DataSplit(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match="at least 3 images"):
        DataSplit().assign(["a.png", "b.png"])


def test_random_patches_are_reproducible(photos):
    ds = RandomPatches(photos, 32, 10, seed=1)
    assert torch.equal(ds[3], RandomPatches(photos, 32, 10, seed=1)[3])
    assert ds[3].shape == (3, 32, 32) and ds[3].min() >= -1 and ds[3].max() <= 1


def test_shortcut_autoencoder_starts_at_its_pca_solution_and_beats_bicubic(photos):
    assigned = DataSplit().assign([p.name for p in photos])
    train = [p for p in photos if assigned[p.name] == "train"]
    val = [p for p in photos if assigned[p.name] != "train"]      # every held-out photograph
    crops = RandomPatches(train, 64, 300, seed=2)
    ae = build_autoencoder_from_preset("tiny").eval()
    assert isinstance(ae, ShortcutAutoencoderKL)
    kept = ae.init_shortcuts_from_images(torch.stack([crops[i] for i in range(300)]))
    assert 0.9 < kept < 1.0
    from tocsr.core.data import grid_patches

    x = grid_patches(val, 64, per_image=2)
    with torch.no_grad():
        set_latent_stats(ae, torch.stack([crops[i] for i in range(64)]))
        rec = decode_latents(ae, encode_latents(ae, x)).clamp(-1, 1)
    assert psnr(rec, x).mean() > psnr(bicubic_down_up(x, 4), x).mean() + 1.0


def test_expansion_preserves_the_function_on_replicated_latents():
    torch.manual_seed(0)
    cfg = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    unet4 = UNet2DConditionModel(**cfg).eval()
    unet16 = expand_unet(unet4).eval()
    z = torch.randn(2, 4, 8, 8)
    cond = torch.randn(2, 3, 32)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ref = unet4(z, t, cond).sample
        out = unet16(z.repeat(1, 4, 1, 1), t, cond).sample
    assert unet16.config.in_channels == unet16.config.out_channels == 16
    torch.testing.assert_close(out, ref.repeat(1, 4, 1, 1), rtol=1e-4, atol=1e-5)


def test_expansion_refuses_a_wrong_channel_count():
    unet = UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(32,),
                                layers_per_block=1, down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",),
                                cross_attention_dim=32, norm_num_groups=8)
    with pytest.raises(ConfigError, match="3-channel"):
        expand_unet(unet)


def test_kid_separates_distributions_and_is_near_zero_for_the_same_one():
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=rng).double().numpy()
    b = torch.randn(200, 16, generator=rng).double().numpy()
    c = (torch.randn(200, 16, generator=rng) * 2 + 1).double().numpy()
    same, _ = kid(a, b)
    diff, _ = kid(a, c)
    assert abs(same) < 0.05 < diff


def test_image_folder_skips_bad_files_and_converts_modes(tmp_path):
    import numpy as np
    from PIL import Image

    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.jpg")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(tmp_path / "alpha.png")
    Image.fromarray(rgb[..., 0].astype("uint16") * 257).save(tmp_path / "deep.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.fromarray(rgb[:8, :8]).save(tmp_path / "tiny.png")
    (tmp_path / "notes.txt").write_text("not an image")
    photos, report = load_photos(tmp_path, min_side=32)
    assert report.loaded == 4 and len(report.skipped) == 2
    assert {name for name, _ in report.skipped} == {"broken.png", "tiny.png"}
    assert all(p.rgb.shape == (64, 64, 3) for p in photos)


def test_empty_or_missing_data_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no images found"):
        load_photos(tmp_path)
    with pytest.raises(ConfigError, match="no such folder"):
        load_photos(tmp_path / "nope")
    assert dataclasses.is_dataclass(Photo)


def test_nan_loss_stops_with_a_message_naming_the_last_good_checkpoint(tmp_path):
    from tocsr.core.training import Checkpointer, TrainingDiverged, check_finite

    ck = Checkpointer(tmp_path)
    ck.save(40, lambda d: (d / "weights.bin").write_bytes(b"ok"), {"loss": 0.1})
    with pytest.raises(TrainingDiverged, match=r"step 41; the last good checkpoint is .*step-0000040"):
        check_finite(torch.tensor(float("nan")), 41, ck)
    assert (ck.latest() / "weights.bin").read_bytes() == b"ok"


def test_incomplete_or_foreign_teacher_folders_are_one_clear_error(tmp_path):
    from tocsr.core.errors import ArtifactError
    from tocsr.core.teacher.train import load_teacher

    with pytest.raises(ArtifactError, match="teacher.json: file not found"):
        load_teacher(tmp_path)
    from tocsr.core.artifacts import write_artifact

    write_artifact(tmp_path / "teacher.json", "tocsr.teacher", 1, {"preset": "tiny"})
    with pytest.raises(ArtifactError, match="incomplete teacher folder, missing autoencoder, unet"):
        load_teacher(tmp_path)
    for part in ("autoencoder", "unet", "condition", "scheduler"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"schema_version = 1, written by another version of the suite \(this one "
                                            r"reads 2\); train it again with `tocsr teacher train --out"):
        load_teacher(tmp_path)                                   # a teacher from before the spectrum check
    write_artifact(tmp_path / "teacher.json", "tocsr.teacher", 2, {"preset": "tiny"})
    with pytest.raises(ArtifactError, match=r"not a complete tocsr.teacher record \(KeyError: 'autoencoder'\); train it "
                                            r"again with `tocsr teacher train --out"):
        load_teacher(tmp_path)
    write_artifact(tmp_path / "teacher.json", "tocsr.search_result", 1, {})
    with pytest.raises(ArtifactError, match="kind = 'tocsr.search_result'"):
        load_teacher(tmp_path)


def test_unknown_preset_is_one_line_exit_1(capsys):
    from tocsr.app.cli import main

    with pytest.raises(SystemExit) as code:
        main(["teacher", "train", "--preset", "huge", "--out", "/tmp/never-written"])
    assert code.value.code == 1 and "--preset 'huge' does not exist; available: tiny" in capsys.readouterr().err


def test_teacher_models_round_trip_exactly(tmp_path):
    from tocsr.core.models.condition import ConditionEmbedding
    from tocsr.core.teacher.diffusion_train import Denoiser

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=16, out_channels=16, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8).eval()
    cond = ConditionEmbedding(1, 1, 32).eval()
    unet.save_pretrained(tmp_path / "unet")
    cond.save_pretrained(tmp_path / "cond")
    a = Denoiser(unet, cond)
    b = Denoiser(UNet2DConditionModel.from_pretrained(tmp_path / "unet").eval(),
                 ConditionEmbedding.from_pretrained(tmp_path / "cond").eval())
    z, t = torch.randn(2, 16, 8, 8), torch.tensor([3, 800])
    with torch.no_grad():
        assert torch.equal(a(z, t), b(z, t))
    ae = build_autoencoder_from_preset("tiny").eval()
    ae.init_shortcuts_from_images(torch.rand(4, 3, 64, 64) * 2 - 1)
    set_latent_stats(ae, torch.rand(4, 3, 64, 64) * 2 - 1)
    ae.save_pretrained(tmp_path / "ae")
    ae2 = ShortcutAutoencoderKL.from_pretrained(tmp_path / "ae").eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(decode_latents(ae, encode_latents(ae, x)), decode_latents(ae2, encode_latents(ae2, x)))


def test_a_zero_terminal_snr_schedule_ends_at_pure_noise_and_its_sampler_starts_there():
    from tocsr.core.teacher.diffusion_train import make_scheduler
    from tocsr.core.teacher.evaluate import latent_ddim
    from tocsr.core.teacher.presets import get_teacher_preset

    quick = get_teacher_preset("quick")
    plain = make_scheduler(quick)
    zsnr = make_scheduler(dataclasses.replace(quick, diffusion=dataclasses.replace(
        quick.diffusion, prediction_type="v_prediction", zero_terminal_snr=True)))
    # scaled_linear keeps ~7% of the signal's amplitude at the last step; the rescaled schedule keeps none.
    assert plain.alphas_cumprod[-1].sqrt() > 0.05 and zsnr.alphas_cumprod[-1] < 1e-6
    ddim = latent_ddim(dict(zsnr.config))
    ddim.set_timesteps(25)
    assert int(ddim.timesteps[0]) == 999 and ddim.config.prediction_type == "v_prediction"
    with pytest.raises(ConfigError, match="needs prediction_type 'v_prediction'"):
        make_scheduler(dataclasses.replace(quick, diffusion=dataclasses.replace(
            quick.diffusion, prediction_type="epsilon", zero_terminal_snr=True)))


def test_the_sample_check_beats_noise_only_at_half_its_spectrum_kid_and_round_trips():
    from tocsr.core.teacher.record import TeacherSamples

    def samples(spectrum):
        return TeacherSamples("samples.png", 64, spectrum is not None, "DDIM 25 steps", (0.36, 0.06), (0.33, 0.07),
                              (0.40, 0.01), spectrum, (0.7, 1.2), (32.0, 1.0))

    assert samples((15.9, 1.0)).beats_noise and not samples((16.1, 1.0)).beats_noise
    assert not samples(None).beats_noise                    # diverged samples never pass
    s = samples((4.2, 0.7))
    assert TeacherSamples.from_dict(s.to_dict()) == s and s.to_dict()["spectrum_kid_noise_vs_val"] == [32.0, 1.0]


def test_image_spectra_tell_photographs_from_decoded_noise_and_from_8x8_blocks():
    import numpy as np

    from tocsr.core.data import load_photos
    from tocsr.core.teacher.evaluate import image_spectrum_features, spectrum_kid

    # The photographs every install has (pyiqa's join the default only where pyiqa is installed, and sort
    # together into one half, which would make the two real halves unlike by source, not by chance).
    photos = [p for p in load_photos(None)[0] if not p.name.startswith("pyiqa_")]
    crops = torch.stack([torch.from_numpy(p.rgb[:128, :128].copy()).permute(2, 0, 1).float() / 127.5 - 1
                         for p in photos if min(p.rgb.shape[:2]) >= 128])
    half = len(crops) // 2
    real_a, real_b = image_spectrum_features(crops[:half]), image_spectrum_features(crops[half:])
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(half, 3, 128, 128, generator=g) * 2 - 1
    blocks = torch.nn.functional.interpolate(torch.rand(half, 3, 16, 16, generator=g) * 2 - 1, scale_factor=8)
    assert real_a.shape[0] == half and real_a.shape[1] >= 10 and np.isfinite(real_a).all()
    real, _ = spectrum_kid(real_b, real_a)
    for fake in (noise, blocks):
        assert spectrum_kid(image_spectrum_features(fake), real_a)[0] > 5 * max(real, 0.1)


def test_latent_statistics_are_made_once_per_device_and_dtype_follow_new_values_and_train_after_inference():
    """normalize/denormalize must not copy the statistics from host memory on every call: on a GPU that is a
    transfer per call, and a CUDA graph cannot capture it (the H200 check failed there)."""
    from tocsr.core.models.autoencoder import denormalize_latents, latent_stats, normalize_latents

    ae = build_autoencoder_from_preset("tiny").eval()
    set_latent_stats(ae, torch.rand(4, 3, 64, 64) * 2 - 1)
    z = torch.randn(2, ae.config.latent_channels, 8, 8)
    with torch.inference_mode():                    # first asked for under inference mode, as the timing does
        first = latent_stats(ae, z)
        assert torch.allclose(denormalize_latents(ae, normalize_latents(ae, z)), z, atol=1e-5)
    assert all(a is b for a, b in zip(latent_stats(ae, z), first, strict=True))       # made once, reused
    assert latent_stats(ae, z.double())[0].dtype == torch.float64                       # per dtype
    mean, std = latent_stats(ae)                                                        # on the CPU, fresh
    assert torch.allclose(first[0], mean) and torch.allclose(first[1], std)
    w = torch.randn_like(z, requires_grad=True)     # the cached std is saved for backward: it must be a normal tensor
    normalize_latents(ae, w).sum().backward()
    assert torch.allclose(w.grad, (1 / first[1]).expand_as(z))
    set_latent_stats(ae, torch.rand(4, 3, 64, 64))                                      # new values: new tensors
    assert not torch.allclose(latent_stats(ae, z)[0], first[0])
