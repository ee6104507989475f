"""Cost tables measured on a simulated device with known costs (and one real tiny measurement)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.costtable import (
    CostTable,
    CostTableInvalid,
    ValidationBar,
    fit_correction,
    measure_cost_table,
    sample_candidates,
)
from bench.stats import LatencyStats, PairedLatency
from bench.timing import measure_paired
from tests.simdevice import SimProbe, SimulatedDevice, ramp, step
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import derive_search_space


def _truth_errors(table: CostTable, sim: SimulatedDevice, specs) -> np.ndarray:
    """Prediction vs the device's true cost, both at one speed (in units of the teacher)."""
    teacher = sim.space.all_teacher()
    return np.array([(table.predict_ratio(s) / table.predict_ratio(teacher)) / sim.true_ratio(s) - 1 for s in specs])


def _phase_starts_s(space, profile) -> dict[str, float]:
    """Virtual time at which calibration and held-out measurement start, and the end, on a steady device."""
    sim, starts = SimulatedDevice(space), {}

    def progress(msg: str) -> None:
        starts.setdefault(msg.split()[0], sim.now_s())

    measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=30, progress=progress)
    return {"calibration": starts["calibration"], "holdout": starts["holdout"], "end": sim.now_s()}


def _slowdown(kind: str, t: dict[str, float]):
    cal, hold, end = t["calibration"], t["holdout"], t["end"]
    return {"none": lambda s: 1.0,
            # the failure seen on a fresh machine: whole candidates measured later ran up to 2x slower
            "ramp over candidates": lambda s: 1.0 + min(1.0, max(0.0, (s - cal) / (end - cal))),
            "step at held-out": step(hold),
            "2x back and forth": lambda s: 2.0 if int(s / 3.0) % 2 else 1.0,
            "ramp over everything": ramp(end)}[kind]


@pytest.mark.parametrize("drift", ["none", "ramp over candidates", "step at held-out", "2x back and forth",
                                   "ramp over everything"])
def test_a_device_that_slows_down_2x_while_measured_still_gives_a_table_within_10pct(space, profile, drift):
    sim = SimulatedDevice(space)
    sim.slowdown = _slowdown(drift, _phase_starts_s(space, profile))
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=30)
    v = table.validation_summary()
    assert v["n"] == 30 and v["within_10pct"] >= 0.9 and v["passes"], v
    assert len(table.rounds) == 1                          # no refit was needed
    # and against the truth, on candidates the table never saw
    fresh = sample_candidates(space, 40, seed=99, include_extremes=False, exclude={c.key for c in table.candidates})
    err = np.abs(_truth_errors(table, sim, fresh))
    assert (err <= 0.10).mean() >= 0.9, np.round(err, 3)


def test_milliseconds_convert_at_the_reference_speed_measured_then(space, profile):
    sim = SimulatedDevice(space, jitter=0.0, burst_prob=0.0)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=8)
    teacher = space.all_teacher()
    assert table.reference_ms == pytest.approx(sim.true_ms(teacher), rel=1e-3)
    assert table.predict_latency_ms(teacher) == pytest.approx(sim.true_ms(teacher), rel=0.03)
    slow = table.at_reference(2 * table.reference_ms)
    assert slow.predict_latency_ms(teacher) == pytest.approx(2 * table.predict_latency_ms(teacher))
    assert slow.predict_ratio(teacher) == table.predict_ratio(teacher)
    with pytest.raises(ValueError, match="reference_ms = 0"):
        table.at_reference(0)


def test_a_rescaled_table_predicts_every_candidate_by_the_factor_and_refits_in_the_same_units(space, profile):
    """search.selection scales a table one factor off; a later refit (the selection's rounds) must not pull it back
    to the units of the machine it was measured on."""
    sim = SimulatedDevice(space, jitter=0.0, burst_prob=0.0)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=8)
    scaled = table.rescaled(1.2)
    specs = sample_candidates(space, 5, seed=4, include_extremes=False)
    for spec in specs:
        assert scaled.predict_ratio(spec) == pytest.approx(1.2 * table.predict_ratio(spec))
    assert scaled.validation_summary() == pytest.approx(table.validation_summary())     # held out, same units
    assert scaled.rescaled(0.5).extra["rescaled_by"] == pytest.approx(0.6)
    # refit with nothing new: the scaled table's own candidates give back the scaled predictions
    refit = scaled.recalibrated(space, [])
    for spec in specs:
        assert refit.predict_ratio(spec) == pytest.approx(scaled.predict_ratio(spec), rel=0.01)
    with pytest.raises(ValueError, match="positive finite"):
        table.rescaled(0.0)


def test_a_table_that_misses_its_bar_is_refitted_then_refused_with_its_figures(space, profile):
    # +-30% per-candidate deviation from additivity: no correction can predict it
    sim = SimulatedDevice(space, interaction=0.3)
    with pytest.raises(CostTableInvalid) as info:
        measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20, refit_rounds=2)
    table, msg = info.value.table, str(info.value)
    assert len(table.rounds) == 3 and all(r["passes"] is False for r in table.rounds)
    assert [r["calibration"] for r in table.rounds] == [16, 36, 56]      # held-out sets joined calibration
    assert "misses its validation after 3 fits" in msg and "held-out candidates within the tolerance" in msg
    assert "\n" not in msg


