"""The main job's printed summary (tocsr.app.mainjob.print_summary): the quality lines users act on."""

from __future__ import annotations

import io

from rich.console import Console

from tocsr.app.mainjob import print_summary


def _interval(mean: float, low: float, high: float) -> dict:
    return {"mean": mean, "low": low, "high": high, "n": 7, "level": 0.95}


def _headline(best_interpolation: str, with_baseline: bool) -> dict:
    h = {"images": 7, "best_interpolation": best_interpolation,
         "tocsr_minus_bicubic": _interval(0.2, 0.14, 0.26),
         "tocsr_minus_best_interpolation": _interval(0.01, -0.03, 0.04),
         "verdict_interpolation": f"no clear difference between TOC-SR and {best_interpolation} (the interval spans 0)",
         "best_baseline": None}
    if with_baseline:
        h |= {"best_baseline": "srvgg", "tocsr_minus_best_baseline": _interval(-0.26, -0.46, -0.05),
              "best_baseline_minus_bicubic": _interval(0.46, 0.2, 0.72), "verdict": "TOC-SR is behind srvgg"}
    return h


def _printed(test: dict) -> list[str]:
    device = {"latency_how": "measured", "test": test, "architecture": "a1475d44fdd41b88", "measured_p90_ms": 47.7,
              "teacher_p90_ms": 92.0, "latency_budget_ms": 47.8, "cost_table_within_10pct": 0.9,
              "cost_table_holdout_n": 20, "params_m": 2.49, "teacher_params_m": 2.49, "gmacs": 0.13,
              "teacher_gmacs": 0.13, "budget": "one backbone call"}
    summary = {"devices": {"cpu-2core": device}, "report": "r/index.html", "wall_s": 60.0, "stages_ran": [],
               "stages_skipped": []}
    buf = io.StringIO()
    print_summary(Console(file=buf, width=1000), summary)
    return [line for line in buf.getvalue().splitlines() if "degradation:" in line]


def test_quality_lines_name_the_best_interpolation_once_and_survive_a_run_without_baselines():
    lanczos, bicubic = _printed({"bicubic": _headline("lanczos", True), "realesrgan": _headline("bicubic", True)})
    assert "minus srvgg -0.26 [-0.46, -0.05] dB" in lanczos and "TOC-SR minus lanczos +0.01" in lanczos
    assert lanczos.endswith("TOC-SR is behind srvgg; no clear difference between TOC-SR and lanczos (the interval spans 0)")
    # bicubic as the best interpolation: its difference is already the line's first figure, not repeated
    assert bicubic.count("TOC-SR minus bicubic") == 1 and "TOC-SR is behind srvgg" in bicubic
    # a run whose baselines were all skipped still prints its interpolation verdict
    (alone,) = _printed({"bicubic": _headline("lanczos", False)})
    assert "srvgg" not in alone and alone.endswith("no clear difference between TOC-SR and lanczos (the interval spans 0)")


def test_a_cost_table_that_missed_its_bar_is_marked_in_the_summary_table():
    rows = {}
    for passes in (True, False, None):
        device = {"latency_how": "measured", "test": {}, "architecture": "a1475d44fdd41b88", "measured_p90_ms": 47.7,
                  "teacher_p90_ms": 92.0, "latency_budget_ms": 47.8, "cost_table_within_10pct": 0.8,
                  "cost_table_holdout_n": 10, "cost_table_passes": passes, "params_m": 2.49, "teacher_params_m": 2.49,
                  "gmacs": 0.13, "teacher_gmacs": 0.13, "budget": "one backbone call"}
        buf = io.StringIO()
        print_summary(Console(file=buf, width=400), {"devices": {"cpu-2core": device}, "report": "r/index.html",
                                                     "wall_s": 60.0, "stages_ran": [], "stages_skipped": []})
        rows[passes] = next(line for line in buf.getvalue().splitlines() if "a1475d44fdd41b88" in line)
    assert "80% of 10 (misses its bar)" in rows[False]
    assert "80% of 10" in rows[True] and "misses" not in rows[True] and "misses" not in rows[None]


def test_a_run_whose_devices_share_the_presets_student_steps_says_so_and_a_run_of_one_does_not():
    def printed(per_device: int, devices: int, students: int = 1) -> str:
        buf = io.StringIO()
        print_summary(Console(file=buf, width=400), {
            "devices": {}, "report": "r/index.html", "wall_s": 60.0, "stages_ran": [], "stages_skipped": [],
            "sr_student_steps": {"per_device": per_device, "students": students, "devices": devices,
                                 "one_device": 650, "run_cap": 975, "preset": "quick"}})
        return buf.getvalue()

    shared = printed(325, 3)
    assert "model trained 325 steps: the quick preset shares 975 student steps among a run's 3 devices" in shared
    assert "one device alone trains 650" in shared and "one per degradation" not in shared
    assert "model trained 324 steps (2 students, one per degradation): the quick preset" in printed(324, 3, 2)
    assert "model trained" not in printed(650, 1)


