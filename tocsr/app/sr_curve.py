"""A learning curve of the SR stage's one-step student: validation PSNR-Y over bicubic against seconds.

    python -m tocsr.app.sr_curve --run runs/quick --out runs/sr-curve --student-steps 1350 --every 150

Trains the student of a run's first SR model again (the same architecture and settings, from the run's
shared part `sr-shared/`, so only the student's step count changes) for `--student-steps`, and scores its
EMA weights every `--every` steps on the validation crops the SR stage scores (tocsr.core.sr.evaluate:
4 crops of each validation photograph, both degradations, fixed seeds), each as a paired difference to
bicubic with a 95% bootstrap interval over the crops (crops of one photograph are not independent: the
interval is narrower than one over photographs would be).

x is the SR stage's seconds up to that point, the budget the main job gives each trained baseline: the
shared part's recorded seconds (pair cache, SR teachers where the student learns from them, the deployed parts'
training) plus the wall time since the SR stage started here
(loading the shared part, the student's cached teacher targets and its steps; the scoring excluded). The learning rate follows one cosine over the whole run, so a point
midway is a student whose rate has not decayed yet, not what a shorter run with its own schedule returns: the
run's own model (its step count, its schedule) is plotted beside the curve as one such end point.
Writes <out>/sr_curve.json and <out>/sr_curve.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from tocsr.core.artifacts import atomic_write_bytes, write_artifact
from tocsr.core.errors import ConfigError
from tocsr.core.provenance import environment

KIND = "tocsr.sr_curve"


def first_sr_model(run: Path) -> Path:
    """The SR model a run's tools retrain (sr_curve, sr_pd): the first <run>/sr/<arch>/ by name."""
    models = sorted(p.parent for p in (run / "sr").glob("*/sr.json"))
    if not models:
        raise ConfigError(f"{run}/sr has no SR model (sr/<arch>/sr.json): run the main job into {run} first")
    return models[0]


def curve(run: Path, out: Path, student_steps: int, every: int, data: Path | None = None) -> dict[str, Any]:
    import torch

    from reports.intervals import paired_difference
    from tocsr.core.data import load_train_val
    from tocsr.core.distill.train import load_surrogates
    from tocsr.core.metrics import psnr
    from tocsr.core.resize import matlab_imresize
    from tocsr.core.space import derive_search_space
    from tocsr.core.sr.evaluate import eval_pairs
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.parts import deployed_decoder, deployed_encoder
    from tocsr.core.sr.run import run_sr
    from tocsr.core.sr.shared import SharedSRRecord
    from tocsr.core.teacher.train import load_teacher

    if every < 1 or student_steps < every:
        raise ConfigError(f"--every {every} / --student-steps {student_steps}: need 1 <= every <= student steps")
    model = first_sr_model(run)
    info = SRModelInfo.load(model)
    # one blind student, whatever the run's model is: a curve follows one network (a routed model's students each
    # see one degradation's pairs; their steps are the curve's divided among them)
    cfg = dataclasses.replace(info.config, student_steps=student_steps, checkpoint_every=10**9,
                              student_per_degradation=False)
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    spec = space.spec(dict(info.arch.items()))
    bank, _ = load_surrogates(run / "surrogates", space)
    shared_dir = run / "sr-shared"
    # the SR teachers' seconds count only for a student that learns from them (SRModelInfo.training_s)
    shared_s = sum(v for k, v in SharedSRRecord.load(shared_dir).timings_s.items()
                   if k != "sr_teacher_s" or cfg.uses_sr_teachers)
    # the deployed parts' training is in the model's budget too (SRModelInfo.training_s)
    parts_s = {f"{k}_train_s": info.timings_s.get(f"{k}_s", 0.0) for k in ("decoder", "encoder")}
    shared_s += sum(parts_s.values())
    _, val, _ = load_train_val(data, teacher.preset.split, min_side=cfg.patch_px)
    pairs = {kind: eval_pairs(val, cfg.patch_px, cfg.scale, kind) for kind in cfg.kinds}
    bicubic = {kind: psnr(matlab_imresize(lr, cfg.scale).clamp(-1, 1), hr, y_channel=True)
               for kind, (hr, lr) in pairs.items()}
    ae = teacher.autoencoder.eval()
    decoder = deployed_decoder(model, info.decoder)      # the parts the run's model deploys, scored here too
    encoder = deployed_encoder(model, info.encoder)
    points: list[dict[str, Any]] = []
    scoring = {"s": 0.0}
    t0 = time.perf_counter()

    def evaluate(step: int, student) -> None:
        t = time.perf_counter()
        one = OneStepSR(ae, student, cfg.scale, decoder, encoder)
        point: dict[str, Any] = {"step": step, "sr_stage_s": shared_s + (t - t0) - scoring["s"]}
        for kind, (hr, lr) in pairs.items():
            with torch.no_grad():
                pred = torch.cat([one(lr[i:i + cfg.batch]).float().cpu() for i in range(0, len(lr), cfg.batch)])
            ps = psnr(pred.clamp(-1, 1), hr, y_channel=True)
            d = paired_difference(ps.numpy(), bicubic[kind].numpy())
            point[kind] = {"psnr_y": float(ps.mean()), "minus_bicubic": {"mean": d.mean, "low": d.low, "high": d.high}}
        points.append(point)
        print(f"step {step}: {point['sr_stage_s']:.0f} s, " + ", ".join(
            f"{k} {point[k]['minus_bicubic']['mean']:+.3f} dB" for k in pairs), flush=True)
        scoring["s"] += time.perf_counter() - t

    final = run_sr(teacher, space, spec, bank, out / "sr", cfg, data, shared=shared_dir, student_evaluate=evaluate,
                   evaluate_every=every, decoder=decoder, encoder=encoder, **parts_s)
    doc = {"run": str(run), "sr_model": str(model), "arch_key": info.arch.key, "config": dataclasses.asdict(cfg),
           "shared_part_s": shared_s, "points": points, "scoring_s": scoring["s"],
           "val_images": list(final.val_images), "crops_per_degradation": {k: len(v[0]) for k, v in pairs.items()},
           "bicubic_psnr_y": {k: float(v.mean()) for k, v in bicubic.items()},
           # empty where the config trains no SR teacher (SRConfig.teacher_steps = 0)
           "sr_teacher_psnr_y": {k: r["psnr_y"] for k, q in final.quality.items()
                                 for m, r in q.items() if m.startswith("sr-teacher")},
           "final_psnr_y": {k: q["tocsr-onestep"]["psnr_y"] for k, q in final.quality.items()},
           "run_model": {"student_steps": info.config.student_steps, "sr_stage_s": info.training_s,
                         "psnr_y": {k: q["tocsr-onestep"]["psnr_y"] for k, q in info.quality.items()}},
           "x": "SR stage seconds: shared part (recorded) + wall time of this SR stage so far, scoring excluded",
           "interval": "95% bootstrap over the validation crops, paired with bicubic on the same crops"}
    write_artifact(out / "sr_curve.json", KIND, 1, doc, environment=environment())
    from reports.plots import sr_curve_plot

    atomic_write_bytes(out / "sr_curve.png", sr_curve_plot(doc))
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a main-job folder (teacher/, surrogates/, sr-shared/, sr/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--student-steps", type=int, default=1350)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--data", type=Path, help="the run's --data folder, if it had one")
    args = ap.parse_args(argv)
    return curve(args.run, args.out, args.student_steps, args.every, args.data)


if __name__ == "__main__":
    from tocsr.app.script import run_script

    run_script(main)
