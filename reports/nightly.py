"""Nightly benchmark: a fixed matrix of profiles x models, an append-only history, regression detection.

Each cell (profile x model) records latency (median, p90, the repeat medians), the peak memory of one
inference, energy per inference where the device has a counter (else the reason), and, for the models a
run ships (`--run`), PSNR-Y on the run's test photographs under each degradation the main job scores
(`QUALITY_DEGRADATIONS`): a change that hurt only the Real-ESRGAN inputs would not show on the clean ones.

History: one JSON file per night in the history folder, written atomically and never rewritten.
A night records every measurement; one that errored makes the night "partial", none measured makes
it "failed". A corrupted history file is named in a warning and left out, never silently read.

Regressions are steps beyond the measured noise, not single slow runs (asv's principle). Quality: a drop
beyond the paired bootstrap interval (`detect_quality_regressions`). Peak memory, where the reading is exact
(torch's allocator, on a GPU or a CPU): a rise above every earlier night by 10% and 1 MiB
(`detect_memory_regressions`). Latency:
  * each night measures every model REPS times, interleaved with a fixed reference workload, so a
    machine that is slower tonight (boost, neighbours) moves the reference as much as the models;
  * a row is flagged when its latency relative to that night's reference rose by more than
    max(10%, 4 x the noise of the earlier nights' ratios), clears every earlier night's ratio by
    5%, and its raw samples differ from the last complete night's by a Mann-Whitney test at
    p < 0.001. Tests inject a slowdown with `inject`.

Exit codes of `tocsr nightly` (`exit_code`), for whatever schedules it: 0 the night is complete and
nothing is flagged; 3 a regression is flagged (`regressions.json` says what and by how much); 1 the
night could not measure something (an errored model, a failed night) — errors win over regressions,
since a broken measurement hides what it would have shown.

`compare_nights` puts two nights side by side (asv's `compare`): per (profile, model), the change of
the reference-normalised median and whether it is beyond noise, by the same bar as the detector
(`noise_threshold`, from the history's night-to-night spread).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.cores import cores_summary, cores_text, effective_cores, had_fewer_cores
from bench.measure import measure_workload
from bench.memory import CPU_METHOD, CUDA_METHOD
from bench.profile import DeviceProfile, load_profile
from bench.workloads import Workload, resolve_workload
from reports.protocol import EvalMethod, run_module_tiled
from tocsr.core.artifacts import atomic_write_text, read_artifact, write_artifact
from tocsr.core.errors import ArtifactError, ConfigError
from tocsr.core.provenance import environment

log = logging.getLogger(__name__)
NIGHT_KIND = "tocsr.nightly_night"
REGRESSIONS_KIND = "tocsr.nightly_regressions"
EXIT_CLEAN, EXIT_ERROR, EXIT_REGRESSION = 0, 1, 3
REFERENCE = "reference-matmul"
REPS = 3
# The degradations the main job scores its test photographs under; a night scores the tracked models under each.
QUALITY_DEGRADATIONS = ("bicubic", "realesrgan")
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


@dataclass
class TrackedMethod:
    """A model a run selected or trained, as the nightly times it (`workload`) and scores it (`quality`)."""

    name: str                 # "tocsr:<profile>" (the profile's one-step SR model) or "baseline:<name>"
    kind: str                 # "tocsr" or "baseline"
    source: str               # its folder
    workload: Workload
    quality: EvalMethod
    modules: tuple[nn.Module, ...]     # whose weights a quality injection perturbs


def tracked_methods(run_dir: str | Path, profile: DeviceProfile) -> list[TrackedMethod]:
    """What a run folder ships for `profile`: the one-step SR model its search chose for that profile (through
    the deployed TOCSRPipeline), and every baseline the run trained."""
    from search.result import SearchResult
    from tocsr.core.baselines import load_baseline
    from tocsr.core.sr.pipeline import TOCSRPipeline

    run, res = Path(run_dir), profile.resolution
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(profile.batch, 3, res.input_px, res.input_px, generator=g)
    out = []
    for found in sorted(run.glob(f"search-*/{SearchResult.FILE_NAME}")):
        result = SearchResult.load(found.parent)
        if result.profile_name != profile.name:
            continue
        folder = run / "sr" / result.sr_folder_name
        pipe = TOCSRPipeline.from_pretrained(folder)
        name = f"tocsr:{profile.name}"
        # timed: what one call runs (a routed model's router and one student); perturbed: every student it may run
        out.append(TrackedMethod(name, "tocsr", str(folder), Workload(name, pipe.model, (lr * 2 - 1,)),
                                 EvalMethod(name, "tocsr", str(folder), lambda x, p=pipe: p.upscale_array(x)[0]),
                                 tuple(pipe.models.values())))
    if not out:
        raise ConfigError(f"{run}: no search for profile {profile.name!r} in this run folder (search-*/"
                          f"{SearchResult.FILE_NAME}); run the main job with this profile, or drop it from --profile")
    for meta in sorted(run.glob("baselines/*/baseline.json")):
        name = f"baseline:{meta.parent.name}"
        model = load_baseline(meta.parent)[0].eval()
        method = EvalMethod(name, "baseline", str(meta.parent),
                            lambda x, m=model: run_module_tiled(m, x, res.scale))
        out.append(TrackedMethod(name, "baseline", str(meta.parent), Workload(name, model, (lr,)), method, (model,)))
    return out


def perturb_weights(modules: tuple[nn.Module, ...], sigma: float, seed: int = 0) -> None:
    """Test hook: every weight moved by Gaussian noise of `sigma` times its tensor's std (a broken checkpoint)."""
    g = torch.Generator().manual_seed(seed)
    # each weight once, where modules share parts (a routed model's students share the autoencoder)
    params = {id(p): p for module in modules for p in module.parameters()}.values()
    with torch.no_grad():
        for p in params:
            if p.numel() > 1 and p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g).to(p.device, p.dtype) * sigma * p.float().std().item())


