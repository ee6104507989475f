"""The cheaper pipeline parts of a run: train them, score them, time them beside the autoencoder's own.

    python -m tocsr.app.parts --run runs/quick --out runs/parts [-p hw_profiles/cpu-2core.yaml] [--steps 600]

Trains an LR encoder and a tiny decoder (tocsr.core.models.parts) against the run's teacher autoencoder
(tocsr.core.sr.parts) on the teacher's training photographs, scores each on crops of its validation
photographs (PSNR-Y through the part against through the part it replaces, with 95% bootstrap intervals over
the crops), and measures all four parts on the profile's device at its resolution, each paired with the
teacher UNet as cost tables are (bench.measure). Writes <out>/parts.json (the record), <out>/parts_costs.json
(the measurements, with spread and provenance) and the two parts' folders.

What each would buy in cost and give up in fidelity, measured on its own. The main job trains them in its
parts stage (tocsr.app.stages.stage_parts), and the search deploys them where they are chosen (search.parts).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from tocsr.core.artifacts import write_artifact
from tocsr.core.provenance import environment

COSTS_KIND = "tocsr.sr_parts_costs"
DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "hw_profiles" / "cpu-2core.yaml"


def measure_parts(teacher, encoder, decoder, profile) -> dict[str, Any]:
    """Each part at the profile's resolution and batch, paired with the teacher UNet: {part: Measurement}."""
    import torch

    from bench.measure import measure_workload
    from bench.probe import teacher_reference
    from bench.workloads import Workload
    from tocsr.core.sr.onestep import LatentDecoder, LatentEncoder

    res = profile.resolution
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(profile.batch, 3, res.input_px, res.input_px, generator=g) * 2 - 1
    kl_encoder = LatentEncoder(teacher.autoencoder, res.scale).eval()
    with torch.inference_mode():
        z = kl_encoder(lr)
    reference = teacher_reference(teacher, profile)
    workloads = {"bicubic + KL encoder": (kl_encoder, lr), "LR encoder": (encoder, lr),
                 "KL decoder": (LatentDecoder(teacher.autoencoder).eval(), z), "tiny decoder": (decoder, z)}
    return {name: measure_workload(Workload(name, module, (x,)), profile, reference=reference)
            for name, (module, x) in workloads.items()}


def describe(record, costs: dict[str, Any]) -> list[str]:
    """The lines the script prints: fidelity per part, then cost per part with its spread."""
    from reports.intervals import bootstrap_mean, paired_difference

    lines = []
    for part, kl in (("lr-encoder", "bicubic + KL encoder"), ("tiny-decoder", "KL decoder")):
        s = record.psnr_y_db[part]
        vs = bootstrap_mean(s["part_vs_kl"])
        loss = paired_difference(s["through_part"], s["through_kl"])
        lines.append(f"{part}: {record.params[part] / 1e6:.3f}M params; PSNR-Y against the {kl} path "
                     f"{vs.text(2)} dB; against HR {loss.text(3)} dB vs the {kl} path ({vs.n} validation crops)")
    params = {"bicubic + KL encoder": "kl-encoder", "LR encoder": "lr-encoder", "KL decoder": "kl-decoder",
              "tiny decoder": "tiny-decoder"}
    for name, m in costs.items():
        if m.latency is None:
            lines.append(f"{name}: {m.status} ({m.error})")
            continue
        ratio = f", {m.paired.ratio:.3f} x the teacher UNet (relative CV {m.paired.relative_cv:.3f})" if m.paired else ""
        lines.append(f"{name}: median {m.latency.median_ms:.2f} ms (IQR {m.latency.iqr_ms:.2f}), p90 "
                     f"{m.latency.p90_ms:.2f} ms{ratio}; {record.params[params[name]] / 1e6:.3f}M params; {m.status}, measured on "
                     f"{m.device_name}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m tocsr.app.parts` (the docs' lines: tests/test_docs_commands.py)."""
    from tocsr.core.sr.parts import ENCODER_TARGETS, PartsConfig

    ap = argparse.ArgumentParser(prog="python -m tocsr.app.parts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a main-job run folder (its teacher/ is used)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("-p", "--profile", default=str(DEFAULT_PROFILE), help="where the parts are timed")
    ap.add_argument("--steps", type=int, default=PartsConfig.steps, help="training steps of each part")
    ap.add_argument("--encoder-steps", type=int, default=None, help="the LR encoder's steps (default: --steps)")
    ap.add_argument("--encoder-target", choices=ENCODER_TARGETS, default=PartsConfig.encoder_target,
                    help="what the LR encoder regresses: the KL latent of the bicubic upscale, or of the HR image")
    ap.add_argument("--data", type=Path, default=None, help="the run's --data, if it had one")
    ap.add_argument("--encoder-width", type=int, default=PartsConfig.encoder_width,
                    help="the LR encoder's channels (a wider encoder costs more per call: see the timings printed)")
    ap.add_argument("--encoder-blocks", type=int, default=PartsConfig.encoder_blocks, help="the LR encoder's blocks")
    ap.add_argument("--train-photographs", type=int, default=0,
                    help="train on the first N training photographs in the split's order (0: all): beside an sr_pd "
                         "variant with train_photographs=N, a learning curve over data")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.profile import load_profile
    from tocsr.core.data import load_train_val
    from tocsr.core.sr.parts import PartsConfig, train_parts
    from tocsr.core.teacher.train import load_teacher

    args = build_parser().parse_args(argv)
    cfg = PartsConfig(steps=args.steps, encoder_steps=args.encoder_steps, encoder_target=args.encoder_target,
                      encoder_width=args.encoder_width, encoder_blocks=args.encoder_blocks,
                      train_photographs=args.train_photographs)
    profile = load_profile(args.profile)
    teacher = load_teacher(args.run / "teacher")
    train, val, _ = load_train_val(args.data, teacher.preset.split, min_side=cfg.patch_px,
                                   train_first=cfg.train_photographs)
    record = train_parts(teacher, train, val, args.out, cfg, profile.resolution.scale)
    record.save(args.out, environment())
    from tocsr.core.sr.parts import load_parts

    encoder, decoder, _ = load_parts(args.out)
    costs = measure_parts(teacher, encoder, decoder, profile)
    write_artifact(args.out / "parts_costs.json", COSTS_KIND, 1,
                   {"profile": profile.name, "profile_sha256": profile.sha256,
                    "measurements": {k: m.to_dict() for k, m in costs.items()},
                    "config": dataclasses.asdict(cfg)}, environment=environment())
    for line in describe(record, costs):
        print(line)
    return {"record": record, "costs": costs}


if __name__ == "__main__":
    from tocsr.app.script import run_script

    run_script(main)
