"""What more training photographs buy the student on the test photographs: PSNR-Y over bicubic against log2 of the
number of training photographs (4, 8, and the run's 17), a least-squares slope per doubling, its 95% interval
resampling the test photographs (each keeps its three points), and where the line would reach issue 26's +1.0 dB
(extrapolated far beyond the points: PREDICTED).

    python reports/evidence/sr-ablation/run55-backbone/data_trend.py > data_trend.txt
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
POINTS = {"tocsr:p4": 4, "tocsr:p8": 8, "tocsr:base": 17}


def gains(kind: str) -> tuple[list[str], np.ndarray]:
    rows = list(csv.DictReader((HERE / "test-data" / kind / "per_image.csv").open()))
    psnr = {(r["image"], r["method"]): float(r["psnr_y"]) for r in rows}
    images = sorted({r["image"] for r in rows})
    return images, np.array([[psnr[(im, m)] - psnr[(im, "bicubic")] for m in POINTS] for im in images])


def slope(g: np.ndarray) -> tuple[float, float]:
    x = np.log2(list(POINTS.values()))
    b, a = np.polyfit(x, g.mean(axis=0), 1)
    return float(b), float(a)


def main() -> None:
    rng = np.random.default_rng(0)
    for kind in ("bicubic", "realesrgan"):
        images, g = gains(kind)
        b, a = slope(g)
        boot = sorted(slope(g[rng.integers(0, len(images), len(images))])[0] for _ in range(2000))
        lo, hi = boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]
        means = ", ".join(f"{n} photographs {v:+.3f}" for n, v in zip(POINTS.values(), g.mean(axis=0), strict=True))
        reach = (f"+1.0 dB at about {2 ** ((1.0 - a) / b):.0f} training photographs (extrapolated: PREDICTED)"
                 if b > 0 else "the line never reaches +1.0 dB")
        print(f"{kind} degradation, {len(images)} test photographs: {means} dB over bicubic; slope {b:+.3f} dB per "
              f"doubling of the photographs [95% {lo:+.3f}, {hi:+.3f}]; {reach}")


if __name__ == "__main__":
    main()
