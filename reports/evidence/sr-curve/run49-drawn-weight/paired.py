"""Paired differences between two sr_curve.json files at one step, on the same validation crops (A minus B).

    python reports/evidence/sr-curve/run49-drawn-weight/paired.py A/sr_curve.json B/sr_curve.json STEP
"""
import json
import sys
from pathlib import Path

from reports.intervals import paired_difference


def point(path: str, step: int) -> dict:
    return next(p for p in json.loads(Path(path).read_text())["points"] if p["step"] == step)


pa, pb = point(sys.argv[1], int(sys.argv[3])), point(sys.argv[2], int(sys.argv[3]))
for kind in ("bicubic", "realesrgan"):
    a, b = pa[kind]["per_crop_minus_bicubic"], pb[kind]["per_crop_minus_bicubic"]
    print(f"{kind}: {paired_difference(a, b).text(2)} dB ({len(a)} crops)")
