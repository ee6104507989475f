"""The time budget's stage shares (tocsr.core.timebudget.StageShares), recomputed from main-job summaries.

    python -m tocsr.app.stage_shares reports/evidence/main-quick-pipeline/run4*-readme/summary.json

Each summary gives its stages' seconds per second of its teacher stage; runs whose steps were scaled by their time
budget are brought back to full steps with the scales their summary records. The medians over the summaries are
printed as JSON, with how many runs each rests on: the numbers StageShares holds, refreshed when the job changes.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from tocsr.core.errors import ConfigError
from tocsr.core.timebudget import StageShares


def shares_of_run(summary: dict[str, Any]) -> dict[str, list[float]]:
    """One run's stage seconds per teacher second, at full steps (a list per share: one entry per device where
    the share is per device)."""
    ss: dict[str, float] = summary.get("stage_seconds") or {}
    t = ss.get("teacher")
    if not t:
        raise ConfigError("the summary has no teacher stage seconds (a resumed run that skipped it?); give summaries "
                          "of runs that trained their teacher")
    plan = summary.get("step_plan") or {}
    train_scale = plan.get("training_scale") or 1.0
    student_scale = plan.get("student_scale") or 1.0
    steps = summary.get("sr_student_steps") or {}
    per_device = (steps.get("per_device") or 1) / (steps.get("one_device") or steps.get("per_device") or 1)
    devices = summary.get("devices") or {}
    how = {name: d.get("latency_how") for name, d in devices.items()}
    out: dict[str, list[float]] = {"surrogates": [ss["surrogates"] / t / train_scale],
                                   "sr_shared": [ss["sr-shared"] / t]}
    if "parts" in ss:
        out["parts"] = [ss["parts"] / t / train_scale]
    names = list(ss)
    for i, name in enumerate(names):     # each profile's costs-<key> stage is followed by its search-<profile>
        if name.startswith("costs-") and i + 1 < len(names) and names[i + 1].startswith("search-"):
            profile = names[i + 1].removeprefix("search-")
            key = "costs_search_predicted" if how.get(profile) == "predicted" else "costs_search_measured"
            out.setdefault(key, []).append((ss[name] + ss[names[i + 1]]) / t)
    students = [v for k, v in ss.items() if k.startswith("sr-") and k != "sr-shared"]
    out["student"] = [s / t / per_device / student_scale for s in students]
    comp = summary.get("comparison") or {}
    trained = comp.get("baselines_trained") or {}
    if "eval" in ss and devices:
        baselines_s = sum(float(m.get("seconds", 0.0)) for m in trained.values())
        out["eval_per_device"] = [(ss["eval"] - baselines_s) / t / len(devices)]
    return out


def median_shares(summaries: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    pooled: dict[str, list[float]] = {}
    for s in summaries:
        for key, values in shares_of_run(s).items():
            pooled.setdefault(key, []).extend(values)
    return ({k: round(statistics.median(v), 3) for k, v in pooled.items()}, {k: len(v) for k, v in pooled.items()})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summaries", nargs="+", type=Path, help="summary.json files of main-job runs")
    args = ap.parse_args(argv)
    docs = []
    for path in args.summaries:
        if not path.is_file():
            raise ConfigError(f"{path}: not a file; give the summary.json of a main-job run folder")
        docs.append(json.loads(path.read_text()))
    shares, n = median_shares(docs)
    current = StageShares().to_dict()
    result = {"medians": shares, "values_per_share": n, "current": current,
              "summaries": [str(p) for p in args.summaries]}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from tocsr.app.script import run_script

    run_script(main)
