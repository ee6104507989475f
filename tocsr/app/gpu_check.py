"""The `gpu` run preset at full shape on one card, every stage cut short (`nox -s gpu_preset`, or
`python -m tocsr.app.gpu_check --out reports/gpu`).

What it records, in order, each written to JSON as soon as it is known (a lease can end early):
  1. reference   training throughput of a 16-channel UNet at 32x32 latents (the `base` UNet preset) in the
                 accelerator's precision, beside the figure the issue expects on an H200 (about 1,100 images/s
                 for a 64M-parameter UNet in bf16); the UNet's parameter count is recorded with it.
  2. estimate    the gpu preset's training stages, each timed for a few steps at full shape (step time, images/s,
                 CUDA peak memory; tocsr.app.estimate) and multiplied by the uncapped preset's steps, as the preset
                 prints before it commits to a run.
  3. run         the main job on the gpu preset with every training stage capped at `--max-steps` steps, the
                 caches sized to match: whether every stage completes, and each stage's wall seconds. Its models
                 are not for use: a check of the wiring at paper shape.
  4. costs       the run's cost stage on the card, in the profile's mode: the backbone table's and the pipeline
                 cost model's errors on held-out whole one-step SR pipelines (`--pipelines`, 30 by default: the
                 pipeline-budget issue's bar is >= 90% of >= 30 within +-10%), the fixed parts' times, and the
                 table files themselves (copied beside the record). Recorded even when a later stage fails.
Weights are random, in the folders a user's downloads would be: an SD3-shaped AutoencoderKL (imported) and a
4-channel SD-2.1-shaped UNet (widened to 16 channels on import, then fine-tuned). `--smoke` runs the same code
on CPU with the gpu-tiny preset, to test the script before a lease. Stopped by SIGTERM (`timeout`), it writes
what finished (the run's finished stages under `run_partial`) before it exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from tocsr.core.artifacts import write_artifact

KIND = "tocsr.gpu_preset_check"
SCHEMA_VERSION = 1
# The expectation for the reference UNet on an H200 in bf16 (not a measurement of ours).
EXPECTED_H200_IMAGES_PER_S = 1100.0


def check_preset(name: str, max_steps: int, smoke: bool, calibration: int = 10, holdout: int = 20,
                 pipelines: int = 30):
    """The preset the check runs: `name` capped at `max_steps`, with its data caches cut to what those steps use
    and `calibration` / `holdout` / `pipelines` cost-table candidates (a few in the smoke run: it tests the wiring,
    not a device). Its estimate is a part of the check of its own, not repeated by the run."""
    from tocsr.app.mainjob import RUN_PRESETS

    rp = RUN_PRESETS[name].capped(max_steps)
    if smoke:
        calibration, holdout, pipelines = min(calibration, 4), min(holdout, 4), min(pipelines, 2)
    return dataclasses.replace(
        rp, sr_pair_cache=min(rp.sr_pair_cache, 64), sr_teacher_cache=min(rp.sr_teacher_cache, 8),
        calibration=calibration, holdout=holdout, pipelines=pipelines,
        search_evaluations=min(rp.search_evaluations, 12), baselines=rp.baselines[:1],
        test_max_px=min(rp.test_max_px, 512 if not smoke else 128),
        # CUDA graphs replay steadily on a card (reports/gpu/), so 20 samples per timing give a stable p90.
        timing_override={"repeats": 20, "paired_rounds": 2, "warmup_max_iters": 20, "max_retries": 1},
        estimate_first=False)


def reference_throughput(acc, smoke: bool) -> dict[str, Any]:
    """Training images/s of the `base` UNet (16 channels, 32x32 latents): the figure to hold against the
    expected H200 throughput."""
    from tocsr.app.estimate import time_steps, train_step
    from tocsr.core.models.unet import get_unet_preset

    cfg = dict(get_unet_preset("tiny" if smoke else "base").config)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**cfg).to(acc.device).train()
    side, batch = int(cfg["sample_size"]), 8 if smoke else 256
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, cfg["in_channels"], side, side, generator=gen).to(acc.device)
    t = torch.randint(0, 1000, (batch,), generator=gen).to(acc.device)
    cond = torch.zeros(batch, 1, cfg["cross_attention_dim"], device=acc.device)
    step = train_step(unet.parameters(), lambda: unet(z, t, encoder_hidden_states=cond, return_dict=False)[0]
                      .float().square().mean(), acc)
    times, peak = time_steps(step, acc.device, 3 if smoke else 10, warmup=2)
    median = sorted(times)[len(times) // 2]
    params = sum(p.numel() for p in unet.parameters())
    return {"unet_preset": "tiny" if smoke else "base", "params": params, "latent": [cfg["in_channels"], side, side],
            "batch": batch, "precision": "bf16" if acc.mixed_precision == "bf16" else "fp32",
            "step_s": list(times), "images_per_s": batch / median, "peak_memory_bytes": peak, "measured": True,
            "expected_h200_images_per_s_64m": EXPECTED_H200_IMAGES_PER_S,
            # Our reference UNet is not 64M parameters: the expectation scaled by parameter count, a rough guide
            # (throughput goes with compute, which parameters only approximate), never a measurement.
            "expected_h200_images_per_s_scaled_by_params": EXPECTED_H200_IMAGES_PER_S * 64e6 / params}


def write_random_weights(folder: Path, teacher_preset: str) -> tuple[Path, Path]:
    """A random SD3-shaped VAE folder and a random 4-channel UNet folder of the preset's shape (SD 2.1's layout),
    as a user's downloads would be: the run imports the first and widens the second to 16 channels."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from tocsr.core.models.autoencoder import get_autoencoder_preset
    from tocsr.core.models.unet import get_unet_preset
    from tocsr.core.teacher.presets import get_teacher_preset

    tp = get_teacher_preset(teacher_preset)
    torch.manual_seed(0)
    AutoencoderKL(**get_autoencoder_preset(tp.autoencoder).config).save_pretrained(folder / "vae")
    UNet2DConditionModel(**{**get_unet_preset(tp.unet).config, "in_channels": 4, "out_channels": 4}).save_pretrained(
        folder / "unet4")
    return folder / "vae", folder / "unet4"


