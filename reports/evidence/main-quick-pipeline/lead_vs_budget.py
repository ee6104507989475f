"""TOC-SR against SRVGG across the README runs on record, against how much training the run's hour afforded.

Each README run trains SRVGG from scratch for the seconds of TOC-SR's SR stage (the fairness rule), so on a slow hour,
where the time plan cuts the students' steps, SRVGG gets fewer seconds too. This reads every run folder here whose
summary scored TOC-SR and SRVGG on the test photographs and puts three paired differences (PSNR-Y, dB, 95% bootstrap
intervals over the photographs, as the run printed them) against the steps SRVGG trained: TOC-SR minus bicubic,
SRVGG minus bicubic, TOC-SR minus SRVGG. It writes `lead_vs_budget.json` and `lead_vs_budget.png` beside itself.

    python reports/evidence/main-quick-pipeline/lead_vs_budget.py [--since 52]

Runs before `--since` are left out: earlier ones trained other students or another baseline recipe (docs/status.md).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
DIFFS = {"tocsr_minus_bicubic": "TOC-SR - bicubic", "best_baseline_minus_bicubic": "SRVGG - bicubic",
         "tocsr_minus_best_baseline": "TOC-SR - SRVGG"}
KINDS = {"bicubic": "clean inputs", "realesrgan": "Real-ESRGAN inputs"}


def read_runs(since: int) -> list[dict]:
    rows = []
    for folder in sorted(HERE.glob("run*-readme")):
        number = int(re.match(r"run(\d+)", folder.name).group(1))
        summary = folder / "summary.json"
        if number < since or not summary.is_file():
            continue
        s = json.loads(summary.read_text())
        srvgg = s.get("comparison", {}).get("baselines_trained", {}).get("srvgg")
        [device] = s["devices"].values()
        test = device.get("test", {})
        if srvgg is None or any(test.get(k, {}).get("best_baseline") != "srvgg" for k in KINDS):
            continue
        plan = s.get("step_plan") or {}
        rows.append({"run": folder.name, "srvgg_steps": srvgg["steps"], "budget_s": srvgg["budget_s"],
                     "student_scale": plan.get("student_scale"), "teacher_stage_s": s["stage_seconds"]["teacher"],
                     **{f"{kind}.{d}": {k: test[kind][d][k] for k in ("mean", "low", "high")}
                        for kind in KINDS for d in DIFFS}})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (kind, title) in zip(axes, KINDS.items(), strict=True):
        for i, (d, label) in enumerate(DIFFS.items()):
            xs = [r["srvgg_steps"] + 8 * (i - 1) for r in rows]        # a small offset keeps the bars apart
            ys = [r[f"{kind}.{d}"]["mean"] for r in rows]
            err = [[y - r[f"{kind}.{d}"]["low"] for y, r in zip(ys, rows, strict=True)],
                   [r[f"{kind}.{d}"]["high"] - y for y, r in zip(ys, rows, strict=True)]]
            ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, capsize=2, lw=0.8, label=label, color=f"C{i}")
        ax.axhline(0, color="k", lw=0.7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("SRVGG steps in the SR stage's seconds")
    axes[0].set_ylabel("PSNR-Y difference, dB (95% CI)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"README runs of the quick preset on cpu-2core (measured), {len(rows)} runs, 7 test photographs "
                 "each\nfewer SRVGG steps: a slower hour, on which the plan cut the students' steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--since", type=int, default=52, help="the first run number to include")
    args = ap.parse_args(argv)
    rows = read_runs(args.since)
    if not rows:
        raise SystemExit(f"no README run since run{args.since} in {HERE} scored TOC-SR and SRVGG on both input kinds")
    (HERE / "lead_vs_budget.json").write_text(json.dumps({"kind": "tocsr.evidence.lead_vs_budget", "version": 1,
                                                          "how": "measured", "runs": rows}, indent=1))
    plot(rows, HERE / "lead_vs_budget.png")
    for r in sorted(rows, key=lambda r: r["srvgg_steps"]):
        c = r["bicubic.tocsr_minus_best_baseline"]
        print(f"{r['run']:24s} SRVGG {r['srvgg_steps']:5d} steps, students x{r['student_scale']:.2f}: TOC-SR - SRVGG "
              f"clean {c['mean']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]")


if __name__ == "__main__":
    main()
