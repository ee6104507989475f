"""Does a way of choosing make the architecture chosen repeatable? Two ways, on identical inputs.

Runs `tocsr search` on one run's profile, teacher, surrogates, cost table and parts, `--pairs` times in each of two
ways, alternating which goes first. `--compare upward`: the first round's upward step where the cost model
over-predicts the measured cheapest (`--upward-step continuous` against `beyond tolerance`). `--compare probes`:
where that step reads the model's bias (`--bias-probes 3`, near the target, against `0`, the cheapest alone).
`--compare bound`: what bounds the search itself (`--search-bound fixed` against `moving`). `--compare judged`
(the default): the two ways a `latency_vs_teacher` pipeline budget can be judged (`--judged-against`):
- shipped: each candidate timed beside the teacher as shipped, the search's target from the cost model's teacher
  as shipped (search.selection, SelectionConfig.judge_beside_shipped);
- unet: each candidate timed beside the teacher UNet, against the teacher as shipped read just before (the way the
  four searches of the sixty-sixth session chose four architectures).
Identical inputs, the same seed and evaluations: what differs between searches of one way is the machine's moment.
Prints and writes each search's choice, its target in teacher-UNet medians (what BO searched for), the teacher as
shipped's figure and readings, and per way the architectures chosen and the spread of their sizes.

    python reports/evidence/latency-agreement/searches_ab.py --run runs/quick [--pairs 3] [--evaluations 32] \
        --out F.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tocsr.core.provenance import environment  # noqa: E402

# --compare: the two ways searched, each the `tocsr search` options that make it
COMPARISONS = {
    "judged": {"shipped": ["--judged-against", "shipped"], "unet": ["--judged-against", "unet"]},
    # both judged beside the teacher as shipped; how far the first round searches above the target where the cost
    # model over-predicts the measured cheapest (search.selection.SelectionConfig.upward_step)
    "upward": {"continuous": ["--upward-step", "continuous"],
               "beyond-tolerance": ["--upward-step", "beyond tolerance"]},
    # both continuous; where the first round's step reads the model's bias: at three candidates near the target and
    # the cheapest, or at the cheapest alone (SelectionConfig.bias_probes)
    "probes": {"near-target": ["--bias-probes", "3"], "cheapest": ["--bias-probes", "0"]},
    # what bounds the search itself: the cost model before this search's readings at a fixed bound, or each round's
    # target (SelectionConfig.search_bound)
    "bound": {"fixed": ["--search-bound", "fixed"], "moving": ["--search-bound", "moving"]},
}


def cost_table(run: Path) -> Path:
    tables = sorted(p for p in (run / "costs").glob("*.json") if not p.name.endswith(".pipeline.json"))
    if len(tables) != 1:
        raise SystemExit(f"{len(tables)} cost tables under {run / 'costs'}: give the one to search on with --costs")
    return tables[0]


def first_trials(out: Path, n: int = 8) -> list[str]:
    """The keys of a search's first `n` trials (its initial design, for BO): searches that share them started alike."""
    lines = (out / "trials.jsonl").read_text().splitlines()
    return [json.loads(line)["key"] for line in lines[:n]]


def one_search(run: Path, profile: str, costs: Path, way: str, options: list[str], evaluations: int, out: Path
               ) -> dict:
    cmd = [sys.executable, "-m", "tocsr", "search", "-p", str(run / "profiles" / f"{profile}.yaml"),
           "--surrogates", str(run / "surrogates"), "--teacher", str(run / "teacher"),
           "--costs", str(costs), "--parts", str(run / "parts"),
           "--evaluations", str(evaluations), "--out", str(out), *options]
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    r = json.loads((out / "search_result.json").read_text())
    d, c = r["decision"], r["chosen"]
    chosen = [a for a in r["remeasured"] if a["key"] == c["key"]]
    first = [a for a in r["remeasured"] if a["round"] == 0]
    first_read = [a["latency_ms_at_decision"] / d["latency_target_ms"] for a in first
                  if a["latency_ms_at_decision"] is not None]
    probes = r["cheapest"].get("boundary_probes")
    return {"way": way, "started_utc": time.strftime("%H:%M:%S", time.gmtime(t0)), "wall_s": time.time() - t0,
            "chosen": c["key"], "params_m": c["params_m"], "chosen_p90_ms": c["measured_latency_ms"],
            "target_ms": d["latency_target_ms"], "unet_ms": d["reference_ms"],
            "target_in_unet_medians": d["latency_target_ms"] / d["reference_ms"],
            "teacher_as_shipped_ms": d["teacher_at_ms"], "teacher_as_shipped_basis": d.get("teacher_at_basis"),
            "teacher_as_shipped_readings_ms": d["teacher_at_readings_ms"],
            "share_of_teacher_as_shipped": c["measured_latency_ms"] / d["teacher_at_ms"],
            "cheapest_readings_ms": r["cheapest"].get("measurements_ms"),
            "chosen_predicted_ms": chosen[-1]["predicted"]["latency_ms"] if chosen else None,
            "fidelity_error": c["fidelity"], "searched_below_budget_by": r["last_round_searched_below_budget_by"],
            "cheapest_predicted_over_measured": r["cheapest"]["predicted_latency_ms"] / r["cheapest"]["latency_ms"],
            "first_round_searched_at_target_times": (first[0]["searched_below_ms"] / d["latency_target_ms"]
                                                     if first else None),
            "first_round_picks_over_target": first_read, "first_round_met": any(a["meets_budgets"] for a in first),
            "probes_over_predicted_median": probes["over_predicted_median"] if probes else None,
            "rounds": r["selection_rounds"], "first_trials": first_trials(out), "evaluations": r["evaluations"], "revalidation": r["revalidation"],
            "summary_line": done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""}


