"""Figures of a report, returned as PNG bytes (the HTML inlines them)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reports.rows import ReportRow  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (cost, quality) points: lower cost, higher quality."""
    front, best = [], float("-inf")
    for c, q in sorted(points, key=lambda p: (p[0], -p[1])):
        if q > best:
            front.append((c, q))
            best = q
    return front


def _gain(r: ReportRow, degradation: str, metric: str, ref: str) -> tuple[float, float, float] | None:
    """(mean, low, high) of the row's `metric` minus `ref`'s on the same photographs (reports.comparison's paired
    difference and its interval), (0, 0, 0) for `ref` itself, None where the row has none."""
    if r.method == ref:
        return 0.0, 0.0, 0.0
    d = r.quality.get(degradation, {}).get(f"{metric}_minus_{ref}")
    return (d["mean"], d["low"], d["high"]) if isinstance(d, dict) else None


def quality_points(rows: list[ReportRow], device: str, cost: str, metric: str = "psnr_y",
                   degradation: str = "bicubic", ref: str = "bicubic") -> tuple[list[tuple], bool]:
    """One device's methods as (cost, quality, method, (low, high) or None), and whether quality is paired. Where
    every row has its paired difference to `ref` on the same photographs, the points are those differences with
    their 95% intervals: the interval of a method's own mean spans the photographs' spread (several dB) and would
    hide differences the paired one resolves. Otherwise the means, without intervals."""
    mine = [r for r in rows if r.device_profile == device and getattr(r, cost) is not None]
    gains = [_gain(r, degradation, metric, ref) for r in mine]
    if mine and all(g is not None for g in gains):
        return [(getattr(r, cost), g[0], r.method, (g[1], g[2])) for r, g in zip(mine, gains, strict=True)], True
    pts = [(getattr(r, cost), r.metric(degradation, metric), r.method, None) for r in mine]
    return [p for p in pts if p[1] is not None], False


def quality_vs_cost(rows: list[ReportRow], device: str, cost: str, metric: str = "psnr_y",
                    degradation: str = "bicubic", ref: str = "bicubic") -> bytes | None:
    """quality_points drawn against cost on a log axis, with the Pareto front through them."""
    pts, paired = quality_points(rows, device, cost, metric, degradation, ref)
    if not pts:
        return None
    # Interpolation costs no MACs: draw it at a floor a decade below the cheapest network (log axis).
    positive = [c for c, _, _, _ in pts if c > 0]
    floor = min(positive) / 10 if positive else 1e-4
    pts = [(c if c > 0 else floor, q, m + (" (0)" if c <= 0 else ""), iv) for c, q, m, iv in pts]
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    for c, q, method, iv in sorted(pts, key=lambda p: p[2]):
        bar = None if iv is None else [[q - iv[0]], [iv[1] - q]]
        ax.errorbar([c], [q], yerr=bar, fmt="o", ms=6, capsize=3, label=method, zorder=3)
    front = pareto([(c, q) for c, q, _, _ in pts])
    ax.plot([c for c, _ in front], [q for _, q in front], "k--", lw=1, label="Pareto front", zorder=2)
    ax.set_xscale("log")
    predicted = cost != "gmacs" and any(r.measurement_status == "predicted" for r in rows if r.device_profile == device)
    ax.set_xlabel({"gmacs": "GMACs per image", "latency_median_ms": "latency, median (ms)",
                   "latency_p90_ms": "latency, p90 (ms; the statistic of the budget)"}.get(cost, cost)
                  + (", PREDICTED (roofline, the device is not attached)" if predicted else ", measured"
                     if cost != "gmacs" else ""))
    unit = " (dB)" if "psnr" in metric else ""
    ax.set_ylabel(f"{metric} minus {ref}, paired{unit}" if paired else f"{metric}{unit}")
    ax.set_title(f"{device}, {degradation} degradation: quality vs {'GMACs' if cost == 'gmacs' else 'latency'}"
                 + (" [95% interval]" if paired else ""))
    ax.grid(alpha=0.3, which="both")
    # Outside the axes: inside, it hid the very points users look for (the compact models sit lower right).
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _png(fig)


