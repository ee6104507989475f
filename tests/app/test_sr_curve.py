"""The learning curve's trend and what it prints (tocsr.app.sr_curve); the curve itself is trained in
tests/app/test_main_job.py on the smoke job."""

from __future__ import annotations

import numpy as np
import pytest

from reports.intervals import log_trend
from reports.plots import sr_curve_plot
from tocsr.app.sr_curve import TARGETS_DB, trend_line, trend_points, trends


def _points(gains: list[float], seconds: list[float], crops: int = 8) -> list[dict]:
    offsets = np.linspace(-0.1, 0.1, crops)
    return [{"step": i, "seconds": s,
             **{kind: {"per_crop_minus_bicubic": list(g * (1 if kind == "bicubic" else 0.5) + offsets),
                       "minus_bicubic": {"mean": g, "low": g - 0.1, "high": g + 0.1}} for kind in TARGETS_DB}}
            for i, (g, s) in enumerate(zip(gains, seconds, strict=True))]


def test_the_trend_is_fitted_on_the_later_half_of_a_curve():
    pts = _points([0.0, 0.5, 0.2, 0.3, 0.4], [100, 200, 400, 800, 1600])
    assert [p["seconds"] for p in trend_points(pts)] == [400, 800, 1600]
    assert [p["seconds"] for p in trend_points(pts[:2])] == [100, 200]
    got = trends(pts, ("bicubic", "realesrgan"))
    # 0.2, 0.3, 0.4 at 400, 800, 1600 s: 0.1 dB per doubling (the noisy early point 0.5 is not in the fit)
    assert got["bicubic"]["per_doubling"]["mean"] == pytest.approx(0.1)
    assert got["bicubic"]["reach_s"] == pytest.approx(1600 * 2 ** 6)       # 0.6 dB to go at 0.1 per doubling


def test_the_printed_trend_labels_the_seconds_to_the_target_as_predicted():
    rising = log_trend([100, 200, 400], [[0.1], [0.2], [0.3]], target=1.0).to_dict()
    line = trend_line("student", "bicubic", rising)
    assert "+0.100 [+0.100, +0.100] dB per doubling" in line and "PREDICTED, extrapolated" in line
    assert "+1 dB at 5.12e+04 s" in line and "(x128;" in line
    falling = log_trend([100, 200, 400], [[0.3], [0.2], [0.1]], target=1.0).to_dict()
    assert "never reaches +1 dB" in trend_line("srvgg", "bicubic", falling)
    there = log_trend([100, 200, 400], [[0.9], [1.0], [1.1]], target=1.0).to_dict()
    assert "target already" in trend_line("student", "bicubic", there)


def test_the_curve_plot_draws_both_curves_and_the_predicted_trends():
    seconds = [300.0, 600.0, 1200.0]
    student, base = _points([0.1, 0.2, 0.3], seconds), _points([0.2, 0.25, 0.3], seconds)
    doc = {"bicubic_psnr_y": {"bicubic": 30.0, "realesrgan": 25.0}, "points": student,
           "trends": trends(student, TARGETS_DB), "config": {"student_steps": 900},
           "baseline": {"name": "srvgg", "points": base, "trends": trends(base, TARGETS_DB)},
           "run_model": {"seconds": 400.0, "student_steps": 650, "psnr_y": {"bicubic": 30.2, "realesrgan": 25.0}},
           "sr_teacher_psnr_y": {}, "targets_db": TARGETS_DB, "crops_per_degradation": {"bicubic": 8, "realesrgan": 8}}
    assert sr_curve_plot(doc)[:4] == b"\x89PNG"


def test_set_reads_typed_srconfig_fields_and_refuses_the_shared_parts(tmp_path):
    """--set changes the student's settings only: one that would change the run's shared part (its pair cache, its SR
    teachers) is refused before anything loads, with where to compare it instead."""
    from tocsr.app.sr_curve import main
    from tocsr.core.errors import ConfigError
    from tocsr.core.sr.config import parse_field

    assert parse_field("w_pixel=1", "--set") == ("w_pixel", 1.0)
    assert parse_field("train_decoder=true", "--set") == ("train_decoder", True)
    with pytest.raises(ConfigError, match="pair_cache: the curve reuses the run's shared part.*sr_pd"):
        main(["--run", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "pair_cache=4096"])
    with pytest.raises(ConfigError, match="'w_pixle=1' is not KEY=VALUE"):
        main(["--run", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "w_pixle=1"])
