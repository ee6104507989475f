"""Assemble a run's report: <run>/report/index.html (by default) plus rows.csv and rows.json.

Inputs, all inside the run folder: eval/rows.json (ReportRows), eval/crops/*.png (visual crops),
search-<profile>/search_result.json and convergence.png (per device), if present.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from bench.allocator import recorded_state
from bench.cores import cores_text, had_fewer_cores
from reports.html import esc, img, page, rows_table, unavailable_notes
from reports.plots import quality_vs_cost
from reports.rows import ReportRow, flat, tocsr_row
from search.result import SearchResult
from search.selection import SHIPPED_JUDGED, reference_text
from tocsr.core.artifacts import atomic_write_text, read_artifact, write_artifact
from tocsr.core.errors import ArtifactError
from tocsr.core.provenance import environment

ROWS_KIND = "tocsr.report_rows"


def write_rows(rows: list[ReportRow], folder: str | Path, extra: dict[str, Any] | None = None) -> None:
    folder = Path(folder)
    write_artifact(folder / "rows.json", ROWS_KIND, 1, {"rows": [r.to_dict() for r in rows], **(extra or {})},
                   environment=environment())
    table = flat(rows)
    buf = io.StringIO()
    if table:
        keys = sorted({k for row in table for k in row}, key=lambda k: (k.count("."), k))
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
    atomic_write_text(folder / "rows.csv", buf.getvalue())


def read_rows(folder: str | Path) -> tuple[list[ReportRow], dict[str, Any]]:
    doc = read_artifact(Path(folder) / "rows.json", ROWS_KIND, 1)
    return [ReportRow.from_dict(r) for r in doc["rows"]], doc


def _timed_twice(r: SearchResult, rows: list[ReportRow]) -> str:
    """The chosen model's two timings, the search's deciding reading and the eval stage's row, each with the cores
    it had (bench.cores): where they disagree, a user sees whether a busy machine took one of them. "" where the
    choice is predicted or has no row."""
    c = r.chosen
    row = tocsr_row(rows, r.profile_name)
    if c.how != "measured" or row is None or row.latency_p90_ms is None:
        return ""

    def had(cores: dict[str, Any] | None) -> str:
        return f", with {cores_text(cores)}" if cores else ""

    if r.decision.get("judged_against") == SHIPPED_JUDGED and row.latency_share_of_shipped is not None:
        # both timed beside the teacher as shipped: compared as shares of it, which the cost model's figure for that
        # pipeline does not enter
        row_cores = (row.provenance.get("beside_teacher_as_shipped") or {}).get("effective_cores")
        searched, again = c.latency_vs_teacher, row.latency_share_of_shipped
        budget = "" if r.latency_budget_ms is None else f"; the budget {r.latency_budget_ms / c.teacher_latency_ms:.3f}"
        line = (f"{r.profile_name}: the chosen model timed twice beside the teacher as shipped, minutes apart: the "
                f"search's deciding reading p90 {searched:.3f} of it{had(c.effective_cores)}; the report's row "
                f"{again:.3f}{had(row_cores)} ({100 * (again / searched - 1):+.1f}%){budget}")
    else:
        row_cores = row.provenance.get("effective_cores")
        line = (f"{r.profile_name}: the chosen model timed twice, minutes apart: the search's deciding reading p90 "
                f"{c.measured_latency_ms:.2f} ms{had(c.effective_cores)}; the report's row p90 "
                f"{row.latency_p90_ms:.2f} ms{had(row_cores)} ({100 * (row.latency_p90_ms / c.measured_latency_ms - 1):+.1f}%)")
    if had_fewer_cores(row_cores, c.effective_cores) or had_fewer_cores(c.effective_cores, row_cores):
        line += ": one of them had fewer cores to itself, which moves a pipeline's ratio to its reference"
    return line


def _allocator_line(r: SearchResult) -> str:
    """The CPU allocator state the search's timings were taken in (bench.allocator): it moved the autoencoder's
    parts' CPU latency, so a reader comparing with their own timing needs it. "" for a GPU or predicted choice."""
    state = recorded_state(r.environment)
    if r.chosen.how != "measured" or state is None or r.profile.get("device", {}).get("kind") != "cpu":
        return ""
    return f"{r.profile_name}: CPU timings taken with the {state.text()}"


