"""The main job end to end at the `smoke` preset (every stage for real, a few steps each), and what users do
with its output: upscale, export, report. One run (five to eight minutes on 2 cores) is shared by the module.
Its tests are marked `mainjob` (module-wide): `nox -s extended` runs them and CI runs that session after the
default run on every change, so a break between stages cannot land unnoticed; the default run (which the
run alone would have taken past 15 minutes on a slow day) keeps each stage's unit tests. The commands that
re-run a stage on its outputs (search, sweep, nightly, a second device) are marked slow: `nox -s slow`
runs them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import yaml

from search.result import SearchResult
from tests.conftest import REPO
from tocsr.core.errors import ConfigError
from tocsr.core.sr.info import SRModelInfo

# The module's shared run (the `job` fixture, its own subprocess timeout 1200 s) counts against the first test
# that uses it under pytest-timeout, which includes fixture setup: the limit is that run's plus a test's.
pytestmark = [pytest.mark.mainjob, pytest.mark.timeout(1800)]

DEFAULT_PROFILE = REPO / "hw_profiles" / "cpu-2core.yaml"
# The smoke job runs the default profile at a looser budget. Its ratio was set for the quick preset's teacher; at
# smoke sizes the teacher is tiny, the encoder and decoder take most of the call, and that ratio could leave room
# for the cheapest backbone alone, with nothing searched or re-measured (docs/status.md, forty-second session). At
# this ratio the smoke search has candidates to weigh, which is what these tests exercise. Same name and
# measurement settings: everything but the budget is the default profile's. The search chooses at the budget less
# the profile's timing.latency_guard, so the budget is set to give the target the smoke job was tuned at before
# the guard (0.52 x): at 0.52 x less the guard, a contended CI machine measured even the cheapest backbone with the
# cheaper decoder over the target, and the job stopped as infeasible.
VS_TEACHER = round(0.52 / (1 - yaml.safe_load(DEFAULT_PROFILE.read_text())["timing"]["latency_guard"]), 2)


@pytest.fixture(scope="module")
def smoke_profile(tmp_path_factory) -> Path:
    """The default profile with its budget at VS_TEACHER, under the same file name."""
    text = DEFAULT_PROFILE.read_text()
    line = f"latency_vs_teacher: {yaml.safe_load(text)['budgets']['latency_vs_teacher']}"
    assert line in text, f"{DEFAULT_PROFILE} has no line {line!r} to replace"
    path = tmp_path_factory.mktemp("smoke-profile") / DEFAULT_PROFILE.name
    path.write_text(text.replace(line, f"latency_vs_teacher: {VS_TEACHER}"))
    return path


# stage marker prefix -> how many: "sr-" is the run's shared SR part (sr-shared) and the device's SR stage
STAGES = {"teacher": 1, "surrogates": 1, "parts": 1, "costs-": 1, "search-cpu-2core": 1, "finetune-": 1, "sr-": 2, "eval": 1}


def tocsr(*args: str, cwd: Path, timeout: float = 1200, trace: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m tocsr ARGS`; with `trace`, under TRACE_OPENS, which writes what each stage opened there."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = ["-m", "tocsr"] if trace is None else ["-c", TRACE_OPENS, str(trace)]
    return subprocess.run([sys.executable, *cmd, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


# The CLI with every photograph read (tocsr.core.data.open_photo) and every file PIL opens logged with the
# main-job stage that was running: argv[1] is where the log goes, the rest are the CLI's arguments.
TRACE_OPENS = """
import json, sys
from pathlib import Path
from PIL import Image
from tocsr.app import cli, mainjob
from tocsr.core import data

stage = ["before any stage"]
opened = []
real_run, real_open, real_photo = mainjob.StageLog.run, Image.open, data.open_photo

def run(self, name, inputs, fn, outputs):
    stage[0] = name
    try:
        return real_run(self, name, inputs, fn, outputs)
    finally:
        stage[0] = "after " + name

def open_(fp, *args, **kwargs):
    if isinstance(fp, (str, Path)):
        opened.append((stage[0], str(fp)))
    return real_open(fp, *args, **kwargs)

def open_photo(where, name):
    opened.append((stage[0], str(name)))
    return real_photo(where, name)

mainjob.StageLog.run = run
Image.open = open_
data.open_photo = open_photo
try:
    cli.main(sys.argv[2:])
finally:
    Path(sys.argv[1]).write_text(json.dumps(opened))
"""


def write_span_checkpoint(path: Path) -> None:
    """A pretrained-checkpoint stand-in: SPAN x4 in its official key layout, small, random weights."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    state = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=4).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


@pytest.fixture(scope="module")
def job(tmp_path_factory, smoke_profile):
    root = tmp_path_factory.mktemp("mainjob")
    write_span_checkpoint(root / "span-x4.safetensors")
    t0 = time.perf_counter()
    r = tocsr("run", "-p", str(smoke_profile), "--preset", "smoke", "--out", "runs/smoke", "--report-dir", "report",
              "--baseline", "span-x4=span-x4.safetensors", cwd=root, trace=root / "opened.json")
    assert r.returncode == 0, r.stderr[-3000:]
    return root, root / "runs" / "smoke", r, time.perf_counter() - t0


def run_of(job) -> Path:
    return job[1]


def _marker(run: Path, prefix: str) -> list[Path]:
    return [p for p in (run / "stages").glob("*.json") if p.stem.startswith(prefix) and ".started" not in p.name]


def test_every_stage_ran_once_and_left_its_marker_and_output(job):
    _, run, r, _ = job
    for prefix, n in STAGES.items():
        assert len(_marker(run, prefix)) == n, (prefix, sorted(p.name for p in (run / "stages").iterdir()))
    summary = json.loads((run / "summary.json").read_text())
    assert [s.split("-")[0] for s in summary["stages_ran"]] == ["teacher", "surrogates", "parts", "costs", "search",
                                                               "finetune", "sr", "sr", "eval"]
    assert summary["stages_ran"][6] == "sr-shared"
    for path in ("teacher/teacher.json", "surrogates/distill.json", "search-cpu-2core/search_result.json",
                 "search-cpu-2core/cost_table.json", "eval/rows.json"):
        assert (run / path).is_file(), path
    assert "TOC-SR main job" in r.stdout


def test_the_teacher_and_distill_records_load_typed_and_round_trip(job):
    from tocsr.core.artifacts import read_artifact
    from tocsr.core.distill.record import DistillRecord
    from tocsr.core.teacher.record import TeacherRecord

    for cls, folder in ((TeacherRecord, run_of(job) / "teacher"), (DistillRecord, run_of(job) / "surrogates")):
        record = cls.load(folder)
        raw = read_artifact(folder / cls.FILE_NAME, cls.KIND, cls.SCHEMA_VERSION)
        assert {k: raw[k] for k in record.to_dict()} == record.to_dict(), cls.__name__
    teacher = TeacherRecord.load(run_of(job) / "teacher")
    assert teacher.preset == "smoke" and teacher.data_source is None and set(teacher.split_val) and \
        not set(teacher.split_train) & set(teacher.split_val)
    assert "KID of image spectra: generated" in "\n".join(teacher.describe(run_of(job) / "teacher"))
    assert "surrogates over" in "\n".join(DistillRecord.load(run_of(job) / "surrogates").describe("x"))
    distill = DistillRecord.load(run_of(job) / "surrogates")
    assert len(distill.candidates) == distill.config.spearman_candidates and distill.table.entries


