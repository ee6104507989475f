"""The `gpu` run preset: refused without a card, step caps, the stage-time estimate it prints before it commits,
gradient checkpointing, and its stages end to end at reduced width (`gpu-tiny`) on this CPU, through the GPU
check script (`tocsr.app.gpu_check --smoke`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tocsr.app.estimate import RunEstimate
from tocsr.app.mainjob import RUN_PRESETS, run_main_job
from tocsr.core.errors import ConfigError


def test_a_presets_sr_settings_are_what_its_job_trains_and_its_estimate_budgets():
    """RunPreset.sr_config is the one place a preset's SR settings are made (the job and the estimate both read it).
    The quick preset's student does not learn from the SR teachers, so their seconds leave every baseline's
    budget; the gpu preset's does."""
    from tocsr.app.estimate import StageEstimate, _sr_teacher_rows

    quick, gpu = RUN_PRESETS["quick"], RUN_PRESETS["gpu"]
    q = quick.sr_config()
    assert (q.student_steps, q.teacher_steps, q.pair_cache, q.teacher_cache, q.patch_px) == (
        quick.sr_student_steps, quick.sr_teacher_steps, quick.sr_pair_cache, quick.sr_teacher_cache, quick.sr_patch_px)
    assert not q.routes and q.students == 1                 # one blind student (RunPreset.sr_routed says why)
    # routed: one student per degradation behind a router, the device's steps divided among them
    routed = dataclasses.replace(quick, sr_routed=True).sr_config()
    assert routed.routes and routed.students == len(routed.kinds) == 2 and routed.router_steps == quick.sr_router_steps
    assert routed.student_steps * routed.students == quick.sr_student_steps
    # the blind student trains the parts it deploys with it (SRConfig's TRAINED_PARTS); routed, each student its own
    assert q.train_decoder and q.train_encoder and q.pixel_decoder == "deployed" and q.pixel_loss == "log_mse"
    assert routed.own_parts("decoder") and routed.own_parts("encoder") and not q.own_parts("decoder")
    assert RUN_PRESETS["smoke"].sr_config().routes          # the tests run the routed path end to end
    assert q.w_teacher == 0 and not q.uses_sr_teachers
    assert gpu.sr_config().uses_sr_teachers and gpu.sr_config().patch_px == 512
    # the quick preset trains no SR teacher, so its estimate times none (the bench is never touched)
    assert not q.has_sr_teachers and gpu.sr_config().has_sr_teachers
    assert _sr_teacher_rows(None, None, q, 1) == []
    stages = (StageEstimate("sr-shared/teachers", "", 10, 1, (10.0,), None, False),
              StageEstimate("sr/student", "", 10, 1, (5.0,), None, True))
    with_them = RunEstimate("p", "cpu", 1, stages, 2, ())
    assert with_them.baselines_s == pytest.approx(2 * 150.0)
    assert dataclasses.replace(with_them, sr_teachers_in_budget=False).baselines_s == pytest.approx(2 * 50.0)
    assert RunEstimate.from_dict(dataclasses.replace(with_them, sr_teachers_in_budget=False).to_dict()) == \
        dataclasses.replace(with_them, sr_teachers_in_budget=False)


def test_a_runs_devices_share_the_presets_student_steps_evenly_up_to_one_devices_own():
    """RunPreset.sr_run_student_steps caps the student steps of a whole run: each device trains the same number,
    never more than one device alone would, and the SR config the job and the estimate read carries it."""
    quick, full = RUN_PRESETS["quick"], RUN_PRESETS["full"]
    assert [quick.student_steps_per_device(n) for n in (1, 2, 3)] == [400, 300, 200]
    assert [quick.sr_config(n).student_steps for n in (1, 2, 3)] == [400, 300, 200]
    assert quick.sr_config().student_steps == quick.sr_student_steps            # one device: the preset's own
    # routed, each device's steps are divided among its students (one per degradation)
    routed = dataclasses.replace(quick, sr_routed=True)
    assert [routed.sr_config(n).student_steps for n in (1, 2, 3)] == [200, 150, 100]
    assert full.sr_run_student_steps is None
    assert {full.sr_config(n).student_steps for n in (1, 2, 5)} == {full.sr_student_steps}
    # a step cap for checks cuts below the split; a run of more devices than steps still trains each student
    assert quick.capped(3).sr_config(3).student_steps == 3 and routed.capped(3).sr_config(3).student_steps == 1
    tiny = dataclasses.replace(quick, sr_run_student_steps=2)
    assert tiny.student_steps_per_device(5) == 1
    # the shared part (pair cache, SR teachers) does not depend on the split: every device's run reuses it
    from tocsr.core.sr.shared import shared_config

    assert shared_config(quick.sr_config(1)) == shared_config(quick.sr_config(3))
    with pytest.raises(ConfigError, match="sr_run_student_steps = 0"):
        dataclasses.replace(quick, sr_run_student_steps=0)
    with pytest.raises(ConfigError, match="a run of 0 devices"):
        quick.student_steps_per_device(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a CUDA device")
def test_the_gpu_preset_is_refused_on_a_machine_without_a_cuda_device_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="--preset gpu needs a CUDA device.*--preset gpu-tiny"):
        run_main_job([str(REPO / "hw_profiles" / "cpu-2core.yaml")], "gpu", tmp_path / "run", vae=tmp_path / "vae")
    assert not (tmp_path / "run").exists()