def _selection(run: Path, report_rows: list[ReportRow]) -> tuple[str, list[tuple[str, bytes | None]]]:
    rows, images, lines, predicted = [], [], [], []
    for folder in sorted(p.parent for p in run.glob(f"search-*/{SearchResult.FILE_NAME}")):
        try:
            r = SearchResult.load(folder)
        except ArtifactError:
            continue
        c, tl = r.chosen, r.chosen.teacher_latency_ms
        if c.how == "predicted":
            predicted.append(r.profile_name)
        what = "one-step SR call" if r.scope == "pipeline" else "backbone call"
        share = f"{100 * r.pipeline['backbone_share_predicted']:.0f}%" if r.pipeline else "100%"
        mark = "" if c.how == "measured" else " predicted"
        on_share = r.decision.get("judged_against") == SHIPPED_JUDGED
        cells = [r.profile_name, c.key, f"{c.fidelity:.4g} ({r.proxy})", what, f"{c.measured_latency_ms:.2f}{mark}"
                 + (f" = {c.latency_vs_teacher:.3f} x the teacher as shipped (the share measured, the teacher's "
                    "figure predicted)" if on_share and c.how == "measured" else ""),
                 f"{tl:.2f}{mark}{reference_text(r.decision)}", share,
                 f"{1 / c.latency_vs_teacher:.2f}x", f"{c.params_m:.3f}", f"{r.teacher_params_m / c.params_m:.1f}x",
                 f"{r.teacher_gmacs / c.gmacs:.1f}x" if c.gmacs and r.teacher_gmacs else "-",
                 "-" if r.latency_budget_ms is None else f"{r.latency_budget_ms:.2f}"
                 + (" (a share of the predicted teacher as shipped)" if on_share else ""),
                 f"{100 * r.cost_table_validation.get('within_10pct', 0):.0f}%"
                 + ("" if c.how == "measured" else " of whole-model rooflines"), str(r.evaluations)]
        rows.append("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in cells) + "</tr>")
        if r.pipeline:
            v = r.pipeline["validation"]
            lines.append(f"{r.profile_name} ({c.how}), whole one-step SR call: {r.pipeline['line']}; the pipeline cost model "
                         f"(fixed parts + backbone table) within ±10% on {100 * (v.get('within_10pct') or 0):.0f}% of "
                         f"{v.get('n', 0)} held-out pipelines")
            if r.parts_choice:
                lines.append(f"{r.profile_name}: parts deployed: {r.encoder} encoder, {r.decoder} decoder: "
                             f"{r.parts_choice['reason']}")
        timed_twice = _timed_twice(r, report_rows)
        if timed_twice:
            lines.append(timed_twice)
        allocator = _allocator_line(r)
        if allocator:
            lines.append(allocator)
        png = folder / r.convergence_png
        images.append((f"search convergence: {r.profile_name} ({r.method})", png.read_bytes() if png.is_file() else None))
    head = ["device", "chosen architecture", "fidelity error (proxy)", "latency of", "p90 ms, measured unless marked",
            "teacher(-shaped) p90 ms", "backbone's share (predicted)", "speed-up",
            "params M", "fewer params", "fewer GMACs", "latency budget ms", "cost table: held-out within ±10%",
            "evaluations"]
    table = ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>") \
        if rows else "<p>No search results in this run.</p>"
    if lines:
        table += "<p>On each device: " + "<br>".join(esc(x) for x in lines) + "</p>"
    if predicted:
        table += ("<p><b>Predicted, not measured</b>: " + ", ".join(esc(x) for x in predicted) + " are devices that were "
                  "not attached; their latencies and memory are the roofline estimate from the profile's device "
                  "constants (bench.roofline), the choice was checked against that estimate, and its cost table was "
                  "judged against the roofline of whole models. `python -m bench.roofline_check` says how far the "
                  "roofline is from a measured card.</p>")
    return table, images


def _finetune(run: Path) -> str:
    """Each fine-tuned backbone (tocsr.core.distill.finetune): samples against the teacher's from the same noise,
    before and after, mean ± spread."""
    from tocsr.core.distill.finetune import FinetuneRecord

    rows = []
    for folder in sorted(p.parent for p in run.glob(f"finetune/*/{FinetuneRecord.FILE_NAME}")):
        r = FinetuneRecord.load(folder)
        b, a = r.before, r.after
        cells = [r.arch_key, str(r.config["steps"]), f"{r.seconds:.0f}",
                 f"{b['paired_error']:.4f} ± {b['paired_error_std']:.4f}", f"{a['paired_error']:.4f} ± {a['paired_error_std']:.4f}",
                 f"{b['spectrum_kid']:.3f} ± {b['spectrum_kid_std']:.3f}", f"{a['spectrum_kid']:.3f} ± {a['spectrum_kid_std']:.3f}",
                 f"{b['n_samples']} x {b['steps']} DDIM steps"]
        rows.append("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in cells) + "</tr>")
    if not rows:
        return ""
    head = ["architecture", "steps", "seconds", "paired sample error before", "after", "spectrum KID before", "after",
            "samples (same noise)"]
    return ("<p>Measured: samples of the backbone against the teacher's from the same noise; ± is the spread over "
            "samples (paired error) and over KID subsets.</p><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr>" + "".join(rows) + "</table>")


def _test_headline(run: Path, doc: dict[str, Any], rows: list[ReportRow]) -> str:
    """The fair comparison (reports.comparison): each degradation's test table with intervals and paired
    differences, how the baselines were trained, and under each table what it supports on each device, in the
    words the job's summary prints (reports.verdicts), the latencies beside them."""
    from reports.eval_report import summary_table
    from reports.protocol import EvalResult
    from reports.verdicts import test_headline, verdict_line

    folders = sorted((run / "eval").glob("test-*"))
    if not folders:
        return ""
    trained = doc.get("baselines_trained") or {}
    how = "; ".join(f"{esc(n)}: {m.get('steps')} steps x {m.get('batch')} pairs in {m.get('seconds', 0):.0f} s "
                    f"({esc(m.get('head', '?'))}, {esc(m.get('loss', '?'))})" for n, m in trained.items())
    budget = doc.get("baseline_budget_s")
    parts = [f"<p>Scored on {len(doc.get('test_images') or [])} test photographs "
             f"({esc(', '.join(doc.get('test_images') or []))}; centre {doc.get('test_max_px')} px), which no training, "
             "setting or selection read. Trained baselines see the same training photographs and degradations as "
             "TOC-SR" + (f", for the {budget:.0f} s its SR stage spent training (unit: "
                         f"{esc(doc.get('budget_unit', '?'))}): {how}" if budget is not None else "")
             + ". [95% bootstrap interval over photographs]; paired differences resample per-photograph "
             "differences." + _student_steps(doc.get("student_steps")) + _step_plan(run) + _routing(doc.get("routing"))
             + "</p>"]
    said = {device: test_headline(run, device, rows) for device in sorted({r.device_profile for r in rows})}
    for folder in folders:
        res = EvalResult.load(folder)
        verdicts = "".join(f"<p class='verdict'><b>{esc(device)}</b>: {esc(verdict_line(h[res.lr_source]))}</p>"
                           for device, h in said.items() if res.lr_source in h)
        parts.append(f"<h3>{esc(res.lr_source)} degradation</h3>" + verdicts + summary_table(res))
    return "".join(parts)


def _student_steps(steps: dict[str, int] | None) -> str:
    """The one-step students' training steps per device: a run of several profiles may share its preset's student
    steps among them (tocsr.app.mainjob.RunPreset.sr_run_student_steps)."""
    if not steps:
        return ""
    return (" TOC-SR one-step students' training steps: "
            + ", ".join(f"{esc(name)} {n}" for name, n in sorted(steps.items())) + ".")


def _step_plan(run: Path) -> str:
    """How the run's training steps were fitted to its time budget (tocsr.core.timebudget), where it had one: the
    quality figures of a run trained at fewer steps are read with that in mind."""
    from tocsr.core.timebudget import StepPlan

    if not (run / StepPlan.FILE_NAME).is_file():
        return ""
    return " Steps (predicted): " + esc(StepPlan.load(run).describe()) + "."


def sureness_said(decided: dict, kind: str) -> str:
    """", the router's P(kind) 0.31-0.97": how sure the router was of the truth over one degradation's
    photographs (the range over them), or "" where its probabilities were not recorded."""
    sure = [p[kind] for p in decided.get("probabilities") or () if kind in p]
    if not sure:
        return ""
    return f", the router's P({kind}) {min(sure):.2f}-{max(sure):.2f}"


def misroute_said(decided: dict) -> str:
    """" (sent to the X student they would lose N dB ...)": what a wrong answer costs on one degradation's
    photographs, as the router weighed it (measured by the SR stage), or "" where the router decided without costs."""
    costs = decided.get("misroute_db")
    if not costs:
        return ""
    lose = ", ".join(f"to the {other} student they would lose {db:.2f} dB" for other, db in sorted(costs.items()))
    return f" (sent {lose} PSNR-Y, as measured on training crops)"


def _routing(routing: dict[str, dict[str, dict]] | None) -> str:
    """What each routed model's router decided on the test photographs (tocsr.core.sr.router): a routed model is
    blind, and a photograph sent to the other degradation's student is scored as it came out."""
    if not routing:
        return ""
    said = "; ".join(f"{esc(name)}: " + ", ".join(f"{d['routed_right']} of {d['photographs']} {esc(kind)} photographs"
                                                   + esc(sureness_said(d, kind) + misroute_said(d))
                                                   for kind, d in sorted(kinds.items()))
                     for name, kinds in sorted(routing.items()))
    return (" Routed models read the degradation from each whole photograph (one student per degradation behind a "
            f"router; nothing told them): routed to the student of the degradation that made them: {said}.")


def _nightly_link(run: Path, out: Path) -> str:
    """Where the nightly page that tracks this run's models lives (`tocsr nightly --run`, default output beside
    the run folder), linked relative to this report."""
    nightly = run.parent / "nightly" / "index.html"
    rel = os.path.relpath(nightly.resolve(), out.resolve())
    state = "" if nightly.is_file() else " (not written yet)"
    return (f"<p>The models this run selected and trained, night after night (latency, memory, energy, quality, "
            f"flagged regressions): <a href='{esc(rel)}'>{esc(nightly)}</a>{state}, written by "
            f"<code>tocsr nightly --run {esc(run)} -o {esc(nightly.parent)}</code> (<code>nox -s nightly</code> for "
            "runs/quick).</p>")


def _latency_statistic(rows: list[ReportRow], device: str) -> str:
    """The latency a device's figures plot: the p90 (the budget's statistic) where every row has one, else the
    median, as reports.verdicts.latency_beside compares them: a roofline predicts one figure, no p90."""
    mine = [r for r in rows if r.device_profile == device]
    return "latency_p90_ms" if mine and all(r.latency_p90_ms is not None for r in mine) else "latency_median_ms"


def build_report(run_dir: str | Path, out_dir: str | Path, title: str | None = None) -> Path:
    run, out = Path(run_dir), Path(out_dir)
    rows, doc = read_rows(run / "eval")
    devices = sorted({r.device_profile for r in rows})
    degradations = sorted({d for r in rows for d in r.quality})
    metrics = sorted({k for r in rows for d in r.quality.values() for k in d
                      if k != "n_images" and not k.endswith("_interval") and "_minus_" not in k},
                     key=lambda k: (k not in ("psnr_y", "psnr_y_crop", "ssim_y", "ssim_y_crop"), k))
    # a metric no row could compute is a column of n/a that pushes the rest off the page: the Metrics section
    # names it and why instead
    metrics = [k for k in metrics if any(k in d and not (isinstance(d[k], dict) and "unavailable" in d[k])
                                         for r in rows for d in r.quality.values())]
    sections = []
    headline = _test_headline(run, doc, rows)
    if headline:
        sections.append(("Headline: test photographs, every method blind unless its name says otherwise", headline))
    selection, convergence = _selection(run, rows)
    sections.append(("Selected architecture per device", selection))
    finetuned = _finetune(run)
    if finetuned:
        sections.append(("Fine-tune of the chosen backbone: sample-level fidelity before and after", finetuned))
    for device in devices:
        # every degradation scored, not the first alone: the one TOC-SR trails on must be as easy to see
        costs = ("gmacs", _latency_statistic(rows, device))
        figs = "".join(img(quality_vs_cost(rows, device, cost, "psnr_y", deg), f"{device} {deg} quality vs {cost}")
                       for deg in degradations or ["bicubic"] for cost in costs)
        sections.append((f"Quality vs cost on {device}", f"<div class='grid'>{figs}</div>"))
    for deg in degradations:
        sections.append((f"All rows, x{doc.get('scale', '?')} {deg} degradation",
                         rows_table([r for r in rows if deg in r.quality], deg, metrics)))
    sections.append(("Metrics", unavailable_notes(rows) or "<p>All metrics available.</p>"))
    if convergence:
        sections.append(("Search convergence", "<div class='grid'>" + "".join(img(p, a) for a, p in convergence) + "</div>"))
    crops = sorted((run / "eval" / "crops").glob("*.png"))
    if crops:
        figs = "".join(f"<figure>{img(p.read_bytes(), p.stem)}<figcaption>{esc(p.stem)}</figcaption></figure>" for p in crops)
        sections.append(("Visual crops (a test photograph, x4, Real-ESRGAN degradation)", f"<div class='crops'>{figs}</div>"))
    sections.append(("Nightly", _nightly_link(run, out)))
    env = environment()
    provenance = {"run": run.name, "commit": env["git"]["sha"], "torch": env["packages"]["torch"],
                  "diffusers": env["packages"]["diffusers"], "cpu": env["cpu_model"], "built": env["created_utc"]}
    html_text = page(title or f"TOC-SR report: {run.name}", sections, provenance)
    atomic_write_text(out / "index.html", html_text)
    write_rows(rows, out, {"scale": doc.get("scale")})
    atomic_write_text(out / "report.json", json.dumps({"run": str(run), "devices": devices, "rows": len(rows)}, indent=2))
    return out / "index.html"