def test_the_chosen_architecture_was_remeasured_within_its_budget(job):
    _, run, _, _ = job
    result = SearchResult.load(run / "search-cpu-2core")
    c = result.chosen
    assert result.budget_in_words == (f"one-step SR pipeline p90 latency <= {VS_TEACHER:g} x the teacher as shipped "
                                      "(its backbone, the autoencoder's parts)")
    assert c.measured_latency_ms <= result.latency_budget_ms == pytest.approx(VS_TEACHER * c.teacher_latency_ms)
    # chosen at the budget less the default profile's guard (timing.latency_guard), which the smoke profile keeps
    guard = result.profile["timing"]["latency_guard"]
    assert guard > 0 and result.decision["latency_guard"] == guard
    assert c.measured_latency_ms <= result.decision["latency_target_ms"] == pytest.approx(
        (1 - guard) * result.latency_budget_ms)
    assert c.measured_memory_mib <= result.profile["budgets"]["peak_memory_mib"]
    assert result.cheapest["meets"] and result.remeasured and result.cost_table_validation["n"] == 10
    # what was re-measured and bounded is the whole one-step SR call: the teacher-shaped one costs its fixed
    # parts plus the teacher backbone, and the summary shows the split
    p = result.scope == "pipeline" and result.pipeline
    encoder_part = {"kl": "bicubic + encoder", "lr": "lr encoder"}[result.encoder]
    decoder_part = {"kl": "decoder", "tiny": "tiny decoder"}[result.decoder]
    assert p and set(p["fixed_parts_median_ms"]) == {encoder_part, decoder_part, "whole-call overhead"}
    assert 0 < p["backbone_share_predicted"] < 1 and p["validation"]["n"] == 2
    fixed = sum(p["fixed_parts_median_ms"].values())
    assert c.teacher_latency_ms > fixed and "backbone" in p["line"]
    assert len(list((run / "costs").glob("*.pipeline.json"))) == 1
    summary = json.loads((run / "summary.json").read_text())["devices"]["cpu-2core"]
    assert summary["architecture"] == c.key and summary["measured_p90_ms"] == c.measured_latency_ms
    assert summary["scope"] == "pipeline" and summary["pipeline"]["line"] == p["line"]
    # the report's row of the deployed model is stated at the speed the search chose at, beside the search's figure
    assert summary["report_row_p90_ms"] > 0 and "search's decision speed" in summary["report_row_latency"]
    assert f"{result.decision_reference_ms:.3f} ms" in summary["report_row_latency"]
    # judged beside the teacher as shipped, and the row timed beside it again and judged the same way
    assert result.decision["judged_against"] == "teacher as shipped"
    assert summary["chosen_share"] == pytest.approx(c.latency_vs_teacher) and 0 < summary["report_row_share"] < 1
    assert summary["report_row_share_effective_cores"] is None or summary["report_row_share_effective_cores"]["min"] > 0


def test_the_chosen_backbone_is_fine_tuned_and_the_sr_stage_starts_from_it(job):
    from tocsr.core.distill.finetune import FinetuneRecord, load_finetuned

    _, run, r, _ = job
    arch = SearchResult.load(run / "search-cpu-2core").chosen.key
    model, record = load_finetuned(run / "finetune" / arch)
    assert record.arch_key == arch and record.config["steps"] == 4
    for when in (record.before, record.after):
        assert when["paired_error"] >= 0 and when["n_samples"] == 16 and when["spectrum_kid_std"] > 0
    assert record.before != record.after                      # the weights moved, the same noise saw it
    source = SRModelInfo.load(_sr_model(run)).backbone_source
    assert source.startswith("fine-tuned (") and f"finetune/{arch}" in source
    summary = json.loads((run / "summary.json").read_text())["devices"]["cpu-2core"]
    assert summary["finetune"]["after"] == record.after and summary["fidelity_proxy"] == "rollout-spectrum"
    assert "paired sample error" in r.stdout and FinetuneRecord.load(run / "finetune" / arch) == record
    html = (run.parent.parent / "report" / "index.html").read_text()
    assert "Fine-tune of the chosen backbone" in html and arch in html


