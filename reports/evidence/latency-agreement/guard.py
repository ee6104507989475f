"""The latency guard a device needs, read from its record: how far the report's second timing of a chosen model
drifted from the search's confirmed reading of it, over the README runs on record.

Each README run of the main job times its chosen pipeline twice, minutes apart: the search's confirmed reading
(`measured_p90_ms`, which met the budget) and the eval stage's row (`report_row_p90_ms`), both paired with the
teacher UNet and stated at the search's speed. Their ratio r = row / search is the drift the choice must leave
room for. A guard g lets the row meet the budget whenever r <= 1 / (1 - g); this script prints r for every run
whose search confirmed its choice with a second reading (`SelectionConfig.confirm_choice`: earlier readings were
biased low), the guard at the quantile asked for, and what that guard would have done in each run.

Since the sixty-seventh session a `latency_vs_teacher` pipeline budget is judged on the choice's share of the teacher
as shipped, timed beside it, with the cost model's figure for that pipeline as its milliseconds; since the
sixty-eighth the eval stage times the row beside the teacher as shipped too (`report_row_share`), and r is the ratio
of the two shares. A run in between has a search figure in the cost model's units and a row in the UNet's: its r
mixes the two, so it is listed and left out of the quantile.

    python reports/evidence/latency-agreement/guard.py [--quantile 0.9] [--out guard.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RUNS = Path(__file__).resolve().parents[1] / "main-quick-pipeline"


def confirmed(search_result: dict) -> bool:
    """The run's search confirmed each reading that met the budget with a second one."""
    return any("first_reading_ms_at_decision" in a for a in search_result.get("remeasured", []))


def drifts(runs: Path, profile: str) -> list[dict]:
    out = []
    for folder in sorted(runs.glob("run*-readme")):
        summary, search = folder / "summary.json", folder / "search_result.json"
        if not (summary.is_file() and search.is_file()) or not confirmed(json.loads(search.read_text())):
            continue
        d = json.loads(summary.read_text())["devices"].get(profile)
        if not d or d.get("report_row_p90_ms") is None or d.get("latency_budget_ms") is None:
            continue
        shipped = d.get("judged_against") == "teacher as shipped"
        if shipped and d.get("report_row_share") is not None:
            compared, r = "shares beside the teacher as shipped", d["report_row_share"] / d["chosen_share"]
            over = d["report_row_share"] > d["latency_budget_ms"] / d["teacher_p90_ms"]
        else:
            compared = "mixed units: left out" if shipped else "ms beside the teacher UNet"
            r, over = d["report_row_p90_ms"] / d["measured_p90_ms"], d["report_row_p90_ms"] > d["latency_budget_ms"]
        out.append({"run": folder.name, "search_p90_ms": d["measured_p90_ms"], "row_p90_ms": d["report_row_p90_ms"],
                    "budget_ms": d["latency_budget_ms"], "row_over_search": r, "compared": compared,
                    "row_over_budget_as_run": over,
                    "guard_as_run": d.get("latency_guard") or 0.0,
                    # the fewest cores each timing had (bench.cores), in runs since the probe was recorded
                    "search_cores_min": (d.get("measured_effective_cores") or {}).get("min"),
                    "row_cores_min": (d.get("report_row_share_effective_cores" if compared.startswith("shares")
                                            else "report_row_effective_cores") or {}).get("min")})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-2core")
    ap.add_argument("--quantile", type=float, default=0.9, help="the share of runs whose row the guard must keep in")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("guard.json"))
    args = ap.parse_args(argv)
    every = drifts(RUNS, args.profile)
    rows = [x for x in every if not x["compared"].startswith("mixed")]
    if len(rows) < 5:
        raise SystemExit(f"only {len(rows)} README runs of {args.profile} with a confirmed choice and a report row under "
                         f"{RUNS}: too few to read a guard from")
    r = np.array([x["row_over_search"] for x in rows])
    q = float(np.quantile(r, args.quantile))
    guard = max(0.0, 1 - 1 / q)
    for x in every:
        x["row_over_budget_with_guard"] = x["row_over_search"] * (1 - guard) > 1
        print(f"{x['run']:28s} search {x['search_p90_ms']:6.2f}  row {x['row_p90_ms']:6.2f}  budget {x['budget_ms']:6.2f}"
              f"  row/search {x['row_over_search']:.3f} ({x['compared']})  guard as run {x['guard_as_run']:g}"
              + (f"  cores search {x['search_cores_min']:.2f} row {x['row_cores_min']:.2f}"
                 if x["search_cores_min"] is not None and x["row_cores_min"] is not None else ""))
    doc = {"profile": args.profile, "runs": every, "n": len(rows), "left_out": len(every) - len(rows),
           "quantile": args.quantile,
           "row_over_search": {"median": float(np.median(r)), "std": float(np.std(r, ddof=1)), "min": float(r.min()),
                               "max": float(r.max()), "at_quantile": q},
           "guard": guard,
           "rows_over_budget_as_run": sum(x["row_over_budget_as_run"] for x in rows),
           "rows_over_budget_with_guard": sum(x["row_over_budget_with_guard"] for x in rows),
           "note": "measured: every figure is a README run's own record on the 2-core CPU; the with-guard count is what "
                   "the ratio r would have given had the search confirmed at the budget less the guard (an upper bound: a choice "
                   "is confirmed at or under it)"}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{len(rows)} runs ({len(every) - len(rows)} left out, mixed units): row/search median {np.median(r):.3f}, sd {np.std(r, ddof=1):.3f}, range "
          f"{r.min():.3f}-{r.max():.3f}; quantile {args.quantile:g}: {q:.3f} -> guard {guard:.3f}; rows over the "
          f"budget as run: {doc['rows_over_budget_as_run']} of {len(rows)}, with the guard: "
          f"{doc['rows_over_budget_with_guard']}; wrote {args.out}")


if __name__ == "__main__":
    main()
