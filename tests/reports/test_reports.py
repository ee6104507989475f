from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from reports.build import build_report, read_rows, write_rows
from reports.metrics import MetricSuite
from reports.rows import ReportRow
from tocsr.core.imageio import save_png

HOSTILE = "<script>alert('x')</script>"


def row(device="cpu-a", method="bicubic", psnr=25.0, gmacs=0.1, lat=1.0, kind="interpolation"):
    return ReportRow(device_profile=device, device_name="CPU", method=method, kind=kind, arch_key=method,
                     params_m=0.5, gmacs=gmacs, latency_median_ms=lat, latency_p90_ms=lat * 1.1, latency_iqr_ms=0.01,
                     latency_cv=0.02, peak_memory_mib=10.0, energy_mj=None, measurement_status="ok",
                     quality={"bicubic": {"psnr_y": psnr, "ssim_y": 0.8, "lpips": {"unavailable": "weights at /x/y.pth"}}},
                     provenance={"commit": "abc"})


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "demo"
    rows = [row(d, m, p, g, lt, k) for d in ("cpu-a", "cpu-b") for m, p, g, lt, k in (
        ("bicubic", 24.0, 0.0001, 0.05, "interpolation"), ("espcn", 25.5, 0.3, 0.4, "classical"),
        ("rrdb-s", 26.0, 5.0, 8.0, "classical"), ("tocsr-onestep", 26.4, 1.0, 3.0, "one-step"),
        (HOSTILE, 20.0, 2.0, 2.0, "external"))]
    write_rows(rows, run / "eval", {"scale": 4})
    rng = np.random.default_rng(0)
    save_png(run / "eval" / "crops" / "0-ground-truth.png", (rng.random((32, 32, 3)) * 255).astype("uint8"))
    return run


def test_rows_round_trip_as_json_and_csv(run_dir):
    rows, doc = read_rows(run_dir / "eval")
    assert len(rows) == 10 and doc["scale"] == 4 and rows[0] == row("cpu-a", "bicubic", 24.0, 0.0001, 0.05)
    csv_text = (run_dir / "eval" / "rows.csv").read_text()
    assert "bicubic.psnr_y" in csv_text and "unavailable" in csv_text


