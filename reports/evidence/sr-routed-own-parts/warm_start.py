"""A Real-ESRGAN student warm-started from the blind one: does it learn its degradation in the steps a routed student
gets, where the one trained from the surrogate bank did not?

    python reports/evidence/sr-routed-own-parts/warm_start.py --run runs/quick --steps 115 --out runs/warm

Starts from the run's blind student and the parts it trained (copies), trains them for `--steps` more on the Real-ESRGAN
half of the run's pair cache with the run's objective, and scores the result, told the degradation, on the run's test
photographs (Real-ESRGAN and clean inputs) beside the blind student and bicubic, through the same tiled module path.
These extra steps cost seconds the blind student did not get: this asks whether a warm start learns the degradation at
all, not whether it is fair at equal budget.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from reports.protocol import evaluate_folder, find_images, interpolation, module_method  # noqa: E402
from tocsr.core.data import load_train_val  # noqa: E402
from tocsr.core.sr.info import SRModelInfo  # noqa: E402
from tocsr.core.sr.models import load_student  # noqa: E402
from tocsr.core.sr.onestep import OneStepSR  # noqa: E402
from tocsr.core.sr.parts import deployed_decoder, deployed_encoder  # noqa: E402
from tocsr.core.sr.shared import load_shared  # noqa: E402
from tocsr.core.sr.train import sr_scheduler, train_student  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402
from tocsr.core.training import make_accelerator  # noqa: E402


def first_sr_model(run: Path) -> Path:
    """The run's first SR model folder, <run>/sr/<arch>/ (a one-profile run has one)."""
    return sorted(p.parent for p in (run / "sr").glob("*/sr.json"))[0]


class Unit(nn.Module):
    """A [-1, 1] SR model as a [0, 1] -> [0, 1] module."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return (self.model(x01 * 2 - 1) + 1) / 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=115)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    run, blind_dir = args.run, first_sr_model(args.run)
    info = SRModelInfo.load(blind_dir)
    cfg = dataclasses.replace(info.config, student_steps=args.steps, checkpoint_every=10**9)
    teacher = load_teacher(run / "teacher")
    ae = teacher.autoencoder.eval()
    blind = OneStepSR(ae, load_student(blind_dir / "student"), cfg.scale, deployed_decoder(blind_dir, info.decoder),
                      deployed_encoder(blind_dir, info.encoder)).eval()
    student, decoder, encoder = (copy.deepcopy(m) for m in (blind.student, blind.part_decoder, blind.part_encoder))
    train, _, _ = load_train_val(None, teacher.preset.split, min_side=cfg.patch_px)
    acc = make_accelerator()
    cache = load_shared(run / "sr-shared", teacher, train, cfg, args.out, acc.device).cache
    if encoder is not None:
        cache = cache.with_encoder(encoder)
    t0 = time.perf_counter()
    warm = train_student(teacher, {}, dict(sr_scheduler(teacher).config), student, cache.of_kind("realesrgan"),
                         args.out, cfg, accelerator=acc, name="student-realesrgan-warm", save=False,
                         pixel_decoder=decoder if cfg.pixel_decoder == "deployed" else None, input_encoder=encoder)
    seconds = time.perf_counter() - t0
    warmed = OneStepSR(ae, warm.eval(), cfg.scale, decoder.eval() if decoder else None,
                       encoder.eval() if encoder else None).eval()
    images = find_images(run / "test" / "HR", None, cfg.scale)
    doc = {"run": str(run), "blind": str(blind_dir), "steps": args.steps, "train_s": seconds, "test": {}}
    for kind in ("realesrgan", "bicubic"):
        methods = [interpolation("bicubic", cfg.scale), module_method("blind", "tocsr", str(blind_dir), Unit(blind), cfg.scale),
                   module_method("warm-started Real-ESRGAN student", "tocsr", "here", Unit(warmed), cfg.scale)]
        res = evaluate_folder(images, methods, cfg.scale, kind, 0, (), str(run / "test" / "HR"), None)
        doc["test"][kind] = {m.name: res.paired(m.name, "bicubic", "psnr_y").to_dict() for m in methods[1:]}
        for name, d in doc["test"][kind].items():
            print(f"{kind}: {name} minus bicubic {d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] dB", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warm_start.json").write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
