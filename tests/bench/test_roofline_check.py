"""The roofline against the committed H200 measurements: prediction on the meta device, calibration on the
calibration candidates only, and the refusals."""

from __future__ import annotations

import pytest

from bench.roofline_check import CandidatePrediction, check_against_evidence, error_summary, fit_calibration
from tests.conftest import REPO
from tocsr.core.errors import ConfigError

EVIDENCE = REPO / "reports" / "gpu" / "nvidia-h200" / "run2-graphs" / "gpu_evidence.json"
PREDICTED = REPO / "hw_profiles" / "h200-bf16-predicted.yaml"


def test_calibration_recovers_known_constants_and_never_goes_negative():
    rows = [CandidatePrediction(f"k{i}", "calibration", 1.5 * r + 3e-3 * n + 0.2, r, n, r)
            for i, (r, n) in enumerate([(1.0, 100), (2.0, 150), (3.5, 400), (0.5, 900), (5.0, 1200)])]
    cal = fit_calibration(rows)
    assert cal["compute_scale"] == pytest.approx(1.5, rel=1e-6) and cal["launch_us"] == pytest.approx(3.0, rel=1e-6)
    assert cal["intercept_ms"] == pytest.approx(0.2, abs=1e-6)
    faster = [CandidatePrediction(r.key, r.role, 2.0 - 0.1 * r.roofline_ms, r.roofline_ms, r.launches, 0) for r in rows]
    assert all(v >= 0 for v in fit_calibration(faster).values())
    with pytest.raises(ConfigError, match="at least 3 calibration candidates, got 2"):
        fit_calibration(rows[:2])


def test_error_summary_reads_relative_errors_and_rank_order():
    s = error_summary([1.0, 2.0, 4.0, 8.0], [1.05, 1.8, 4.0, 12.0])
    assert s["within_10pct"] == 0.75 and s["max_abs_err"] == pytest.approx(0.5) and s["spearman"] == pytest.approx(1.0)
    assert s["median_abs_err"] == pytest.approx(0.075)


@pytest.mark.extended
def test_the_committed_h200_candidates_are_predicted_in_order_and_calibration_helps():
    check = check_against_evidence(EVIDENCE, PREDICTED, limit=16)     # 10 calibration + 6 held-out candidates
    assert check.card == "NVIDIA H200" and check.label == "predicted" and check.latent_px == 64
    assert sum(r.role == "calibration" for r in check.rows) == 10 and len(check.rows) == 16
    # the datasheet roofline is a floor: every candidate predicted faster than the card ran it
    assert all(r.predicted_ms < r.measured_ms for r in check.rows)
    assert check.raw["spearman"] > 0.8
    assert check.calibrated["median_abs_err"] < check.raw["median_abs_err"] / 2
    assert "Spearman" in check.describe()[1] and "held-out" in check.describe()[2]


def test_a_measured_profile_a_wrong_precision_or_a_missing_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is measured .* give a predicted profile"):
        check_against_evidence(EVIDENCE, REPO / "hw_profiles" / "h200-bf16.yaml")
    fp16 = tmp_path / "p.yaml"
    fp16.write_text(PREDICTED.read_text().replace("precision: bf16", "precision: fp16"))
    with pytest.raises(ConfigError, match="measured in bf16, profile 'h200-bf16-predicted' predicts fp16"):
        check_against_evidence(EVIDENCE, fp16)
    with pytest.raises(ConfigError, match="no cost table section 'cost_table:eager' .*cost_table:cuda_graphs"):
        check_against_evidence(EVIDENCE, PREDICTED, section="cost_table:eager")


def test_a_profile_calibration_is_applied_to_predictions_and_named():
    import dataclasses

    import torch

    from bench import roofline
    from bench.profile import RooflineCalibration, load_profile

    constants = dataclasses.replace(load_profile(PREDICTED).predicted, calibration=None)
    cal = RooflineCalibration(compute_scale=2.0, launch_overhead_us=10.0, intercept_ms=0.5, source="a card")

    def predict(c):
        model = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(32, 16, 1))
        return roofline.estimate(model, (torch.randn(1, 16, 64, 64),), {}, c, "bf16")

    raw, fitted = predict(constants), predict(dataclasses.replace(constants, calibration=cal))
    body = raw.latency_ms - raw.launch_overhead_ms
    assert fitted.latency_ms == pytest.approx(2.0 * body + raw.ops * 10e-3 + 0.5)
    assert raw.calibration is None and fitted.calibration == "a card" and fitted.method.startswith("calibrated")


@pytest.mark.extended
def test_the_check_judges_the_datasheet_constants_and_the_profiles_own_calibration_apart():
    check = check_against_evidence(EVIDENCE, PREDICTED, limit=14)
    # raw: the datasheet roofline alone (launches x its 2 us; no fitted scale or intercept)
    assert all(r.predicted_ms == pytest.approx(r.roofline_ms + r.launches * 2e-3) for r in check.rows)
    assert check.shipped is not None and check.shipped["median_abs_err"] < check.raw["median_abs_err"] / 2
    assert "the profile's own calibration" in check.describe()[-1]
