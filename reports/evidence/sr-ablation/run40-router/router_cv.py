"""Does the DegradationRouter tell texture from noise on photographs it never saw? Cross-validated over every
photograph training and selection may read (the train and validation parts of the default split; never a test
one): the photographs are dealt into K folds by name; for each fold a router is trained as the SR stage trains it
(tocsr.core.sr.router.train_router, 300 steps) on the other folds' photographs, then reads the fold's photographs
whole (centre of at most 384 px, as the quick preset scores test photographs: 96 px LR at x4), once clean (bicubic
downscale) and under several Real-ESRGAN draws. Writes each reading's P(Real-ESRGAN) and the decision at several
thresholds, with 95% Wilson intervals, so the same file answers "which threshold" for any cost ratio.

    python reports/evidence/sr-ablation/run40-router/router_cv.py OUT.json [--folds 7] [--draws 4] [--steps 300]

Run it from a checkout: it measures that checkout's router (the statistics it reads are part of the code).
"""
import argparse
import json
import math
import subprocess
import time
from pathlib import Path

import torch

import tocsr.core.sr.router as router_module
from tocsr.core.data import DataSplit, load_split
from tocsr.core.provenance import environment
from tocsr.core.sr.degradations import degrade

KINDS = ("bicubic", "realesrgan")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 3), round(centre + half, 3)]


def centre(rgb, max_px: int, scale: int) -> torch.Tensor:
    h, w = rgb.shape[:2]
    ch, cw = (min(h, max_px) // scale) * scale, (min(w, max_px) // scale) * scale
    y, x = (h - ch) // 2, (w - cw) // 2
    return torch.from_numpy(rgb[y:y + ch, x:x + cw].copy()).permute(2, 0, 1)[None].float() / 255


def cross_validate(photos, folds: int, draws: int, steps: int, max_px: int) -> list[dict]:
    """Each held-out photograph's readings (clean once, Real-ESRGAN `draws` times) by a router trained as the SR
    stage trains it (whatever `train_router` builds) on the other folds."""
    readings = []
    for fold in range(folds):
        held = [p for i, p in enumerate(photos) if i % folds == fold]
        rest = [p for i, p in enumerate(photos) if i % folds != fold]
        router, seconds = router_module.train_router(rest, KINDS, 4, steps=steps, seed=0)
        for photo in held:
            hr = centre(photo.rgb, max_px, 4)
            for kind in KINDS:
                for draw in range(draws if kind == "realesrgan" else 1):
                    lr = degrade(hr, 4, kind, torch.Generator().manual_seed(1000 + draw)) * 2 - 1
                    with torch.no_grad():
                        p_re = torch.softmax(router(lr), dim=1)[0, KINDS.index("realesrgan")].item()
                    readings.append({"fold": fold, "photo": photo.name, "kind": kind, "draw": draw,
                                     "p_realesrgan": round(p_re, 4), "routed": router.route(lr)[0]})
        print(f"fold {fold}: {len(held)} photographs, router {seconds:.0f} s", flush=True)
    return readings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--folds", type=int, default=7)
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--max-px", type=int, default=384)
    args = ap.parse_args()
    t0 = time.time()
    got, _ = load_split(None, ("train", "val"), DataSplit(), min_side=128)
    photos = sorted(got["train"] + got["val"], key=lambda p: p.name)
    readings = cross_validate(photos, args.folds, args.draws, args.steps, args.max_px)
    summary = {}
    for t in THRESHOLDS:
        row = {}
        for kind in KINDS:
            ps = [r["p_realesrgan"] for r in readings if r["kind"] == kind]
            right = sum((p > t) == (kind == "realesrgan") for p in ps)
            row[kind] = {"right": right, "n": len(ps), "wilson95": wilson(right, len(ps))}
        summary[f"p_realesrgan > {t}"] = row
    route_right = {kind: sum(r["routed"] == kind for r in readings if r["kind"] == kind) for kind in KINDS}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"what": "router cross-validated on the train+val photographs (never test), whole centre crops",
           "commit": commit, "photos": len(photos), "folds": args.folds, "draws": args.draws, "steps": args.steps,
           "max_px": args.max_px, "thresholds": summary,
           "route": {k: {"right": v, "n": sum(r["kind"] == k for r in readings)} for k, v in route_right.items()},
           "readings": readings, "seconds": round(time.time() - t0), "environment": environment()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str))
    for name, row in summary.items():
        print(name, {k: f"{v['right']}/{v['n']} {v['wilson95']}" for k, v in row.items()})
    print(f"done in {doc['seconds']} s")


if __name__ == "__main__":
    main()