def eval_images(run_dir: str | Path, scale: int) -> list:
    """The run's test photographs (the same every night): what quality is tracked on."""
    from reports.protocol import find_images

    hr = Path(run_dir) / "test" / "HR"
    if not hr.is_dir():
        raise ConfigError(f"{run_dir}: no test photographs ({hr}); the main job's eval stage writes them")
    return find_images(hr, None, scale)


def run_night(profiles: list[str], models: tuple[str, ...], history: str | Path,
              inject: dict[str, float] | None = None, reps: int = REPS, label: str | None = None,
              run_dir: str | Path | None = None, perturb: dict[str, float] | None = None) -> Path:
    """Measure the matrix and append one night to the history folder. With `run_dir`, the models that run
    ships (`tracked_methods`) join the matrix, each with its quality (PSNR-Y under each of QUALITY_DEGRADATIONS,
    `row["qualities"]`) on the run's test photographs. `inject` (slowdown factors) and `perturb` (weight noise) are test hooks."""
    from reports.protocol import evaluate_folder

    inject, perturb = inject or {}, perturb or {}
    history = Path(history)
    env = environment()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    sha = (env["git"]["sha"] or "nogit")[:8]
    rows, errors = [], 0
    for ref in profiles:
        profile = load_profile(ref)
        work = {name: nightly_workload(name, profile) for name in (REFERENCE, *models)}
        tracked = {t.name: t for t in tracked_methods(run_dir, profile)} if run_dir else {}
        for name, t in tracked.items():
            if name in perturb:
                perturb_weights(t.modules, perturb[name])
            work[name] = t.workload
        # Quality before timing, on purpose: the quality pass's larger calls grow the process's heap once, so the
        # timed calls that follow run warm, as in a long-running deployed process. Timed first, the same model's
        # median moved between identical nights with the heap's state (docs/status.md). Since the sixty-sixth
        # session the allocator is also set to that state before any timing (bench.allocator), and the memory
        # column counts torch's allocator, which does not depend on the order.
        quality: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in tracked}
        if tracked:
            images = eval_images(run_dir, profile.resolution.scale)
            for degradation in QUALITY_DEGRADATIONS:
                result = evaluate_folder(images, [t.quality for t in tracked.values()], profile.resolution.scale,
                                         degradation=degradation)
                for name in tracked:
                    scores = list(result.per_image[name]["psnr_y"])
                    quality[name][degradation] = {"metric": "psnr_y", "degradation": degradation,
                                                  "images": list(result.images), "per_image": scores,
                                                  "mean": float(np.mean(scores))}
        for name, factor in inject.items():
            if name in work:
                work[name].module = SlowedDown(work[name].module, factor)
        samples: dict[str, list[list[float]]] = {n: [] for n in work}
        costs: dict[str, list[dict[str, Any]]] = {n: [] for n in work}
        status: dict[str, str] = {}
        # how many cores each round had (bench.cores): a latency step on a night whose timings had fewer cores
        # than the earlier nights' may be a busy machine, which pairing with the reference does not cancel
        probe_threads = profile.device.threads or torch.get_num_threads()
        probed = profile.is_measured and profile.device.kind == "cpu"
        readings: list[float] = []
        for _ in range(reps):            # interleaved: every model once per round
            reading = effective_cores(probe_threads) if probed else None
            if reading is not None:
                readings.append(reading)
            for name, w in work.items():
                m = measure_workload(w, profile)
                if m.latency is None:
                    status[name] = f"error: {m.error}"
                    continue
                samples[name].append(list(m.latency.samples_ms))
                costs[name].append(_memory_and_energy(m))
                status.setdefault(name, m.status)
        for name in work:
            if not samples[name]:
                errors += 1
                rows.append({"profile": profile.name, "model": name, "status": status.get(name, "error")})
                continue
            medians = [float(np.median(s)) for s in samples[name]]
            every = [x for s in samples[name] for x in s]
            row = {"profile": profile.name, "model": name, "status": status.get(name, "ok"),
                   "median_ms": float(np.median(medians)), "rep_medians_ms": medians,
                   "p90_ms": float(np.percentile(every, 90)), "samples_ms": every,
                   **_summarise_costs(costs[name]), "injected_factor": inject.get(name),
                   "effective_cores": cores_summary(readings, probe_threads)}
            if name in tracked:
                row.update({"kind": tracked[name].kind, "source": tracked[name].source, "qualities": quality[name],
                            "perturbed_sigma": perturb.get(name)})
            rows.append(row)
    night_status = "complete" if errors == 0 else ("failed" if errors == len(rows) else "partial")
    path = history / f"{stamp}-{sha}.json"
    write_artifact(path, NIGHT_KIND, 1, {"night": stamp, "label": label or stamp, "status": night_status,
                                         "rows": rows}, environment=env)
    return path