def test_report_is_self_contained_escaped_and_plots_both_devices(run_dir, tmp_path):
    path = build_report(run_dir, tmp_path / "report")
    page = path.read_text()
    assert HOSTILE not in page and "&lt;script&gt;alert(" in page
    srcs = re.findall(r"<img[^>]+src='([^']+)'", page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page
    assert "Quality vs cost on cpu-a" in page and "Quality vs cost on cpu-b" in page
    assert "weights at /x/y.pth" in page             # the unavailable metric names its path
    assert "<th>ssim_y</th>" in page and "<th>lpips</th>" not in page    # and is not a column of n/a
    assert (tmp_path / "report" / "rows.csv").is_file() and (tmp_path / "report" / "rows.json").is_file()


def test_missing_weights_are_unavailable_not_zero():
    suite = MetricSuite.load(("lpips", "niqe"))
    x = torch.rand(2, 3, 128, 128) * 2 - 1            # NIQE needs at least 96 px blocks
    scores = suite.score(x, x, 4)
    assert scores["psnr_y"] > 60 and scores["ssim_y"] == pytest.approx(1.0)
    if "lpips" in suite.unavailable:
        assert "unavailable" in scores["lpips"] and ".pth" in scores["lpips"]["unavailable"]
    assert isinstance(scores["niqe"], float)        # NIQE's parameters ship with the suite
    small = suite.score(x[..., :64, :64], x[..., :64, :64], 4)
    assert "unavailable" in small["niqe"]          # too small for NIQE: said so, not a crash or a zero


def test_report_cli_writes_index(run_dir, tmp_path):
    from tocsr.app.cli import main

    with pytest.raises(SystemExit) as code:
        main(["report", str(run_dir), "--out", str(tmp_path / "r2")])
    assert code.value.code == 0 and (tmp_path / "r2" / "index.html").is_file()
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["rows"] == 10


def test_report_rows_paired_with_a_reference_are_put_at_one_speed(cpu_profile):
    from bench.workloads import Workload
    from reports.evaluate import SRMethod, report_rows

    small = torch.nn.Conv2d(3, 48, 3, padding=1)
    big = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(12)])
    methods = [SRMethod("small", "classical", torch.nn.Sequential(small, torch.nn.PixelShuffle(4)), True),
               SRMethod("big", "classical", torch.nn.Sequential(big, torch.nn.Upsample(scale_factor=4)), True)]
    quality = {"small": {}, "big": {}}
    ref = Workload("reference", torch.nn.Conv2d(3, 64, 3, padding=1), (torch.rand(1, 3, 64, 64),))
    rows = report_rows(methods, quality, [cpu_profile], reference=lambda p: ref)
    speeds = {r.latency_median_ms / r.latency_vs_reference for r in rows}
    assert len(rows) == 2 and max(speeds) == pytest.approx(min(speeds))        # one speed for the profile
    assert all("paired with reference" in r.provenance["latency"] for r in rows)
    if torch.get_num_threads() > 1:      # each paired row says how many cores its timing had (bench.cores)
        cores = [r.provenance["effective_cores"] for r in rows]
        assert all(0 < c["min"] <= c["max"] and c["threads"] == torch.get_num_threads() and c["probes"] >= 2
                   for c in cores)
    alone = report_rows(methods, quality, [cpu_profile])
    assert all(r.latency_vs_reference is None and r.provenance["latency"] == "measured alone" for r in alone)
    assert all(r.provenance["effective_cores"] is None for r in alone)


def test_report_rows_are_stated_at_the_speed_the_search_chose_at(cpu_profile):
    # The eval stage ran the teacher UNet far slower than the search had minutes before: stated at the eval's speed,
    # the chosen pipeline's row disagreed with the search's own figure of it and with its budget by as much.
    from bench.workloads import Workload
    from reports.evaluate import SRMethod, report_rows

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))
    ref = Workload("reference", torch.nn.Conv2d(3, 64, 3, padding=1), (torch.rand(1, 3, 64, 64),))
    decision_ms = 1234.5
    row, = report_rows([SRMethod("net", "classical", net, True)], {"net": {}}, [cpu_profile], reference=lambda p: ref,
                       decision_speeds_ms={cpu_profile.name: decision_ms})
    assert row.latency_median_ms == pytest.approx(row.latency_vs_reference * decision_ms)
    speed = row.provenance["latency_speed"]
    assert speed["reference_ms"] == decision_ms and speed["from"] == "search decision"
    assert 0 < speed["reference_ms_measured"] < decision_ms          # the measured speed is kept beside it
    assert "decision speed" in row.provenance["latency"]
    other, = report_rows([SRMethod("net", "classical", net, True)], {"net": {}}, [cpu_profile], reference=lambda p: ref,
                         decision_speeds_ms={"another-device": decision_ms})
    assert other.provenance["latency_speed"]["from"] == "these rows"
    assert other.latency_median_ms == pytest.approx(other.latency_vs_reference
                                                    * other.provenance["latency_speed"]["reference_ms"])


