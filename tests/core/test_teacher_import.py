"""`tocsr teacher import`: real-format weight folders the tests write themselves (an SD3-VAE-shaped and an
SD-2.1-UNet-shaped config at reduced width, `config.json` + `diffusion_pytorch_model.safetensors`), imported into
a teacher folder the later stages accept; every bad folder refused in one line before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from tocsr.app.cli import main
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import get_autoencoder_preset
from tocsr.core.models.unet import get_unet_preset
from tocsr.core.teacher.presets import TEACHER_PRESETS, get_teacher_preset

PRESET = "sd21-tiny"


def write_vae(folder: Path, **change) -> Path:
    torch.manual_seed(0)
    AutoencoderKL(**{**get_autoencoder_preset("sd3-tiny").config, **change}).save_pretrained(folder)
    return folder


def write_unet(folder: Path, **change) -> Path:
    torch.manual_seed(0)
    UNet2DConditionModel(**{**get_unet_preset("sd21-tiny").config, **change}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    vae, unet = write_vae(root / "vae"), write_unet(root / "unet4", in_channels=4, out_channels=4)
    assert (vae / "diffusion_pytorch_model.safetensors").is_file() and json.loads((unet / "config.json").read_text())[
        "in_channels"] == 4
    with pytest.raises(SystemExit) as done:
        main(["teacher", "import", "--vae", str(vae), "--unet", str(unet), "--preset", PRESET,
              "--out", str(root / "teacher"), "--threads", "2"])
    assert done.value.code in (0, None)
    return root


def test_an_sd3_shaped_vae_and_a_4_channel_sd21_shaped_unet_import_into_a_normal_teacher(imported):
    from tocsr.core.teacher.record import TeacherRecord
    from tocsr.core.teacher.train import load_teacher, teacher_latents

    teacher = load_teacher(imported / "teacher")
    ae = teacher.autoencoder
    assert isinstance(ae, AutoencoderKL) and ae.config.latent_channels == 16
    # the checkpoint's latent normalisation is kept, not replaced by statistics of our photographs
    assert ae.config.scaling_factor == pytest.approx(1.5305) and ae.config.shift_factor == pytest.approx(0.0609)
    source = AutoencoderKL.from_pretrained(imported / "vae")
    assert all(torch.equal(a, b) for a, b in zip(ae.state_dict().values(), source.state_dict().values(), strict=True))
    assert teacher.unet.config.in_channels == teacher.unet.config.out_channels == 16   # widened on import
    record = TeacherRecord.load(imported / "teacher")
    assert record.autoencoder.source.startswith("imported from ") and record.autoencoder.steps == 0
    assert record.diffusion.steps == get_teacher_preset(PRESET).diffusion.steps and record.preset == PRESET
    train, val = teacher_latents(teacher)
    assert train.shape[1:] == (16, 8, 8) and val.shape[1] == 16


@pytest.mark.extended
def test_the_imported_teacher_is_accepted_by_the_next_stage(imported, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["distill", "--teacher", str(imported / "teacher"), "--out", str(tmp_path / "s"), "--steps", "2",
              "--batch", "2", "--threads", "2"])
    assert done.value.code in (0, None) and (tmp_path / "s" / "distill.json").is_file()


@pytest.mark.parametrize("case, expect", [
    ("vae4", "latent_channels = 4: the teacher's latent has 16 channels"),
    ("cross", "cross_attention_dim = 32, but the 'sd21-tiny' preset's UNet takes 64"),
    ("no-safetensors", "no diffusion_pytorch_model.safetensors (weight files found: none)"),
    ("not-a-folder", "not a diffusers model folder (no config.json)"),
])
def test_bad_folders_are_refused_in_one_line_before_anything_is_written(tmp_path, capsys, case, expect):
    vae, unet = tmp_path / "vae", tmp_path / "unet"
    if case == "vae4":                      # a 4-channel SD VAE beside a 16-channel UNet
        write_vae(vae, latent_channels=4), write_unet(unet)
    elif case == "cross":
        write_vae(vae), write_unet(unet, cross_attention_dim=32)
    elif case == "no-safetensors":
        write_vae(vae), write_unet(unet)
        (vae / "diffusion_pytorch_model.safetensors").unlink()
    else:
        write_vae(vae), write_unet(unet)
        (unet / "config.json").unlink()
    with pytest.raises(SystemExit) as done:
        main(["teacher", "import", "--vae", str(vae), "--unet", str(unet), "--preset", PRESET,
              "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 1 and expect in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "t" / "autoencoder").exists() and not (tmp_path / "t" / "teacher.json").exists()


def test_a_unet_whose_levels_do_not_divide_the_latent_is_refused(tmp_path):
    from tocsr.core.teacher.importing import load_unet

    unet = write_unet(tmp_path / "unet")
    with pytest.raises(ConfigError, match="halve the latent 8x, which does not divide .* 12x12 latents"):
        load_unet(unet, get_teacher_preset(PRESET), latent_side=12)


@pytest.mark.parametrize("name", sorted(n for n, p in TEACHER_PRESETS.items() if p.ae_training.steps == 0))
def test_no_preset_saves_an_untrained_autoencoder_as_trained(tmp_path, name, monkeypatch):
    """A preset that trains its autoencoder for 0 steps cannot run without importing one."""
    import tocsr.core.teacher.train as train
    from tocsr.core.teacher.train import train_teacher

    def reached(*_, **__):
        raise AssertionError(f"preset {name} went on to read photographs for training")

    monkeypatch.setattr(train, "load_train_val", reached)     # fail fast, not after a paper-scale run

    with pytest.raises(ConfigError, match=f"teacher preset '{name}' does not train its autoencoder .* `tocsr teacher "
                                          "import --vae DIR"):
        train_teacher(name, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_the_presets_without_autoencoder_training_include_the_paper_scale_one():
    assert {"sd21", "sd21-tiny"} <= {n for n, p in TEACHER_PRESETS.items() if p.ae_training.steps == 0}


def test_the_main_job_refuses_bad_weight_folders_before_any_stage(tmp_path, capsys):
    vae = write_vae(tmp_path / "vae", latent_channels=4)
    with pytest.raises(SystemExit) as done:
        main(["run", "--preset", "smoke", "--vae", str(vae), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 1 and "--vae" in err and "latent_channels = 4" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "teacher").exists() and not (tmp_path / "run" / "stages").exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_main_job_starts_from_imported_weights(tmp_path):
    """`tocsr run --vae --unet`: the teacher stage imports (a tiny-UNet-shaped 4-channel folder, widened) and every
    later stage runs on that teacher."""
    from tests.conftest import REPO
    from tocsr.core.teacher.record import TeacherRecord

    vae = write_vae(tmp_path / "vae")
    torch.manual_seed(0)
    UNet2DConditionModel(**{**get_unet_preset("tiny").config, "in_channels": 4, "out_channels": 4}).save_pretrained(
        tmp_path / "unet4")
    r = subprocess.run([sys.executable, "-m", "tocsr", "run", "-p", str(REPO / "hw_profiles" / "cpu-2core.yaml"),
                        "--preset", "smoke", "--vae", str(vae), "--unet", str(tmp_path / "unet4"), "--out", "runs/imp"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=1700,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "runs" / "imp"
    record = TeacherRecord.load(run / "teacher")
    assert record.autoencoder.source == f"imported from {vae.resolve()}" and record.autoencoder.steps == 0
    assert (run / "search-cpu-2core" / "search_result.json").is_file() and (run / "eval" / "rows.json").is_file()