def _memory_and_energy(m) -> dict[str, Any]:
    return {"peak_mib": m.memory.peak_mib if m.memory else None, "memory_method": m.memory.method if m.memory else None,
            "energy_mj": m.energy_mj_per_inference, "energy_note": m.energy_note}


def _summarise_costs(per_rep: list[dict[str, Any]]) -> dict[str, Any]:
    """A cell's memory and energy over its repeats. Memory: the largest reading (allocator peaks repeat exactly;
    the resident-growth fallback reads lower in a process with history, bench.memory). Energy: the median where
    the device could measure it, else None with the reason."""
    peaks = [r["peak_mib"] for r in per_rep if r["peak_mib"] is not None]
    energies = [r["energy_mj"] for r in per_rep if r["energy_mj"] is not None]
    return {"peak_mib": max(peaks) if peaks else None,
            "memory_method": next((r["memory_method"] for r in per_rep if r["memory_method"]), None),
            "energy_mj": float(np.median(energies)) if energies else None,
            "energy_note": per_rep[0]["energy_note"] if per_rep else ""}


def load_history(history: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    nights, problems = [], []
    for f in sorted(Path(history).glob("*.json")):
        try:
            nights.append({**read_artifact(f, NIGHT_KIND, 1), "file": f.stem})
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


def noise_threshold(past_ratios: list[float], min_step: float = 0.10, noise_k: float = 4.0) -> float:
    """The regression policy's one noise bar: a relative change counts only beyond max(`min_step`, `noise_k` x
    the night-to-night spread of the earlier ratios (MAD, as a fraction of their median)). Night-to-night,
    not within a night: a machine's speed moves between nights more than within one (asv's lesson)."""
    if len(past_ratios) < 2:
        return min_step
    r = np.asarray(past_ratios, dtype=np.float64)
    spread = float(np.median(np.abs(r - np.median(r))) * 1.4826 / np.median(r))
    return max(min_step, noise_k * spread)


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
        threshold = noise_threshold([r for r, _ in past], min_step, noise_k)
        step = now / baseline - 1
        # A step must also clear the highest earlier night: with few nights the spread estimate is
        # itself noisy, and a change within what was already seen is not a step.
        above_all = now > max(r for r, _ in past) * (1 + min_step / 2)
        p = float(mannwhitneyu(now_samples, past[-1][1], alternative="greater").pvalue) if now_samples and past[-1][1] else 1.0
        if step > threshold and above_all and p < p_value:
            flagged.append({"profile": row["profile"], "model": row["model"], "step": step, "threshold": threshold,
                            "p_value": p, "ratio_now": now, "ratio_baseline": baseline, "night": latest["night"],
                            "cores_now": row.get("effective_cores"),
                            "cores_before": _fewest_cores(earlier, row["profile"], row["model"])})
    return flagged


def _fewest_cores(nights: list[dict[str, Any]], profile: str, model: str) -> dict[str, Any] | None:
    """The cores the earlier nights' timings of a cell had (bench.cores): the median of their fewest, None where no
    night probed them (nights from before the probe)."""
    seen = [r["effective_cores"] for n in nights for r in n["rows"]
            if (r["profile"], r["model"]) == (profile, model) and r.get("effective_cores")]
    if not seen:
        return None
    return {"min": float(np.median([c["min"] for c in seen])), "max": float(np.median([c["max"] for c in seen])),
            "threads": seen[-1]["threads"], "nights": len(seen)}


def cores_said(now: dict[str, Any] | None, before: dict[str, Any] | None) -> str:
    """What a latency change's reader needs about the cores the two timings had: whether the later one had fewer
    (then a busy machine may be the cause: time it again on an idle one before acting), or as many (then fewer
    cores do not explain it). "" where either was not probed."""
    if not now or not before:
        return ""
    if had_fewer_cores(now, before):
        return (f"; this night's timings had {cores_text(now)} against {cores_text(before)} before: a busy machine "
                "moves a model's ratio to the reference, so time it again on an idle machine before acting on it")
    return f"; the timings had {cores_text(now)}, as before ({cores_text(before)}): fewer cores do not explain it"


def row_qualities(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A row's quality entries by degradation. Nights before QUALITY_DEGRADATIONS recorded one entry, the bicubic
    one, under "quality": they read as that degradation alone."""
    if row.get("qualities"):
        return row["qualities"]
    q = row.get("quality")
    return {q.get("degradation", "bicubic"): q} if q else {}


def quality_of(night: dict[str, Any], profile: str, model: str) -> dict[str, dict[str, Any]]:
    row = next((r for r in night["rows"] if (r["profile"], r["model"]) == (profile, model)), None)
    return row_qualities(row) if row else {}


def quality_changes(now: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """quality_change for every degradation both nights scored on the same images."""
    changes = {deg: quality_change(q, before[deg]) for deg, q in now.items() if deg in before}
    return {deg: c for deg, c in changes.items() if c is not None}


def _stderr(per_image: list[float]) -> float:
    return float(np.std(per_image)) / max(1.0, len(per_image) ** 0.5)


def quality_change(now: dict[str, Any], before: dict[str, Any], min_drop_db: float = 0.01) -> dict[str, Any] | None:
    """PSNR-Y now minus before on the same images: the paired bootstrap interval, and whether it is a drop
    beyond it (the whole interval below zero and the mean below -`min_drop_db`, which absorbs the last bits
    of float nondeterminism). None when the nights scored different images."""
    from reports.intervals import paired_difference

    if now["images"] != before["images"]:
        return None
    d = paired_difference(now["per_image"], before["per_image"])
    return {"metric": now["metric"], "degradation": now.get("degradation", "bicubic"), "change_db": d.mean,
            "low_db": d.low, "high_db": d.high, "n_images": d.n, "drop": bool(d.high < 0 and d.mean < -min_drop_db)}


def detect_quality_regressions(nights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the latest night whose quality under some degradation dropped below the last complete night's on
    the same images, beyond the paired bootstrap interval over those images: one flag per degradation."""
    good = [n for n in nights if n["status"] != "failed"]
    if len(good) < 2:
        return []
    latest, earlier = good[-1], [n for n in good[:-1] if n["status"] == "complete"]
    flagged = []
    for row in latest["rows"]:
        for degradation, now in row_qualities(row).items():
            before = next((q[degradation] for q in (quality_of(n, row["profile"], row["model"])
                                                    for n in reversed(earlier))
                           if degradation in q and q[degradation]["images"] == now["images"]), None)
            change = quality_change(now, before) if before else None
            if change and change["drop"]:
                flagged.append({"profile": row["profile"], "model": row["model"], "kind": "quality", **change,
                                "night": latest["night"]})
    return flagged


def _latest_table(latest: dict[str, Any]) -> str:
    """Every cell of a night: latency (median, p90, the spread of the repeat medians), peak memory, energy, and
    quality where tracked. All measured on this night's machine."""
    from reports.html import esc

    def cell(r: dict[str, Any]) -> str:
        if "median_ms" not in r:
            return f"<td colspan='5' class='bad'>{esc(r['status'])}</td>"
        reps = r.get("rep_medians_ms") or [r["median_ms"]]
        mem = f"{r['peak_mib']:.1f}" if r.get("peak_mib") is not None else "not measured"
        energy = f"{r['energy_mj']:.2f}" if r.get("energy_mj") is not None else "not measured"
        qual = "<br>".join(f"{esc(deg)}: {q['mean']:.3f} ± {_stderr(q['per_image']):.3f} ({len(q['per_image'])} images)"
                           for deg, q in row_qualities(r).items()) or "not tracked"
        p90 = f"{r['p90_ms']:.3f}" if r.get("p90_ms") is not None else "-"
        return (f"<td>{r['median_ms']:.3f} [{min(reps):.3f}, {max(reps):.3f}]</td><td>{p90}</td>"
                f"<td>{mem}</td><td>{energy}</td><td>{qual}</td>")

    rows = "".join(f"<tr><td>{esc(r['profile'])}</td><td>{esc(r['model'])}</td>{cell(r)}</tr>" for r in latest["rows"])
    why = sorted({r.get("energy_note") or "no reason recorded" for r in latest["rows"]
                  if "median_ms" in r and r.get("energy_mj") is None})
    notes = "".join(f"<p class='unavail'>energy not measured: {esc(w.removeprefix('not measured: '))}</p>" for w in why)
    cores = {r["profile"]: r["effective_cores"] for r in latest["rows"] if r.get("effective_cores")}
    notes += "".join(f"<p>{esc(name)}: the rounds' timings had {esc(cores_text(c))} (bench.cores: a probe before each "
                     "round; fewer than on earlier nights: a busy machine)</p>" for name, c in sorted(cores.items()))
    return ("<p>Measured on this machine; latency: median [range of the repeat medians] and p90 over every sample; "
            "memory: peak of one inference (weights + transient; judged for regressions on GPUs only: a CPU reading "
            "is resident-set growth, which varies between identical nights); energy: per inference where the device "
            "has a counter; "
            "quality: PSNR-Y on the run's test photographs under each degradation the job scores, ± standard "
            "error.</p>"
            "<table><tr><th>profile</th><th>model</th><th>median ms</th><th>p90 ms</th><th>peak MiB</th>"
            f"<th>energy mJ</th><th>PSNR-Y (dB)</th></tr>{rows}</table>{notes}")


def _run_report_link(run_dir: str | Path | None, out_dir: Path) -> str:
    """A link from the nightly page to the main report of the run whose models it tracks."""
    from reports.html import esc

    if run_dir is None:
        return ""
    summary = Path(run_dir) / "summary.json"
    try:
        report = json.loads(summary.read_text()).get("report") if summary.is_file() else None
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable (%s); the nightly page does not link the run's report", summary, err)
        report = None
    if not report or not Path(report).is_file():
        return f"<p>Models tracked from {esc(run_dir)} (no report found there).</p>"
    rel = os.path.relpath(Path(report).resolve(), out_dir.resolve())
    return f"<p>Models tracked from {esc(run_dir)}: <a href='{esc(rel)}'>its main report</a>.</p>"


# Only torch allocator peaks are judged (GPU or CPU): they count the bytes one inference allocates, the same
# every night. The fallback reading, resident-set growth, depends on what the allocator kept from earlier work in
# the process and moved by a factor of two between identical nights (docs/status.md): recorded, not judged.
JUDGED_MEMORY_METHODS = (CUDA_METHOD, CPU_METHOD)


def detect_memory_regressions(nights: list[dict[str, Any]], min_step: float = 0.10,
                              min_mib: float = 1.0) -> list[dict[str, Any]]:
    """Rows of the latest night whose peak memory (an exact reading, `JUDGED_MEMORY_METHODS`) rose above every
    earlier complete night's by more than `min_step` and `min_mib` both: memory is a budget of its own, and an
    allocator peak does not move between nights unless the model or the code changed."""
    good = [n for n in nights if n["status"] != "failed"]
    if len(good) < 2:
        return []
    latest, earlier = good[-1], [n for n in good[:-1] if n["status"] == "complete"][-5:]
    flagged = []
    for row in latest["rows"]:
        now = row.get("peak_mib")
        if row["model"] == REFERENCE or row.get("memory_method") not in JUDGED_MEMORY_METHODS:
            continue
        past = [r.get("peak_mib") for n in earlier for r in n["rows"]
                if (r["profile"], r["model"]) == (row["profile"], row["model"]) and r.get("peak_mib") is not None]
        if now is None or not past:
            continue
        before = max(past)
        if now > before * (1 + min_step) and now - before > min_mib:
            flagged.append({"profile": row["profile"], "model": row["model"], "kind": "memory", "peak_mib": now,
                            "peak_mib_before": before, "step": now / before - 1, "min_step": min_step,
                            "min_mib": min_mib, "night": latest["night"]})
    return flagged


def render_nightly(history: str | Path, out_dir: str | Path,
                   run_dir: str | Path | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The trend page and regressions.json under `out_dir`; returns (page, the flagged regressions). With
    `run_dir`, the page links to that run's main report."""
    from reports.html import esc, img, page
    from reports.plots import trend

    nights, problems = load_history(history)
    slow = [{**f, "kind": "latency"} for f in detect_regressions(nights)]
    worse = detect_quality_regressions(nights)
    flagged = slow + worse + detect_memory_regressions(nights)
    flagged_names = {f"{f['profile']}/{f['model']}" for f in slow}
    sections = []
    if flagged:
        rows = "".join(f"<tr><td class='bad'>{esc(f['profile'])}</td><td class='bad'>{esc(f['model'])}</td>"
                       f"<td>{esc(f['kind'])}</td><td>{esc(describe_change(f))}</td></tr>" for f in flagged)
        sections.append(("Regressions in the latest night", "<table><tr><th>profile</th><th>model</th><th>what</th>"
                         f"<th>change (latency: reference-normalised)</th></tr>{rows}</table>"))
    else:
        sections.append(("Regressions in the latest night", "<p>None: every change is within the measured noise.</p>"))
    if nights:
        sections.append((f"Latest night: {nights[-1]['label']}", _run_report_link(run_dir, Path(out_dir))
                         + _latest_table(nights[-1])))
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
        scores: dict[str, list] = {}
        for n in nights:
            for r in n["rows"]:
                if r["profile"] == profile:
                    for deg, q in row_qualities(r).items():
                        scores.setdefault(f"{r['model']} ({deg})", []).append(
                            (n["label"][-15:], q["mean"], _stderr(q["per_image"])))
        if scores:
            dropped = {f"{f['model']} ({f['degradation']})" for f in worse if f["profile"] == profile}
            sections.append((f"Quality on {profile}", img(trend(scores, f"{profile}: PSNR-Y on the run's test photographs "
                                                                "(per degradation; ± standard error)", dropped,
                                                                ylabel="PSNR-Y (dB)", log=False), f"quality {profile}")))
    out = Path(out_dir)
    path = out / "index.html"
    atomic_write_text(path, page("TOC-SR nightly benchmark", sections, {"nights": len(nights)}))
    latest = nights[-1] if nights else None
    write_artifact(out / "regressions.json", REGRESSIONS_KIND, 1,
                   {"night": latest["night"] if latest else None, "night_status": latest["status"] if latest else None,
                    "flagged": flagged, "exit_code": exit_code(latest, flagged), "exit_codes": {
                        "clean": EXIT_CLEAN, "error": EXIT_ERROR, "regression": EXIT_REGRESSION}},
                   environment=environment())
    return path, flagged


def exit_code(latest: dict[str, Any] | None, flagged: list[dict[str, Any]]) -> int:
    """What `tocsr nightly` exits with for the latest night (see the module doc)."""
    if latest is None or latest["status"] != "complete":
        return EXIT_ERROR
    return EXIT_REGRESSION if flagged else EXIT_CLEAN


def find_night(nights: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """A night by its stamp, label, history file stem, or commit (prefix; the latest night at that commit)."""
    exact = [n for n in nights if ref in (n["night"], n["label"], n.get("file"))]
    if len(exact) == 1:
        return exact[0]

    def sha(n: dict[str, Any]) -> str:
        return ((n.get("environment") or {}).get("git") or {}).get("sha") or ""

    by_commit = [n for n in nights if len(ref) >= 4 and sha(n).startswith(ref)]
    if by_commit and not exact:
        return by_commit[-1]
    known = ", ".join(n["label"] for n in nights[-8:]) or "none"
    if len(exact) > 1:
        raise ArtifactError(f"night {ref!r} names {len(exact)} nights; give a night stamp (one of the history's "
                            f"file names) instead")
    raise ArtifactError(f"no night {ref!r} in the history (a night stamp, label or commit); latest: {known}")


def compare_nights(a: dict[str, Any], b: dict[str, Any], nights: list[dict[str, Any]] | None = None,
                   min_step: float = 0.10, noise_k: float = 4.0, p_value: float = 1e-3) -> list[dict[str, Any]]:
    """Per (profile, model) in both nights: latency relative to each night's reference, the change from `a`
    to `b`, and whether it is beyond noise: larger than the regression policy's bar (`noise_threshold` over
    the complete nights of `nights` other than `b`, with `a` among them) and the samples differ (two-sided
    Mann-Whitney on each sample over its night's reference median, p < `p_value`)."""
    from scipy.stats import mannwhitneyu

    def cells(night):
        rows = {(r["profile"], r["model"]): r for r in night["rows"]}
        out = {}
        for (profile, model), r in rows.items():
            ref = rows.get((profile, REFERENCE))
            if model == REFERENCE or "median_ms" not in r or not ref or "median_ms" not in ref:
                continue
            out[(profile, model)] = (r["median_ms"] / ref["median_ms"],
                                     np.asarray(r.get("samples_ms") or [r["median_ms"]]) / ref["median_ms"])
        return out

    others = [n for n in (nights or []) if n["status"] == "complete" and n is not b and n["night"] != b["night"]]
    if not any(n["night"] == a["night"] for n in others):
        others.append(a)
    ca, cb = cells(a), cells(b)
    result = []
    for key in sorted(set(ca) | set(cb)):
        if key not in ca or key not in cb:
            result.append({"profile": key[0], "model": key[1], "only_in": a["label"] if key in ca else b["label"]})
            continue
        (ra, sa), (rb, sb) = ca[key], cb[key]
        change = rb / ra - 1
        p = float(mannwhitneyu(sb, sa, alternative="two-sided").pvalue) if len(sa) > 1 and len(sb) > 1 else 1.0
        past = [r for r, _ in (_ratio(n, *key) for n in others) if r is not None]
        noise = noise_threshold(past, min_step, noise_k)
        qa, qb = quality_of(a, *key), quality_of(b, *key)
        row_a, row_b = (next(r for r in n["rows"] if (r["profile"], r["model"]) == key) for n in (a, b))
        result.append({"profile": key[0], "model": key[1], "ratio_a": ra, "ratio_b": rb, "change": change,
                       "noise": noise, "nights_in_noise": len(past), "p_value": p,
                       "beyond_noise": bool(abs(change) > noise and p < p_value),
                       "peak_mib_a": row_a.get("peak_mib"), "peak_mib_b": row_b.get("peak_mib"),
                       "energy_mj_a": row_a.get("energy_mj"), "energy_mj_b": row_b.get("energy_mj"),
                       "cores_a": row_a.get("effective_cores"), "cores_b": row_b.get("effective_cores"),
                       "quality": quality_changes(qb, qa)})
    return result


def describe_change(f: dict[str, Any]) -> str:
    """What a flag says changed, and by how much against which bar."""
    if f["kind"] == "quality":
        return (f"PSNR-Y ({f.get('degradation', 'bicubic')} degradation) {f['change_db']:+.3f} dB "
                f"[{f['low_db']:+.3f}, {f['high_db']:+.3f}] over {f['n_images']} images vs the last complete night")
    if f["kind"] == "memory":
        return (f"peak memory {f['peak_mib_before']:.1f} -> {f['peak_mib']:.1f} MiB ({100 * f['step']:+.1f}%; bar "
                f"+{100 * f['min_step']:.0f}% and +{f['min_mib']:g} MiB over every earlier night)")
    return (f"{100 * f['step']:+.1f}% (threshold {100 * f['threshold']:.1f}%, p {f['p_value']:.1e})"
            + cores_said(f.get("cores_now"), f.get("cores_before")))


def describe_flag(f: dict[str, Any]) -> str:
    return f"{f['profile']}/{f['model']}: {f['kind']}, {describe_change(f)}"


def describe_comparison(a: dict[str, Any], b: dict[str, Any], cells: list[dict[str, Any]]) -> list[str]:
    lines = [f"{a['label']} -> {b['label']}: latency relative to each night's reference workload (measured)"]
    for c in cells:
        if "only_in" in c:
            lines.append(f"  {c['profile']}/{c['model']}: only in {c['only_in']}")
            continue
        verdict = "BEYOND NOISE" if c["beyond_noise"] else "within noise"
        line = (f"  {c['profile']}/{c['model']}: latency {c['ratio_a']:.3f} -> {c['ratio_b']:.3f} "
                f"({100 * c['change']:+.1f}%; noise bar {100 * c['noise']:.1f}% from {c['nights_in_noise']} night(s), "
                f"p {c['p_value']:.1e}): {verdict}")
        if c["beyond_noise"] and c["change"] > 0:
            line += cores_said(c.get("cores_b"), c.get("cores_a"))
        if c.get("peak_mib_a") is not None and c.get("peak_mib_b") is not None:
            line += f"; peak memory {c['peak_mib_a']:.1f} -> {c['peak_mib_b']:.1f} MiB"
        if c.get("energy_mj_a") is not None and c.get("energy_mj_b") is not None:
            line += f"; energy {c['energy_mj_a']:.2f} -> {c['energy_mj_b']:.2f} mJ"
        for deg, q in (c.get("quality") or {}).items():
            line += (f"; PSNR-Y ({deg}) {q['change_db']:+.3f} dB [{q['low_db']:+.3f}, {q['high_db']:+.3f}]: "
                     f"{'DROP BEYOND NOISE' if q['drop'] else 'within noise'}")
        lines.append(line)
    return lines
