"""How repeatable each pipeline's paired ratio is, per load, over the rounds of a `contention.py` JSON.

The budget a search meets is the deployed pipeline's time over the teacher-shaped pipeline's (`lr+tiny / kl+kl`, both
paired with the teacher UNet). Two timings of one pipeline minutes apart disagree by how much that figure moves
between readings, so its spread over rounds taken on the same machine, at two threads ("idle") and at one ("one
thread"), says which thread count gives the more repeatable decision. Prints, per load: the readings, each
pipeline's ratio to the UNet and the budget's ratio as median [min, max] with the relative range (max / min - 1),
and the cores probe's range.

    python reports/evidence/latency-agreement/threads.py contention-natural.json [--out summary.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BUDGET_RATIO = "lr+tiny / kl+kl"


def spread(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"n": int(v.size), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "range_rel": float(v.max() / v.min() - 1), "cv": float(v.std(ddof=1) / v.mean()) if v.size > 1 else 0.0}


def summarize(readings: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for load in dict.fromkeys(r["load"] for r in readings):
        rows = [r for r in readings if r["load"] == load]
        figures: dict[str, list[float]] = {}
        for r in rows:
            for name, p in r["pipelines"].items():
                figures.setdefault(name, []).append(p["ratio"])
            figures.setdefault(BUDGET_RATIO, []).append(r["pipelines"]["lr+tiny"]["ratio"] / r["pipelines"]["kl+kl"]["ratio"])
            figures.setdefault("UNet ms", []).append(float(np.median([p["reference_ms"] for p in r["pipelines"].values()])))
        cores = [c for r in rows for c in r.get("effective_cores_before_after", [])]
        out[load] = {"figures": {k: spread(v) for k, v in figures.items()},
                     "cores": spread(cores) if cores else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("contention_json", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    summary = summarize(json.loads(args.contention_json.read_text())["readings"])
    for load, s in summary.items():
        n = next(iter(s["figures"].values()))["n"]
        print(f"{load} ({n} readings" + (f"; cores {s['cores']['min']:.2f}-{s['cores']['max']:.2f}" if s["cores"] else "")
              + "):")
        for name, f in s["figures"].items():
            print(f"  {name:16s} {f['median']:.3f} [{f['min']:.3f}, {f['max']:.3f}]  range {100 * f['range_rel']:.1f}%"
                  f"  cv {100 * f['cv']:.1f}%")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
