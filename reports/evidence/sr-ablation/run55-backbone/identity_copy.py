"""A copy of an SR model folder whose student backbone adds nothing: the last layer of its UNet zeroed, so the
student returns its input latent (z_hr = z_lr + 0, how tocsr.core.sr.train.build_student starts it). Scoring the copy
beside the original (`tocsr eval --method ORIGINAL --method COPY --against tocsr:ORIGINAL`) says how much of the
model's output the backbone makes and how much its deployed encoder and decoder make alone.

    python reports/evidence/sr-ablation/run55-backbone/identity_copy.py RUNS/pd/base RUNS/pd/base-nobackbone
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from tocsr.core.sr.models import load_student  # noqa: E402


def main(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    student = load_student(dst / "student")
    if student.degradations:
        raise SystemExit(f"{src}: one student per degradation; this script zeroes a blind student's backbone")
    with torch.no_grad():
        student.backbone.unet.conv_out.weight.zero_()
        student.backbone.unet.conv_out.bias.zero_()
    student.save_pretrained(dst / "student")
    print(f"{dst}: {src.name} with its backbone's residual removed")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
