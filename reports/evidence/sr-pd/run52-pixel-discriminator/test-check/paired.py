"""Paired differences on the test photographs: the README run's student (pixel discriminator, w_adv 0.1) minus the
same student trained again without the adversarial term (`sr_pd --variant none w_adv=0`), from the per_image.csv
files `tocsr eval` wrote here. 95% bootstrap intervals over the 7 photographs.

    python reports/evidence/sr-pd/run52-pixel-discriminator/test-check/paired.py
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[4]))

from reports.intervals import paired_difference  # noqa: E402


def values(by: dict[str, dict[str, dict[str, str]]], method: str, metric: str, images: list[str]) -> list[float]:
    """One method's scores of one metric, in the order of `images`."""
    return [float(by[method][i][metric]) for i in images]


def main() -> None:
    for degradation in ("bicubic", "realesrgan"):
        by: dict[str, dict[str, dict[str, str]]] = {}
        for row in csv.DictReader((HERE / degradation / "per_image.csv").open()):
            by.setdefault(row["method"], {})[row["image"]] = row
        run = next(name for name in by if name.startswith("tocsr:") and name != "tocsr:none")
        images = sorted(by[run])
        for metric in ("psnr_y", "niqe"):
            ours = values(by, run, metric, images)
            d = paired_difference(ours, values(by, "tocsr:none", metric, images))
            b = paired_difference(ours, values(by, "bicubic", metric, images))
            print(f"{degradation} {metric}: with the term minus without {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]; "
                  f"with the term minus bicubic {b.mean:+.3f} [{b.low:+.3f}, {b.high:+.3f}] ({len(images)} photographs)")


if __name__ == "__main__":
    main()