def test_a_tocsr_row_is_timed_beside_the_teacher_as_shipped_and_judged_on_its_share_as_the_search_judged(cpu_profile):
    # The search judged the choice on its share of the teacher as shipped, with the cost model's figure for that
    # pipeline: the report's row of the model as trained must be judged the same way, or its milliseconds against the
    # budget carry the model's error on the teacher as shipped (off by a fifth in one run).
    from bench.workloads import Workload
    from reports.evaluate import SRMethod, report_rows
    from reports.rows import tocsr_method_name
    from search.selection import ShippedYardstick

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1),
                               torch.nn.Conv2d(64, 48, 3, padding=1), torch.nn.PixelShuffle(4))

    class Thrice(torch.nn.Module):         # the teacher as shipped: three of the student's calls
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x) + self.body(x) + self.body(x)

    ours = tocsr_method_name(cpu_profile.name)
    methods = [SRMethod(ours, "one-step", body, False), SRMethod("srvgg", "classical", body, False)]
    unet = Workload("reference", torch.nn.Conv2d(3, 64, 3, padding=1), (torch.rand(1, 3, 64, 64),))
    side = cpu_profile.resolution.input_px
    shipped = Workload("teacher as shipped", Thrice(), (torch.rand(1, 3, side, side) * 2 - 1,))
    # the model puts the teacher as shipped at 2 UNets (median) and its p90 at 25 ms when the UNet takes 10
    yardstick = ShippedYardstick(reference_ms=10.0, shipped_ratio_predicted=2.0, teacher_at_ms=25.0, percentile=90)
    rows = report_rows(methods, {ours: {}, "srvgg": {}}, [cpu_profile], reference=lambda p: unet,
                       shipped=lambda p: shipped, yardsticks={cpu_profile.name: yardstick})
    mine, theirs = rows
    assert theirs.latency_share_of_shipped is None and "beside_teacher_as_shipped" not in theirs.provenance
    beside = mine.provenance["beside_teacher_as_shipped"]
    # its p90 in medians of the teacher as shipped, over the model's p90 / median of that pipeline (1.25)
    assert mine.latency_share_of_shipped == pytest.approx(beside["paired"]["ratio_p90"] / 1.25)
    assert 0.2 < mine.latency_share_of_shipped < 0.4          # a third of the teacher as shipped
    assert beside["ms_at_decision"] == pytest.approx(25.0 * mine.latency_share_of_shipped)
    assert beside["yardstick"]["kind"] == "tocsr.shipped_yardstick" and beside["status"] in ("ok", "unstable")
    # the model's figure for the teacher as shipped cancels from the share: twice as high a figure, the same share
    # up to timing noise; another device's yardstick, or none, and the row is not timed beside it
    doubled = dataclasses.replace(yardstick, shipped_ratio_predicted=4.0, teacher_at_ms=50.0)
    again, _ = report_rows(methods, {ours: {}, "srvgg": {}}, [cpu_profile], reference=lambda p: unet,
                           shipped=lambda p: shipped, yardsticks={cpu_profile.name: doubled})
    assert again.latency_share_of_shipped == pytest.approx(
        again.provenance["beside_teacher_as_shipped"]["paired"]["ratio_p90"] / 1.25)
    other, _ = report_rows(methods, {ours: {}, "srvgg": {}}, [cpu_profile], reference=lambda p: unet,
                           shipped=lambda p: shipped, yardsticks={"another-device": yardstick})
    assert other.latency_share_of_shipped is None


def test_a_multi_step_method_is_timed_with_few_samples_and_says_so(cpu_profile):
    # The SR teacher's one call is hundreds of UNet calls: under the profile's full timing its latency alone
    # took minutes of the main job. It gets two paired samples per round and one attempt; others are unchanged.
    from bench.profile import replace
    from bench.workloads import Workload
    from reports.evaluate import SRMethod, report_rows

    class Counted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.calls = torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4)), 0

        def forward(self, x):
            self.calls += 1
            return self.net(x)

    profile = replace(cpu_profile, timing={**cpu_profile.to_dict()["timing"], "repeats": 40, "warmup_max_iters": 30,
                                           "max_cv": 0.001, "max_retries": 2})
    one, multi = Counted(), Counted()
    methods = [SRMethod("one", "one-step", one, True), SRMethod("chain", "multi-step", multi, True)]
    ref = Workload("reference", torch.nn.Conv2d(3, 16, 3, padding=1), (torch.rand(1, 3, 32, 32),))
    rows = {r.method: r for r in report_rows(methods, {"one": {}, "chain": {}}, [profile], reference=lambda p: ref)}
    rounds = profile.timing.paired_rounds
    # every attempt's samples pooled (a max_cv nothing meets makes the full policy retry twice)
    assert rows["one"].provenance["latency_samples"] == 3 * 40 and "timing" not in rows["one"].provenance
    assert rows["chain"].provenance["latency_samples"] == 2 * rounds
    assert "few samples" in rows["chain"].provenance["timing"]
    # one attempt and a short warm-up (a max_cv nothing meets makes the full policy retry twice)
    assert 3 * multi.calls < one.calls
    assert rows["chain"].provenance["profile_sha256"] == profile.sha256     # the row names the profile as given