def test_the_gpu_check_refuses_a_part_to_skip_that_it_does_not_have_when_it_reads_its_arguments(capsys):
    # a misspelt part would otherwise run: minutes of a GPU lease spent on what the line meant to skip. `main` reads
    # its arguments before anything else, so the refusal comes before any work.
    from tocsr.app.gpu_check import build_parser

    assert build_parser().parse_args(["--out", "x", "--skip", "reference,estimate"]).skip == {"reference", "estimate"}
    assert build_parser().parse_args(["--out", "x"]).skip == frozenset()
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(["--out", "x", "--smoke", "--skip", "reference,estmate"])
    assert err.value.code == 2 and "estmate is no part of this script" in capsys.readouterr().err


def test_a_step_cap_cuts_every_training_stage_and_the_teachers_diffusion_steps():
    gpu = RUN_PRESETS["gpu"]
    capped = gpu.capped(3)
    for f in ("distill_steps", "sr_teacher_steps", "sr_student_steps", "finetune_steps", "parts_steps", "sr_router_steps",
              "baseline_max_steps"):
        assert getattr(capped, f) == 3, f
    assert capped.teacher().diffusion.steps == 3 and gpu.teacher().diffusion.steps == 100_000
    # what the cap does not touch: shapes and the stages that are off
    assert capped.sr_patch_px == 512 and capped.teacher().image_px == 512
    assert RUN_PRESETS["quick"].capped(3).finetune_steps == 0
    # the LR encoder's own steps are cut too where a preset sets them, and stay unset (= parts_steps) where not
    assert RUN_PRESETS["quick"].parts_encoder_steps > RUN_PRESETS["quick"].parts_steps
    assert RUN_PRESETS["quick"].capped(3).parts_encoder_steps == 3 and capped.parts_encoder_steps is None
    assert gpu.capped(None) is gpu
    with pytest.raises(ConfigError, match="--max-steps 0"):
        gpu.capped(0)


def test_the_gpu_presets_teacher_uses_gradient_checkpointing_and_imports_its_vae():
    tp = RUN_PRESETS["gpu"].teacher()
    assert tp.name == "sd21" and tp.diffusion.gradient_checkpointing
    assert tp.ae_training.steps == 0          # imports its autoencoder (--vae): never trains one for 0 steps


