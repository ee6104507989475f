"""Would the router separate Real-ESRGAN from clean photographs better with more to read? Candidate routers,
cross-validated as run40-router/router_cv.py does it (same folds, photographs, draws and seeds, whole centre crops;
never a test photograph), each a subclass of this checkout's DegradationRouter:

- `base`: the router as it ships;
- `coarse`: its statistics plus the Laplacian's spread on the luma pooled 2x2 (the head, linear in logs, can then
  form the fine-to-coarse ratio: blur lowers it and scale-free content keeps it, where texture raises both);
- `mlp`: the shipped statistics through a hidden layer of 16 (interactions a linear head cannot form);
- `coarse+mlp`: both.

What matters is how many Real-ESRGAN readings pass the expected-loss rule's threshold while no clean one does:
with misroute costs (clean sent to the Real-ESRGAN student, and the reverse) the rule answers Real-ESRGAN only above
P = c_clean / (c_clean + c_re). `--costs` gives the two (dB; default: the run-41 SR stage's measured costs).

    python reports/evidence/sr-ablation/run41-routed/router_features_cv.py OUT.json [--variants base coarse ...]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run40-router"))
import router_cv  # noqa: E402  (the run-40 cross-validation: folds, crops, Wilson intervals)

import tocsr.core.sr.router as R  # noqa: E402
from tocsr.core.data import DataSplit, load_split  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402

SHIPPED = R.DegradationRouter


def candidate(coarse: bool, hidden: int) -> type:
    """A DegradationRouter subclass reading one statistic more (`coarse`) and/or with a hidden layer."""
    n = len(R.STATISTICS) + int(coarse)

    class Candidate(SHIPPED):
        def __init__(self, kinds=("bicubic", "realesrgan"), loss_db=None):
            super().__init__(kinds, loss_db)
            self.norm = nn.BatchNorm1d(n, affine=False)
            # a linear `head` last, as the shipped router has (its `route` reads head.weight)
            self.hidden = nn.Sequential(nn.Linear(n, hidden), nn.GELU()) if hidden else nn.Identity()
            self.head = nn.Linear(hidden or n, len(kinds))

        def statistics(self, lr):
            stats = super().statistics(lr)
            if not coarse:
                return stats
            rgb = ((lr.float() + 1) / 2).clamp(0, 1)
            y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
            lap = F.conv2d(F.avg_pool2d(y, 2), self.masks.float()[1:2]).flatten(1).std(dim=1)
            return torch.cat([stats, lap.clamp_min(1e-8).log()[:, None]], dim=1)

        def forward(self, lr):
            return self.head(self.hidden(self.norm(self.statistics(lr).to(self.head.weight.dtype))))

    return Candidate


VARIANTS = {"base": (False, 0), "coarse": (True, 0), "mlp": (False, 16), "coarse+mlp": (True, 16)}


def auc(pos: list[float], neg: list[float]) -> float:
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--folds", type=int, default=7)
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--max-px", type=int, default=384)
    ap.add_argument("--costs", nargs=2, type=float, default=(3.278, 0.288), metavar=("CLEAN_AS_RE", "RE_AS_CLEAN"))
    args = ap.parse_args()
    threshold = args.costs[0] / sum(args.costs)
    got, _ = load_split(None, ("train", "val"), DataSplit(), min_side=128)
    photos = sorted(got["train"] + got["val"], key=lambda p: p.name)
    results = {}
    for name in args.variants:
        t0 = time.time()
        R.DegradationRouter = candidate(*VARIANTS[name])     # what train_router builds
        readings = router_cv.cross_validate(photos, args.folds, args.draws, args.steps, args.max_px)
        R.DegradationRouter = SHIPPED
        re = [r["p_realesrgan"] for r in readings if r["kind"] == "realesrgan"]
        clean = [r["p_realesrgan"] for r in readings if r["kind"] == "bicubic"]
        passed_re, passed_clean = sum(p > threshold for p in re), sum(p > threshold for p in clean)
        results[name] = {
            "auc": round(auc(re, clean), 4), "max_clean_p": max(clean),
            "at_cost_threshold": {"threshold": round(threshold, 4),
                                  "realesrgan_routed": passed_re, "realesrgan_n": len(re),
                                  "realesrgan_wilson95": router_cv.wilson(passed_re, len(re)),
                                  "clean_misrouted": passed_clean, "clean_n": len(clean)},
            "readings": readings, "seconds": round(time.time() - t0)}
        print(f"{name}: AUC {results[name]['auc']}, max clean P {max(clean):.2f}; above P {threshold:.3f}: "
              f"Real-ESRGAN {passed_re}/{len(re)} {router_cv.wilson(passed_re, len(re))}, clean {passed_clean}/"
              f"{len(clean)} ({results[name]['seconds']} s)", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"what": "candidate router statistics and heads, cross-validated on train+val photographs (never test)",
           "commit": commit, "photos": len(photos), "folds": args.folds, "draws": args.draws, "steps": args.steps,
           "max_px": args.max_px, "costs_db": list(args.costs), "variants": results, "environment": environment()}
    args.out.write_text(json.dumps(doc, indent=1, default=str))


if __name__ == "__main__":
    main()