def test_the_baselines_budget_says_whether_it_holds_the_sr_teachers():
    """The report's budget line follows SRModelInfo.training_s: the SR teachers are in it only where the student
    learns from them."""
    import dataclasses

    from reports.comparison import budget_unit
    from tocsr.core.space import ArchSpec
    from tocsr.core.sr.config import SRConfig
    from tocsr.core.sr.info import SRModelInfo

    info = SRModelInfo(scale=4, arch=ArchSpec.from_dict({"space_id": "s", "choices": {}}), degradations=("bicubic",),
                       config=SRConfig(),
                       quality={}, timings_s={}, val_images=(), teacher_folder="t", device="cpu", processes=1)
    assert "(pair cache, SR teachers, one-step student" in budget_unit(info)
    without = budget_unit(dataclasses.replace(info, config=SRConfig(w_teacher=0.0)))
    assert "not the SR teachers" in without and "SR teachers, one-step" not in without
    none = budget_unit(dataclasses.replace(info, config=SRConfig(w_teacher=0.0, teacher_steps=0)))
    assert "trains no SR teacher" in none and "not the SR teachers" not in none


def test_a_routed_method_decides_once_per_whole_image_and_runs_told_that_degradation(monkeypatch):
    """reports.comparison.eval_method on a routed model (tocsr.core.sr.router.RoutedSR): the router reads the whole
    LR image (not a tile), its answer is recorded, and the told students run with that answer on every tile,
    whatever degradation the evaluation would tell a told method."""
    from reports import comparison
    from reports.evaluate import SRMethod

    class Told(torch.nn.Module):                 # x4 nearest, brightness set by the degradation it is told
        takes_degradation = True

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[str] = []

        def forward(self, x, degradation):
            self.seen.append(degradation)
            level = {"bicubic": -0.5, "realesrgan": 0.5}[degradation]
            return torch.full((x.shape[0], 3, x.shape[2] * 4, x.shape[3] * 4), level) + 0 * self.w

    class Routed(torch.nn.Module):               # routes by the image's mean: a whole-image decision
        def __init__(self):
            super().__init__()
            self.model, self.sizes = Told(), []

        def route(self, lr):
            self.sizes.append(tuple(lr.shape[2:]))
            return ["realesrgan" if lr.mean() > 0 else "bicubic"]

        def probabilities(self, lr):
            p = 0.9 if lr.mean() > 0 else 0.3
            return [{"bicubic": 1 - p, "realesrgan": p}]

    monkeypatch.setattr(comparison, "RoutedSR", Routed)
    routed, decisions, sure = Routed(), [], []
    method = comparison.eval_method(SRMethod("routed", "one-step", routed, False), "bicubic", 4, decisions, sure)
    bright, dark = np.full((200, 150, 3), 220, np.uint8), np.full((40, 30, 3), 20, np.uint8)
    out_bright, out_dark = method.run(bright), method.run(dark)
    assert decisions == ["realesrgan", "bicubic"] and routed.sizes == [(200, 150), (40, 30)]
    # how sure the router was of each whole image, in the same order
    assert sure == [{"bicubic": pytest.approx(0.1), "realesrgan": 0.9}, {"bicubic": 0.7, "realesrgan": 0.3}]
    assert out_bright.shape == (800, 600, 3) and (out_bright == 191).all() and (out_dark == 64).all()
    # the big image ran in several tiles, every one told the router's answer
    told = routed.model
    assert told.seen.count("realesrgan") > 1 and set(told.seen) == {"realesrgan", "bicubic"}