def test_refitting_picks_a_richer_correction_when_kinds_overlap_differently(space, profile):
    # resnets keep 100% of their isolated cost inside the model, attention blocks 50%: one slope cannot fit both
    sim = SimulatedDevice(space, overlap={"resnet": 1.0, "attention": 0.5}, jitter=0.01, burst_prob=0.0)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    assert table.correction.kind in ("per-kind", "per-kind-stride"), table.correction
    assert table.validation_summary()["passes"]
    cal = [c for c in table.candidates if c.role == "calibration"]
    affine_only = fit_correction(space, table.entries, cal[:3])      # too few points for anything richer
    assert affine_only.kind in ("affine", "offset")


def test_a_correction_fitted_on_two_candidates_has_no_leave_one_out_error_and_saves(space, profile, tmp_path):
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=2, n_holdout=4)
    assert table.correction.kind == "affine" and table.correction.loo_median_abs_err is None   # not inf
    table.save(tmp_path / "t.json", {})
    assert CostTable.load(tmp_path / "t.json").correction == table.correction


def test_a_cost_table_round_trips_through_json(space, profile):
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=6, n_holdout=4)
    again = CostTable.from_dict(table.to_dict())
    spec = space.sample_mixed(__import__("random").Random(3))
    assert again.predict_latency_at_ms(spec) == pytest.approx(table.predict_latency_at_ms(spec))
    assert again.validation_summary() == table.validation_summary()
    assert again.correction == table.correction and again.bar == ValidationBar()


def test_paired_latency_keeps_the_ratio_when_the_machine_slows_between_rounds():
    from bench.profile import TimingPolicy

    t = {"ns": 0, "calls": 0}

    def work(ms):
        def call():
            t["calls"] += 1
            t["ns"] += int(ms * (1 + t["calls"] // 20) * 1e6)       # slower every 20 calls
        return call

    policy = TimingPolicy(warmup_min_iters=2, warmup_max_iters=4, repeats=40, max_cv=1.0)
    paired = measure_paired(work(1.0), work(4.0), policy, __import__("torch").device("cpu"), lambda: t["ns"])
    assert paired.ratio == pytest.approx(0.25, rel=0.2)
    assert paired.target.max_ms / paired.target.min_ms >= 3         # the raw milliseconds did move
    again = PairedLatency.from_dict(paired.to_dict())
    assert again.ratio == paired.ratio and again.ms_at(50, 8.0) == pytest.approx(8.0 * paired.ratio)
    with pytest.raises(ValueError, match="at least 2"):
        PairedLatency(LatencyStats.from_samples([1, 1], "t", 0), LatencyStats.from_samples([1, 1], "t", 0), (1.0,), 1)


def test_a_real_cost_table_on_the_tiny_unet(cpu_profile):
    """The torch probe end to end, on this CPU: every entry, candidates paired with the teacher."""
    from bench.probe import TorchProbe
    from bench.profile import replace
    from tocsr.core.assembly import build_module_bank
    from tocsr.core.models.unet import get_unet_preset, unet_example_inputs

    profile = replace(cpu_profile, timing={**cpu_profile.to_dict()["timing"], "paired_rounds": 2, "max_retries": 0})
    preset = get_unet_preset("tiny")
    unet = build_unet_from_preset("tiny", "cpu")
    space = derive_search_space(unet, {"resnet": ("res_skip",), "attention": ("attn_skip",)})
    args, kwargs = unet_example_inputs(preset.config, preset.cond_tokens, 1, profile.resolution.latent_px)
    teacher_params = sum(p.numel() for p in unet.parameters())
    probe = TorchProbe(space, unet, args, kwargs, profile, build_module_bank(space))
    table = measure_cost_table(space, probe, profile, n_calibration=3, n_holdout=0)
    assert len(table.entries) == 2 * len(space.slots)
    teacher = next(c for c in table.candidates if c.key == space.all_teacher().key)
    # the teacher paired with (a copy of) itself: a ratio of 1 up to this machine's noise
    assert 0.6 < teacher.latency.ratio < 1.6, teacher.latency.summary()
    skip_all = next(c for c in table.candidates if c.key != teacher.key)
    assert skip_all.latency.ratio < teacher.latency.ratio          # every block skipped is cheaper
    assert table.params(space.all_teacher()) == teacher_params == teacher.params
    assert table.validation_summary() == {"n": 0, "passes": None, "bar": ValidationBar().describe()}


def test_the_held_out_figures_count_errors_within_their_bounds_and_the_bar_judges_its_own_tolerance():
    """The ±10% share is the figure issue 24's acceptance reads; the bar may use another tolerance."""
    from bench.costtable import ValidationBar, summarize_errors

    err = np.array([0.05, -0.08, 0.12, -0.30, 0.0, 0.10, -0.049, 0.2, -0.11, 0.01])
    s = summarize_errors(err, ValidationBar())
    assert s["n"] == 10 and s["within_10pct"] == pytest.approx(0.6) and s["within_5pct"] == pytest.approx(0.4)
    assert s["within_tolerance"] == pytest.approx(0.6) and s["passes"] is False
    assert s["max_abs_err"] == pytest.approx(0.30) and s["mean_signed_err"] == pytest.approx(err.mean())
    loose = summarize_errors(err, ValidationBar(tolerance=0.30, share=0.9))
    assert loose["within_10pct"] == pytest.approx(0.6) and loose["within_tolerance"] == 1.0 and loose["passes"] is True
    assert summarize_errors(np.array([]), ValidationBar())["passes"] is None
