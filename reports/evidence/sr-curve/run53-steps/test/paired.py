"""The student trained 400, 800 and 1600 steps (`sr_pd --variant s400 student_steps=400 ...`, one cosine schedule
each), and 1600 steps on 4096 cached pairs (c4096s1600), on the test photographs: each minus bicubic, minus the job's
SRVGG and minus s400, from the per_image.csv files `tocsr eval` wrote under test/ and test-cache/. 95% bootstrap
intervals over the 7 photographs, paired by photograph.

    python reports/evidence/sr-curve/run53-steps/test/paired.py
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[4]))

from reports.intervals import paired_difference  # noqa: E402

FOLDERS = {"test": ("tocsr:s400", "tocsr:s800", "tocsr:s1600"), "test-cache": ("tocsr:s1600", "tocsr:c4096s1600")}


def main() -> None:
    for folder, variants in FOLDERS.items():
        print(f"# {folder}/")
        compare(HERE.parent / folder, variants)


def scores(by: dict[str, dict[str, dict[str, str]]], method: str, metric: str, images: list[str]) -> list[float]:
    """One method's scores of one metric, in the order of `images`."""
    return [float(by[method][i][metric]) for i in images]


def compare(folder: Path, variants: tuple[str, ...]) -> None:
    for degradation in ("bicubic", "realesrgan"):
        by: dict[str, dict[str, dict[str, str]]] = {}
        for row in csv.DictReader((folder / degradation / "per_image.csv").open()):
            by.setdefault(row["method"], {})[row["image"]] = row
        images = sorted(by["bicubic"])
        for metric in ("psnr_y", "niqe"):
            for v in variants:
                parts = []
                for other in ("bicubic", "srvgg", "tocsr:s400", "tocsr:s1600"):
                    if other == v or other not in by or (other == "tocsr:s1600" and v != "tocsr:c4096s1600"):
                        continue
                    d = paired_difference(scores(by, v, metric, images), scores(by, other, metric, images))
                    parts.append(f"minus {other} {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
                print(f"{degradation} {metric} {v}: " + "; ".join(parts) + f" ({len(images)} photographs)")


if __name__ == "__main__":
    main()