def test_the_report_says_what_a_wrong_route_costs_where_the_router_weighed_it():
    from reports.build import _routing

    decided = {"photographs": 4, "routed_right": 3, "decisions": ["bicubic"] * 3 + ["realesrgan"]}
    weighed = _routing({"m": {"bicubic": decided | {"misroute_db": {"realesrgan": 2.3}}}})
    assert "3 of 4 bicubic photographs (sent to the realesrgan student they would lose 2.30 dB PSNR-Y" in weighed
    assert "lose" not in _routing({"m": {"bicubic": decided | {"misroute_db": None}}})
    # how sure the router was of the truth: the range over the photographs, where recorded
    sure = decided | {"probabilities": [{"bicubic": p, "realesrgan": 1 - p} for p in (0.9, 0.62, 0.97, 0.31)]}
    assert "3 of 4 bicubic photographs, the router&#x27;s P(bicubic) 0.31-0.97" in _routing({"m": {"bicubic": sure}})
    assert "P(" not in weighed
    assert _routing(None) == ""


def test_a_one_step_rows_parameters_are_those_its_call_runs_not_the_whole_autoencoder_it_holds(cpu_profile):
    """A one-step SR model with the LR encoder and tiny decoder still holds the autoencoder (its latent statistics,
    the SR teachers'), but its call never runs the KL encoder or decoder: the row counts what the call runs (the
    student and the two parts), as the search's pipeline cost does, and so does a routed call (plus the router)."""
    from reports.evaluate import SRMethod, report_rows
    from tocsr.core.models.autoencoder import build_autoencoder_from_preset
    from tocsr.core.models.parts import LREncoder, TinyDecoder
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.router import DegradationRouter, RouteThenRun

    def n(m):
        return sum(p.numel() for p in m.parameters())

    class Student(torch.nn.Conv2d):          # a blind student: latent -> latent
        degradations = ()

        def for_degradation(self, degradation):
            return self

    torch.manual_seed(0)
    ae = build_autoencoder_from_preset("tiny").eval()
    student = Student(16, 16, 3, padding=1)
    decoder, encoder = TinyDecoder(widths=(8, 8, 8)).eval(), LREncoder(scale=4, width=8, blocks=1).eval()
    one = OneStepSR(ae, student, 4, decoder, encoder).eval()
    in_call = n(student) + n(decoder) + n(encoder)
    assert one.params_in_call() == in_call < n(one)
    router = DegradationRouter().eval()
    routed = RouteThenRun(router, one)
    rows = report_rows([SRMethod("one", "one-step", one, False, cost_module=one),
                        SRMethod("routed", "one-step", one, False, cost_module=routed)], {"one": {}, "routed": {}},
                       [cpu_profile])
    by = {r.method: r for r in rows}
    assert by["one"].params_m == pytest.approx(in_call / 1e6)
    assert by["routed"].params_m == pytest.approx((in_call + n(router)) / 1e6)
    plain = report_rows([SRMethod("conv", "classical", student, False)], {"conv": {}}, [cpu_profile])
    assert plain[0].params_m == pytest.approx(n(student) / 1e6)          # a module without params_in_call: all it holds


def test_each_table_of_rows_says_what_the_statuses_it_shows_mean():
    from dataclasses import replace

    from reports.html import rows_table

    rows = [row(), replace(row(method="rrdb-s"), measurement_status="unstable")]
    table = rows_table(rows, "bicubic", ["psnr_y"])
    legend = table.split("</table>")[1]
    assert "<b>ok</b>, the spread of its calls" in legend and "<b>unstable</b>, the spread of its calls stayed" in legend
    assert "predicted" not in legend and "error" not in legend          # only the statuses the table shows
    assert "<b>unstable</b>" not in rows_table(rows[:1], "bicubic", ["psnr_y"])


