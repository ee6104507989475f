"""How much one reading of the budget's reference (the teacher as shipped) moves, and what taking the median of a few
readings does to it.

A `latency_vs_teacher` budget is a multiple of the teacher-shaped pipeline with the autoencoder's own parts, timed
by the search just before it chooses (search.selection.choose), paired with the teacher UNet. This times that
pipeline `--readings` times in a row, as the search does (bench.probe.DeployedPipelineMeter), and prints each
reading's p90 ratio to the UNet and its seconds; then the spread of single readings against the spread of the
medians of consecutive groups of `--group`.

    python reports/evidence/latency-agreement/budget_reference.py --teacher runs/quick/teacher [--readings 12] \
        [--group 3] --out F.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.probe import DeployedPipelineMeter  # noqa: E402
from bench.profile import load_profile  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402


def spread(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"n": int(v.size), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "range_rel": float(v.max() / v.min() - 1), "cv": float(v.std(ddof=1) / v.mean()) if v.size > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--profile", default="cpu-2core")
    ap.add_argument("--readings", type=int, default=12)
    ap.add_argument("--group", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    profile = load_profile(args.profile)
    q = profile.timing.percentile
    teacher = load_teacher(args.teacher)
    space = derive_search_space(teacher.unet)
    meter = DeployedPipelineMeter(teacher, space, {}, profile)
    out = {"profile": profile.name, "teacher": str(args.teacher), "percentile": q, "readings": [],
           "environment": environment()}
    for i in range(args.readings):
        t0 = time.time()
        m = meter.measure_teacher_as_shipped()
        row = {"reading": i, f"ratio_p{q:g}": m.paired.ratio_at(q), "ratio_median": m.paired.ratio,
               "reference_ms": m.paired.reference_ms, "effective_cores": m.extra.get("effective_cores"),
               "seconds": time.time() - t0}
        out["readings"].append(row)
        print(f"reading {i}: p{q:g} ratio {row[f'ratio_p{q:g}']:.3f}, median ratio {row['ratio_median']:.3f}, "
              f"UNet {row['reference_ms']:.2f} ms, {row['seconds']:.1f} s", flush=True)
    single = [r[f"ratio_p{q:g}"] for r in out["readings"]]
    groups = [float(np.median(single[i:i + args.group])) for i in range(0, len(single) - args.group + 1, args.group)]
    out["single"], out[f"median_of_{args.group}"] = spread(single), spread(groups)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    for name in ("single", f"median_of_{args.group}"):
        s = out[name]
        print(f"{name}: {s['median']:.3f} [{s['min']:.3f}, {s['max']:.3f}] range {100 * s['range_rel']:.1f}% "
              f"cv {100 * s['cv']:.1f}% (n {s['n']})")


if __name__ == "__main__":
    main()
