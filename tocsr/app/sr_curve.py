"""A learning curve of the SR stage's one-step student: validation PSNR-Y over bicubic against seconds.

    python -m tocsr.app.sr_curve --run runs/quick --out runs/sr-curve --student-steps 1350 --every 150

Trains the student of a run's first SR model again (the same architecture and settings, from the run's
shared part `sr-shared/`, so only the student's step count changes) for `--student-steps`, and scores its
EMA weights every `--every` steps on the validation crops the SR stage scores (tocsr.core.sr.evaluate:
4 crops of each validation photograph, both degradations, fixed seeds), each as a paired difference to
bicubic with a 95% bootstrap interval over the crops (crops of one photograph are not independent: the
interval is narrower than one over photographs would be).

The student starts from the deployed parts the run's student started from (run_parts): where the run's config
trains them with the student (SRConfig.train_decoder / train_encoder) those are the run's `parts/`, not the copies
its student already trained; sr_curve.json names them ("parts").

x is the SR stage's seconds up to that point, the budget the main job gives each trained baseline: the
shared part's recorded seconds (pair cache, SR teachers where the student learns from them, the deployed parts'
training) plus the wall time since the SR stage started here
(loading the shared part, the student's cached teacher targets and its steps; the scoring excluded). The learning rate follows one cosine over the whole run, so a point
midway is a student whose rate has not decayed yet, not what a shorter run with its own schedule returns: the
run's own model (its step count, its schedule) is plotted beside the curve as one such end point.

    python -m tocsr.app.sr_curve --run runs/quick --out runs/sr-curve --student-steps 2600 --every 325 --baseline srvgg

`--baseline NAME` trains that baseline as the main job trains it (tocsr.core.baselines.train_baseline: fresh pairs of
the same photographs, its own cosine over its budget) for the student's last point's seconds, scoring it on the same
crops at the student's points' seconds: the two curves at equal budgets, the comparison the report makes at one.

    python -m tocsr.app.sr_curve --run runs/quick --out runs/sr-curve-pixel --student-steps 1300 --every 325 \
        --set pixel_decoder=deployed w_pixel=1 pixel_share=16 train_decoder=true

`--set KEY=VALUE ...` trains the student with those SRConfig fields in place of the run's (tocsr.core.sr.config.
parse_field; not the shared part's: tocsr.app.sr_pd compares those): curves of two objectives on the same run, pairs
and crops. sr_curve.json keeps what was changed ("changed_from_run").

Each curve's trend (reports.intervals.log_trend, on the later half of its points) gives the dB gained per doubling of
seconds, with an interval over the crops, and the seconds at which the line would reach issue 26's targets over
bicubic (TARGETS_DB). That figure is an extrapolation and is labelled predicted: curves flatten, so it is a lower
bound more often than not.
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
VERSION = 2                 # 2: points' x is "seconds" (was "sr_stage_s"), per-crop scores, trends, a baseline
# What issue 26 asks of the blind student over bicubic, in PSNR-Y dB, per degradation: the lines the trends aim at.
TARGETS_DB = {"bicubic": 1.0, "realesrgan": 0.5}


def trend_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points a trend is fitted on: the later half (at least three where there are three), where a learning
    curve's early climb is over."""
    n = len(points)
    return points[-max(min(3, n), (n + 1) // 2):]


def trends(points: list[dict[str, Any]], kinds) -> dict[str, dict[str, Any]]:
    """{kind: log_trend(...).to_dict()} of a curve's points towards TARGETS_DB (kinds without a target: none)."""
    from reports.intervals import log_trend

    fit = trend_points(points)
    if len(fit) < 2:
        return {}
    return {kind: log_trend([p["seconds"] for p in fit], [p[kind]["per_crop_minus_bicubic"] for p in fit],
                            TARGETS_DB[kind]).to_dict()
            for kind in kinds if kind in TARGETS_DB}


def trend_line(name: str, kind: str, t: dict[str, Any]) -> str:
    """One printed line of a curve's trend; the seconds to the target are labelled as the extrapolation they are."""
    d = t["per_doubling"]
    head = (f"{name}, {kind}: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] dB per doubling of seconds, "
            f"{t['fitted_at_last']:+.2f} dB at {t['last_s']:.0f} s")
    if t["fitted_at_last"] >= t["target"]:
        return head + f"; at the +{t['target']:g} dB target already"
    if t["reach_s"] is None:
        return head + f"; never reaches +{t['target']:g} dB on this trend"
    high = "unbounded" if t["reach_high_s"] is None else f"{t['reach_high_s']:.3g} s"
    low = "-" if t["reach_low_s"] is None else f"{t['reach_low_s']:.3g} s"
    return head + (f"; +{t['target']:g} dB at {t['reach_s']:.3g} s [{low}, {high}] "
                   f"(x{t['reach_s'] / t['last_s']:.3g}; PREDICTED, extrapolated)")


def first_sr_model(run: Path) -> Path:
    """The SR model a run's tools retrain (sr_curve, sr_pd): the first <run>/sr/<arch>/ by name."""
    models = sorted(p.parent for p in (run / "sr").glob("*/sr.json"))
    if not models:
        raise ConfigError(f"{run}/sr has no SR model (sr/<arch>/sr.json): run the main job into {run} first")
    return models[0]


@dataclasses.dataclass(frozen=True)
class StartingParts:
    """The deployed parts a retrained model (sr_curve, sr_pd) starts from, what training them cost, and where they
    came from. None for the autoencoder's own encoder / decoder."""

    encoder: Any
    decoder: Any
    encoder_train_s: float
    decoder_train_s: float
    source: str           # "the run's model", the run's parts folder, or the folder given
    kind: str = "tocsr.sr_starting_parts"
    version: int = 1


def run_parts(run: Path, model: Path, info, parts: str | Path | None, what: str) -> StartingParts:
    """The parts a model retrained from a run starts from: those the run's SR stage started from, with what they cost
    to train. Where the run's config keeps a part frozen that is the model's own. Where it trains the part with the
    student (SRConfig.train_decoder / train_encoder), the model's copy has already learnt beside the run's student,
    which a retrained student would inherit for free: it starts from the parts stage's (`<run>/parts/`) instead, as the
    run's student did. With `parts`, that folder's (python -m tocsr.app.parts) take their place, with its seconds (e.g.
    the same parts trained again on an idle machine, where the run's were timed under load). `what` names the option
    in the errors."""
    from tocsr.core.sr.parts import (
        DECODER_DIR,
        ENCODER_DIR,
        PartsRecord,
        deployed_decoder,
        deployed_encoder,
        load_parts,
    )

    encoder = deployed_encoder(model, info.encoder, info.degradations)
    decoder = deployed_decoder(model, info.decoder, info.degradations)
    encoder_s, decoder_s = info.timings_s.get("encoder_s", 0.0), info.timings_s.get("decoder_s", 0.0)
    if encoder is None and decoder is None:
        if parts is not None:
            raise ConfigError(f"{what}={parts}: the run's model {model.name} deploys the autoencoder's own encoder and "
                              "decoder, so there is no part to replace; drop it or use a run whose search chose the "
                              "cheaper parts")
        return StartingParts(None, None, 0.0, 0.0, "the autoencoder's")
    trained = [name for name, part, trains in (("encoder", encoder, info.config.train_encoder),
                                               ("decoder", decoder, info.config.train_decoder))
               if part is not None and trains]
    if parts is None and not trained:
        return StartingParts(encoder, decoder, encoder_s, decoder_s, "the run's model")
    source = Path(parts) if parts is not None else run / "parts"
    if parts is None and not (source / PartsRecord.FILE_NAME).is_file():
        raise ConfigError(f"the run's model {model.name} trained its {' and '.join(trained)} with its student "
                          f"(SRConfig.train_{trained[0]}), so a retrained student starts from the parts they started "
                          f"as, and {source} holds none: give that parts folder with {what}")
    new_encoder, new_decoder, record = load_parts(source)
    if record.scale != info.scale:
        raise ConfigError(f"{what}={source}: parts trained for x{record.scale}, the run's model is x{info.scale}; train "
                          "them again with python -m tocsr.app.parts")
    if encoder is not None:
        encoder, encoder_s = new_encoder, record.train_s[ENCODER_DIR]
    if decoder is not None:
        decoder, decoder_s = new_decoder, record.train_s[DECODER_DIR]
    return StartingParts(encoder, decoder, encoder_s, decoder_s, str(source))


def curve(run: Path, out: Path, student_steps: int, every: int, data: Path | None = None,
          baseline: str | None = None, parts: Path | None = None,
          fields: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    from reports.intervals import paired_difference
    from tocsr.core.baselines import list_baselines, train_baseline
    from tocsr.core.distill.train import load_surrogates
    from tocsr.core.metrics import psnr
    from tocsr.core.resize import matlab_imresize
    from tocsr.core.space import derive_search_space
    from tocsr.core.sr.data import sr_photographs
    from tocsr.core.sr.evaluate import eval_pairs
    from tocsr.core.sr.info import SRModelInfo
    from tocsr.core.sr.onestep import OneStepSR
    from tocsr.core.sr.run import run_sr
    from tocsr.core.sr.shared import SHARED_FIELDS, SharedSRRecord
    from tocsr.core.teacher.train import load_teacher

    if every < 1 or student_steps < every:
        raise ConfigError(f"--every {every} / --student-steps {student_steps}: need 1 <= every <= student steps")
    if baseline is not None and baseline not in list_baselines():
        raise ConfigError(f"--baseline {baseline!r} does not exist; available: {', '.join(list_baselines())}")
    # `fields` (--set): the student's settings that differ from the run's (the same shared part: see SHARED_FIELDS)
    fields = dict(fields or {})
    shared_fields = sorted(set(fields) & set(SHARED_FIELDS))
    if shared_fields:
        raise ConfigError(f"--set {', '.join(shared_fields)}: the curve reuses the run's shared part (pair cache, SR "
                          "teachers), which these settings would change; compare those with tocsr.app.sr_pd")
    model = first_sr_model(run)
    info = SRModelInfo.load(model)
    # one blind student, whatever the run's model is: a curve follows one network (a routed model's students each
    # see one degradation's pairs; their steps are the curve's divided among them)
    cfg = dataclasses.replace(info.config, **{**fields, "student_steps": student_steps, "checkpoint_every": 10**9,
                                              "student_per_degradation": False})
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    spec = space.spec(dict(info.arch.items()))
    bank, _ = load_surrogates(run / "surrogates", space)
    shared_dir = run / "sr-shared"
    # the SR teachers' seconds count only for a student that learns from them (SRModelInfo.training_s)
    shared_s = sum(v for k, v in SharedSRRecord.load(shared_dir).timings_s.items()
                   if k != "sr_teacher_s" or cfg.uses_sr_teachers)
    # the deployed parts' training is in the model's budget too (SRModelInfo.training_s)
    start = run_parts(run, model, info, parts, "--parts")
    encoder, decoder, encoder_s, decoder_s = start.encoder, start.decoder, start.encoder_train_s, start.decoder_train_s
    shared_s += encoder_s + decoder_s
    train, val = sr_photographs(data, teacher.preset.split, cfg)
    pairs = {kind: eval_pairs(val, cfg.patch_px, cfg.scale, kind) for kind in cfg.kinds}
    bicubic = {kind: psnr(matlab_imresize(lr, cfg.scale).clamp(-1, 1), hr, y_channel=True)
               for kind, (hr, lr) in pairs.items()}
    ae = teacher.autoencoder.eval()
    points: list[dict[str, Any]] = []
    scoring = {"s": 0.0}
    t0 = time.perf_counter()

    def score(point: dict[str, Any], sr) -> dict[str, Any]:
        """`sr`: LR in [-1, 1] -> SR in [-1, 1]; the point with each degradation's scores on the curve's crops."""
        for kind, (hr, lr) in pairs.items():
            with torch.no_grad():
                pred = torch.cat([sr(lr[i:i + cfg.batch]).float().cpu() for i in range(0, len(lr), cfg.batch)])
            ps = psnr(pred.clamp(-1, 1), hr, y_channel=True)
            d = paired_difference(ps.numpy(), bicubic[kind].numpy())
            point[kind] = {"psnr_y": float(ps.mean()), "minus_bicubic": {"mean": d.mean, "low": d.low, "high": d.high},
                           "per_crop_minus_bicubic": (ps - bicubic[kind]).tolist()}
        print(f"{point.get('step')} steps: {point['seconds']:.0f} s, " + ", ".join(
            f"{k} {point[k]['minus_bicubic']['mean']:+.3f} dB" for k in pairs), flush=True)
        return point

    def evaluate(step: int, student, trained: dict) -> None:
        t = time.perf_counter()
        x = shared_s + (t - t0) - scoring["s"]
        # the parts trained with the student where the config trains them (SRConfig.train_decoder / train_encoder),
        # else the run's; its pixel branch where it has one
        points.append(score({"step": step, "seconds": x},
                            OneStepSR(ae, student, cfg.scale, trained.get("decoder", decoder),
                                      trained.get("encoder", encoder), trained.get("branch"))))
        scoring["s"] += time.perf_counter() - t

    final = run_sr(teacher, space, spec, bank, out / "sr", cfg, data, shared=shared_dir, student_evaluate=evaluate,
                   evaluate_every=every, decoder=decoder, encoder=encoder, decoder_train_s=decoder_s,
                   encoder_train_s=encoder_s)
    student_trends = trends(points, cfg.kinds)
    lines = [trend_line("student", k, t) for k, t in student_trends.items()]
    base_doc = None
    if baseline is not None:
        # the baseline's budget is the student's last point's seconds; it is scored where the student was
        base_points: list[dict[str, Any]] = []

        def as_sr(net):
            return lambda lr: net((lr + 1) / 2) * 2 - 1     # baselines map [0, 1] images

        def evaluate_baseline(step: int, seconds: float, net) -> None:
            base_points.append(score({"step": step, "seconds": seconds}, as_sr(net)))

        net, trained = train_baseline(baseline, train, cfg.scale, budget_s=points[-1]["seconds"],
                                      patch_px=cfg.patch_px, evaluate=evaluate_baseline,
                                      evaluate_at_s=tuple(p["seconds"] for p in points[:-1]))
        base_points.append(score({"step": trained.steps, "seconds": trained.seconds}, as_sr(net)))
        base_doc = {"name": baseline, "training": {**dataclasses.asdict(trained), "pairs_seen": trained.pairs_seen},
                    "points": base_points, "trends": trends(base_points, cfg.kinds)}
        lines += [trend_line(baseline, k, t) for k, t in base_doc["trends"].items()]
    print("\n".join(lines), flush=True)
    doc = {"run": str(run), "sr_model": str(model), "arch_key": info.arch.key, "config": dataclasses.asdict(cfg),
           "changed_from_run": fields, "parts": start.source, "parts_train_s": {"encoder": encoder_s,
                                                                                   "decoder": decoder_s},
           "shared_part_s": shared_s, "points": points, "scoring_s": scoring["s"],
           "trends": student_trends, "targets_db": TARGETS_DB, "baseline": base_doc,
           "trend_fit": "least squares of PSNR-Y minus bicubic on log2 seconds over the later half of each curve's "
                        "points; its interval resamples the crops. Reaching a target is extrapolated: PREDICTED",
           "val_images": list(final.val_images), "crops_per_degradation": {k: len(v[0]) for k, v in pairs.items()},
           "bicubic_psnr_y": {k: float(v.mean()) for k, v in bicubic.items()},
           # empty where the config trains no SR teacher (SRConfig.teacher_steps = 0)
           "sr_teacher_psnr_y": {k: r["psnr_y"] for k, q in final.quality.items()
                                 for m, r in q.items() if m.startswith("sr-teacher")},
           "final_psnr_y": {k: q["tocsr-onestep"]["psnr_y"] for k, q in final.quality.items()},
           "run_model": {"student_steps": info.config.student_steps, "seconds": info.training_s,
                         "psnr_y": {k: q["tocsr-onestep"]["psnr_y"] for k, q in info.quality.items()}},
           "x": "seconds of training budget: the student's, the SR stage's (shared part, recorded, + wall time of this "
                "SR stage so far); a baseline's, its own training (data preparation included); scoring excluded",
           "interval": "95% bootstrap over the validation crops, paired with bicubic on the same crops"}
    write_artifact(out / "sr_curve.json", KIND, VERSION, doc, environment=environment())
    from reports.plots import sr_curve_plot

    atomic_write_bytes(out / "sr_curve.png", sr_curve_plot(doc))
    return doc


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m tocsr.app.sr_curve` (the docs' lines: tests/test_docs_commands.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a main-job folder (teacher/, surrogates/, sr-shared/, sr/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--student-steps", type=int, default=1350)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--data", type=Path, help="the run's --data folder, if it had one")
    ap.add_argument("--baseline", help="also train this baseline (e.g. srvgg) for the student's seconds and score it "
                                       "at the student's points")
    ap.add_argument("--parts", type=Path, help="deploy this parts folder (python -m tocsr.app.parts) in place of the "
                                               "run's model's, counting its training seconds")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="SRConfig fields the student trains with in place of the run's (e.g. w_pixel=1 "
                         "pixel_decoder=deployed); not those of the shared part")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    from tocsr.core.sr.config import parse_field

    fields = dict(parse_field(w, "--set") for w in args.set)
    return curve(args.run, args.out, args.student_steps, args.every, args.data, args.baseline, args.parts, fields)


if __name__ == "__main__":
    from tocsr.app.script import run_script

    run_script(main)
