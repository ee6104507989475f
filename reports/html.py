"""Self-contained HTML reports: every image inlined, every name escaped, one file to open anywhere."""

from __future__ import annotations

import base64
import html
from typing import Any

from reports.rows import ReportRow

_CSS = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1rem 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.unavail{color:#999}.bad{color:#b00;font-weight:bold}
img{max-width:100%}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem}
.crops img{image-rendering:pixelated;width:160px;margin:2px}.crops figure{display:inline-block;margin:4px;text-align:center}
.meta{color:#666;font-size:12px}.legend{color:#555;font-size:12px;margin-top:-0.5rem}.verdict{margin:0.3rem 0}"""

# The browser test reads data-images-ok / data-images-failed from <body> after load.
_SCRIPT = """window.addEventListener('load',function(){var ok=0,bad=0;for(const i of document.images){
if(i.complete&&i.naturalWidth>0){ok++}else{bad++;console.error('image failed: '+i.alt)}}
document.body.dataset.imagesOk=ok;document.body.dataset.imagesFailed=bad;});"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p class='unavail'>{esc(alt)}: no data</p>"
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, dict) and "unavailable" in v:
        return f"<span class='unavail' title='{esc(v['unavailable'])}'>n/a</span>"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return esc("-" if v is None else v)


# What a row's status says, for the legend under each table of rows. On a shared CPU nearly every row is
# "unstable" (a call's spread rarely falls under the bar there), and a bare word would read as "broken".
STATUS_MEANING = {
    "ok": "the spread of its calls (CV, relative to the reference where paired) met the profile's timing.max_cv",
    "unstable": ("the spread of its calls stayed above the profile's timing.max_cv after every attempt the profile "
                 "allows; its latencies are of all those calls pooled, and a second timing minutes later can move "
                 "by more than its IQR (docs/bench.md)"),
    "predicted": "not measured: the roofline of the device's datasheet constants",
    "error": "not measured: the measurement failed (its note in rows.json says why)",
}


def status_legend(rows: list[ReportRow]) -> str:
    """One line under a table: what each status its rows carry means."""
    seen = [s for s in STATUS_MEANING if any(r.measurement_status == s for r in rows)]
    if not seen:
        return ""
    return "<p class='legend'>status: " + "; ".join(f"<b>{esc(s)}</b>, {esc(STATUS_MEANING[s])}" for s in seen) + "</p>"


def rows_table(rows: list[ReportRow], degradation: str, metrics: list[str]) -> str:
    head = ["device", "method", "kind", "arch", "params M", "GMACs", "median ms", "p90 ms", "IQR ms", "CV",
            "peak MiB", "energy mJ", "status"] + metrics
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        # every cell is HTML already: text through esc(), numbers and n/a marks through _fmt()
        cells = [esc(r.device_profile), esc(r.method), esc(r.kind), esc(r.arch_key[:16]), _fmt(r.params_m),
                 _fmt(r.gmacs, 3), _fmt(r.latency_median_ms), _fmt(r.latency_p90_ms), _fmt(r.latency_iqr_ms, 3),
                 _fmt(r.latency_cv, 3), _fmt(r.peak_memory_mib, 1), _fmt(r.energy_mj), esc(r.measurement_status)]
        q = r.quality.get(degradation, {})
        cells += [_fmt(q.get(m), 3) + (f" [{q[m + '_interval'][0]:.3f}, {q[m + '_interval'][1]:.3f}]"
                                       if isinstance(q.get(m + "_interval"), list) else "") for m in metrics]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    out.append(status_legend(rows))
    return "\n".join(out)


def unavailable_notes(rows: list[ReportRow]) -> str:
    seen = {}
    for r in rows:
        for metrics in r.quality.values():
            for name, v in metrics.items():
                if isinstance(v, dict) and "unavailable" in v:
                    seen[name] = v["unavailable"]
    if not seen:
        return ""
    items = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in sorted(seen.items()))
    return f"<h3>Metrics not available</h3><ul>{items}</ul>"


def page(title: str, sections: list[tuple[str, str]], provenance: dict[str, Any]) -> str:
    body = "\n".join(f"<h2>{esc(h)}</h2>\n{content}" for h, content in sections)
    meta = " · ".join(f"{esc(k)}: {esc(v)}" for k, v in provenance.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{_CSS}</style>"
            f"<script>{_SCRIPT}</script></head><body><h1>{esc(title)}</h1><p class='meta'>{meta}</p>{body}</body></html>")