def _row_line(row_ms: float, **extra) -> str:
    """The summary's line on the report row of a pipeline device the search chose at 31.30 ms (budget 34.33 ms)."""
    device = {"latency_how": "measured", "test": {}, "architecture": "c2c5b95879c99e8d", "measured_p90_ms": 31.30,
              "teacher_p90_ms": 92.78, "latency_budget_ms": 34.33, "cost_table_within_10pct": 1.0,
              "cost_table_holdout_n": 20, "params_m": 1.543, "teacher_params_m": 2.492, "gmacs": 0.09,
              "teacher_gmacs": 0.13, "budget": "one-step SR pipeline p90 latency <= 0.37 x the teacher",
              "report_row_p90_ms": row_ms, "report_row_latency": "paired with reference: teacher UNet",
              "pipeline": {"validation": {"n": 6, "within_10pct": 0.83}, "line": "measured p90 31.30 ms",
                           "teacher_backbone_share_predicted": 0.55}, **extra}
    buf = io.StringIO()
    print_summary(Console(file=buf, width=1000), {"devices": {"cpu-2core": device}, "report": "r/index.html",
                                                  "wall_s": 60.0, "stages_ran": [], "stages_skipped": []})
    return next(ln for ln in buf.getvalue().splitlines() if "the report's row" in ln)


def test_a_report_row_over_the_budget_the_search_met_is_called_out_with_the_gap_between_the_two_timings():
    over = _row_line(35.84)
    assert "OVER the budget of 34.33 ms by 4.4%" in over and "(31.30 ms) met" in over and "differ by +14.5%" in over
    assert over.startswith("cpu-2core: the report's row of the model as trained") and "time it again" in over
    within = _row_line(33.00)
    assert "OVER" not in within and within.endswith("(paired with reference: teacher UNet)")


def test_the_cores_each_timing_had_are_printed_and_an_over_budget_row_that_had_fewer_is_said_to_have_had_them():
    def printed(row_ms: float, search_min: float | None, row_min: float) -> str:
        return _row_line(row_ms, measured_effective_cores=None if search_min is None else
                         {"min": search_min, "max": 1.96, "threads": 2, "probes": 2},
                         report_row_effective_cores={"min": row_min, "max": 1.95, "threads": 2, "probes": 2})

    busier = printed(35.84, 1.92, 1.10)
    assert "OVER the budget of 34.33 ms" in busier and "the row's timing had fewer cores to itself" in busier
    assert busier.endswith("; cores the timings had: the search's 1.9-2.0 of 2 cores, the row's 1.1-1.9 of 2 cores")
    same = printed(35.84, 1.92, 1.90)
    assert "OVER the budget of 34.33 ms" in same and "fewer cores" not in same and "the row's 1.9 of 2 cores" in same
    within = printed(33.00, 1.92, 1.10)
    assert "OVER" not in within and "fewer cores" not in within and within.endswith("the row's 1.1-1.9 of 2 cores")
    assert "cores the timings had" not in printed(35.84, None, 1.10)     # a search from before the probe


def test_a_guarded_choice_says_what_it_was_chosen_at_and_an_over_budget_row_says_the_guard_was_not_enough():
    device = {"latency_how": "measured", "test": {}, "architecture": "5e8d5d0404cd65cc", "measured_p90_ms": 29.10,
              "teacher_p90_ms": 96.23, "latency_budget_ms": 35.60, "latency_target_ms": 32.04, "latency_guard": 0.1,
              "cost_table_within_10pct": 1.0, "cost_table_holdout_n": 20, "params_m": 0.9, "teacher_params_m": 2.492,
              "gmacs": 0.09, "teacher_gmacs": 0.13, "budget": "one-step SR pipeline p90 latency <= 0.37 x the teacher",
              "report_row_p90_ms": 36.00, "report_row_latency": "paired with reference: teacher UNet",
              "teacher_p90_readings_ms": [90.10, 96.23, 99.87],
              "pipeline": {"validation": {"n": 6, "within_10pct": 0.83}, "line": "measured p90 29.10 ms",
                           "teacher_backbone_share_predicted": 0.55}}
    buf = io.StringIO()
    print_summary(Console(file=buf, width=1000), {"devices": {"cpu-2core": device}, "report": "r/index.html",
                                                  "wall_s": 60.0, "stages_ran": [], "stages_skipped": []})
    lines = buf.getvalue().splitlines()
    assert "29.10 (96.23)" in buf.getvalue() and "predicted" not in buf.getvalue()    # measured, read the old way
    chosen = next(ln for ln in lines if "chosen on a re-measured p90" in ln)
    assert ("<= 32.04 ms: the 35.60 ms budget (the teacher as shipped p90 96.23 ms (median of 3 readings in a "
            "row, 90.10-99.87 ms)) less the profile's guard of 10% (timing.latency_guard)") in chosen
    row = next(ln for ln in lines if "the report's row" in ln)
    assert "OVER the budget of 35.60 ms by 1.1%" in row and "more than the profile's guard of 10%" in row


