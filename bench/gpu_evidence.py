"""GPU evidence in one prepared run (`nox -s gpu`, or `python -m bench.gpu_evidence --out DIR`).

Sections, in priority order, each written to JSON as soon as it finishes (a lease can end early):
  1. counting      MACs on the GPU vs the closed form; thop vs our counter on conv/linear.
  2. repeatability the SD-2.1-shaped 16-ch UNet measured three times on the card's profile.
  3. sr_pipelines  one-step SR pipelines at 128 -> 512 vs classical baselines and the OSEDiff-class
                   cost (SD3-shaped VAE encode + expanded UNet + decode), batch 1, profile precision.
  4. cost_table    the SD-2.1-shaped search space's per-(slot, choice) cost table on the card,
                   whole candidates for calibration and held-out validation.
Each section takes an execution mode (`sr_pipelines:cuda_graphs`): eager by default; CUDA graphs
remove the launch overhead that dominates batch-1 eager latency (torch.compile stands in on CPU).
Weights are random throughout: cost does not depend on their values. `--smoke` runs the same code
on CPU at tiny shapes, to test the script before a lease.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.costtable import CostTableInvalid, measure_cost_table
from bench.counting import count_macs
from bench.measure import Measurement, measure_workload
from bench.nvml import Nvml
from bench.probe import TorchProbe
from bench.profile import DeviceProfile, load_profile, parse_profile, replace
from bench.workloads import ConvLinearAttention, Workload, resolve_workload
from tocsr.core.artifacts import atomic_write_text, write_artifact
from tocsr.core.provenance import environment

KIND = "tocsr.gpu_evidence"
SCHEMA_VERSION = 1

SMOKE_PROFILE = """
schema_version: 1
name: smoke-cpu
device: {kind: cpu, threads: 2}
precision: fp32
resolution: {output_px: 64, scale: 4, vae_factor: 8}
timing: {warmup_min_iters: 2, warmup_max_iters: 6, repeats: 5, percentile: 90, max_cv: 1.0}
budgets: {latency_ms: 1000, peak_memory_mib: 4096}
"""

# Architecture-only compact candidates for the pipeline timings: at paper scale no trained fidelity
# exists here, so these are named shapes, not search results.
COMPACT_SPECS = {
    "compact-bneck2-linattn": {"resnet": "res_bneck2", "attention": "attn_linear"},
    "compact-bneck4-convmix": {"resnet": "res_bneck4", "attention": "attn_convmixer"},
}


class Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def log(msg: str, clock: Clock) -> None:
    print(f"[{clock.elapsed():6.1f}s] {msg}", flush=True)


def _m(m: Measurement, percentile: float) -> dict[str, Any]:
    lat = m.latency
    return {"model": m.model, "status": m.status, "error": m.error, "params_m": m.params / 1e6,
            "gmacs": m.macs.gmacs if m.macs else None,
            "median_ms": lat.median_ms if lat else None, f"p{percentile:g}_ms": lat.percentile_ms(percentile) if lat else None,
            "p90_ms": lat.p90_ms if lat else None, "p99_ms": lat.p99_ms if lat else None,
            "iqr_ms": lat.iqr_ms if lat else None, "cv": lat.cv if lat else None, "n": lat.n if lat else None,
            "peak_memory_mib": m.peak_memory_mib, "energy_mj": m.energy_mj_per_inference,
            "telemetry_after": m.telemetry_after.to_dict() if m.telemetry_after else None,
            "samples_ms": list(lat.samples_ms) if lat else None, "notes": list(m.notes)}


def section_counting(device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model = ConvLinearAttention(32, 64, 4).to(device)
    x = torch.randn(2, 32, 16, 16, device=device)
    analytic = ConvLinearAttention.analytic_macs(2, 32, 64, 16, 16)
    counted = count_macs(model, (x,)).total_macs
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.Conv2d(32, 8, 1),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 10)).to(device)
    thop_c = count_macs(conv, (torch.randn(1, 3, 16, 16, device=device),), thop_check=True)
    return {"device": str(device), "toy_analytic_macs": analytic, "toy_counted_macs": counted,
            "toy_rel_err": abs(counted - analytic) / analytic,
            "conv_linear_counted": thop_c.total_macs, "conv_linear_thop": thop_c.thop_macs,
            "thop_agrees": thop_c.thop_macs == thop_c.total_macs}


def section_repeatability(profile: DeviceProfile, unet_workload: str) -> dict[str, Any]:
    """Three measurements in a row of one model (built once: construction is not what is measured)."""
    runs = []
    workload = resolve_workload(unet_workload, profile)
    for _ in range(3):
        m = measure_workload(workload, profile)
        runs.append(_m(m, profile.timing.percentile))
    medians = [r["median_ms"] for r in runs if r["median_ms"]]
    spread = (max(medians) - min(medians)) / min(medians) if medians else None
    return {"workload": unet_workload, "profile": profile.name, "runs": runs,
            "median_spread_rel": spread, "max_cv": max(r["cv"] or 0 for r in runs)}


def _pipelines(args, profile: DeviceProfile, space, device) -> dict[str, Callable[[], Workload]]:
    """Builders, not models: each pipeline is built when measured and freed after, so only one
    paper-scale model is resident at a time (and memory figures are its own)."""
    from tocsr.core.baselines import build_baseline
    from tocsr.core.models.autoencoder import build_autoencoder_from_preset
    from tocsr.core.models.unet import get_unet_preset
    from tocsr.core.sr.models import OneStepStudent
    from tocsr.core.sr.onestep import OneStepSR

    preset = get_unet_preset(args.unet_preset)
    scale, lr_px = profile.resolution.scale, profile.resolution.input_px
    lr01 = torch.rand(profile.batch, 3, lr_px, lr_px, generator=torch.Generator().manual_seed(0))
    items: dict[str, Callable[[], Workload]] = {}

    unet_config = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(space.unet_config).items()}

    def onestep(name: str, ae_preset: str, arch_choices: dict[str, str]) -> None:
        """The shipped one-step model (tocsr.core.sr.onestep.OneStepSR) with random weights."""
        def build() -> Workload:
            with torch.device(device):
                ae = build_autoencoder_from_preset(ae_preset)
                student = OneStepStudent(unet_config=unet_config, arch_choices=arch_choices,
                                         cond_tokens=preset.cond_tokens, cross_attention_dim=preset.cross_attention_dim)
            pipe = OneStepSR(ae, student, scale)
            return Workload(name, pipe, (lr01 * 2 - 1,), {}, f"one-step SR: {ae_preset} autoencoder + UNet")
        items[name] = build

    for spec_name, by_kind in COMPACT_SPECS.items():
        choices = space.uniform(by_kind).replaced()
        for ae in (args.tiny_ae, args.ae_preset):
            onestep(f"{spec_name}+{ae}", ae, choices)
    onestep(f"osediff-class({args.ae_preset}+{args.unet_preset})", args.ae_preset, {})
    for name in ("bicubic", "espcn", "span", "srvgg", "swinir-light", "rrdb", "swinir-m"):
        items[name] = lambda name=name: Workload(name, build_baseline(name, scale, lr_px), (lr01,), {}, name)
    return items


def section_sr_pipelines(args, profile: DeviceProfile, space, device, clock: Clock, reserve_s: float) -> dict[str, Any]:
    rows = {}
    for name, build in _pipelines(args, profile, space, device).items():
        if clock.left() < reserve_s:
            rows[name] = {"model": name, "status": "skipped", "error": "time budget of the lease"}
            continue
        w = build()
        m = measure_workload(w, profile)
        rows[name] = _m(m, profile.timing.percentile) | {"description": w.description}
        log(f"  {name} [{profile.execution_mode}]: median {rows[name]['median_ms']} ms, "
            f"{rows[name]['params_m']:.2f} M params, peak {rows[name]['peak_memory_mib']} MiB", clock)
        del w, m
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"profile": profile.name, "execution_mode": profile.execution_mode, "input_px": profile.resolution.input_px,
            "output_px": profile.resolution.output_px, "rows": rows}


def section_cost_table(args, profile: DeviceProfile, space, device, clock: Clock, reserve_s: float) -> dict[str, Any]:
    from tocsr.core.assembly import build_module_bank
    from tocsr.core.models.unet import build_unet_from_preset, get_unet_preset, unet_example_inputs

    preset = get_unet_preset(args.unet_preset)
    with torch.device(device):
        teacher = build_unet_from_preset(args.unet_preset, device)
    uargs, ukwargs = unet_example_inputs(preset.config, preset.cond_tokens, profile.batch, profile.resolution.latent_px)
    bank = build_module_bank(space, device)
    light = replace(profile, timing={**profile.to_dict()["timing"], "repeats": args.cost_repeats})
    done = {"n": 0}

    def progress(msg: str) -> None:
        done["n"] += 1
        if done["n"] % 40 == 0 or msg.startswith(("calibration", "holdout")) and msg.endswith(("/10", "0")):
            log(f"  cost table: {msg}", clock)

    probe = TorchProbe(space, teacher, uargs, ukwargs, light, bank)
    try:
        table = measure_cost_table(space, probe, light, n_calibration=args.n_calibration, n_holdout=args.n_holdout,
                                   seed=0, progress=progress, deadline=lambda: clock.left() < reserve_s)
    except CostTableInvalid as err:     # evidence either way: keep the table and say it missed its bar
        log(f"  cost table: {err}", clock)
        table = err.table
    static = {"slots": len(space.slots), "choices_per_slot": {s.name: list(s.choices) for s in space.slots},
              "space_size": str(space.size)}
    return {"profile": light.name, "repeats": args.cost_repeats, "static": static, "table": table.to_dict()}


def _split(key: str) -> tuple[str, str]:
    name, _, mode = key.partition(":")
    return name, mode or "eager"


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc.get("environment", {})
    card = doc.get("card", "?")
    lines = [f"# GPU evidence: {card}", "",
             f"Measured {env.get('created_utc', '?')} on **{card}** (driver {doc.get('driver_version')}), torch "
             f"{env.get('packages', {}).get('torch')}, diffusers {env.get('packages', {}).get('diffusers')}, "
             f"commit {env.get('git', {}).get('sha')}. Random weights (cost does not depend on them). "
             f"Clocks before: {doc.get('telemetry_start')}.", ""]
    for key, sec in doc.get("sections", {}).items():
        name, mode = _split(key)
        if "error" in sec:
            lines += [f"## {key}: not measured", "", "```", sec["error"][-1500:], "```", ""]
        elif name == "counting":
            lines += ["## MAC counting on the GPU", "",
                      f"Toy conv+linear+attention: counted {sec['toy_counted_macs']:,} vs closed form "
                      f"{sec['toy_analytic_macs']:,} (rel. error {sec['toy_rel_err']:.2e}); conv/linear module: ours "
                      f"{sec['conv_linear_counted']:,}, thop {sec['conv_linear_thop']:,} (agree: {sec['thop_agrees']}).", ""]
        elif name == "repeatability":
            lines += [f"## Repeatability: {sec['workload']} on {sec['profile']}, {mode}", "",
                      "| run | median ms | p90 ms | p99 ms | IQR ms | CV | peak MiB | energy mJ |",
                      "|---|---|---|---|---|---|---|---|"]
            for i, run in enumerate(sec["runs"]):
                lines.append(f"| {i + 1} | {run['median_ms']:.2f} | {run['p90_ms']:.2f} | {run['p99_ms']:.2f} | "
                             f"{run['iqr_ms']:.3f} | {run['cv']:.3f} | {run['peak_memory_mib']:.0f} | "
                             f"{_fmt(run['energy_mj'])} |")
            lines += ["", f"Spread of medians across runs: {100 * sec['median_spread_rel']:.1f}%.", ""]
        elif name == "sr_pipelines":
            lines += [f"## SR at {sec['input_px']} -> {sec['output_px']} px, batch 1, {sec['profile']}, {mode}", "",
                      "| method | params M | GMACs | median ms | p90 ms | CV | peak MiB | energy mJ/image |",
                      "|---|---|---|---|---|---|---|---|"]
            for n, row in sorted(sec["rows"].items(), key=lambda kv: kv[1].get("median_ms") or math.inf):
                if row.get("median_ms") is None:
                    lines.append(f"| {n} | - | - | {row.get('status')}: {row.get('error')} | | | | |")
                    continue
                lines.append(f"| {n} | {row['params_m']:.2f} | {row['gmacs']:.1f} | {row['median_ms']:.2f} | "
                             f"{row['p90_ms']:.2f} | {row['cv']:.3f} | {row['peak_memory_mib']:.0f} | "
                             f"{_fmt(row['energy_mj'])} |")
            lines.append("")
        elif name == "cost_table":
            t, v = sec["table"], sec["table"]["validation"]
            lines += [f"## Cost table, {mode}: {sec['static']['slots']} slots, {len(t['entries'])} (slot, choice) "
                      f"entries, {t['precision']}", "",
                      f"Fit on {sum(1 for c in t['candidates'] if c['role'] == 'calibration')} calibration "
                      f"candidates, every latency paired with the teacher ({t['reference_ms']:.2f} ms): "
                      f"{t['correction']['kind']} correction, intercept {t['correction']['intercept']:.3f} x the "
                      f"teacher, slopes {t['correction']['slopes']}.", ""]
            if v.get("n"):
                lines += [f"Held-out candidates: {v['n']}; within ±10%: {100 * v['within_10pct']:.0f}%, within ±5%: "
                          f"{100 * v['within_5pct']:.0f}%; median |error| {100 * v['median_abs_err']:.1f}%, p90 "
                          f"{100 * v['p90_abs_err']:.1f}%, max {100 * v['max_abs_err']:.1f}%, mean signed "
                          f"{100 * v['mean_signed_err']:+.1f}%.", ""]
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m bench.gpu_evidence` (the docs' lines: tests/test_docs_commands.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--profile", default=None, help="default: h100-bf16 on an H100, else h200-bf16")
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--unet-preset", default="sd21")
    ap.add_argument("--ae-preset", default="sd3-shape")
    ap.add_argument("--tiny-ae", default="tiny16")
    ap.add_argument("--n-calibration", type=int, default=10)
    ap.add_argument("--n-holdout", type=int, default=40)
    ap.add_argument("--cost-repeats", type=int, default=50)
    ap.add_argument("--sections", default="counting,repeatability,repeatability:cuda_graphs,sr_pipelines,"
                    "sr_pipelines:cuda_graphs,cost_table:cuda_graphs,cost_table",
                    help="comma-separated section[:execution_mode], run in this order")
    ap.add_argument("--cost-table-reserve-frac", type=float, default=0.05)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: test the script itself")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    clock = Clock(args.budget_s)
    if args.smoke:
        profile = parse_profile(SMOKE_PROFILE, "smoke")
        args.unet_preset, args.ae_preset, args.tiny_ae = "tiny", "tiny", "tiny16"
        args.n_calibration, args.n_holdout, args.cost_repeats = min(args.n_calibration, 4), min(args.n_holdout, 4), 5
        unet_workload = "unet-tiny"
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device; use --smoke to test this script on CPU", file=sys.stderr)
            return 1
        name = torch.cuda.get_device_name(0)
        profile = load_profile(args.profile or ("h100-bf16" if "H100" in name else "h200-bf16"))
        unet_workload = f"unet-{args.unet_preset}"
    from tocsr.core.models.unet import build_unet_from_preset
    from tocsr.core.space import derive_search_space

    device = torch.device("cuda", 0) if profile.device.kind == "cuda" else torch.device("cpu")
    nvml = Nvml(0) if device.type == "cuda" else None
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke)"
    doc: dict[str, Any] = {"card": card, "driver_version": nvml.driver_version() if nvml else None,
                           "telemetry_start": nvml.snapshot().to_dict() if nvml and nvml.snapshot() else None,
                           "profile": profile.to_dict(), "args": {k: str(v) for k, v in vars(args).items()},
                           "sections": {}}
    env = environment({"measured_device": card})
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        doc["wall_s"] = clock.elapsed()
        write_artifact(args.out / "gpu_evidence.json", KIND, SCHEMA_VERSION, doc, environment=env)
        atomic_write_text(args.out / "gpu_evidence.md", render_markdown({**doc, "environment": env}))

    space = derive_search_space(build_unet_from_preset(args.unet_preset, "meta"))
    log(f"card {card}; profile {profile.name}; space {len(space.slots)} slots", clock)
    makers = {
        "counting": lambda p, r: section_counting(device),
        "repeatability": lambda p, r: section_repeatability(p, unet_workload),
        "sr_pipelines": lambda p, r: section_sr_pipelines(args, p, space, device, clock, r),
        "cost_table": lambda p, r: section_cost_table(args, p, space, device, clock, r),
    }
    # (section:mode, seconds that must be left to start it, seconds it must leave for what follows)
    plan = []
    for key in args.sections.split(","):
        name, mode = _split(key)
        if name not in makers:
            print(f"error: unknown section {name!r}; known: {', '.join(makers)}", file=sys.stderr)
            return 1
        plan.append((key, name, mode))
    # Seconds a section leaves for those after it (the cost table stops its held-out loop there).
    reserve = {"counting": 0, "repeatability": 0.2 * args.budget_s, "sr_pipelines": 0.15 * args.budget_s,
               "cost_table": args.cost_table_reserve_frac * args.budget_s}
    for key, name, mode in plan:
        if device.type != "cuda" and mode == "cuda_graphs":
            mode = "compiled"
        prof = replace(profile, execution_mode=mode) if mode != profile.execution_mode else profile
        if clock.left() < reserve[name] + 10:
            doc["sections"][key] = {"error": f"skipped: {clock.left():.0f} s left of the lease budget"}
            log(f"skip {key}", clock)
            save()
            continue
        log(f"section {key}", clock)
        try:
            doc["sections"][key] = makers[name](prof, reserve[name])
        except Exception:  # noqa: BLE001  one failed section must not lose the others: traceback kept in the JSON
            doc["sections"][key] = {"error": traceback.format_exc()}
            log(f"section {key} failed:\n{traceback.format_exc()}", clock)
        save()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    log(f"done; wrote {args.out}/gpu_evidence.json and .md", clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