def with_changes(profile: Path, folder: Path, why: str, **changes) -> Path:
    """The profile with `changes`, written to `folder` with `why` on its first line (what was measured against is
    on record)."""
    import yaml

    from bench.profile import load_profile, replace

    p = load_profile(profile)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{p.name}.yaml"
    path.write_text(f"# {p.name} {why} (tocsr.app.gpu_check)\n"
                    + yaml.safe_dump(replace(p, **changes).to_dict(), sort_keys=False))
    return path


def with_mode(profile: Path, mode: str, folder: Path) -> Path:
    """The profile with its cost tables measured in `mode`."""
    from bench.profile import load_profile

    if load_profile(profile).execution_mode == mode:
        return profile
    return with_changes(profile, folder, f"measured in {mode}", execution_mode=mode)


def smoke_profile(profile: Path, folder: Path) -> Path:
    """cpu-2core with room in its latency budget. The gpu-tiny space's cheapest pipeline sits at about the
    profile's own bound on this CPU, so whether the search finds a feasible candidate would turn on a few percent
    of timing noise; the smoke run checks the script's wiring, not that bound."""
    from bench.profile import load_profile

    budgets = {**load_profile(profile).to_dict()["budgets"], "latency_vs_teacher": 0.8}
    return with_changes(profile, folder, "with room in its latency budget for the smoke run", budgets=budgets)