def _judged_on_share(row_share: float | None, row_ms: float = 36.00) -> str:
    """The summary of a pipeline device judged beside the teacher as shipped (the cost model puts it at 96.23 ms;
    it measured 42.30 ms), chosen at 0.3024 of it; the report row timed beside it at `row_share`."""
    device = {"latency_how": "measured", "test": {}, "architecture": "5e8d5d0404cd65cc", "measured_p90_ms": 29.10,
              "teacher_p90_ms": 96.23, "latency_budget_ms": 35.60, "latency_target_ms": 32.04, "latency_guard": 0.1,
              "cost_table_within_10pct": 1.0, "cost_table_holdout_n": 20, "params_m": 0.9, "teacher_params_m": 2.492,
              "gmacs": 0.09, "teacher_gmacs": 0.13, "budget": "one-step SR pipeline p90 latency <= 0.37 x the teacher",
              "report_row_p90_ms": row_ms, "report_row_latency": "paired with reference: teacher UNet",
              "judged_against": "teacher as shipped", "teacher_p90_readings_ms": [42.3], "chosen_share": 0.3024,
              "report_row_share": row_share,
              "measured_effective_cores": {"min": 1.9, "max": 1.96, "threads": 2, "probes": 2},
              "report_row_effective_cores": {"min": 1.95, "max": 1.96, "threads": 2, "probes": 2},
              "report_row_share_effective_cores": {"min": 1.2, "max": 1.9, "threads": 2, "probes": 2},
              "pipeline": {"validation": {"n": 6, "within_10pct": 0.83}, "line": "measured p90 29.10 ms",
                           "teacher_backbone_share_predicted": 0.55}}
    buf = io.StringIO()
    print_summary(Console(file=buf, width=1000), {"devices": {"cpu-2core": device}, "report": "r/index.html",
                                                  "wall_s": 60.0, "stages_ran": [], "stages_skipped": []})
    return buf.getvalue()


def test_a_choice_judged_on_its_share_of_the_teacher_as_shipped_prints_the_share_and_says_the_ms_are_the_models():
    printed = _judged_on_share(0.3500)
    # the table: the teacher as shipped's figure and the budget are the cost model's; the shares are what was measured
    assert "29.10 (96.23 predicted)" in printed and "35.60 predicted" in printed
    assert "0.302 x the teacher, measured" in printed and "0.370 x the teacher" in printed
    chosen = next(ln for ln in printed.splitlines() if "chosen on a re-measured p90" in ln)
    assert chosen.startswith("cpu-2core: chosen on a re-measured p90 <= 0.333 of the teacher as shipped, timed beside "
                             "it: the budget of 0.370 of it less the profile's guard of 10%")
    assert "the choice read 0.302" in chosen and "carry the cost model's error on the teacher as shipped" in chosen
    assert ("In milliseconds, the choice 29.10 and the budget 35.60, at the teacher as shipped p90 96.23 ms as the "
            "cost model predicts it at this speed; measured 42.30 ms just before") in chosen
    # the row judged on its share too: 0.35 of the teacher as shipped is within 0.37 though 36.00 ms is over 35.60 ms
    row = next(ln for ln in printed.splitlines() if "the report's row" in ln)
    assert "timed again in the eval stage beside the teacher as shipped: p90 0.350 of it; beside the teacher UNet, " \
           "p90 36.00 ms (paired with reference: teacher UNet)" in row and "OVER" not in row
    assert row.endswith("the row's 1.2-1.9 of 2 cores")      # the cores of the timing judged, beside the shipped


