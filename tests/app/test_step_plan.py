"""How the main job fits its time budget: the preset's steps scaled, the plan made once and reused, the shares it
predicts with recomputed from the committed runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from rich.console import Console

from bench.profile import load_profile, predicted_stand_in
from tocsr.app.mainjob import RUN_PRESETS, StageLog, step_plan, students_plan
from tocsr.app.stage_shares import main as shares_main
from tocsr.app.stage_shares import median_shares, shares_of_run
from tocsr.core.errors import ConfigError
from tocsr.core.timebudget import StageShares, StepPlan

ROOT = Path(__file__).resolve().parents[2]
QUICK = RUN_PRESETS["quick"]


def _profiles(n_predicted: int = 0):
    cpu = load_profile(ROOT / "hw_profiles" / "cpu-2core.yaml")
    gpus = [predicted_stand_in(load_profile(ROOT / "hw_profiles" / f)) for f in ("h100-bf16.yaml",)]
    return [cpu] + gpus[:n_predicted]


def test_scaling_cuts_the_training_steps_and_keeps_every_measurement_setting():
    s = QUICK.scaled(training=0.7, students=0.6)
    assert (s.distill_steps, s.parts_steps, s.parts_encoder_steps) == (280, 28, 280)
    assert (s.sr_student_steps, s.sr_run_student_steps) == (240, 360)
    assert s.sr_teacher_steps == 0 and s.finetune_steps == 0           # off stays off
    for same in ("calibration", "holdout", "pipelines", "overhead_pipelines", "search_evaluations", "teacher_preset",
                 "test_max_px", "baselines", "sr_pair_cache"):
        assert getattr(s, same) == getattr(QUICK, same), same
    assert QUICK.scaled(training=0.001).distill_steps == 1
    for bad in (0.0, 1.2):
        with pytest.raises(ConfigError, match=f"training={bad}"):
            QUICK.scaled(training=bad)


def test_the_budget_grows_with_profiles_and_a_capped_check_has_none():
    assert QUICK.time_budget_for(1) == 27.5 * 60 and QUICK.time_budget_for(3) == 27.5 * 60 + 300
    assert QUICK.capped(5).time_budget_s is None and QUICK.capped(5).time_budget_for(1) is None
    shape = QUICK.run_shape(_profiles(1))
    assert (shape.devices_measured, shape.devices_predicted, shape.baselines) == (1, 1, 1)
    # two devices share the run's 600 student steps: 300 each, of one device's 400
    assert shape.student_share_total == pytest.approx(2 * 300 / 400)
    assert shape.student_share_longest == pytest.approx(300 / 400)


def _log(tmp_path, stages: dict[str, float]) -> StageLog:
    """A log of a run whose stages finished in an earlier process, with these wall seconds."""
    log = StageLog(tmp_path, Console(quiet=True))
    for name, wall in stages.items():
        (tmp_path / "stages").mkdir(parents=True, exist_ok=True)
        (tmp_path / "stages" / f"{name}.json").write_text(json.dumps({"inputs_sha256": "x", "wall_s": wall,
                                                                       "resumed": False}))
        log.skipped.append(name)
    return log


def test_the_plan_is_made_once_per_teacher_and_run_and_a_resumed_run_trains_what_it_planned(tmp_path):
    log = _log(tmp_path, {"teacher": 390.0})
    first = step_plan(tmp_path, QUICK, _profiles(), "teacher-a", log)
    assert (tmp_path / StepPlan.FILE_NAME).is_file() and 0.5 < first.training_scale < 1
    # the marker says otherwise now (a faster hour): the plan on record wins, so the stages it scaled are reused
    log = _log(tmp_path, {"teacher": 200.0})
    assert step_plan(tmp_path, QUICK, _profiles(), "teacher-a", log) == first
    # a profile added on the same folder: the surrogates and parts keep their scale; budget and prediction follow
    more = step_plan(tmp_path, QUICK, _profiles(1), "teacher-a", log)
    assert more.training_scale == first.training_scale and more.budget_s == first.budget_s + 150
    assert more.shape.devices == 2 and more.teacher_s == 200
    # another teacher: planned afresh, on this hour's pace
    fresh = step_plan(tmp_path, QUICK, _profiles(), "teacher-b", log)
    assert fresh.training_scale == 1 and fresh.teacher_s == 200


def test_fixed_steps_and_a_capped_check_train_the_steps_as_listed_and_drop_a_stale_plan(tmp_path, monkeypatch):
    log = _log(tmp_path, {"teacher": 390.0})
    assert step_plan(tmp_path, QUICK, _profiles(), "t", log).training_scale < 1
    assert step_plan(tmp_path, QUICK, _profiles(), "t", log, fixed_steps=True) is None
    assert not (tmp_path / StepPlan.FILE_NAME).exists()       # the report would have shown it
    step_plan(tmp_path, QUICK, _profiles(), "t", log)
    assert step_plan(tmp_path, QUICK.capped(5), _profiles(), "t", log) is None
    assert not (tmp_path / StepPlan.FILE_NAME).exists()
    # the command line's flag reaches the job
    from tocsr.app import cli, mainjob

    got = {}
    monkeypatch.setattr(mainjob, "run_main_job", lambda *a, **kw: got.update(kw))
    with pytest.raises(SystemExit) as code:
        cli.main(["run", "--fixed-steps", "--out", str(tmp_path / "run")])
    assert code.value.code == 0 and got["fixed_steps"] is True


def test_the_students_scale_is_decided_from_the_stages_seconds_on_record(tmp_path):
    stages = {"teacher": 390.0, "surrogates": 125.0, "parts": 70.0, "costs-ab": 380.0, "search-cpu-2core": 60.0,
              "sr-shared": 55.0}
    log = _log(tmp_path, stages)
    assert log.spent_s() == pytest.approx(sum(stages.values())) and log.stage_s("parts") == 70
    plan = students_plan(tmp_path, step_plan(tmp_path, QUICK, _profiles(), "t", log), log, later=[])
    assert plan.spent_before_students_s == pytest.approx(sum(stages.values()))
    assert StepPlan.load(tmp_path) == plan and plan.student_scale is not None
    slower = _log(tmp_path / "b", {**stages, "costs-ab": 600.0})
    later = students_plan(tmp_path / "b", step_plan(tmp_path / "b", QUICK, _profiles(), "t", slower), slower, later=[])
    assert later.student_scale < plan.student_scale


def test_the_shares_it_predicts_with_are_the_medians_of_the_runs_it_names():
    """StageShares.source names committed summaries; their medians are the numbers it holds (refresh both
    together: `python -m tocsr.app.stage_shares`)."""
    summaries = [ROOT / folder / "summary.json" for folder in StageShares().source]
    assert len(summaries) == 7 and all(p.is_file() for p in summaries)
    medians, counts = median_shares([json.loads(p.read_text()) for p in summaries])
    held = StageShares().to_dict()
    for key, value in medians.items():
        assert held[key] == pytest.approx(value, abs=0.006), key
    assert counts["costs_search_predicted"] == 4 and counts["student"] == 11


def test_a_scaled_run_is_brought_back_to_full_steps(tmp_path, capsys):
    doc = json.loads((ROOT / "reports/evidence/main-quick-pipeline/run43-af42cd9-readme/summary.json").read_text())
    scaled = copy.deepcopy(doc)
    for stage in ("surrogates", "parts"):
        scaled["stage_seconds"][stage] *= 0.5
    sr = next(k for k in doc["stage_seconds"] if k.startswith("sr-") and k != "sr-shared")
    scaled["stage_seconds"][sr] *= 0.8
    scaled["step_plan"] = {"training_scale": 0.5, "student_scale": 0.8}
    a, b = shares_of_run(doc), shares_of_run(scaled)
    for key in ("surrogates", "parts", "student"):
        assert a[key] == pytest.approx(b[key]), key
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(scaled))
    assert shares_main([str(path)])["medians"]["surrogates"] == pytest.approx(round(a["surrogates"][0], 3))
    assert '"medians"' in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not a file"):
        shares_main([str(tmp_path / "missing.json")])


def test_the_quick_preset_measures_with_two_attempts_and_the_profile_it_measures_with_says_so(tmp_path):
    """The quick preset's minutes: every timing of its job makes at most two attempts (the profile's own allows three;
    reports/evidence/costs-attempts/), through the profile the stages read, written under the run with the reason."""
    from tocsr.app.mainjob import _prepare_profiles

    ref = ROOT / "hw_profiles" / "cpu-2core.yaml"
    given = load_profile(ref)
    assert given.timing.max_retries == 2
    refs, loaded = _prepare_profiles([str(ref)], [given], QUICK, tmp_path)
    written = Path(refs[0])
    assert written == tmp_path / "profiles" / "cpu-2core.yaml"
    assert loaded[0].timing.max_retries == load_profile(written).timing.max_retries == 1
    assert "'quick' preset" in written.read_text().splitlines()[0]
    # nothing else of the profile changes: the budgets, the guard and the rest of the timing are the device's
    assert loaded[0].budgets == given.budgets
    assert {k: v for k, v in loaded[0].to_dict()["timing"].items() if k != "max_retries"} == \
        {k: v for k, v in given.to_dict()["timing"].items() if k != "max_retries"}
