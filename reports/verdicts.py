"""What the test photographs support, in words a user acts on: a paired difference and its interval as a verdict
(lead, behind, or no clear difference), and that verdict beside the two methods' latencies on the device, where a
lead bought with more milliseconds is a trade and is said to be one. The run's summary and its report both say
these, so they are defined once, here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.rows import ReportRow, is_tocsr_method


def verdict(diff: dict[str, float], ours: str, theirs: str) -> str:
    """A paired difference (ours minus theirs) in words that say only what its interval supports."""
    if diff["low"] > 0:
        return f"{ours} leads {theirs}"
    if diff["high"] < 0:
        return f"{ours} is behind {theirs}"
    return f"no clear difference between {ours} and {theirs} (the interval spans 0)"


def latency_beside(rows: list[ReportRow], device: str, mine: str, theirs: str) -> dict[str, Any] | None:
    """The latencies of two methods' report rows on one device (reports.evaluate.report_rows: the rows of a profile
    are stated at one speed of the machine, so their ratio is not moved by drift between the two timings): their p90
    where both were measured, their medians where a row is predicted (a roofline gives one figure, no spread), and
    which it is; None where either row has no latency."""
    by_name = {r.method: r for r in rows if r.device_profile == device}
    a, b = by_name.get(mine), by_name.get(theirs)
    if a is None or b is None:
        return None
    stat = "p90" if a.latency_p90_ms and b.latency_p90_ms else "median"
    ours, other = (a.latency_p90_ms, b.latency_p90_ms) if stat == "p90" else (a.latency_median_ms, b.latency_median_ms)
    if not ours or not other:
        return None
    predicted = "predicted" in (a.measurement_status, b.measurement_status)
    return {"statistic": stat, "tocsr_ms": ours, "baseline_ms": other, "ratio": ours / other,
            "how": "predicted" if predicted else "measured"}


def latency_verdict(diff: dict[str, float], lat: dict[str, Any], theirs: str) -> str:
    """What a quality verdict (ours minus theirs, `diff`) means at the two methods' latencies: a lead bought with
    more milliseconds is a trade, not a win, and says so; where one side is both better and no slower, that is said."""
    words = (f"TOC-SR's {lat['statistic']} latency is {lat['ratio']:.2f}x {theirs}'s ({lat['tocsr_ms']:.2f} vs "
             f"{lat['baseline_ms']:.2f} ms, {lat['how']})")
    if diff["low"] > 0 and lat["ratio"] <= 1:
        return words + ": TOC-SR is ahead at lower or equal latency"
    if diff["high"] < 0 and lat["ratio"] >= 1:
        return words + f": {theirs} is ahead at lower or equal latency"
    return words


def test_headline(out: Path, device: str, rows: list[ReportRow] | None = None) -> dict[str, Any]:
    """Per degradation, on the test photographs: the device's TOC-SR student, the best baseline and bicubic,
    with their intervals, the paired differences between them, and what those differences support; with the eval
    stage's report rows (`rows`), the latencies of TOC-SR and the best baseline beside that verdict."""
    from reports.protocol import EvalResult

    headline = {}
    for folder in sorted((out / "eval").glob("test-*")):
        res = EvalResult.load(folder)
        mine = next((m["name"] for m in res.methods if is_tocsr_method(m["name"], device)), None)
        if mine is None:
            continue
        best = res.best_baseline()
        interp = res.best_interpolation()
        entry: dict[str, Any] = {"images": len(res.images), "tocsr": mine,
                                 "psnr_y": {n: res.interval(n, "psnr_y").to_dict()
                                            for n in (mine, best, "bicubic", interp) if n in res.per_image},
                                 "best_baseline": best, "best_interpolation": interp,
                                 "tocsr_minus_bicubic": res.paired(mine, "bicubic", "psnr_y").to_dict(),
                                 "tocsr_minus_best_interpolation": res.paired(mine, interp, "psnr_y").to_dict(),
                                 "verdict_interpolation": verdict(res.paired(mine, interp, "psnr_y").to_dict(),
                                                                  "TOC-SR", interp)}
        if best is not None:
            entry["tocsr_minus_best_baseline"] = res.paired(mine, best, "psnr_y").to_dict()
            entry["best_baseline_minus_bicubic"] = res.paired(best, "bicubic", "psnr_y").to_dict()
            entry["verdict"] = verdict(entry["tocsr_minus_best_baseline"], "TOC-SR", best)
            lat = latency_beside(rows or [], device, mine, best)
            if lat is not None:
                entry["latency_ms"] = lat
                entry["verdict_latency"] = latency_verdict(entry["tocsr_minus_best_baseline"], lat, best)
        else:
            entry["verdict"] = verdict(entry["tocsr_minus_bicubic"], "TOC-SR", "bicubic")
        headline[res.lr_source] = entry
    return headline


def interval_text(d: dict[str, float], sign: str = "+") -> str:
    """"+0.43 [+0.29, +0.57]": a mean and its interval."""
    return f"{d['mean']:{sign}.2f} [{d['low']:{sign}.2f}, {d['high']:{sign}.2f}]"


def verdict_line(h: dict[str, Any]) -> str:
    """One degradation's entry of `test_headline` in one line: the paired differences in dB with their intervals,
    then what they support, the latencies beside the verdict against the best baseline."""
    line = f"TOC-SR minus bicubic {interval_text(h['tocsr_minus_bicubic'])} dB"
    if h.get("best_baseline"):
        line += (f"; minus {h['best_baseline']} {interval_text(h['tocsr_minus_best_baseline'])} dB; "
                 f"{h['best_baseline']} minus bicubic {interval_text(h['best_baseline_minus_bicubic'])} dB")
    if h["best_interpolation"] != "bicubic":
        line += f"; TOC-SR minus {h['best_interpolation']} {interval_text(h['tocsr_minus_best_interpolation'])} dB"
    verdicts = [h[k] for k in ("verdict", "verdict_latency", "verdict_interpolation") if h.get(k)]
    return line + (f": {'; '.join(verdicts)}" if verdicts else "")