def test_a_row_over_the_budgets_share_is_called_out_in_shares_and_a_row_without_one_falls_back_to_milliseconds():
    row = next(ln for ln in _judged_on_share(0.3885, row_ms=30.0).splitlines() if "the report's row" in ln)
    assert ("p90 0.389 of it: OVER the budget of 0.370 of the teacher as shipped by 5.0%, which the search's "
            "re-measurement (0.302 of the teacher as shipped) met; the two timings of this model differ by +28.5%") in row
    assert "the row's timing had fewer cores to itself" in row
    # an eval stage from before the row was timed beside the teacher as shipped: milliseconds, judged as before
    old = next(ln for ln in _judged_on_share(None).splitlines() if "the report's row" in ln)
    assert "eval stage: p90 36.00 ms" in old and "OVER the budget of 35.60 ms by 1.1%" in old


def test_a_quality_verdict_is_printed_with_both_latencies_and_says_who_is_ahead_only_where_no_slower():
    from reports.rows import ReportRow
    from reports.verdicts import latency_beside, latency_verdict

    def row(method: str, p90: float | None, status: str = "ok", device: str = "cpu-2core",
            median: float | None = None) -> ReportRow:
        return ReportRow(device, "AMD EPYC", method, "classical", method, 0.6, 0.6, median or p90, p90, 0.1, 0.02, 2.0,
                         None, status)

    mine = "tocsr-onestep (cpu-2core)"
    rows = [row(mine, 27.48, median=26.0), row("srvgg", 9.43, median=9.0), row("srvgg", 1.0, device="other")]
    lat = latency_beside(rows, "cpu-2core", mine, "srvgg")
    assert lat == {"statistic": "p90", "tocsr_ms": 27.48, "baseline_ms": 9.43, "ratio": 27.48 / 9.43,
                   "how": "measured"}
    lead, behind, spans = _interval(0.22, 0.13, 0.29), _interval(-0.23, -0.46, -0.05), _interval(0.01, -0.1, 0.1)
    # a lead bought with three times the milliseconds is a trade: the words give both figures and crown no one
    assert latency_verdict(lead, lat, "srvgg") == "TOC-SR's p90 latency is 2.91x srvgg's (27.48 vs 9.43 ms, measured)"
    assert latency_verdict(behind, lat, "srvgg").endswith(": srvgg is ahead at lower or equal latency")
    assert not latency_verdict(spans, lat, "srvgg").endswith("latency")
    # a predicted row (a roofline: a median, no p90) compares medians, and says both words
    faster = latency_beside([row(mine, 8.5, median=8.0), row("srvgg", None, "predicted", median=9.43)], "cpu-2core",
                            mine, "srvgg")
    assert (faster["statistic"], faster["how"]) == ("median", "predicted")
    assert latency_verdict(lead, faster, "srvgg") == ("TOC-SR's median latency is 0.85x srvgg's (8.00 vs 9.43 ms, "
                                                      "predicted): TOC-SR is ahead at lower or equal latency")
    assert latency_beside([row(mine, 27.48), row("srvgg", None)], "cpu-2core", mine, "srvgg") is None
    # the printed line: the PSNR-Y verdict, then the latencies, then the interpolation's verdict
    h = _headline("lanczos", True) | {"verdict_latency": latency_verdict(behind, lat, "srvgg")}
    (line,) = _printed({"realesrgan": h})
    assert line.endswith("TOC-SR is behind srvgg; TOC-SR's p90 latency is 2.91x srvgg's (27.48 vs 9.43 ms, measured): "
                         "srvgg is ahead at lower or equal latency; no clear difference between TOC-SR and lanczos "
                         "(the interval spans 0)")


def test_the_summary_table_gives_every_degradation_as_the_difference_to_the_best_baseline():
    device = {"latency_how": "measured", "architecture": "a1475d44fdd41b88", "measured_p90_ms": 47.7,
              "teacher_p90_ms": 92.0, "latency_budget_ms": 47.8, "cost_table_within_10pct": 0.9,
              "cost_table_holdout_n": 20, "params_m": 2.49, "teacher_params_m": 2.49, "gmacs": 0.13,
              "teacher_gmacs": 0.13, "budget": "one backbone call",
              "test": {"bicubic": _headline("lanczos", False) | {"best_baseline": None},
                       "realesrgan": _headline("bicubic", True)}}
    buf = io.StringIO()
    print_summary(Console(file=buf, width=1000), {"devices": {"cpu-2core": device}, "report": "r/index.html",
                                                  "wall_s": 60.0, "stages_ran": [], "stages_skipped": []})
    table = buf.getvalue().split("Baselines")[0]
    assert "bicubic: +0.20 [+0.14, +0.26] vs bicubic" in table           # no baseline trained: against bicubic
    assert "realesrgan: -0.26 [-0.46, -0.05] vs srvgg" in table          # the degradation TOC-SR trails on, too