def trend(series: dict[str, list[tuple[str, float, float]]], title: str, flagged: set[str],
          ylabel: str = "median latency (ms)", log: bool = True) -> bytes:
    """series: name -> [(night label, value, spread)]; flagged names drawn bold red."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, pts in sorted(series.items()):
        xs = list(range(len(pts)))
        ys = [p[1] for p in pts]
        err = [p[2] for p in pts]
        style = {"color": "red", "lw": 2.2} if name in flagged else {"lw": 1}
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, capsize=2, label=name + (" (regressed)" if name in flagged else ""),
                    **style)
    labels = max(series.values(), key=len) if series else []
    ax.set_xticks(range(len(labels)), [p[0] for p in labels], rotation=30, fontsize=7)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def paired_differences(diffs: dict[str, tuple[float, float, float]], reference: str, metric: str) -> bytes | None:
    """One horizontal bar per method: its mean per-image difference to `reference` with the 95% interval."""
    if not diffs:
        return None
    names = list(diffs)
    means = [diffs[n][0] for n in names]
    err = [[diffs[n][0] - diffs[n][1] for n in names], [diffs[n][2] - diffs[n][0] for n in names]]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(names)))
    colors = ["#2a7" if diffs[n][1] > 0 else "#c44" if diffs[n][2] < 0 else "#999" for n in names]
    ax.barh(names, means, xerr=err, color=colors, capsize=3, zorder=3)
    ax.axvline(0, color="k", lw=1)
    ax.set_xlabel(f"{metric} minus {reference}, per image (mean, 95% bootstrap interval)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def proxy_vs_samples(check) -> bytes | None:
    """A search.proxy_check.ProxyCheck: each proxy (a row) against the two sample-level measures (columns), one
    point per candidate, titled with Spearman over all candidates and over the upper half by that proxy."""
    pts = [r for r in check.candidates if r.get("paired_error") is not None and r.get("spectrum_kid") is not None]
    if not pts:
        return None
    rows = len(check.proxies)
    fig, axes = plt.subplots(rows, 2, figsize=(10.5, 4.0 * rows), squeeze=False)
    for i, name in enumerate(check.proxies):
        a = check.agreement[name]
        for ax, key, label in ((axes[i][0], "paired", "paired sample error vs teacher"),
                               (axes[i][1], "kid", "spectrum KID vs teacher's samples")):
            col = "paired_error" if key == "paired" else "spectrum_kid"
            sc = ax.scatter([max(r[f"proxy:{name}"] or 1e-7, 1e-7) for r in pts], [r[col] for r in pts],
                            c=[r["replaced"] for r in pts], cmap="viridis", s=30, zorder=3)
            ax.set_xscale("log")
            # symlog: an unbiased KID can be slightly negative when two sample sets match
            ax.set_yscale("symlog", linthresh=1e-3 if key == "paired" else 1.0)
            ax.set_xlabel(f"proxy {name} (normalised error)")
            ax.set_ylabel(label)
            rho_all, rho_upper = ("-" if v is None else f"{v:.3f}" for v in (a[key], a[f"{key}_upper"]))
            ax.set_title(f"Spearman {rho_all} (upper half by proxy: {rho_upper})", fontsize=9)
            if key == "paired":
                ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3, which="both")
        fig.colorbar(sc, ax=axes[i][1], label="replaced slots")
    return _png(fig)


def eps_sweep_plot(sweep) -> bytes:
    """A search.sweep.EpsSweep: each ε's choice, its reduction against the teacher (x) and the distance of
    its samples from the teacher's (y), with the paper's reduction marked."""
    from search.sweep import PAPER_GMACS_X, PAPER_PARAMS_X

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0))
    pts = list(sweep.points)
    for ax, key, paper, label in ((axes[0], "params_x", PAPER_PARAMS_X, "fewer parameters than the teacher (x)"),
                                  (axes[1], "gmacs_x", PAPER_GMACS_X, "fewer GMACs than the teacher (x)")):
        xs = [p[key] for p in pts if p[key] is not None]
        ys = [p["spectrum_kid"] for p in pts if p[key] is not None]
        es = [p["spectrum_kid_std"] for p in pts if p[key] is not None]
        ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, zorder=3, label="chosen at each ε (BO)")
        for p in pts:
            if p[key] is not None:
                ax.annotate(f"ε={p['eps_fid']:.3g}", (p[key], p["spectrum_kid"]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
        ax.axvline(paper, color="#b00", ls="--", label=f"paper: {paper}x")
        ax.axvline(1.0, color="#999", ls=":", label="teacher")
        ax.set_xlabel(label)
        ax.set_ylabel("spectrum KID of samples vs the teacher's")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"paper formulation on {sweep.profile}: minimise {sweep.complexity} s.t. fidelity error <= ε",
                 fontsize=9)
    return _png(fig)


def sr_curve_plot(doc: dict) -> bytes:
    """tocsr.app.sr_curve's curves: the student's validation PSNR-Y minus bicubic (95% interval) against seconds of
    training budget, one panel per degradation (log seconds), the baseline trained for the same seconds beside it
    where there is one, the SR teacher and the run's own model marked, and each curve's fitted trend drawn on to the
    target as a dashed line labelled predicted (an extrapolation)."""
    import numpy as np

    kinds = list(doc["bicubic_psnr_y"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.6 * len(kinds), 4.0), squeeze=False)
    curves = [("student", doc["points"], doc.get("trends", {}), "#1f77b4",
               f"student, one run of {doc['config']['student_steps']} steps")]
    if doc.get("baseline"):
        b = doc["baseline"]
        curves.append((b["name"], b["points"], b["trends"], "#d62728", f"{b['name']}, one run of its budget"))
    for ax, kind in zip(axes[0], kinds, strict=True):
        for _, pts, trends, colour, label in curves:
            xs = [p["seconds"] for p in pts]
            d = [p[kind]["minus_bicubic"] for p in pts]
            ax.errorbar(xs, [v["mean"] for v in d], yerr=[[v["mean"] - v["low"] for v in d],
                                                           [v["high"] - v["mean"] for v in d]],
                        fmt="o-", capsize=3, color=colour, label=label)
            t = trends.get(kind)
            if t and t["reach_s"] is not None and t["fitted_at_last"] < t["target"]:
                slope = t["per_doubling"]["mean"]
                # drawn for at most four more doublings, so the measured points keep the panel; the legend says where
                x = np.geomspace(t["last_s"], min(t["reach_s"], 16 * t["last_s"]), 20)
                ax.plot(x, t["fitted_at_last"] + slope * np.log2(x / t["last_s"]), "--", color=colour, alpha=0.6,
                        label=f"{slope:+.2f} dB per doubling, to +{t['target']:g} dB at {t['reach_s']:.3g} s "
                              "(PREDICTED)")
        bicubic = doc["bicubic_psnr_y"][kind]
        own = doc["run_model"]
        ax.plot([own["seconds"]], [own["psnr_y"][kind] - bicubic], "s", color="#2ca02c",
                label=f"the run's model ({own['student_steps']} steps, own schedule)")
        if kind in doc["sr_teacher_psnr_y"]:      # absent where the run trained no SR teacher
            ax.axhline(doc["sr_teacher_psnr_y"][kind] - bicubic, color="#555", ls="--", label="SR teacher (multi-step)")
        if kind in doc.get("targets_db", {}):
            ax.axhline(doc["targets_db"][kind], color="#999", ls="-.", lw=0.8, label="issue 26's target")
        ax.axhline(0.0, color="#999", ls=":", label="bicubic")
        ax.set_xscale("log")
        ax.set_xlabel("seconds of training budget (log)")
        ax.set_ylabel("validation PSNR-Y minus bicubic (dB)")
        ax.set_title(f"{kind} degradation, {doc['crops_per_degradation'][kind]} crops", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _png(fig)


def perception_distortion_plot(doc: dict) -> bytes:
    """tocsr.app.sr_pd's sweep: PSNR-Y over bicubic (paired on the same photographs: distortion, higher is
    better) against a no-reference score (NIQE: lower is better), one panel per degradation, 95% intervals
    over the photographs; each student is labelled with its variant (e.g. its adversarial weight)."""
    kinds = list(doc["results"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.4 * len(kinds), 4.0), squeeze=False)
    colours = {"bicubic": "#777", "student": "#1f77b4"}
    for ax, kind in zip(axes[0], kinds, strict=True):
        res = doc["results"][kind]
        nr = res["no_reference_metric"]
        students = []
        for name, m in res["methods"].items():
            if nr is None or nr not in m:
                continue
            zero = {"mean": 0.0, "low": 0.0, "high": 0.0}
            x, y = m.get("minus_bicubic", {}).get("psnr_y", zero), m[nr]
            student = name.startswith("student")
            ax.errorbar([x["mean"]], [y["mean"]], xerr=[[x["mean"] - x["low"]], [x["high"] - x["mean"]]],
                        yerr=[[y["mean"] - y["low"]], [y["high"] - y["mean"]]], capsize=3,
                        fmt="o" if student else ("s" if name == "bicubic" else "^"),
                        color=colours["student"] if student else colours.get(name, "#d62728"),
                        label=None if student else name)
            if student:
                students.append((x["mean"], y["mean"]))
                ax.annotate(name.removeprefix("student "), (x["mean"], y["mean"]), textcoords="offset points",
                            xytext=(5, 5), fontsize=8)
        if students:
            ax.plot(*zip(*students, strict=True), "-", color=colours["student"], alpha=0.5,
                    label="students (variants labelled)")
        ax.set_xlabel("PSNR-Y minus bicubic (dB), validation photographs")
        ax.set_ylabel(f"{nr} (lower is better)" if nr == "niqe" else str(nr))
        ax.set_title(f"{kind} degradation, {len(doc['val_images'])} photographs", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)
