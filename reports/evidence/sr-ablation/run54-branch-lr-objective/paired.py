"""The pixel branch, the student's learning rate and its objective, on the test photographs: each variant minus
bicubic, minus the job's SRVGG and minus the run's student retrained as it was ("tocsr:base"), from the
per_image.csv files `tocsr eval` wrote under test/ and test-obj/. 95% bootstrap intervals over the 7 photographs,
paired by photograph.

    python reports/evidence/sr-ablation/run54-branch-lr-objective/paired.py
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from reports.intervals import paired_difference  # noqa: E402

# (folder, its variants, the reference each is paired with besides bicubic and SRVGG); the last pairs the student
# with the adversarial term against the same student without it (issue 26's no-reference criterion)
COMPARISONS = (("test", ("tocsr:b32", "tocsr:b48c6", "tocsr:lr5e-4", "tocsr:lr1e-3"), "tocsr:base"),
               ("test-obj", ("tocsr:nolat", "tocsr:nolat-noadv"), "tocsr:lr1e-3"),
               ("test-obj", ("tocsr:nolat",), "tocsr:nolat-noadv"))


def scores(by: dict[str, dict[str, dict[str, str]]], method: str, metric: str, images: list[str]) -> list[float]:
    """One method's scores of one metric, in the order of `images`."""
    return [float(by[method][i][metric]) for i in images]


def compare(folder: Path, variants: tuple[str, ...], reference: str) -> None:
    for degradation in ("bicubic", "realesrgan"):
        path = folder / degradation / "per_image.csv"
        if not path.is_file():
            print(f"{path}: not there (run the `tocsr eval` commands of README.md)")
            continue
        by: dict[str, dict[str, dict[str, str]]] = {}
        for row in csv.DictReader(path.open()):
            by.setdefault(row["method"], {})[row["image"]] = row
        images = sorted(by["bicubic"])
        for metric in ("psnr_y", "niqe"):
            for v in (reference, *variants):
                parts = []
                for other in ("bicubic", "srvgg", reference):
                    if other == v:
                        continue
                    d = paired_difference(scores(by, v, metric, images), scores(by, other, metric, images))
                    parts.append(f"minus {other} {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
                print(f"{degradation} {metric} {v}: " + "; ".join(parts) + f" ({len(images)} photographs)")


def main() -> None:
    for folder, variants, reference in COMPARISONS:
        print(f"# {folder}/, against {reference}")
        compare(HERE / folder, variants, reference)


if __name__ == "__main__":
    main()