def test_finetune_command_fine_tunes_the_chosen_backbone_and_refuses_a_bad_config(job, tmp_path):
    from tocsr.core.distill.finetune import load_finetuned

    root, run, _, _ = job
    args = ("finetune", "--search", str(run / "search-cpu-2core"), "--teacher", str(run / "teacher"), "--surrogates",
            str(run / "surrogates"), "--samples", "4")
    r = tocsr(*args, "--steps", "2", "--out", str(tmp_path / "ft"), cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    _, record = load_finetuned(tmp_path / "ft")
    assert record.config["steps"] == 2 and record.before["n_samples"] == 4 and "spectrum KID" in r.stdout
    bad = tocsr(*args, "--steps", "2", "--kd-weight", "-1", "--out", str(tmp_path / "ft2"), cwd=root, timeout=120)
    assert bad.returncode != 0 and "kd-weight" in bad.stderr


def test_the_sr_model_folder_records_the_architecture_the_search_chose(job):
    _, run, _, _ = job
    info = SRModelInfo.load(_sr_model(run))
    assert info.arch == SearchResult.load(run / "search-cpu-2core").chosen.spec and info.scale == 4


def test_the_parts_are_chosen_on_their_fidelity_and_cost_and_the_sr_model_deploys_them(job):
    """Issue 24 item 2: the parts stage trains and scores the LR encoder and the tiny decoder, the costs stage times
    them, the search weighs every (encoder, decoder) pair (search.parts) and the SR model deploys the pair chosen."""
    from tocsr.core.sr.parts import PartsRecord
    from tocsr.core.sr.pipeline import TOCSRPipeline

    _, run, r, _ = job
    record = PartsRecord.load(run / "parts")
    assert record.config["steps"] == 2 and len(record.psnr_y_db["tiny-decoder"]["through_part"]) > 0
    result = SearchResult.load(run / "search-cpu-2core")
    choice = result.parts_choice
    options = {(o["encoder"], o["decoder"]): o for o in choice["options"]}
    assert set(options) == {("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")}
    assert options[("kl", "kl")]["loss_db"] == 0
    tiny = record.psnr_y_db["tiny-decoder"]
    assert options[("kl", "tiny")]["loss_db"] == pytest.approx(np.mean(tiny["through_kl"]) - np.mean(tiny["through_part"]))
    # each cheaper part is cheaper than the autoencoder's
    assert options[("kl", "tiny")]["parts_ms"] < options[("kl", "kl")]["parts_ms"] > options[("lr", "kl")]["parts_ms"]
    # cpu-2core's budget is tighter than any pipeline with the autoencoder's parts: the acceptance of issue 24
    # ("a budget the KL pipeline cannot meet picks cheaper parts, and the re-measured pipeline meets it")
    budget = choice["latency_budget_ms"]
    assert options[("kl", "kl")]["cheapest_pipeline_ms"] > budget
    assert options[(choice["encoder"], choice["decoder"])]["cheapest_pipeline_ms"] <= budget and choice["reason"]
    assert (result.encoder, result.decoder) == (choice["encoder"], choice["decoder"]) != ("kl", "kl")
    assert result.chosen.measured_latency_ms <= result.latency_budget_ms
    info = SRModelInfo.load(_sr_model(run))
    assert (info.encoder, info.decoder) == (result.encoder, result.decoder)
    assert _sr_model(run).name == result.sr_folder_name
    models = TOCSRPipeline.from_pretrained(_sr_model(run)).models
    for model in models.values():     # each student's, where routed
        assert (model.encoder_kind, model.decoder_kind) == (result.encoder, result.decoder)
    # routed with the quick preset's trained parts: each student trained and deploys its own (SRConfig.own_parts)
    assert info.config.routes and info.config.own_parts("decoder") and info.config.own_parts("encoder")
    first, second = (models[k] for k in info.degradations)
    for a, b in ((first.part_decoder, second.part_decoder), (first.part_encoder, second.part_encoder)):
        if a is not None:
            assert a is not b and any(not torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    deployed = f"parts deployed: {result.encoder} encoder, {result.decoder} decoder"
    assert deployed in r.stdout
    assert deployed in (run.parent.parent / "report" / "index.html").read_text()


def test_the_sr_model_starts_from_the_runs_shared_part_and_its_seconds_stay_in_the_budget(job):
    """The pair cache and SR teachers are trained once per run (sr-shared); the device's model records where
    they came from, holds copies of its SR teachers (self-contained), and counts their seconds in the
    training budget its baselines get."""
    from tocsr.core.sr.shared import SharedSRRecord

    _, run, _, _ = job
    info = SRModelInfo.load(_sr_model(run))
    shared = SharedSRRecord.load(run / "sr-shared")
    assert Path(info.shared_part).name == "sr-shared"
    for part in ("pair_cache_s", "sr_teacher_s"):
        assert info.timings_s[part] == shared.timings_s[part] > 0
    assert info.training_s > info.timings_s["student_s"] + shared.timings_s["sr_teacher_s"]
    kinds = sorted(p.name for p in (_sr_model(run) / "sr_teacher").iterdir())
    assert kinds == sorted(shared.config["kinds"]) == sorted(info.degradations)
    assert (run / "sr-shared" / "pair_cache.pt").is_file()


def test_the_smoke_timing_is_on_record(job):
    _, run, _, _ = job
    used = (run / "profiles" / "cpu-2core.yaml").read_text()
    assert "paired_rounds: 2" in used and "smoke" in used.splitlines()[0]


def test_eval_rows_and_a_report_that_renders(job):
    root, run, _, _ = job
    rows = json.loads((run / "eval" / "rows.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"bicubic", "tocsr-onestep (cpu-2core, routed)", "espcn"} <= methods
    html = (root / "report" / "index.html").read_text()
    assert "Selected architecture per device" in html and "cpu-2core" in html
    browser = json.loads((run / "summary.json").read_text())["browser_check"]
    if os.environ.get("TOCSR_REQUIRE_BROWSER") == "1" or browser["checked"]:
        assert browser["checked"] and browser["images_failed"] == 0 and browser["console_errors"] == [], browser


def test_a_rerun_skips_every_stage(job, smoke_profile):
    root, run, _, _ = job
    r = tocsr("run", "-p", str(smoke_profile), "--preset", "smoke", "--out", "runs/smoke", "--report-dir", "report",
              "--baseline", "span-x4=span-x4.safetensors", cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stages_ran"] == [] and len(summary["stages_skipped"]) == sum(STAGES.values())
    # the step plan the first run made is the one the rerun used (its stages' inputs, and so the skips, depend on it)
    first, again = json.loads((run / "step_plan.json").read_text()), summary["step_plan"]
    assert again["inputs_sha256"] == first["inputs_sha256"] and again["spent_before_students_s"] == \
        first["spent_before_students_s"]


def test_the_step_plan_is_on_record_and_a_budget_the_run_fits_keeps_every_step(job):
    """The smoke preset's budget is far above what it takes: the plan is made, printed and recorded, and every
    stage trains the preset's steps (the scaling itself: tests/app/test_step_plan.py, tests/core/test_timebudget.py)."""
    from tocsr.app.mainjob import RUN_PRESETS
    from tocsr.core.distill.record import DistillRecord
    from tocsr.core.timebudget import StepPlan

    _, run, r, _ = job
    plan = StepPlan.load(run)
    assert plan.preset == "smoke" and plan.training_scale == 1 and plan.student_scale == 1
    assert plan.teacher_s > 0 and plan.spent_before_students_s > plan.teacher_s
    assert "every stage trains its full steps" in r.stdout.replace("\n", " ")
    assert DistillRecord.load(run / "surrogates").config.steps == RUN_PRESETS["smoke"].distill_steps
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step_plan"]["line"] == plan.describe()
    assert "Steps (predicted): time budget 60.0 min" in (run.parent.parent / "report" / "index.html").read_text()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the H100 profile is measured where a GPU is")
@pytest.mark.slow
def test_a_cuda_profile_without_its_card_joins_the_run_as_a_labelled_prediction(job, tmp_path, smoke_profile):
    """Issue 25 at the smoke preset: `-p cpu-2core -p h100-bf16` on a machine with no GPU. The measured device's
    stages are reused, the H100 is costed by the roofline of its profile's constants, and every figure of it
    says predicted: summary, search result, cost table, report, eval rows."""
    from bench.costtable import CostTable
    from bench.profile import load_profile
    from tocsr.app.mainjob import RUN_PRESETS

    root, run, _, _ = job
    shutil.copytree(run, tmp_path / "runs" / "smoke")
    shutil.copy(root / "span-x4.safetensors", tmp_path)
    h100 = REPO / "hw_profiles" / "h100-bf16.yaml"
    r = tocsr("run", "-p", str(smoke_profile), "-p", str(h100), "--preset", "smoke", "--out", "runs/smoke",
              "--report-dir", "report", "--baseline", "span-x4=span-x4.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "runs" / "smoke"
    summary = json.loads((out / "summary.json").read_text())
    for stage in ("teacher", "surrogates", "search-cpu-2core", "sr-shared"):   # the SR teachers are not retrained
        assert stage in summary["stages_skipped"]
    for device in summary["devices"].values():
        assert Path(SRModelInfo.load(out / "sr" / device["sr_folder"]).shared_part).name == "sr-shared"
    assert {s.split("-")[0] for s in summary["stages_ran"]} >= {"costs", "search", "sr", "eval"}
    cpu, gpu = summary["devices"]["cpu-2core"], summary["devices"]["h100-bf16"]
    assert cpu["latency_how"] == "measured" and gpu["latency_how"] == "predicted"
    assert gpu["measured_p90_ms"] <= gpu["latency_budget_ms"]
    assert "h100-bf16: PREDICTED, not measured" in r.stdout and "no CUDA device on this machine" in r.stderr
    assert "h100-bf16: to confirm the choice on the device: `tocsr costs export --confirm" in r.stdout
    assert load_profile(out / "profiles" / "h100-bf16.yaml").device.kind == "predicted"
    result = SearchResult.load(out / "search-h100-bf16")
    assert result.chosen.how == "predicted" and result.teacher_measured["device_name"] == "H100 (predicted)"
    table = CostTable.load(out / "search-h100-bf16" / result.cost_table)
    assert table.measured is False and table.how == "predicted" and table.device_name == "H100 (predicted)"
    assert all(c.latency.target.timer == "roofline" for c in table.candidates)
    rows = json.loads((out / "eval" / "rows.json").read_text())["rows"]
    gpu_rows = [x for x in rows if x["device_profile"] == "h100-bf16"]
    assert gpu_rows and all(x["measurement_status"] in ("predicted", "error") for x in gpu_rows)
    assert {x["measurement_status"] for x in rows if x["device_profile"] == "cpu-2core"} <= {"ok", "unstable"}
    lanczos = next(x for x in gpu_rows if x["method"] == "lanczos")      # PIL's resampling: torch cannot see it
    assert lanczos["measurement_status"] == "error" and "no roofline estimate" in lanczos["provenance"]["error"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Predicted, not measured" in html and f"{gpu['measured_p90_ms']:.2f} predicted" in html
    # the two devices share the smoke preset's run-wide student steps evenly (RunPreset.sr_run_student_steps):
    # the measured device's student is retrained at the split, its baselines' budget is that stage's
    split = RUN_PRESETS["smoke"].sr_config(2)
    steps = split.student_steps * split.students
    assert RUN_PRESETS["smoke"].student_steps_per_device(2) < RUN_PRESETS["smoke"].sr_student_steps
    assert {SRModelInfo.load(out / "sr" / d["sr_folder"]).config.student_steps
            for d in summary["devices"].values()} == {split.student_steps}
    assert summary["comparison"]["student_steps"] == {"cpu-2core": steps, "h100-bf16": steps}
    assert f"model trained {steps} steps" in r.stdout.replace("\n", " ")


def _sr_model(run: Path) -> Path:
    (folder,) = [p for p in (run / "sr").iterdir() if (p / SRModelInfo.FILE_NAME).is_file()]
    return folder


def test_upscale_accepts_the_model_for_a_file_and_a_folder_and_exits_1_on_a_skipped_file(job, tmp_path):
    from PIL import Image

    _, run, _, _ = job
    model = _sr_model(run)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(skimage.data.astronaut()[::8, ::8]).save(src / "a.png")       # 64 x 64
    r = tocsr("upscale", str(src / "a.png"), "-o", str(tmp_path / "a_x4.png"), "--model", str(model), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = np.asarray(Image.open(tmp_path / "a_x4.png"))
    assert out.shape == (256, 256, 3) and out.std() > 5
    assert "(read from the image by the model's router)" in r.stdout          # the smoke model routes
    (src / "broken.png").write_bytes(b"not a png")
    r = tocsr("upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(model), cwd=tmp_path)
    assert r.returncode == 1 and "skipped:" in r.stderr and "broken.png" in r.stderr
    assert "wrote 1 images" in r.stdout and "(degradation read from each image: " in r.stdout
    assert (tmp_path / "out" / "a.png").is_file()


def test_export_accepts_the_model_and_checks_it_in_onnxruntime(job, tmp_path):
    """The smoke job's model routes (a student per degradation behind its router): each student is exported on its
    own, and the whole routed model, which one graph of tiles cannot hold, is refused in one line."""
    _, run, _, _ = job
    r = tocsr("export", "--model", str(_sr_model(run)), "-o", str(tmp_path / "m.onnx"), "--degradation", "bicubic",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "m.onnx").stat().st_size > 10_000 and "onnxruntime vs torch max |diff|" in r.stdout
    assert "degradation bicubic" in r.stdout
    r = tocsr("export", "--model", str(_sr_model(run)), "-o", str(tmp_path / "all.onnx"), cwd=tmp_path)
    assert r.returncode == 1 and "export each student with --degradation" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "all.onnx").exists()


def test_a_budget_below_the_cheapest_candidate_stops_before_sr_and_a_rerun_stops_again(job, tmp_path, smoke_profile):
    """Issue 19: one line with the measured figures, exit 1, no SR stage; a rerun fails the same way at once."""
    _, run, _, _ = job
    tight = tmp_path / "cpu-2core.yaml"      # same name and measurement, so the teacher, surrogates and costs are reused
    budget_line = f"latency_vs_teacher: {VS_TEACHER}"
    assert budget_line in smoke_profile.read_text()  # else the replacement below would silently keep the budget
    tight.write_text(smoke_profile.read_text().replace(budget_line, "latency_vs_teacher: 0.01"))
    copy = tmp_path / "runs" / "tight"
    copy.mkdir(parents=True)
    for part in ("teacher", "surrogates", "costs", "stages", "profiles"):
        shutil.copytree(run / part, copy / part)
    for marker in _marker(copy, "search-") + _marker(copy, "sr-") + _marker(copy, "eval"):
        marker.unlink()
    reused = {m: m.stat().st_mtime_ns for prefix in ("teacher", "surrogates", "costs-") for m in _marker(copy, prefix)}
    for attempt in (1, 2):
        r = tocsr("run", "-p", str(tight), "--preset", "smoke", "--out", "runs/tight", "--report-dir", "report",
                  cwd=tmp_path, timeout=600)
        assert r.returncode == 1, (attempt, r.stdout[-1500:], r.stderr[-1500:])
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: the cheapest candidate (") and "above the latency budget" in last, last
        assert "budgets.latency_vs_teacher >= " in last and "Traceback" not in r.stderr
        # why no backbone can meet it: the cheapest parts on offer alone miss it. Which encoder is cheapest is this
        # machine's measurement at the smoke sizes (the LR encoder usually; bicubic + the KL encoder on a CI run of
        # f589511), so the line is checked for naming the parts, not for one of them.
        assert "the pipeline's fixed parts alone take " in last and "encoder" in last and "decoder" in last, last
        assert "no backbone choice removes them" in last, last
        assert not _marker(copy, "sr-") and not (copy / "sr").exists()
        # no loop: the teacher, surrogates and costs were not redone (a stage that runs rewrites its marker)
        assert len(reused) == 3 and {m: m.stat().st_mtime_ns for m in reused} == reused, attempt
        assert not _marker(copy, "search-")


def test_the_report_command_renders_the_jobs_outputs(job, tmp_path):
    _, run, _, _ = job
    r = tocsr("report", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Selected architecture per device" in (run / "report" / "index.html").read_text()


# The commands below re-run a stage on the job's outputs for a minute or more each (a search measures
# candidates, a second device trains its student); the default run stays within its time bound without them.
@pytest.mark.slow
def test_the_search_command_works_on_the_jobs_outputs(job, tmp_path):
    """The README's step-by-step `tocsr search` reads what the main job wrote (a cost table, the teacher and
    surrogates; the SR command's path is the main job's own stage_sr)."""
    _, run, _, _ = job
    (costs,) = [p for p in (run / "costs").glob("*.json") if not p.name.endswith(".pipeline.json")]
    profile = run / "profiles" / "cpu-2core.yaml"           # the smoke timing, on record beside the run
    r = tocsr("search", "-p", str(profile), "--teacher", str(run / "teacher"), "--surrogates",
              str(run / "surrogates"), "--costs", str(costs), "--evaluations", "10", "--out", "s", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    result = SearchResult.load(tmp_path / "s")
    assert f"chosen {result.chosen.key}" in r.stdout and result.evaluations <= 10
    assert "one-step SR pipeline measured" in r.stdout and "pipeline: measured p90" in r.stdout
    assert result.chosen.measured_latency_ms <= result.latency_budget_ms


def test_a_device_that_is_not_attached_is_chosen_for_on_the_table_measured_there(job, tmp_path):
    """Issue 25: a cost table measured on the device (as `tocsr costs import` makes one from a bundle's results)
    and that device's profile, predicted on this machine: the search judges candidates on that table and
    re-measures nothing (before, the roofline checked the choice and, where it disagreed with the table,
    measured a roofline table in its place); the choice says predicted, and from which table."""
    from bench.costtable import CostTable

    _, run, _, _ = job
    (costs,) = [p for p in (run / "costs").glob("*.json") if not p.name.endswith(".pipeline.json")]
    board = tmp_path / "cpu-2core.yaml"           # the profile the table was measured for, its device not attached
    board.write_text((run / "profiles" / "cpu-2core.yaml").read_text().replace("  kind: cpu\n", "  kind: predicted\n")
                     + "predicted: {peak_tflops: {fp32: 0.05}, memory_bandwidth_gbps: 5.0, launch_overhead_us: 5.0}\n")
    r = tocsr("search", "-p", str(board), "--teacher", str(run / "teacher"), "--surrogates", str(run / "surrogates"),
              "--costs", str(costs), "--parts", str(run / "parts"), "--evaluations", "10", "--out", "s", cwd=tmp_path,
              timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = SearchResult.load(tmp_path / "s")
    table = CostTable.load(costs)
    assert result.chosen.how == "predicted" and f"measured on {table.device_name}" in result.chosen.basis
    assert "one-step SR pipeline predicted" in r.stdout and "pipeline: predicted p90" in r.stdout
    assert "PREDICTED, not measured: predicted from the cost table measured on" in r.stdout
    assert result.revalidation is None and not (tmp_path / "s" / "cost_table.remeasured.json").exists()
    assert result.teacher_measured["device_name"] == table.device_name and result.teacher_measured["status"] == \
        "predicted"
    assert result.chosen.measured_latency_ms <= result.latency_budget_ms


def test_a_choice_is_confirmed_on_the_device_by_a_small_bundle_of_its_pipelines(job, tmp_path, smoke_profile):
    """Issue 25: `tocsr costs export --confirm SEARCH_DIR` writes the teacher as shipped, the chosen pipeline with
    its decoder and runners-up as ONNX; the bundle's runner times them (onnxruntime, no torch needed) and
    `tocsr costs confirm` says whether the choice meets its budget there, with an interval."""
    pytest.importorskip("onnxruntime")
    from bench.confirm import Confirmation
    from search.trials import TrialLog

    root, run, _, _ = job
    search = run / "search-cpu-2core"
    result = SearchResult.load(search)
    others = {t.key for t in TrialLog(search / "trials.jsonl").read() if t.feasible and t.key != result.chosen.key}
    ups = min(1, len(others))                     # a runner-up where the search left one
    r = tocsr("costs", "export", "--confirm", str(search), "-p", str(smoke_profile), "--teacher", str(run / "teacher"),
              "-o", "confirm", "--runners-up", "1", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote {3 + ups} ONNX files" in r.stdout and "tocsr costs confirm confirm/results.json" in r.stdout
    runner = subprocess.run([sys.executable, "confirm/run_bundle.py", "confirm"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert runner.returncode == 0, runner.stderr[-2000:]
    assert "tocsr costs confirm confirm/results.json" in runner.stdout
    r = tocsr("costs", "confirm", "confirm/results.json", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    conf = Confirmation.load(tmp_path / "confirm" / "confirmation.json")
    assert [p.role for p in conf.pipelines] == ["teacher", "chosen"] + ["runner-up"] * ups
    assert conf.chosen.key == result.chosen.key and conf.chosen.decoder == result.decoder
    assert conf.chosen.search_vs_teacher == pytest.approx(result.chosen.latency_vs_teacher)
    assert conf.budget_ms == pytest.approx(VS_TEACHER * conf.pipelines[0].p_ms)   # cpu-2core's ratio x as shipped
    assert conf.chosen.meets_budget == (conf.chosen.p_ms <= conf.budget_ms)
    assert f"chosen    {result.chosen.key}" in r.stdout and "memory: not confirmed" in r.stdout
    # the main job's summary gives this command for a predicted choice, none for a measured one
    import dataclasses

    from tocsr.app.mainjob import confirm_command

    assert confirm_command(run, result, str(smoke_profile)) is None
    predicted = dataclasses.replace(result, chosen=dataclasses.replace(result.chosen, status="predicted"))
    assert confirm_command(run, predicted, str(smoke_profile)) == (
        f"tocsr costs export --confirm {search} -p {smoke_profile} --teacher {run / 'teacher'} -o confirm-cpu-2core/")
    wrong = tocsr("costs", "export", "--confirm", str(search), "-p", str(REPO / "hw_profiles" / "h100-bf16.yaml"),
                  "--teacher", str(run / "teacher"), "-o", "x", cwd=tmp_path, timeout=300)
    assert wrong.returncode == 1 and "chose for profile 'cpu-2core', -p gives 'h100-bf16'" in wrong.stderr


def test_tocsr_eval_scores_a_set5_layout_with_the_jobs_baselines_and_sr_model(job, tmp_path):
    """Issue 23's acceptance: HR + LRbicx4 made from the embedded photographs; bicubic, two baselines the
    job trained and its TOC-SR model, whole images, intervals and paired differences."""
    import torch
    from PIL import Image

    from reports.protocol import EvalResult
    from tocsr.core.data import load_photos
    from tocsr.core.resize import matlab_imresize

    root, run, _, _ = job
    photos, _ = load_photos(None)
    (tmp_path / "HR").mkdir()
    (tmp_path / "LRbicx4").mkdir()
    for p in photos[:5]:
        hr = p.rgb[:96, :128]
        Image.fromarray(hr).save(tmp_path / "HR" / f"{p.name}.png")
        x = matlab_imresize(torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / 255, 0.25)
        lr = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(lr).save(tmp_path / "LRbicx4" / f"{p.name}.png")
    r = tocsr("eval", "--hr", str(tmp_path / "HR"), "--lr", str(tmp_path / "LRbicx4"), "--metrics", "",
              "--baseline", f"espcn={run / 'baselines' / 'espcn'}", "--baseline", f"rrdb-s={run / 'baselines' / 'rrdb-s'}",
              "--method", str(_sr_model(run)), "--out", str(tmp_path / "out"), cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = EvalResult.load(tmp_path / "out")
    assert [m["kind"] for m in result.methods] == ["interpolation", "baseline", "baseline", "tocsr"]
    assert len(result.images) == 5 and result.lr_source == "given"
    summary = result.summary()
    tocsr_row = summary["methods"][result.methods[-1]["name"]]
    assert summary["best_baseline"] in ("espcn", "rrdb-s")
    for key in ("minus_bicubic", f"minus_{summary['best_baseline']}"):
        d = tocsr_row[key]["psnr_y"]
        assert d["low"] <= d["mean"] <= d["high"] and d["n"] == 5
    assert "PSNR-Y minus bicubic" in r.stdout and "per_image.csv" in r.stdout


def test_a_checkpoint_given_to_the_main_job_is_scored_and_costed_in_the_report(job):
    from reports.build import read_rows

    root, run, _, _ = job
    rows = [r for r in read_rows(run / "eval")[0] if r.method == "span-x4"]
    assert rows and all(r.kind == "external" and r.measurement_status in ("ok", "unstable") for r in rows)
    assert all(r.latency_p90_ms > 0 and r.params_m > 0 and r.quality["bicubic"]["psnr_y"] > 0 for r in rows)   # random weights: scored, not good
    assert "span-x4" in (root / "report" / "index.html").read_text()


def test_a_bad_checkpoint_is_refused_before_any_training(tmp_path, smoke_profile):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    r = tocsr("run", "-p", str(smoke_profile), "--preset", "smoke", "--out", "runs/x", "--baseline", "junk=junk.pth",
              cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: junk.pth: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "runs" / "x" / "teacher").exists()


def test_the_headline_is_a_fair_blind_comparison_on_test_photographs(job):
    """Issue 23: baselines trained for the SR stage's seconds, the headline student blind, figures on test
    photographs with intervals, paired differences and a verdict they support; our SR teacher is not a baseline."""
    from reports.protocol import EvalResult

    _, run, r, _ = job
    summary = json.loads((run / "summary.json").read_text())
    comp = summary["comparison"]
    budget = SRModelInfo.load(_sr_model(run)).training_s
    assert comp["baseline_budget_s"] == pytest.approx(budget) and budget > 0
    for name in ("espcn", "rrdb-s"):                         # the smoke preset caps them at 4 steps as well
        t = comp["baselines_trained"][name]
        assert t["budget_s"] == pytest.approx(budget) and t["head"] == "as published" and t["batch"] == 16
        # stopped by whichever came first: the step cap or the SR stage's seconds
        assert t["steps"] == 4 or (1 <= t["steps"] < 4 and t["seconds"] >= budget), t
    assert comp["told_degradation"] == ["sr-teacher (2x4 steps, told the degradation)"]
    test = summary["devices"]["cpu-2core"]["test"]
    assert set(test) == {"bicubic", "realesrgan"}
    for kind, h in test.items():
        res = EvalResult.load(run / "eval" / f"test-{kind}")
        assert list(res.images) == sorted(comp["test_images"]) and h["images"] == len(res.images) >= 3
        # blind: one student per degradation behind its router, nothing told it (no "told" in its name)
        assert h["tocsr"] == "tocsr-onestep (cpu-2core, routed)"
        routed = comp["routing"][h["tocsr"]][kind]
        assert routed["photographs"] == len(res.images) == len(routed["decisions"])
        assert routed["routed_right"] == routed["decisions"].count(kind)
        # how sure it was of each photograph, beside each answer
        assert len(routed["probabilities"]) == len(res.images)
        assert all(set(p) == set(test) and sum(p.values()) == pytest.approx(1) for p in routed["probabilities"])
        # and what a wrong answer costs on them, as its router weighed it (the model's own measured costs)
        assert set(routed["misroute_db"]) == set(test) - {kind}
        assert h["best_baseline"] in ("espcn", "rrdb-s", "span-x4")
        d = h["tocsr_minus_best_baseline"]
        assert d == res.paired(h["tocsr"], h["best_baseline"], "psnr_y").to_dict() and d["low"] <= d["mean"] <= d["high"]
        assert h["verdict"].startswith(("TOC-SR leads", "TOC-SR is behind", "no clear difference"))
        # beside it, both models' p90 latencies from the eval stage's rows of this device (the report's figures)
        rows = {r["method"]: r for r in json.loads((run / "eval" / "rows.json").read_text())["rows"]
                if r["device_profile"] == "cpu-2core"}
        lat = h["latency_ms"]
        assert lat["statistic"] == "p90" and lat["how"] == "measured"
        assert (lat["tocsr_ms"], lat["baseline_ms"]) == (rows[h["tocsr"]]["latency_p90_ms"],
                                                         rows[h["best_baseline"]]["latency_p90_ms"])
        assert h["verdict_latency"].startswith(f"TOC-SR's p90 latency is {lat['ratio']:.2f}x {h['best_baseline']}'s")
        assert h["best_interpolation"] in ("bicubic", "lanczos") and h["verdict_interpolation"]
    out = r.stdout.replace("\n", " ")
    assert "scored blind on" in out and "minus bicubic" in out and "not yet a fair comparison" not in out
    assert "its router read the degradation of each test photograph; routed to the right student:" in out
    assert "as measured on training crops" in out
    html = (run.parent.parent / "report" / "index.html").read_text()
    assert "as measured on training crops" in html
    assert "the router&#x27;s P(" in html          # how sure it was, beside what it decided
    assert "Routed models read the degradation from each whole photograph" in html
    assert "Headline: test photographs" in html and "PSNR-Y minus bicubic" in html
    # under each degradation's table, what it supports on the device, in the words the summary printed
    from reports.html import esc
    from reports.verdicts import verdict_line
    for kind, h in test.items():
        assert f"<b>cpu-2core</b>: {esc(verdict_line(h))}</p>" in html and f"cpu-2core, {kind} degradation: " in out
    # one device trains the preset's own student steps, said in the report beside the baselines' budget
    assert comp["student_steps"] == {"cpu-2core": 4} and "students' training steps: cpu-2core 4." in html
    assert summary["sr_student_steps"]["per_device"] == 4 and "model trained" not in out


def test_fidelity_check_runs_on_the_jobs_teacher_and_surrogates(job, tmp_path):
    from search.proxy_check import ProxyCheck

    root, run, _, _ = job
    r = tocsr("fidelity-check", "--teacher", str(run / "teacher"), "--surrogates", str(run / "surrogates"),
              "--candidates", "4", "--samples", "4", "--steps", "2", "--proxies", "one-call,rollout*2",
              "--out", str(tmp_path / "fc"), cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    check = ProxyCheck.load(tmp_path / "fc")
    assert len(check.candidates) == 4 and (tmp_path / "fc" / "proxy_vs_samples.png").stat().st_size > 1000
    assert check.proxies == ("one-call", "rollout*2") and set(check.ceiling) == {"one-call", "rollout*2"}
    assert "upper half by the proxy" in r.stdout and "ceiling (rollout*2)" in r.stdout
    bad = tocsr("fidelity-check", "--proxies", "two-call*2", "--out", str(tmp_path / "fc2"), cwd=root, timeout=120)
    assert bad.returncode == 1 and "two-call*2" in bad.stderr and "one-call, rollout" in bad.stderr




def test_no_training_or_selection_path_opens_a_test_photograph(job):
    """Issue 23: every photograph the main job reads (tocsr.core.data.open_photo) and every file PIL opens is
    logged with the stage that opened it (the job fixture runs under TRACE_OPENS); the test photographs (and
    the run's copies of them) are opened by the evaluation stage only, and they are opened there: the
    reported table is on them."""
    from tocsr.core.data import DataSplit, list_photos

    root, run, _, _ = job
    split = DataSplit().assign(list_photos(None))
    test_stems = {Path(n).stem for n, part in split.items() if part == "test"}
    assert test_stems and len(test_stems) < len(split)
    opened = json.loads((root / "opened.json").read_text())
    is_test = [(s, f) for s, f in opened if Path(f).stem in test_stems]
    assert is_test and {s for s, _ in is_test} == {"eval"}, sorted({tuple(x) for x in is_test})[:5]
    # and the training stages did read the training photographs (the log sees what they open)
    assert any(s == "teacher" and Path(f).stem not in test_stems for s, f in opened)
    scored = json.loads((run / "eval" / "rows.json").read_text())
    assert set(scored["test_images"]) == test_stems and not test_stems & {Path(n).stem for n in scored["train_images"]}


@pytest.mark.slow
def test_sweep_runs_the_paper_formulation_over_eps_fixed_up_front(job, tmp_path):
    """Issue 22 step 4 on the smoke models: one search per ε, each choice within its ε and sampled; the table,
    the record and the plot with the paper's point."""
    from search.sweep import EpsSweep

    root, run, _, _ = job
    (costs,) = [p for p in (run / "costs").glob("*.json") if not p.name.endswith(".pipeline.json")]
    r = tocsr("sweep", "-p", str(run / "profiles" / "cpu-2core.yaml"), "--teacher", str(run / "teacher"),
              "--surrogates", str(run / "surrogates"), "--costs", str(costs), "--eps", "1.0,0.5",
              "--evaluations", "6", "--samples", "4", "--steps", "2", "--out", str(tmp_path / "sw"), cwd=root,
              timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    sweep = EpsSweep.load(tmp_path / "sw")
    assert [p["eps_fid"] for p in sweep.points] == pytest.approx([0.5 * sweep.reference_fidelity,
                                                                   sweep.reference_fidelity])
    for p in sweep.points:
        assert p["fidelity"] <= p["eps_fid"] and p["params_x"] >= 1 and p["spectrum_kid"] is not None
        assert (tmp_path / "sw" / p["folder"] / "search_result.json").is_file()
    assert sweep.eps_relative == (1.0, 0.5) and "paper: 6.6x fewer parameters" in r.stdout
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 1000 and "| ε" in (tmp_path / "sw" / "sweep.md").read_text()


def test_data_without_test_photographs_is_refused_before_any_training(tmp_path, smoke_profile):
    from PIL import Image

    rgb = (np.random.default_rng(0).random((160, 160, 3)) * 255).astype("uint8")
    for part in ("train", "val"):
        (tmp_path / "photos" / part).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rgb).save(tmp_path / "photos" / part / f"{i}.png")
    r = tocsr("run", "-p", str(smoke_profile), "--preset", "smoke", "--out", "runs/x", "--data", "photos", cwd=tmp_path,
              timeout=120)
    assert r.returncode == 1 and "no test photographs (6 found)" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "runs" / "x" / "teacher").exists()


@pytest.mark.slow
def test_nightly_tracks_the_runs_models_with_quality_and_a_perturbed_model_exits_3(job, tmp_path):
    """Issue 27: `tocsr nightly --run` times and scores what the run ships; a quality drop is flagged alone."""
    _, run, _, _ = job
    profile = run / "profiles" / "cpu-2core.yaml"          # the smoke timing the run used
    common = ["nightly", "-p", str(profile), "--models", "", "--run", str(run), "--history", str(tmp_path / "h"),
              "--out", str(tmp_path / "n")]
    for i in (1, 2):
        r = tocsr(*common, "--label", f"night-{i}", cwd=tmp_path)
        flags = json.loads((tmp_path / "n" / "regressions.json").read_text())["flagged"]
        # latency on a shared 2-core machine at smoke timing may step; quality of unchanged models may not
        assert r.returncode in (0, 3) and all(f["kind"] == "latency" for f in flags), (r.stdout, r.stderr[-1500:])
        assert r.returncode == (3 if flags else 0)
    root = job[0]          # the job's folder: the run's summary names its report relative to it
    r = tocsr(*common, "--label", "night-3", "--perturb-weights", "tocsr:cpu-2core=0.3", cwd=root)
    doc = json.loads((tmp_path / "n" / "regressions.json").read_text())
    quality = {(f["model"], f["kind"]) for f in doc["flagged"] if f["kind"] == "quality"}
    assert r.returncode == 3 == doc["exit_code"] and quality == {("tocsr:cpu-2core", "quality")}, r.stdout
    assert "tocsr:cpu-2core: quality, PSNR-Y (" in r.stdout
    night = json.loads(sorted((tmp_path / "h").glob("*.json"))[-1].read_text())
    tracked = {row["model"]: row for row in night["rows"] if row.get("qualities")}
    assert set(tracked) == {"tocsr:cpu-2core", "baseline:espcn", "baseline:rrdb-s"}
    # every model scored on the same test photographs (the split's, however many the installed packages ship)
    # under both degradations the job scores
    assert all(set(row["qualities"]) == {"bicubic", "realesrgan"} for row in tracked.values())
    per_image = {(m, d): len(q["per_image"]) for m, row in tracked.items() for d, q in row["qualities"].items()}
    assert len(set(per_image.values())) == 1 and min(per_image.values()) >= 5, per_image
    assert tracked["tocsr:cpu-2core"]["median_ms"] > 0
    page = (tmp_path / "n" / "index.html").read_text()
    assert "Quality on cpu-2core" in page and "PSNR-Y" in page and "Latest night: night-3" in page
    assert "its main report</a>" in page and "peak MiB" in page
    assert ("headless Chromium: " in r.stdout and " 0 failed" in r.stdout) or "check skipped" in r.stdout, r.stdout
    main_report = (root / "report" / "index.html").read_text()
    assert "<h2>Nightly</h2>" in main_report and "tocsr nightly --run runs/smoke -o runs/nightly" in main_report
    r = tocsr("nightly", "compare", "night-2", "night-3", "--history", str(tmp_path / "h"), cwd=tmp_path)
    lines = {line.strip().split("/", 1)[1].split(": latency")[0]: line.split("; PSNR-Y", 1)[1]
             for line in r.stdout.splitlines() if line.startswith("  cpu-2core/")}
    assert r.returncode == 0 and "DROP BEYOND NOISE" in lines["tocsr:cpu-2core"], r.stdout
    for unchanged in ("baseline:espcn", "baseline:rrdb-s"):           # each degradation's change within noise
        assert lines[unchanged].count("within noise") == 2 and "DROP" not in lines[unchanged], lines[unchanged]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_four_nights_flag_exactly_the_slowed_model_and_the_perturbed_one(job, tmp_path):
    """Issue 27's acceptance: nights 1-3 unchanged exit 0 with nothing flagged; night 4 with one model slowed
    by 20% in its timed call and another's weights perturbed exits 3 and flags exactly those two; compare of
    nights 3 and 4 shows both beyond noise and the rest within."""
    import yaml

    _, run, _, _ = job
    doc = yaml.safe_load((run / "profiles" / "cpu-2core.yaml").read_text())
    # nightly-grade timing (the smoke preset's few repeats are too noisy to call a 10% step)
    doc["timing"].update({"warmup_min_iters": 5, "warmup_max_iters": 40, "repeats": 40, "max_cv": 0.1})
    profile = tmp_path / "cpu-2core.yaml"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    common = ["nightly", "-p", str(profile), "--run", str(run), "--history", str(tmp_path / "h"),
              "--out", str(tmp_path / "n")]
    for i in (1, 2, 3):
        r = tocsr(*common, "--label", f"night-{i}", cwd=tmp_path)
        flags = json.loads((tmp_path / "n" / "regressions.json").read_text())["flagged"]
        assert r.returncode == 0 and flags == [], (i, r.stdout, r.stderr[-1500:])
    r = tocsr(*common, "--label", "night-4", "--inject-slowdown", "baseline:rrdb-s=1.2",
              "--perturb-weights", "tocsr:cpu-2core=0.3", cwd=tmp_path)
    flags = json.loads((tmp_path / "n" / "regressions.json").read_text())["flagged"]
    assert r.returncode == 3, (r.stdout, r.stderr[-1500:])
    # the perturbed model once per degradation where its drop is beyond the interval there
    assert sorted({(f["model"], f["kind"]) for f in flags}) == [("baseline:rrdb-s", "latency"),
                                                                ("tocsr:cpu-2core", "quality")], r.stdout
    r = tocsr("nightly", "compare", "night-3", "night-4", "--history", str(tmp_path / "h"), cwd=tmp_path)
    print("\n" + r.stdout)                          # the four-night table, for the record (-s)
    cells = {line.strip().split(": latency")[0]: line for line in r.stdout.splitlines() if line.startswith("  cpu-2core/")}
    assert r.returncode == 0 and len(cells) >= 7, r.stdout
    for cell, line in cells.items():
        assert ("): BEYOND NOISE" in line) == (cell == "cpu-2core/baseline:rrdb-s"), line
        assert ("DROP BEYOND NOISE" in line) == (cell == "cpu-2core/tocsr:cpu-2core"), line


def test_the_student_learning_curve_follows_the_runs_own_student(job, tmp_path):
    """`python -m tocsr.app.sr_curve` retrains one blind student from the run's shared part, scoring the EMA weights
    every few steps: at its last step it is the student the same config trains without the hook (the hook changes
    nothing it trains). One blind student whatever the run's model (the smoke run's routes). A baseline trains for
    the student's seconds and is scored on the same crops at the student's points; each curve has its trend."""
    from tocsr.app.mainjob import RUN_PRESETS
    from tocsr.app.sr_curve import TARGETS_DB, curve
    from tocsr.core.distill.train import load_surrogates
    from tocsr.core.space import derive_search_space
    from tocsr.core.sr.info import sr_config_from_dict
    from tocsr.core.sr.parts import load_parts
    from tocsr.core.sr.run import run_sr
    from tocsr.core.teacher.train import load_teacher

    _, run, _, _ = job
    steps = RUN_PRESETS["smoke"].sr_student_steps
    doc = curve(run, tmp_path / "curve", student_steps=steps, every=steps // 2, baseline="espcn")
    cfg = sr_config_from_dict(doc["config"])
    assert cfg.students == 1 and SRModelInfo.load(_sr_model(run)).config.routes
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    info = SRModelInfo.load(_sr_model(run))
    # from the parts the run's student started from (the run trains its parts: tocsr.app.sr_curve.run_parts)
    assert doc["parts"] == str(run / "parts")
    stage_encoder, stage_decoder, _ = load_parts(run / "parts")
    plain = run_sr(teacher, space, space.spec(dict(info.arch.items())), load_surrogates(run / "surrogates", space)[0],
                   tmp_path / "plain", cfg, shared=run / "sr-shared",
                   decoder=stage_decoder if info.decoder == "tiny" else None,
                   encoder=stage_encoder if info.encoder == "lr" else None)
    pts = doc["points"]
    assert [p["step"] for p in pts] == [steps // 2, steps]
    assert doc["shared_part_s"] < pts[0]["seconds"] < pts[1]["seconds"]
    base = doc["baseline"]["points"]
    assert len(base) == 2 and base[0]["seconds"] >= pts[0]["seconds"]        # scored where the student was
    assert doc["baseline"]["training"]["budget_s"] == pytest.approx(pts[1]["seconds"])
    assert base[1]["step"] == doc["baseline"]["training"]["steps"] > base[0]["step"]
    for kind in ("bicubic", "realesrgan"):
        for p in (*pts, *base):
            assert len(p[kind]["per_crop_minus_bicubic"]) == doc["crops_per_degradation"][kind]
            assert p[kind]["minus_bicubic"]["mean"] == pytest.approx(np.mean(p[kind]["per_crop_minus_bicubic"]))
        for trend in (doc["trends"][kind], doc["baseline"]["trends"][kind]):
            assert trend["target"] == TARGETS_DB[kind] and trend["fitted_points"] == 2
            assert trend["reach"].startswith("extrapolated")
    for kind, final in doc["final_psnr_y"].items():
        # the last point scores exactly the weights the training returns
        assert pts[-1][kind]["psnr_y"] == pytest.approx(final, abs=1e-4)
        # and those are the student the same config trains without the hook (thread scheduling differs between
        # runs: not bit for bit; docs/status.md has the spread seen in CI)
        assert final == pytest.approx(plain.quality[kind]["tocsr-onestep"]["psnr_y"], abs=0.1)
        d = pts[-1][kind]["minus_bicubic"]
        assert d["low"] <= d["mean"] <= d["high"]
        assert d["mean"] == pytest.approx(final - doc["bicubic_psnr_y"][kind], abs=1e-3)
    assert json.loads((tmp_path / "curve" / "sr_curve.json").read_text())["kind"] == "tocsr.sr_curve"
    assert (tmp_path / "curve" / "sr_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_the_adversarial_weight_sweep_trains_one_student_per_weight_and_scores_validation_photographs(job, tmp_path):
    """`python -m tocsr.app.sr_pd` retrains the run's student once per adversarial weight (only the weight
    differs) and scores every student, and bicubic, on the whole validation photographs, never the test ones."""
    from tocsr.app.sr_pd import sweep
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.models import load_student

    _, run, _, _ = job
    doc = sweep(run, tmp_path / "pd", [0.0, 0.5], max_px=128)
    # the run's baselines, with what each trained for beside the variants' budgets
    baselines = {p.parent.name: json.loads(p.read_text()) for p in (run / "baselines").glob("*/baseline.json")}
    assert baselines and doc["baselines"] == baselines
    infos = {w: SRModelInfo.load(tmp_path / "pd" / f"w_adv-{w:g}") for w in (0.0, 0.5)}
    assert {w: i.config.w_adv for w, i in infos.items()} == {0.0: 0.0, 0.5: 0.5}
    a, b = (load_student(tmp_path / "pd" / f"w_adv-{w:g}" / "student").state_dict() for w in (0.0, 0.5))
    assert any(not torch.equal(a[k], b[k]) for k in a), "the adversarial weight did not change the student"
    # each variant's training budget is its own SR stage's (SRModelInfo.training_s), recorded beside its scores
    assert {w: doc["trained"][f"w_adv={w:g}"]["training_budget_s"] for w in (0.0, 0.5)} == \
        {w: pytest.approx(i.training_s) for w, i in infos.items()}
    run_info = SRModelInfo.load(next((run / "sr").glob("*/sr.json")).parent)
    assert sorted(doc["val_images"]) == sorted(n.replace("/", "__").rsplit(".", 1)[0] for n in run_info.val_images)
    test_names = set(json.loads((run / "eval" / "rows.json").read_text())["test_images"])
    assert test_names and not test_names & set(doc["val_images"])
    for kind, res in doc["results"].items():
        assert res["no_reference_metric"] == "niqe", res["unavailable"]
        methods = res["methods"]
        # the smoke run's model routes, so each variant does: scored blind behind its router, and told the truth;
        # the run's trained baselines are scored on the same photographs
        assert set(methods) == {"bicubic", "student w_adv=0", "student w_adv=0.5", "student w_adv=0 told",
                                "student w_adv=0.5 told", *baselines}
        for name in ("student w_adv=0", "student w_adv=0.5"):
            for other in ("bicubic", *baselines):
                d = methods[name][f"minus_{other}"]["psnr_y"]
                assert d["mean"] == pytest.approx(methods[name]["psnr_y"]["mean"]
                                                  - methods[other]["psnr_y"]["mean"], abs=1e-6)
                assert d["low"] <= d["mean"] <= d["high"]
            assert methods[name]["niqe"]["n"] == len(doc["val_images"])
        assert "minus_student w_adv=0" in methods["student w_adv=0.5"]
        assert "minus_student w_adv=0" not in methods["student w_adv=0"]
        assert (tmp_path / "pd" / f"val-{kind}" / "per_image.csv").is_file()
    assert (tmp_path / "pd" / "sr_pd.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="distinct and >= 0"):
        sweep(run, tmp_path / "pd2", [0.0, 0.0])


def test_a_variant_with_a_student_per_degradation_is_scored_blind_behind_its_router_and_told_the_truth(job, tmp_path):
    """`python -m tocsr.app.sr_pd`: a variant with one student per degradation trains its DegradationRouter as the
    SR stage does (its seconds in that variant's budget); its row is blind, the router picking once per whole
    validation photograph which student runs, with every decision on record, and its "told" row scores the same
    students told the truth."""
    from tocsr.app.sr_pd import sweep
    from tocsr.core.sr.info import SRModelInfo

    _, run, _, _ = job
    doc = sweep(run, tmp_path / "pd", {"blind": {"student_per_degradation": False},
                                       "split": {"student_per_degradation": True, "router_steps": 20}}, max_px=128)
    split = doc["trained"]["split"]
    info = SRModelInfo.load(split["folder"])
    assert info.config.routes and (Path(split["folder"]) / "router" / "config.json").is_file()
    assert split["router_s"] == info.timings_s["router_s"] > 0
    assert split["training_budget_s"] == pytest.approx(info.training_s)
    assert info.training_s > info.timings_s["student_s"] + split["router_s"]
    assert "router_s" not in doc["trained"]["blind"] and set(doc["routing"]) == {"split"}
    for kind, got in doc["routing"]["split"].items():
        assert got["photographs"] == len(doc["val_images"]) == len(got["decisions"]) >= 1
        assert set(got["decisions"]) <= {"bicubic", "realesrgan"}
        assert got["routed_right"] == sum(d == kind for d in got["decisions"])
        assert len(got["probabilities"]) == len(got["decisions"])
        assert all(sum(p.values()) == pytest.approx(1) for p in got["probabilities"])
        methods = doc["results"][kind]["methods"]
        assert {"student blind", "student split", "student split told"} <= set(methods)
        assert "minus_student blind" in methods["student split"]


def test_a_sweep_variant_that_changes_the_shared_part_trains_its_own_and_counts_it(job, tmp_path):
    """A `tocsr.app.sr_pd` variant naming a setting of the shared part (here a larger pair cache) cannot start from
    the run's `sr-shared/` (trained with other settings): it trains its own, on as many pairs as it asks, and what
    that took joins its budget; a variant without one keeps starting from the run's."""
    from tocsr.app.sr_pd import sweep
    from tocsr.core.sr.info import SRModelInfo

    _, run, _, _ = job
    run_info = SRModelInfo.load(next((run / "sr").glob("*/sr.json")).parent)
    bigger = 2 * run_info.config.pair_cache
    doc = sweep(run, tmp_path / "pd", {"run": {}, "bigger-cache": {"pair_cache": bigger}}, max_px=128)
    own, kept = SRModelInfo.load(tmp_path / "pd" / "bigger-cache"), SRModelInfo.load(tmp_path / "pd" / "run")
    assert own.config.pair_cache == bigger and own.shared_part == "trained here"
    assert kept.shared_part == str(run / "sr-shared")
    assert {k: v["shared_part"] for k, v in doc["trained"].items()} == {"run": "the run's", "bigger-cache": "own"}
    # its own cache's seconds, not the run's, are in its budget
    assert own.timings_s["pair_cache_s"] != pytest.approx(kept.timings_s["pair_cache_s"], rel=1e-9)
    assert doc["trained"]["bigger-cache"]["training_budget_s"] == pytest.approx(own.training_s)


def test_the_cheaper_parts_are_trained_scored_and_timed_beside_the_autoencoders_own(job, tmp_path, capsys):
    """`python -m tocsr.app.parts` on the run: both parts saved and scored on validation crops, all four parts
    timed on the run's profile paired with the teacher UNet, every figure with its spread."""
    from tocsr.app.parts import main
    from tocsr.core.artifacts import read_artifact
    from tocsr.core.sr.parts import load_parts

    _, run, _, _ = job
    out = tmp_path / "parts"
    got = main(["--run", str(run), "--out", str(out), "--steps", "2", "-p", str(run / "profiles" / "cpu-2core.yaml")])
    encoder, decoder, record = load_parts(out)
    assert record == got["record"] and record.config["steps"] == 2 and record.scale == 4
    assert set(record.psnr_y_db) == {"lr-encoder", "tiny-decoder"}
    doc = read_artifact(out / "parts_costs.json", "tocsr.sr_parts_costs", 1)
    names = ["bicubic + KL encoder", "LR encoder", "KL decoder", "tiny decoder"]
    assert list(doc["measurements"]) == names and doc["profile"] == "cpu-2core"
    for m in got["costs"].values():
        assert m.paired is not None and m.latency.n >= 2 and m.params > 0
    printed = capsys.readouterr().out
    assert "lr-encoder: " in printed and "against HR" in printed and "[" in printed
    lines = {n: next(ln for ln in printed.splitlines() if ln.startswith(f"{n}: median ")) for n in names}
    # each part with its own parameters (the KL parts' modules hold the whole autoencoder)
    for n, key in zip(names, ("kl-encoder", "lr-encoder", "kl-decoder", "tiny-decoder"), strict=True):
        assert f"; {record.params[key] / 1e6:.3f}M params;" in lines[n]


def test_a_retrained_student_starts_from_the_parts_the_runs_student_started_from(job, tmp_path):
    """sr_curve / sr_pd retrain a run's student from the parts stage's parts (`<run>/parts/`) where the run's config
    trains them with the student: the model's own copies already learnt beside the run's student (one copy per
    student where routed), and starting there would hand the retrained student that training for free."""
    from tocsr.app.sr_curve import first_sr_model, run_parts
    from tocsr.core.sr.parts import DECODER_DIR, ENCODER_DIR, deployed_decoder, deployed_encoder, load_parts

    _, run, _, _ = job
    model = first_sr_model(run)
    info = SRModelInfo.load(model)
    assert info.config.train_encoder and info.config.train_decoder and info.config.own_parts("decoder")
    start = run_parts(run, model, info, None, "--parts")
    stage_encoder, stage_decoder, record = load_parts(run / "parts")
    assert start.source == str(run / "parts")
    deployed = {"encoder": deployed_encoder(model, info.encoder, info.degradations),
                "decoder": deployed_decoder(model, info.decoder, info.degradations)}
    checked = 0
    for name, got, want, folder in (("encoder", start.encoder, stage_encoder, ENCODER_DIR),
                                    ("decoder", start.decoder, stage_decoder, DECODER_DIR)):
        if deployed[name] is None:          # the autoencoder's own: nothing to start from
            assert got is None
            continue
        theirs = want.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in got.state_dict().items()), name
        # ... and not any student's trained copy
        for copy in deployed[name].values():
            assert any(not torch.equal(v, theirs[k]) for k, v in copy.state_dict().items()), name
        assert getattr(start, f"{name}_train_s") == pytest.approx(record.train_s[folder])
        checked += 1
    assert checked >= 1
    # a run folder without its parts stage is refused in one line that says what to give
    with pytest.raises(ConfigError, match=r"holds none: give that parts folder with --parts") as err:
        run_parts(tmp_path, model, info, None, "--parts")
    assert "\n" not in str(err.value)


def test_a_sweep_variant_deploys_another_parts_folder_and_counts_its_seconds(job, tmp_path):
    """`parts=DIR` in a `tocsr.app.sr_pd` variant: the student trains behind that folder's parts (here with an
    encoder trained towards the HR latent, `--encoder-target hr`) where the run's model deploys a cheaper part,
    the variant's model deploys them, and that folder's training seconds replace the run's parts' in its budget."""
    from tocsr.app.parts import main
    from tocsr.app.sr_pd import sweep
    from tocsr.core.models.parts import LREncoder, TinyDecoder
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.parts import DECODER_DIR, ENCODER_DIR, PartsRecord

    _, run, _, _ = job
    parts = tmp_path / "parts-hr"
    main(["--run", str(run), "--out", str(parts), "--steps", "2", "--encoder-target", "hr",
          "-p", str(run / "profiles" / "cpu-2core.yaml")])
    record = PartsRecord.load(parts)
    assert record.config["encoder_target"] == "hr"
    # parts kept frozen (the smoke preset trains them, as quick does), so the model deploys exactly that folder's
    variant = {"parts": str(parts), "train_encoder": False, "train_decoder": False}
    doc = sweep(run, tmp_path / "pd", {"other-parts": variant}, max_px=128)
    model = tmp_path / "pd" / "other-parts"
    info, run_info = SRModelInfo.load(model), SRModelInfo.load(next((run / "sr").glob("*/sr.json")).parent)
    assert (info.encoder, info.decoder) == (run_info.encoder, run_info.decoder) != ("kl", "kl")
    deployed = [(ENCODER_DIR, "encoder_s", LREncoder)] * (info.encoder == "lr") + \
        [(DECODER_DIR, "decoder_s", TinyDecoder)] * (info.decoder == "tiny")
    for folder, key, cls in deployed:
        mine, theirs = (cls.from_pretrained(f / folder).state_dict() for f in (model, parts))
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), folder
        assert info.timings_s[key] == pytest.approx(record.train_s[folder]) != run_info.timings_s[key]
    assert doc["variants"] == {"other-parts": variant}
    assert doc["trained"]["other-parts"]["parts_from"] == str(parts)
    # parts trained for another scale are refused before any training, in one line
    dataclasses.replace(record, scale=2).save(parts, {})
    with pytest.raises(ConfigError, match="parts trained for x2, the run's model is x4") as info:
        sweep(run, tmp_path / "pd2", {"x2-parts": {"parts": str(parts)}}, max_px=128)
    assert "\n" not in str(info.value) and not (tmp_path / "pd2" / "x2-parts").exists()