def costs_evidence(run: Path, out: Path) -> dict[str, Any]:
    """Per cost table the run measured: the backbone table's validation on held-out candidates and, when the
    pipeline's parts were measured beside it, the pipeline model's on held-out whole pipelines, the fixed parts'
    median times and the teacher-shaped pipeline's; the files are copied to `out`."""
    import shutil

    from bench.costtable import CostTable
    from bench.pipeline import PipelineCostModel, PipelineParts, pipeline_parts_path

    found: dict[str, Any] = {}
    for path in sorted((run / "costs").glob("*.json")):
        if path.name.endswith((".pipeline.json", ".rejected.json")):
            continue
        table = CostTable.load(path)
        files = [path]
        found[path.stem] = {"device_name": table.device_name, "execution_mode": table.execution_mode,
                            "entries": len(table.entries), "reference_ms": table.reference_ms,
                            "backbone_table_validation": table.validation_summary(), "pipeline_validation": None}
        if pipeline_parts_path(path).is_file():
            model = PipelineCostModel(table, PipelineParts.load(pipeline_parts_path(path)))
            teacher = [c for c in model.candidates if c.role == "teacher"]
            found[path.stem].update(
                pipeline_validation=model.validation_summary(),
                parts_median_ms={p.name: p.median_ms for p in model.pipeline.parts},
                teacher_pipeline_median_ms=teacher[0].latency.ratio * teacher[0].latency.reference_ms if teacher else None)
            files.append(pipeline_parts_path(path))
        found[path.stem]["files"] = [f.name for f in files]
        for f in files:
            shutil.copyfile(f, out / f"costs-{f.name}")
    return found


def stage_walls(run: Path) -> dict[str, float]:
    walls = {}
    for marker in sorted((run / "stages").glob("*.json")):
        if not marker.name.endswith(".started.json"):
            walls[marker.stem] = float(json.loads(marker.read_text())["wall_s"])
    return walls


PARTS = ("reference", "estimate", "run")       # what the script does, in this order; `--skip` names some


