"""BO against the other strategies on one device problem: seeds x equal evaluation caps, a certified best known.

The fidelity evaluator is deterministic, so one memo is shared across methods and seeds; "best known"
is the best of every run and a long evolution run, polished by steepest descent over one- and
two-slot moves on the true fidelity (a local optimum no single move improves).
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.analysis import (
    convergence,
    evaluations_to_reach,
    median_evaluations,
    plot_convergence,
    random_search_needs,
)
from search.problem import SearchProblem
from search.run import best_feasible, run_search
from search.strategies.local_search import hill_climb
from tocsr.core.space import ArchSpec

log = logging.getLogger(__name__)


class MemoFidelity:
    """A deterministic fidelity evaluator, each candidate computed once."""

    def __init__(self, inner):
        self.inner, self.memo, self.computed = inner, {}, 0

    def evaluate(self, spec: ArchSpec) -> float:
        if spec.key not in self.memo:
            self.memo[spec.key] = self.inner.evaluate(spec)
            self.computed += 1
        return self.memo[spec.key]


def benchmark_verdict(summary: dict, needs: dict | None, evaluations: int) -> dict[str, Any]:
    """The search issue's criteria, each with the numbers it was judged on."""
    bo = summary.get("bo")
    if bo is None:
        return {}
    out: dict[str, Any] = {"bo_median_evaluations_to_target": bo["median_evaluations_to_within_tol"]}
    if needs is not None:
        random_needs = needs["median_evaluations_lower_bound"]
        rand = summary.get("random")
        if rand and rand["median_evaluations_to_within_tol"] is not None:   # random got there itself
            random_needs = rand["median_evaluations_to_within_tol"]
        out["random_median_evaluations_to_target_at_least"] = random_needs
        reach = bo["median_evaluations_to_within_tol"]
        out["bo_within_a_third_of_random"] = reach is not None and reach <= random_needs / 3
    out["bo_ahead_at_equal_budget"] = {k: bo["median_final_best"] < v["median_final_best"]
                                       for k, v in summary.items() if k != "bo" and "@" not in k}
    out["evaluations"] = evaluations
    return out


def benchmark_strategies(problem: SearchProblem, memo: MemoFidelity, out: Path, block_error: Callable | None,
                         methods: Sequence[str], evaluations: int, seeds: int, random_evaluations: int,
                         best_known_evaluations: int, tolerance: float, title: str) -> dict[str, Any]:
    """Every method for `seeds` seeds at `evaluations` (random also at `random_evaluations`), run
    folders and convergence.png under `out`. `problem` must evaluate fidelity through `memo`."""
    space = problem.space
    runs: dict[str, list[list]] = {}
    walls: dict[str, list[float]] = {}
    plan = [(m, evaluations) for m in methods] + [("random", random_evaluations)] * ("random" in methods)
    for method, b in plan:
        key = method if b == evaluations else f"{method}@{b}"
        for seed in range(seeds):
            folder = out / "runs" / key / f"seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            kwargs = {"block_error": block_error} if method in ("greedy", "bo") and block_error else {}
            t0 = time.perf_counter()
            trials = run_search(problem, method, b, folder, seed=seed, q=4, show_progress=False, **kwargs)
            walls.setdefault(key, []).append(time.perf_counter() - t0)
            runs.setdefault(key, []).append(trials)
            best = best_feasible(trials)
            log.info("%s seed %d: best %s", key, seed, best.objective if best else None)
    folder = out / "runs" / "best-known"
    shutil.rmtree(folder, ignore_errors=True)
    long_run = run_search(problem, "evolution", best_known_evaluations, folder, seed=99, q=8, show_progress=False)
    everything = [t for rs in runs.values() for trials in rs for t in trials] + long_run
    start = best_feasible(everything)
    polished = hill_climb(problem, [space.spec(start.choices)],
                          lambda specs: -torch.tensor([memo.evaluate(x) for x in specs]), random.Random(7),
                          pairs=200, max_steps=20)[0]
    best_known = memo.evaluate(polished)       # <= start's: the climb only ever moves to better candidates
    target = best_known * (1 + tolerance)
    curves = {k: [convergence(t) for t in rs] for k, rs in runs.items()}
    summary = {}
    for k, rs in curves.items():
        reach = [evaluations_to_reach(c, target) for c in rs]
        finals = [c[-1] for c in rs]
        summary[k] = {"evaluations_to_within_tol": reach,
                      "median_evaluations_to_within_tol": median_evaluations(reach),
                      "reached": sum(r is not None for r in reach), "final_best": finals,
                      "median_final_best": float(np.median(finals)), "median_wall_s": float(np.median(walls[k]))}
    random_draws = [t.objective for k in runs if k.split("@")[0] == "random" for trials in runs[k] for t in trials
                    if t.feasible and t.objective is not None]
    needs = random_search_needs(random_draws, target) if random_draws else None
    plot_convergence(curves, out / "convergence.png", best_known=best_known, title=title)
    return {"evaluations": evaluations, "seeds": seeds, "random_evaluations": random_evaluations,
            "best_known": best_known, "best_known_spec": polished.to_dict(),
            "best_known_from": f"all runs + evolution with {best_known_evaluations} evaluations, then steepest descent "
                               "over one- and two-slot moves on the true fidelity",
            "tolerance": tolerance, "summary": summary, "random_search_needs": needs,
            "verdict": benchmark_verdict(summary, needs, evaluations), "fidelity_evaluations_computed": memo.computed}


def describe_benchmark(doc: dict[str, Any]) -> list[str]:
    """What `tocsr search-benchmark` prints about the search_benchmark.json record."""
    lines = [f"best known {doc['best_known']:.5g}; target within {100 * doc['tolerance']:.0f}%"]
    for k, v in doc["summary"].items():
        lines.append(f"{k:12s} median final {v['median_final_best']:.5g}; reached target in {v['reached']}/"
                     f"{doc['seeds']} seeds, evaluations {v['evaluations_to_within_tol']}")
    needs, verdict = doc["random_search_needs"], doc["verdict"]
    if needs:
        lines.append(f"random search: {needs['hits']} of {needs['draws']} draws within target -> its median "
                     f"evaluations to target >= {verdict.get('random_median_evaluations_to_target_at_least')} "
                     f"({100 * needs['confidence']:.0f}% confidence)")
    if verdict:
        lines.append(f"BO median evaluations to target: {verdict['bo_median_evaluations_to_target']}; within a third "
                     f"of random: {verdict.get('bo_within_a_third_of_random')}; ahead at equal evaluations: "
                     f"{verdict['bo_ahead_at_equal_budget']}")
    return lines