@pytest.fixture(scope="module")
def estimated(tmp_path_factory):
    """`tocsr run --preset gpu-tiny --estimate-only`, two devices: the estimate is printed and written, no stage runs."""
    out = tmp_path_factory.mktemp("estimate") / "run"
    r = subprocess.run([sys.executable, "-m", "tocsr", "run", "-p", str(REPO / "hw_profiles" / "cpu-2core.yaml"),
                        "-p", str(REPO / "hw_profiles" / "cpu-2core-tight.yaml"), "--preset", "gpu-tiny",
                        "--estimate-only", "--max-steps", "3", "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


@pytest.mark.extended
def test_the_estimate_times_each_training_stage_and_trains_nothing(estimated):
    out, stdout = estimated
    est = RunEstimate.load(out)
    assert not (out / "stages").exists() and not (out / "teacher").exists()
    rows = {s.stage: s for s in est.stages}
    assert list(rows) == ["teacher", "surrogates", "finetune", "sr-shared/teachers", "sr/teacher-targets", "sr/student"]
    rp = RUN_PRESETS["gpu-tiny"].capped(3)
    # step counts are the (capped) run's, per device where each device trains its own
    assert rows["teacher"].steps == 3 and rows["surrogates"].steps == 3
    assert rows["finetune"].steps == 2 * rp.finetune_steps and rows["sr/student"].steps == 2 * rp.sr_student_steps
    assert rows["sr-shared/teachers"].steps == 2 * rp.sr_teacher_steps          # one SR teacher per degradation
    assert "38 slots recorded" in rows["surrogates"].what and "gradient checkpointing" in rows["teacher"].what
    assert "32x8x8 in" in rows["sr-shared/teachers"].what                   # 64 px SR crops: 8x8 latents, LR concat
    for s in est.stages:
        assert len(s.step_s) == 3 and all(t > 0 for t in s.step_s)
        assert s.estimated_s == pytest.approx(s.steps * s.step_s_median)
        assert s.peak_memory_bytes is None                                   # CPU: not readable, not made up
    assert rows["finetune"].upper_bound and rows["sr/student"].upper_bound and not rows["teacher"].upper_bound
    shared = rows["sr-shared/teachers"].estimated_s
    per_device = (rows["sr/teacher-targets"].estimated_s + rows["sr/student"].estimated_s) / 2
    assert est.baselines_s == pytest.approx(len(rp.baselines) * (shared + per_device))
    doc = json.loads((out / RunEstimate.FILE_NAME).read_text())
    assert doc["measured"] is False and doc["environment"]["git"]["sha"]
    assert "ESTIMATED stage times of the 'gpu-tiny' preset" in stdout and "not estimated: costs" in stdout
    assert RunEstimate.from_dict(est.to_dict()) == est


@pytest.mark.extended
def test_gradient_checkpointing_in_the_teachers_training_changes_memory_not_the_result(tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel

    from tocsr.core.teacher.diffusion_train import train_diffusion
    from tocsr.core.teacher.presets import get_teacher_preset
    from tocsr.core.training import make_accelerator

    enabled = []
    original = UNet2DConditionModel.enable_gradient_checkpointing

    def spy(self, *a, **k):
        enabled.append(True)
        return original(self, *a, **k)

    monkeypatch.setattr(UNet2DConditionModel, "enable_gradient_checkpointing", spy)
    base = get_teacher_preset("sd21-tiny")
    latents = torch.randn(8, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    weights = {}
    for flag in (True, False):
        tp = dataclasses.replace(base, diffusion=dataclasses.replace(base.diffusion, steps=2, checkpoint_every=10,
                                                                     gradient_checkpointing=flag))
        train_diffusion(latents, latents[:4], tp, tmp_path / str(flag), make_accelerator(), resume=False)
        weights[flag] = UNet2DConditionModel.from_pretrained(tmp_path / str(flag) / "unet").state_dict()
    assert enabled == [True]                       # the preset's flag reached the model, once
    for k, v in weights[True].items():
        torch.testing.assert_close(v, weights[False][k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_gpu_check_script_runs_the_gpu_presets_stages_end_to_end_at_reduced_width(tmp_path):
    """`python -m tocsr.app.gpu_check --smoke`: reference throughput, the estimate, and the gpu-tiny main job with
    every stage capped, from random weight folders as a user's would be: an SD3-shaped VAE (imported) and a
    4-channel SD-2.1-shaped UNet (widened, fine-tuned)."""
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.teacher.record import TeacherRecord

    work = tmp_path / "work"
    r = subprocess.run([sys.executable, "-m", "tocsr.app.gpu_check", "--smoke", "--max-steps", "2",
                        "--out", str(tmp_path / "gpu"), "--work", str(work)],
                       capture_output=True, text=True, cwd=REPO, timeout=2300)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    doc = json.loads((tmp_path / "gpu" / "cpu-smoke" / "gpu_preset.json").read_text())
    parts = doc["parts"]
    assert all(parts[p]["completed"] for p in ("reference", "estimate", "run"))
    assert parts["reference"]["images_per_s"] > 0 and parts["reference"]["measured"] is True
    assert parts["reference"]["precision"] == "fp32" and doc["execution_mode"] == "eager"
    assert parts["estimate"]["measured"] is False and parts["estimate"]["estimate"]["preset"] == "gpu-tiny"
    [costs] = doc["costs"].values()      # the cost stage's evidence, its files beside the record
    assert costs["pipeline_validation"]["n"] == 2 and costs["backbone_table_validation"]["n"] == 4
    assert set(costs["parts_median_ms"]) >= {"bicubic + encoder", "decoder"}, costs["parts_median_ms"]
    assert all((tmp_path / "gpu" / "cpu-smoke" / f"costs-{f}").is_file() for f in costs["files"])
    run = work / "run"
    stages = parts["run"]["stages_s"]
    for stage in ("teacher", "surrogates", "parts", "sr-shared", "eval"):
        assert stage in stages, stages
    assert any(s.startswith("finetune-") for s in stages) and any(s.startswith("sr-") for s in stages)
    teacher = TeacherRecord.load(run / "teacher")
    assert teacher.preset_config["diffusion"]["steps"] == 2 and teacher.diffusion.steps == 2   # the cap reached it
    assert "imported" in teacher.autoencoder.source
    assert json.loads((work / "weights" / "unet4" / "config.json").read_text())["in_channels"] == 4
    assert json.loads((run / "teacher" / "unet" / "config.json").read_text())["in_channels"] == 16   # widened
    assert len(json.loads((run / "surrogates" / "space.json").read_text())["slots"]) == 38
    sr = next((run / "sr").iterdir())
    info = SRModelInfo.load(sr)
    assert info.config.patch_px == 64 and info.config.student_steps == 2