def skipped_parts(names: str) -> frozenset[str]:
    """`--skip`'s comma-separated names. A misspelt one is refused here: ignored, it would spend minutes of a lease
    on the part it meant to skip."""
    skip = frozenset(s.strip() for s in names.split(",") if s.strip())
    if not skip <= set(PARTS):
        raise argparse.ArgumentTypeError(f"{', '.join(sorted(skip - set(PARTS)))} is no part of this script; "
                                         f"give some of {', '.join(PARTS)}, comma-separated")
    return skip


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m tocsr.app.gpu_check` (the docs' lines: tests/test_docs_commands.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder; the record goes to <out>/<card>/gpu_preset.json")
    ap.add_argument("--profile", default=None, help="default: h100-bf16 on an H100, else h200-bf16")
    ap.add_argument("--max-steps", type=int, default=3, help="steps of each training stage in the run")
    ap.add_argument("--mode", default="cuda_graphs", choices=("eager", "cuda_graphs"),
                    help="the cost tables' execution mode on the card (the profile is copied with it)")
    ap.add_argument("--calibration", type=int, default=10, help="the run's cost-table calibration candidates")
    ap.add_argument("--holdout", type=int, default=20, help="the run's held-out backbone candidates")
    ap.add_argument("--pipelines", type=int, default=30, help="the run's held-out whole one-step SR pipelines")
    ap.add_argument("--skip", type=skipped_parts, default=frozenset(),
                    help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--smoke", action="store_true", help="CPU, the gpu-tiny preset: test the script itself")
    return ap


def main(argv: list[str] | None = None) -> int:
    from tocsr.app.estimate import estimate_run
    from tocsr.app.mainjob import run_main_job
    from tocsr.core.provenance import environment
    from tocsr.core.training import make_accelerator

    args = build_parser().parse_args(argv)
    skip = args.skip
    repo = Path(__file__).resolve().parents[2]
    if args.smoke:
        preset, profile = "gpu-tiny", repo / "hw_profiles" / "cpu-2core.yaml"
        card = "cpu (smoke)"
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device; use --smoke to test this script on CPU", file=sys.stderr)
            return 1
        card = torch.cuda.get_device_name(0)
        preset = "gpu"
        profile = Path(args.profile) if args.profile else \
            repo / "hw_profiles" / ("h100-bf16.yaml" if "H100" in card else "h200-bf16.yaml")
    slug = "cpu-smoke" if args.smoke else "nvidia-" + ("h100" if "H100" in card else "h200" if "H200" in card
                                                        else card.lower().replace(" ", "-"))
    out = args.out / slug
    out.mkdir(parents=True, exist_ok=True)
    rp = check_preset(preset, args.max_steps, args.smoke, args.calibration, args.holdout, args.pipelines)
    acc = make_accelerator()
    env = environment({"measured_device": card})
    doc: dict[str, Any] = {"card": card, "preset": dataclasses.asdict(rp),
                           "profile": str(profile.relative_to(repo) if profile.is_relative_to(repo) else profile),
                           "execution_mode": "eager" if args.smoke else args.mode, "max_steps": args.max_steps,
                           "parts": {}}
    t0 = time.perf_counter()
    # `timeout` (a lease's limit) sends SIGTERM: raised as SystemExit, so the parts finished so far and the run's
    # finished stages are written before the process ends.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))

    def save() -> None:
        doc["wall_s"] = time.perf_counter() - t0
        write_artifact(out / "gpu_preset.json", KIND, SCHEMA_VERSION, doc, environment=env)

    def part(name: str, fn) -> None:
        if name in skip:
            doc["parts"][name] = {"skipped": True}
            return
        t = time.perf_counter()
        print(f"[{time.perf_counter() - t0:7.1f} s] {name} ...", flush=True)
        try:
            doc["parts"][name] = {**fn(), "completed": True, "wall_s": time.perf_counter() - t}
        except BaseException as err:  # noqa: BLE001  the record must say what failed; the next part still runs
            doc["parts"][name] = {"completed": False, "error": f"{type(err).__name__}: {err}",
                                  "traceback": traceback.format_exc()[-4000:], "wall_s": time.perf_counter() - t}
            if not isinstance(err, Exception):      # stopped (the lease's timeout, Ctrl-C): save what is known, stop
                save()
                raise
        save()      # first: a CUDA error is sticky and would raise again from the call below
        if torch.cuda.is_available():
            try:
                torch.cuda.empty_cache()
            except RuntimeError as err:    # torch.AcceleratorError: the context is lost; what was saved stays
                print(f"CUDA context lost after {name}: {err}", flush=True)
        print(f"[{time.perf_counter() - t0:7.1f} s] {name}: "
              f"{'done' if doc['parts'][name]['completed'] else doc['parts'][name]['error']}", flush=True)

    part("reference", lambda: reference_throughput(acc, args.smoke))

    def estimate() -> dict[str, Any]:
        # The preset as a user runs it, uncapped: each stage's few timed steps times the preset's own steps.
        from tocsr.app.mainjob import RUN_PRESETS

        e = estimate_run(RUN_PRESETS[preset], 1, acc=acc)
        print("\n".join(e.describe()), flush=True)
        return {"estimate": e.to_dict(), "measured": False}

    part("estimate", estimate)

    def run() -> dict[str, Any]:
        work = args.work or Path(tempfile.mkdtemp(prefix="gpu-preset-"))
        vae, unet = write_random_weights(work / "weights", rp.teacher_preset)
        measured_with = (smoke_profile(profile, work / "profiles") if args.smoke
                         else with_mode(profile, args.mode, work / "profiles"))
        try:
            summary = run_main_job([str(measured_with)], rp, work / "run", vae=vae, unet=unet)
            return {"stages_s": stage_walls(work / "run"), "every_stage_completed": True,
                    "devices": {name: {k: d[k] for k in ("architecture", "measured_p90_ms", "params_m")}
                                for name, d in summary["devices"].items()}, "run_folder": str(work / "run")}
        except BaseException:
            doc["parts"]["run_partial"] = {"stages_s": stage_walls(work / "run")}
            raise
        finally:
            # The cost stage's evidence stands on its own: kept whether or not a later stage completes.
            doc["costs"] = costs_evidence(work / "run", out)

    part("run", run)
    save()
    failed = [k for k, v in doc["parts"].items() if isinstance(v, dict) and v.get("completed") is False]
    print(f"wrote {out / 'gpu_preset.json'}; " + (f"FAILED: {', '.join(failed)}" if failed else "every part completed"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