def _scored(method: str, gain: tuple[float, float, float] | None, p90: float, device: str = "cpu-a") -> ReportRow:
    """A row scored on two degradations, with its paired difference to bicubic where `gain` is given."""
    q = {"psnr_y": 25.0 + (gain[0] if gain else 0.0), "psnr_y_interval": [22.0, 28.0]}
    if gain is not None:
        q["psnr_y_minus_bicubic"] = {"mean": gain[0], "low": gain[1], "high": gain[2]}
    r = row(device, method, lat=p90 / 1.1)
    return ReportRow(**{**r.__dict__, "quality": {"bicubic": q, "realesrgan": dict(q)}})


def test_quality_against_cost_is_drawn_as_paired_differences_with_their_intervals_where_every_row_has_one():
    from reports.plots import quality_points

    rows = [_scored("bicubic", None, 0.3), _scored("srvgg", (0.38, 0.20, 0.57), 3.9),
            _scored("tocsr", (-0.05, -0.10, 0.00), 9.3), _scored("tocsr", (0.9, 0.8, 1.0), 1.0, device="cpu-b")]
    pts, paired = quality_points(rows, "cpu-a", "latency_p90_ms", degradation="realesrgan")
    assert paired
    got = {m: (round(c, 2), q, iv) for c, q, m, iv in pts}
    # bicubic is the reference: 0 by definition; the others at their paired mean, with the paired interval
    assert got == {"bicubic": (0.3, 0.0, (0.0, 0.0)), "srvgg": (3.9, 0.38, (0.20, 0.57)),
                   "tocsr": (9.3, -0.05, (-0.10, 0.00))}
    # a row without its paired difference: every point falls back to the means, and claims no interval
    pts, paired = quality_points(rows[:1] + [_scored("espcn", None, 2.0)], "cpu-a", "gmacs")
    assert not paired and all(iv is None for *_, iv in pts) and {q for _, q, _, _ in pts} == {25.0}


def test_the_report_plots_quality_against_cost_for_every_degradation_scored(tmp_path):
    run = tmp_path / "run"
    write_rows([_scored("bicubic", None, 0.3), _scored("srvgg", (0.38, 0.2, 0.57), 3.9)], run / "eval", {"scale": 4})
    page = build_report(run, tmp_path / "report").read_text()
    for deg in ("bicubic", "realesrgan"):
        for cost in ("gmacs", "latency_p90_ms"):
            assert f"alt='cpu-a {deg} quality vs {cost}'" in page


def test_a_predicted_device_plots_its_median_latency_where_a_roofline_gives_no_p90(tmp_path):
    from dataclasses import replace

    run = tmp_path / "run"
    predicted = [replace(_scored(m, g, 1.0, device="orin"), latency_p90_ms=None, measurement_status="predicted")
                 for m, g in (("bicubic", None), ("srvgg", (0.38, 0.2, 0.57)))]
    write_rows([_scored("bicubic", None, 0.3), _scored("srvgg", (0.38, 0.2, 0.57), 3.9), *predicted], run / "eval",
               {"scale": 4})
    page = build_report(run, tmp_path / "report").read_text()
    assert "alt='cpu-a bicubic quality vs latency_p90_ms'" in page              # measured: the budget's p90
    assert "alt='orin bicubic quality vs latency_median_ms'" in page            # predicted: one figure, the median
    assert "no data" not in page