def summarize(rows: list[dict]) -> dict:
    params = np.asarray([r["params_m"] for r in rows])
    target = np.asarray([r["target_in_unet_medians"] for r in rows])
    share = np.asarray([r["share_of_teacher_as_shipped"] for r in rows])
    fid = np.asarray([r["fidelity_error"] for r in rows])
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    return {"searches": len(rows), "architectures": sorted({r["chosen"] for r in rows}),
            "pairs_starting_alike": sum(a["first_trials"] == b["first_trials"] for a, b in pairs),
            "pairs": len(pairs),
            "first_round_met": sum(bool(r.get("first_round_met")) for r in rows),
            "rounds": [r["rounds"] for r in rows], "fidelity_error_median": float(np.median(fid)),
            "params_m_median": float(np.median(params)),
            "distinct_architectures": len({r["chosen"] for r in rows}),
            "params_m_min": float(params.min()), "params_m_max": float(params.max()),
            "share_min": float(share.min()), "share_max": float(share.max()),
            "fidelity_error_min": float(fid.min()), "fidelity_error_max": float(fid.max()),
            "target_in_unet_medians_min": float(target.min()), "target_in_unet_medians_max": float(target.max())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--profile", default="cpu-2core")
    ap.add_argument("--costs", type=Path, default=None, help="the run's cost table (default: the only one)")
    ap.add_argument("--compare", choices=sorted(COMPARISONS), default="judged",
                    help="judged: beside the teacher as shipped or the UNet; upward: the first round's upward "
                         "step; probes: where that step reads the model's bias; bound: what bounds the search")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--evaluations", type=int, default=32)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--keep", type=Path, default=None, help="write each search's folder here (default: discarded)")
    a = ap.parse_args()
    costs = a.costs or cost_table(a.run)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = a.keep or Path(scratch)
        ways = COMPARISONS[a.compare]
        order = list(ways)
        for i in range(a.pairs):
            for way in (order if i % 2 == 0 else order[::-1]):
                row = one_search(a.run, a.profile, costs, way, ways[way], a.evaluations, Path(tmp) / f"{way}-{i}")
                rows.append(row)
                print(f"{row['started_utc']} {way:8s} {row['chosen']} {row['params_m']:.3f} M; target "
                      f"{row['target_in_unet_medians']:.3f} UNet medians; share of the teacher as shipped "
                      f"{row['share_of_teacher_as_shipped']:.3f}; teacher as shipped {row['teacher_as_shipped_ms']:.2f} "
                      f"ms ({row['teacher_as_shipped_basis']}), readings {row['teacher_as_shipped_readings_ms']}; "
                      f"cheapest over-predicted x{row['cheapest_predicted_over_measured']:.3f}, searched below the "
                      f"budget by {row['searched_below_budget_by']:.3f}; first round at x"
                      f"{row['first_round_searched_at_target_times'] or float('nan'):.3f} of the target, its picks "
                      f"{[round(x, 3) for x in row['first_round_picks_over_target']]}; rounds {row['rounds']}; "
                      f"fidelity error {row['fidelity_error']:.4g}; "
                      f"{row['wall_s']:.0f} s", flush=True)
    doc = {"run": str(a.run), "profile": a.profile, "costs": str(costs), "evaluations": a.evaluations,
           "compare": a.compare, "searches": rows,
           "by_way": {w: summarize([r for r in rows if r["way"] == w]) for w in ways},
           "environment": environment()}
    for w, s in doc["by_way"].items():
        print(f"{w}: {s['distinct_architectures']} architectures in {s['searches']} searches, "
              f"{s['params_m_min']:.3f}-{s['params_m_max']:.3f} M at {s['share_min']:.3f}-{s['share_max']:.3f} of the "
              f"teacher as shipped; target {s['target_in_unet_medians_min']:.3f}-"
              f"{s['target_in_unet_medians_max']:.3f} UNet medians; fidelity error {s['fidelity_error_min']:.4g}-"
              f"{s['fidelity_error_max']:.4g} (median {s['fidelity_error_median']:.4g}); first round met the budget in "
              f"{s['first_round_met']} of {s['searches']}, rounds {s['rounds']}; {s['pairs_starting_alike']} of "
              f"{s['pairs']} pairs of searches shared their first trials")
    a.out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
