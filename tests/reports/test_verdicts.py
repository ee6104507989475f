"""reports.verdicts and reports.intervals: a verdict says only what its interval supports."""

from reports.intervals import Interval
from reports.verdicts import interval_text, verdict


def _d(mean: float, low: float, high: float) -> dict[str, float]:
    return {"mean": mean, "low": low, "high": high}


def test_a_verdict_follows_the_interval_not_the_mean():
    assert verdict(_d(0.2, 0.05, 0.35), "TOC-SR", "srvgg") == "TOC-SR leads srvgg"
    assert verdict(_d(-0.2, -0.35, -0.05), "TOC-SR", "srvgg") == "TOC-SR is behind srvgg"
    # a mean on either side of 0 whose interval spans it supports neither word
    for mean in (-0.2, 0.2):
        assert verdict(_d(mean, -0.3, 0.3), "TOC-SR", "srvgg") == ("no clear difference between TOC-SR and srvgg "
                                                                   "(the interval spans 0)")
    assert interval_text(_d(0.43, 0.29, 0.57)) == "+0.43 [+0.29, +0.57]"


def test_an_interval_excludes_zero_on_either_side_only():
    assert Interval(0.3, 0.1, 0.5, 7).excludes_zero() and Interval(-0.3, -0.5, -0.1, 7).excludes_zero()
    assert not Interval(0.1, -0.1, 0.3, 7).excludes_zero() and not Interval(-0.1, -0.3, 0.1, 7).excludes_zero()


def test_a_device_reads_its_own_tocsr_model_not_one_whose_profile_name_starts_with_its_name(tmp_path):
    """cpu-2core and cpu-2core-tight in one run: each device's headline and row are its own student's."""
    import dataclasses

    from reports.protocol import EvalResult
    from reports.rows import ReportRow, tocsr_method_name, tocsr_row
    from reports.verdicts import test_headline

    tight, plain = tocsr_method_name("cpu-2core-tight", "routed"), tocsr_method_name("cpu-2core", "routed")
    base = [26.0, 27.0, 25.0, 28.0, 26.5, 27.5]
    per_image = {"bicubic": base, tight: [b - 1.0 for b in base], plain: [b + 1.0 for b in base]}
    kinds = {"bicubic": "interpolation", tight: "one-step", plain: "one-step"}
    EvalResult(scale=4, lr_source="bicubic", seed=0, hr_dir="HR", lr_dir=None,
               images=tuple(f"{i}.png" for i in range(len(base))),
               methods=tuple({"name": k, "kind": kinds[k], "source": "test"} for k in per_image),
               per_image={k: {"psnr_y": v} for k, v in per_image.items()}).save(tmp_path / "eval" / "test-bicubic", {})
    h = test_headline(tmp_path, "cpu-2core")["bicubic"]
    assert h["tocsr"] == plain and h["verdict"].startswith("TOC-SR leads bicubic")

    row = ReportRow("cpu-2core", "cpu", tight, "one-step", "k", 0.5, 0.1, 9.0, 10.0, 0.1, 0.01, 1.0, None, "ok")
    rows = [row, dataclasses.replace(row, method="bicubic"), dataclasses.replace(row, method=plain, latency_p90_ms=20.0)]
    assert tocsr_row(rows, "cpu-2core").method == plain
    assert tocsr_row(rows, "cpu-2core-tight") is None                 # a row of another profile is not this one's
    assert tocsr_method_name("cpu-2core") == "tocsr-onestep (cpu-2core)"