def test_the_report_says_the_chosen_models_two_timings_with_the_cores_each_had():
    from types import SimpleNamespace

    from reports.build import _timed_twice

    def said(search_cores, row_cores, how="measured", decision=None, share=None):
        chosen = SimpleNamespace(how=how, measured_latency_ms=10.0, effective_cores=search_cores,
                                 teacher_latency_ms=40.0, latency_vs_teacher=0.25)
        r = SimpleNamespace(profile_name="cpu-a", chosen=chosen, decision=decision or {}, latency_budget_ms=14.8)
        mine = dataclasses.replace(row("cpu-a", "tocsr-onestep (cpu-a, x)", 26.4, 1.0, 10.0, "one-step"),
                                   provenance={"effective_cores": row_cores,
                                               "beside_teacher_as_shipped": {"effective_cores": busy}},
                                   latency_share_of_shipped=share)
        other = row("cpu-b", "tocsr-onestep (cpu-b, x)", 26.4, 1.0, 20.0, "one-step")
        return _timed_twice(r, [other, mine])

    idle = {"min": 1.95, "max": 2.0, "threads": 2}
    busy = {"min": 1.1, "max": 1.9, "threads": 2}
    both = said(idle, idle)
    assert both == ("cpu-a: the chosen model timed twice, minutes apart: the search's deciding reading p90 10.00 ms, "
                    "with 1.9-2.0 of 2 cores; the report's row p90 11.00 ms, with 1.9-2.0 of 2 cores (+10.0%)")
    assert said(idle, busy).endswith("the report's row p90 11.00 ms, with 1.1-1.9 of 2 cores (+10.0%): one of them "
                                     "had fewer cores to itself, which moves a pipeline's ratio to its reference")
    assert "fewer cores" in said(busy, idle)
    assert said(None, None).endswith("reading p90 10.00 ms; the report's row p90 11.00 ms (+10.0%)")   # not probed
    assert said(idle, idle, how="predicted") == ""
    # judged beside the teacher as shipped, and the row timed beside it again: compared as shares, with the cores of
    # that timing; a row of an eval stage from before (no share) is compared in milliseconds
    beside = {"judged_against": "teacher as shipped"}
    assert said(idle, idle, decision=beside, share=0.275) == (
        "cpu-a: the chosen model timed twice beside the teacher as shipped, minutes apart: the search's deciding "
        "reading p90 0.250 of it, with 1.9-2.0 of 2 cores; the report's row 0.275, with 1.1-1.9 of 2 cores (+10.0%); "
        "the budget 0.370: one of them had fewer cores to itself, which moves a pipeline's ratio to its reference")
    assert said(idle, idle, decision=beside).endswith("the report's row p90 11.00 ms, with 1.9-2.0 of 2 cores (+10.0%)")


def test_the_report_says_which_cpu_allocator_state_the_search_timed_in():
    from types import SimpleNamespace

    from reports.build import _allocator_line

    state = {"allocator": "glibc 2.36", "mmap_threshold_bytes": 32 * 2**20, "trim_threshold_bytes": 64 * 2**20,
             "note": "n", "kind": "tocsr.bench.allocator_state", "version": 1}

    def said(env, how="measured", kind="cpu"):
        return _allocator_line(SimpleNamespace(profile_name="cpu-a", chosen=SimpleNamespace(how=how),
                                               environment=env, profile={"device": {"kind": kind}}))

    assert said({"cpu_allocator": state}) == ("cpu-a: CPU timings taken with the glibc 2.36 malloc, mmap threshold "
                                              "32 MiB, trim threshold 64 MiB (set before timing)")
    unset = {**state, "mmap_threshold_bytes": None, "trim_threshold_bytes": None, "note": "not glibc"}
    assert said({"cpu_allocator": unset}) == ("cpu-a: CPU timings taken with the glibc 2.36 allocator in whatever state "
                                              "the process had reached (not glibc)")
    # a search from before the state was recorded, a predicted choice, a GPU: nothing to say
    assert said({}) == said({"cpu_allocator": state}, how="predicted") == said({"cpu_allocator": state}, kind="cuda") == ""
