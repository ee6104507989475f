"""The HTML page of a `tocsr eval` folder: the table with intervals, paired differences as a figure,
every image's scores. `tocsr report EVAL_DIR` writes it to EVAL_DIR/report/index.html."""

from __future__ import annotations

from pathlib import Path

from reports.html import esc, img, page
from reports.plots import paired_differences
from reports.protocol import HIGHER_IS_BETTER, EvalResult
from tocsr.core.artifacts import atomic_write_text
from tocsr.core.provenance import environment


def summary_table(result: EvalResult) -> str:
    summary = result.summary()
    best = summary["best_baseline"]
    metrics = result.metrics()
    head = ["method", "kind", *[f"{k} ({'↑' if HIGHER_IS_BETTER.get(k, True) else '↓'})" for k in metrics],
            "PSNR-Y minus bicubic"] + ([f"PSNR-Y minus {best}"] if best else [])
    rows = []
    for m in result.methods:
        entry = summary["methods"][m["name"]]
        cells = [esc(m["name"]), esc(m["kind"])]
        cells += [esc(f"{entry[k]['mean']:.4f} [{entry[k]['low']:.4f}, {entry[k]['high']:.4f}]") for k in metrics]
        for ref in ["bicubic"] + ([best] if best else []):
            d = entry.get(f"minus_{ref}", {}).get("psnr_y")
            cells.append(esc(f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]") if d else "")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _per_image_table(result: EvalResult) -> str:
    head = ["image"] + [m["name"] for m in result.methods]
    rows = ["<tr>" + "".join(f"<td>{c}</td>" for c in [esc(image)] + [
        f"{result.per_image[m['name']]['psnr_y'][i]:.2f}" for m in result.methods]) + "</tr>"
        for i, image in enumerate(result.images)]
    return "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def build_eval_report(eval_dir: str | Path, out_dir: str | Path) -> Path:
    root, out = Path(eval_dir), Path(out_dir)
    result = EvalResult.load(root)
    best = result.best_baseline()
    sections = [(f"x{result.scale} on {len(result.images)} images of {result.hr_dir} (LR {result.lr_source})",
                 "<p>Whole images; PSNR-Y and SSIM-Y on 8-bit luma with a border of the scale removed (pyiqa's "
                 "psnry/ssim with color_space='ycbcr'); [95% bootstrap interval over images]; paired differences "
                 "resample the per-image differences.</p>" + summary_table(result))]
    figures = []
    for ref in ["bicubic"] + ([best] if best else []):
        diffs = {}
        for m in result.methods:
            if m["name"] != ref and ref in result.per_image:
                d = result.paired(m["name"], ref, "psnr_y")
                diffs[m["name"]] = (d.mean, d.low, d.high)
        figures.append(img(paired_differences(diffs, ref, "PSNR-Y (dB)"), f"PSNR-Y minus {ref}"))
    sections.append(("Paired differences", "<div class='grid'>" + "".join(figures) + "</div>"))
    sections.append(("PSNR-Y per image (dB)", _per_image_table(result)))
    if result.unavailable:
        sections.append(("Metrics not available", "<ul>" + "".join(
            f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in sorted(result.unavailable.items())) + "</ul>"))
    env = environment()
    provenance = {"eval": str(root), "commit": result.environment.get("git", {}).get("sha", "?"),
                  "torch": result.environment.get("packages", {}).get("torch", "?"),
                  "cpu": result.environment.get("cpu_model", "?"), "rendered": env["created_utc"]}
    atomic_write_text(out / "index.html", page(f"TOC-SR eval: {root.name}", sections, provenance))
    return out / "index.html"
