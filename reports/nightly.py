"""Nightly benchmark: a fixed matrix of profiles x models, an append-only history, regression detection.

History: one JSON file per night in the history folder, written atomically and never rewritten.
A night records every measurement; one that errored makes the night "partial", none measured makes
it "failed". A corrupted history file is named in a warning and left out, never silently read.

Regressions are steps beyond the measured noise, not single slow runs (asv's principle):
  * each night measures every model REPS times, interleaved with a fixed reference workload, so a
    machine that is slower tonight (boost, neighbours) moves the reference as much as the models;
  * a row is flagged when its latency relative to that night's reference rose by more than
    max(10%, 4 x the noise of the earlier nights' ratios), clears every earlier night's ratio by
    5%, and its raw samples differ from the last complete night's by a Mann-Whitney test at
    p < 0.001. Tests inject a slowdown with `inject`.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.measure import measure_workload
from bench.profile import DeviceProfile, load_profile
from bench.workloads import Workload, resolve_workload
from tocsr.core.artifacts import atomic_write_text, read_artifact, write_artifact
from tocsr.core.errors import ArtifactError
from tocsr.core.provenance import environment

log = logging.getLogger(__name__)
NIGHT_KIND = "tocsr.nightly_night"
REFERENCE = "reference-matmul"
REPS = 3
DEFAULT_MODELS = ("unet-tiny", "toy-conv-attn", "sr:espcn", "sr:srvgg")


class Reference(nn.Module):
    """A fixed dense workload: the yardstick of the machine's speed tonight."""

    def __init__(self, n: int = 384):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("a", torch.randn(n, n, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for _ in range(6):
            y = torch.tanh(y @ self.a) / 20
        return y


class SlowedDown(nn.Module):
    """Test hook: the wrapped model, made `factor` times slower by busy work (like real compute)."""

    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.inner(*args, **kwargs)
        until = t0 + (time.perf_counter() - t0) * self.factor
        while time.perf_counter() < until:
            pass
        return out


def nightly_workload(name: str, profile: DeviceProfile) -> Workload:
    if name == REFERENCE:
        return Workload(REFERENCE, Reference(), (torch.randn(64, 384, generator=torch.Generator().manual_seed(1)),))
    if name.startswith("sr:"):
        from tocsr.core.baselines import build_baseline

        torch.manual_seed(0)
        side = profile.resolution.input_px
        return Workload(name, build_baseline(name[3:], profile.resolution.scale, side),
                        (torch.rand(profile.batch, 3, side, side, generator=torch.Generator().manual_seed(0)),))
    return resolve_workload(name, profile)


def run_night(profiles: list[str], models: tuple[str, ...], history: str | Path,
              inject: dict[str, float] | None = None, reps: int = REPS, label: str | None = None) -> Path:
    """Measure the matrix and append one night to the history folder."""
    inject = inject or {}
    history = Path(history)
    env = environment()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    sha = (env["git"]["sha"] or "nogit")[:8]
    rows, errors = [], 0
    for ref in profiles:
        profile = load_profile(ref)
        work = {name: nightly_workload(name, profile) for name in (REFERENCE, *models)}
        for name, factor in inject.items():
            if name in work:
                work[name].module = SlowedDown(work[name].module, factor)
        samples: dict[str, list[list[float]]] = {n: [] for n in work}
        status: dict[str, str] = {}
        for _ in range(reps):            # interleaved: every model once per round
            for name, w in work.items():
                m = measure_workload(w, profile)
                if m.latency is None:
                    status[name] = f"error: {m.error}"
                    continue
                samples[name].append(list(m.latency.samples_ms))
                status.setdefault(name, m.status)
        for name in work:
            if not samples[name]:
                errors += 1
                rows.append({"profile": profile.name, "model": name, "status": status.get(name, "error")})
                continue
            medians = [float(np.median(s)) for s in samples[name]]
            rows.append({"profile": profile.name, "model": name, "status": status.get(name, "ok"),
                         "median_ms": float(np.median(medians)), "rep_medians_ms": medians,
                         "samples_ms": [x for s in samples[name] for x in s], "injected_factor": inject.get(name)})
    night_status = "complete" if errors == 0 else ("failed" if errors == len(rows) else "partial")
    path = history / f"{stamp}-{sha}.json"
    write_artifact(path, NIGHT_KIND, 1, {"night": stamp, "label": label or stamp, "status": night_status,
                                         "rows": rows}, environment=env)
    return path


def load_history(history: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    nights, problems = [], []
    for f in sorted(Path(history).glob("*.json")):
        try:
            nights.append(read_artifact(f, NIGHT_KIND, 1))
        except ArtifactError as err:
            log.warning("%s", err)
            problems.append(str(err))
    return nights, problems


def _ratio(night: dict, profile: str, model: str) -> tuple[float | None, list[float]]:
    rows = {(r["profile"], r["model"]): r for r in night["rows"]}
    row, ref = rows.get((profile, model)), rows.get((profile, REFERENCE))
    if not row or not ref or "median_ms" not in row or "median_ms" not in ref:
        return None, []
    return row["median_ms"] / ref["median_ms"], row.get("samples_ms", [])


def detect_regressions(nights: list[dict[str, Any]], min_step: float = 0.10, noise_k: float = 4.0,
                       p_value: float = 1e-3) -> list[dict[str, Any]]:
    """Rows of the latest night whose reference-normalised latency stepped up beyond the noise."""
    from scipy.stats import mannwhitneyu

    good = [n for n in nights if n["status"] != "failed"]
    if len(good) < 2:
        return []
    latest, earlier = good[-1], [n for n in good[:-1] if n["status"] == "complete"][-5:]
    if not earlier:
        return []
    flagged = []
    for row in latest["rows"]:
        if row["model"] == REFERENCE or "median_ms" not in row:
            continue
        now, now_samples = _ratio(latest, row["profile"], row["model"])
        past = [(r, s) for r, s in (_ratio(n, row["profile"], row["model"]) for n in earlier) if r is not None]
        if now is None or not past:
            continue
        baseline = float(np.median([r for r, _ in past]))
        spread = float(np.median(np.abs(np.array([r for r, _ in past]) - baseline)) * 1.4826) if len(past) > 1 else 0.0
        threshold = max(min_step, noise_k * spread / baseline)
        step = now / baseline - 1
        # A step must also clear the highest earlier night: with few nights the spread estimate is
        # itself noisy, and a change within what was already seen is not a step.
        above_all = now > max(r for r, _ in past) * (1 + min_step / 2)
        p = float(mannwhitneyu(now_samples, past[-1][1], alternative="greater").pvalue) if now_samples and past[-1][1] else 1.0
        if step > threshold and above_all and p < p_value:
            flagged.append({"profile": row["profile"], "model": row["model"], "step": step, "threshold": threshold,
                            "p_value": p, "ratio_now": now, "ratio_baseline": baseline, "night": latest["night"]})
    return flagged


def render_nightly(history: str | Path, out_dir: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """The trend page and regressions.json under `out_dir`; returns (page, the flagged regressions)."""
    from reports.html import esc, img, page
    from reports.plots import trend

    nights, problems = load_history(history)
    flagged = detect_regressions(nights)
    flagged_names = {f"{f['profile']}/{f['model']}" for f in flagged}
    sections = []
    if flagged:
        rows = "".join(f"<tr><td class='bad'>{esc(f['profile'])}</td><td class='bad'>{esc(f['model'])}</td>"
                       f"<td>{100 * f['step']:+.1f}%</td><td>{100 * f['threshold']:.1f}%</td><td>{f['p_value']:.1e}</td></tr>"
                       for f in flagged)
        sections.append(("Regressions in the latest night", "<table><tr><th>profile</th><th>model</th><th>step vs "
                         "baseline (reference-normalised)</th><th>threshold</th><th>p (Mann-Whitney)</th></tr>"
                         f"{rows}</table>"))
    else:
        sections.append(("Regressions in the latest night", "<p>None: every change is within the measured noise.</p>"))
    status_rows = "".join(f"<tr><td>{esc(n['label'])}</td><td>{esc(n['status'])}</td><td>"
                          f"{esc((n.get('environment', {}).get('git') or {}).get('sha'))}</td></tr>" for n in nights)
    sections.append(("Nights", f"<table><tr><th>night</th><th>status</th><th>commit</th></tr>{status_rows}</table>"
                     + ("".join(f"<p class='bad'>unreadable history file: {esc(p)}</p>" for p in problems))))
    for profile in sorted({r["profile"] for n in nights for r in n["rows"]}):
        series: dict[str, list] = {}
        for n in nights:
            for r in n["rows"]:
                if r["profile"] == profile and "median_ms" in r:
                    reps = r.get("rep_medians_ms") or [r["median_ms"]]
                    series.setdefault(r["model"], []).append((n["label"][-15:], r["median_ms"], float(np.ptp(reps)) / 2))
        sections.append((f"Trends on {profile}", img(trend(series, f"{profile}: median latency per night",
                                                           {n.split("/", 1)[1] for n in flagged_names
                                                            if n.startswith(profile + "/")}), f"trend {profile}")))
    out = Path(out_dir)
    path = out / "index.html"
    atomic_write_text(path, page("TOC-SR nightly benchmark", sections, {"nights": len(nights)}))
    atomic_write_text(out / "regressions.json", json.dumps(flagged, indent=2))
    return path, flagged
