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
