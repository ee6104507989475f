from __future__ import annotations

import numpy as np
import pytest

from reports.nightly import REFERENCE, detect_regressions, load_history, render_nightly, run_night
from tocsr.core.artifacts import write_artifact


def night(i, medians, status="complete", rng=None, spread=0.02):
    rng = rng or np.random.default_rng(i)
    rows = []
    for model, m in medians.items():
        samples = list(m * (1 + spread * rng.standard_normal(30)))
        rows.append({"profile": "cpu", "model": model, "status": "ok", "median_ms": float(np.median(samples)),
                     "rep_medians_ms": [float(np.median(samples))] * 3, "samples_ms": samples})
    return {"night": f"n{i}", "label": f"n{i}", "status": status, "rows": rows}


BASE = {REFERENCE: 2.0, "unet": 7.0, "espcn": 0.4, "toy": 0.5}


def jitter(scale=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return {k: v * (1 + scale * rng.standard_normal()) for k, v in BASE.items()}


def test_noise_alone_flags_nothing():
    nights = [night(i, jitter(seed=i)) for i in range(6)]
    assert detect_regressions(nights) == []


def test_a_twenty_percent_step_in_one_model_is_flagged_alone():
    nights = [night(i, jitter(seed=i)) for i in range(4)]
    slow = jitter(seed=10)
    slow["espcn"] *= 1.2
    flagged = detect_regressions(nights + [night(9, slow)])
    assert [f["model"] for f in flagged] == ["espcn"] and flagged[0]["step"] > 0.1


def test_a_slower_machine_is_not_a_regression():
    nights = [night(i, jitter(seed=i)) for i in range(4)]
    machine_slow = {k: v * 1.15 for k, v in jitter(seed=7).items()}
    assert detect_regressions(nights + [night(7, machine_slow)]) == []


def test_failed_nights_are_ignored_and_corrupt_files_named(tmp_path, caplog):
    for i in range(3):
        write_artifact(tmp_path / f"2026010{i}.json", "tocsr.nightly_night", 1, night(i, jitter(seed=i)))
    write_artifact(tmp_path / "20260104.json", "tocsr.nightly_night", 1, night(4, {}, status="failed"))
    (tmp_path / "20260105.json").write_text('{"schema_version": 1, "kind": "tocsr.nightly_')
    with caplog.at_level("WARNING"):
        nights, problems = load_history(tmp_path)
    assert len(nights) == 4 and len(problems) == 1 and "20260105.json" in problems[0]
    assert detect_regressions(nights) == []
    page = render_nightly(tmp_path, tmp_path / "out")[0].read_text()
    assert "unreadable history file" in page and "failed" in page


@pytest.mark.slow
def test_real_nights_flag_exactly_the_injected_slowdown(tmp_path, cpu_profile_path):
    # Nightly-grade timing (the 5 repeats of the unit-test profile once let a 10.6% noise step through).
    profile = tmp_path / "nightly-cpu.yaml"
    profile.write_text(cpu_profile_path.read_text().replace(
        "timing: {warmup_min_iters: 2, warmup_max_iters: 6, repeats: 5, percentile: 90, max_cv: 0.5}",
        "timing: {warmup_min_iters: 5, warmup_max_iters: 40, repeats: 40, percentile: 90, max_cv: 0.1}"))
    assert "repeats: 40" in profile.read_text()
    cpu_profile_path = profile
    models = ("toy-conv-attn", "sr:espcn", "sr:srvgg")
    for i in range(3):
        run_night([str(cpu_profile_path)], models, tmp_path / "h", label=f"noise-{i}")
    nights, _ = load_history(tmp_path / "h")
    assert detect_regressions(nights) == []
    run_night([str(cpu_profile_path)], models, tmp_path / "h", inject={"sr:srvgg": 1.2}, label="injected")
    nights, _ = load_history(tmp_path / "h")
    assert [f["model"] for f in detect_regressions(nights)] == ["sr:srvgg"]
