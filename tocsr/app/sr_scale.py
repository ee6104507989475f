"""The SR stage at an accelerator's budget, then quality vs bicubic and teacher-vs-one-step latency on it.

    python -m tocsr.app.sr_scale --teacher T --surrogates S --search R --out DIR --train-budget-s 300

1. A short calibration run of the same stage (20 steps each, small caches) checks the device path and
   measures seconds per teacher and per student step.
2. The real run takes `--teacher-steps` / `--student-steps`, or sizes them to `--train-budget-s` from those
   rates (capped by --max-*-steps). The 20-step calibration includes warm-up: on an H100 it over-estimated the
   step time 2.6x, so the budget sizing is conservative. The pair cache `--pair-cache` is large enough that
   each pair is seen only a few times.
3. The SR teacher (`sample_chains` x `sample_steps` calls), the one-step student and bicubic are timed on `--profile`
   (`--timing-repeats` samples each; the SR teacher, a multi-step method, gets reports.evaluate.timing_profile's
   short policy: twice its paired rounds in samples, one attempt).
DIR/sr_scale.json holds every figure, the configs, the chosen step counts and the environment; it is
rewritten after each phase, so a lease that ends early still leaves what was done.
`--smoke` runs it at tiny settings (CPU is fine) to test the script before a lease.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from bench.profile import load_profile, replace
from tocsr.core.artifacts import write_artifact
from tocsr.core.provenance import environment

KIND = "tocsr.sr_scale"


def _latency_row(method, profile) -> dict[str, Any]:
    from reports.evaluate import evaluate_cost

    try:
        m = evaluate_cost(method, profile)
    except Exception as err:  # noqa: BLE001  one method failing must not lose the others' rows
        return {"method": method.name, "status": "error", "error": f"{type(err).__name__}: {err}"}
    lat = m.latency
    return {"method": method.name, "status": m.status, "device_name": m.device_name,
            "params_m": m.params / 1e6, "peak_memory_mib": m.peak_memory_mib,
            "median_ms": lat.median_ms if lat else None, "p90_ms": lat.p90_ms if lat else None,
            "cv": lat.cv if lat else None, "iqr_ms": lat.iqr_ms if lat else None, "error": m.error}


def steps_for_budget(budget_s: float, teacher_step_s: float, student_step_s: float,
                     max_teacher: int, max_student: int) -> tuple[int, int]:
    """Split a training budget evenly between the two trainings, at the measured seconds per step."""
    teacher = int(min(max_teacher, max(1, 0.5 * budget_s / max(teacher_step_s, 1e-6))))
    student = int(min(max_student, max(1, 0.5 * budget_s / max(student_step_s, 1e-6))))
    return teacher, student


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m tocsr.app.sr_scale` (the docs' lines: tests/test_docs_commands.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--surrogates", type=Path, required=True)
    ap.add_argument("--search", type=Path, required=True, help="search folder whose chosen architecture is adapted")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--profile", type=Path, default=Path("hw_profiles/h100-bf16.yaml"))
    ap.add_argument("--train-budget-s", type=float, default=300.0)
    ap.add_argument("--teacher-steps", type=int, help="fixed step count (default: sized to --train-budget-s)")
    ap.add_argument("--student-steps", type=int, help="fixed step count (default: sized to --train-budget-s)")
    ap.add_argument("--max-teacher-steps", type=int, default=20000)
    ap.add_argument("--max-student-steps", type=int, default=20000)
    # On an H100 a step of these small UNets is bound by kernel launches: batch 64 took 0.117 s, about what
    # batch 16 takes on 2 CPU cores, so a larger batch is nearly free there.
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pair-cache", type=int, default=16384)
    ap.add_argument("--teacher-cache", type=int, default=2048)
    ap.add_argument("--pair-workers", type=int, default=8)
    ap.add_argument("--t-start", type=int, default=250)
    ap.add_argument("--timing-repeats", type=int, default=30)
    ap.add_argument("--skip-latency", action="store_true", help="train and score only (latency measured before)")
    ap.add_argument("--smoke", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from reports.comparison import load_sr_methods
    from reports.evaluate import SRMethod
    from tocsr.app.stages import stage_sr
    from tocsr.core.baselines import Interpolate
    from tocsr.core.sr.train import SRConfig
    from tocsr.core.teacher.train import load_teacher

    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "phases": {}}

    def save() -> None:
        write_artifact(args.out / "sr_scale.json", KIND, 1, doc, environment=environment())

    calib_n = 3 if args.smoke else 20
    base = SRConfig(batch=4 if args.smoke else args.batch, pair_workers=args.pair_workers, t_start=args.t_start,
                    checkpoint_every=10**9)
    calib = dataclasses.replace(base, teacher_steps=calib_n, student_steps=calib_n, pair_cache=base.batch * 4,
                                teacher_cache=base.batch, sample_steps=4 if args.smoke else base.sample_steps,
                                sample_chains=2 if args.smoke else base.sample_chains)
    t0 = time.perf_counter()
    cal = stage_sr(args.teacher, args.surrogates, args.search, args.out / "calibration", calib)
    rate_t = cal.timings_s["sr_teacher_s"] / calib_n
    rate_s = cal.timings_s["student_s"] / calib_n      # includes its teacher targets: an overestimate
    doc["phases"]["calibration"] = {"config": dataclasses.asdict(calib), "timings_s": cal.timings_s,
                                    "teacher_step_s": rate_t, "student_step_s": rate_s,
                                    "device": cal.device, "wall_s": time.perf_counter() - t0}
    save()
    print(f"calibration: {rate_t * 1e3:.1f} ms/teacher step, {rate_s * 1e3:.1f} ms/student step", flush=True)

    # Kept out of the training budget for the pair cache and the teacher targets (H100: 18 s and ~35 s).
    fixed_s = 60.0 if not args.smoke else 0.0
    teacher_steps, student_steps = steps_for_budget(max(1.0, args.train_budget_s - fixed_s), rate_t, rate_s,
                                                    3 if args.smoke else args.max_teacher_steps,
                                                    3 if args.smoke else args.max_student_steps)
    teacher_steps = args.teacher_steps or teacher_steps
    student_steps = args.student_steps or student_steps
    cfg = dataclasses.replace(base, teacher_steps=teacher_steps, student_steps=student_steps,
                              pair_cache=base.batch * 4 if args.smoke else args.pair_cache,
                              teacher_cache=base.batch if args.smoke else args.teacher_cache,
                              sample_steps=4 if args.smoke else base.sample_steps,
                              sample_chains=2 if args.smoke else base.sample_chains,
                              checkpoint_every=max(500, teacher_steps // 4))
    t0 = time.perf_counter()
    run = stage_sr(args.teacher, args.surrogates, args.search, args.out / "sr", cfg)
    doc["phases"]["sr"] = {"config": dataclasses.asdict(cfg), "timings_s": run.timings_s, "quality": run.quality,
                           "device": run.device, "wall_s": time.perf_counter() - t0}
    save()
    for kind, rows in run.quality.items():
        print(f"{kind}: " + ", ".join(f"{m} {r['psnr_y']:.2f} dB" for m, r in rows.items()), flush=True)

    if args.skip_latency:
        return doc
    profile = load_profile(args.profile)
    timing = {**profile.to_dict()["timing"], "repeats": args.timing_repeats, "warmup_max_iters": 20, "max_retries": 1}
    profile = replace(profile, timing=timing)
    teacher = load_teacher(args.teacher)
    methods, _ = load_sr_methods(teacher, args.out / "sr", profile.name, with_teacher=True)
    methods.append(SRMethod("bicubic", "interpolation", Interpolate(run.scale), True))
    rows = []
    for m in methods:
        rows.append(_latency_row(m, profile))
        print(f"latency {rows[-1]}", flush=True)
        doc["phases"]["latency"] = {"profile": profile.name, "profile_sha256": profile.sha256, "rows": rows}
        save()
    by_kind = {m.kind: r for m, r in zip(methods, rows, strict=True)}
    one, multi = by_kind.get("one-step", {}), by_kind.get("multi-step", {})
    if one.get("median_ms") and multi.get("median_ms"):
        doc["phases"]["latency"]["speedup_median"] = multi["median_ms"] / one["median_ms"]
        doc["phases"]["latency"]["speedup_p90"] = multi["p90_ms"] / one["p90_ms"]
    save()
    return doc


if __name__ == "__main__":
    from tocsr.app.script import run_script

    out = run_script(main)
    print(json.dumps({k: v for k, v in out["phases"].get("latency", {}).items() if k.startswith("speedup")}))
