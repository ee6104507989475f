"""Run one strategy on one problem for a budget of evaluations, resumably.

The trial log is replayed into the strategy on start, so a killed search continues where it
stopped and never evaluates a candidate twice. A candidate whose evaluation raises (out of memory,
a broken block) is recorded as an infeasible trial with its error, and the search goes on.
Evaluations of one asked batch go through an `Executor` (in-process by default; Ray in scale-out).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from search.problem import SearchProblem
from search.strategies import make_strategy
from search.trials import Trial, TrialLog
from tocsr.core.space import ArchSpec
from tocsr.core.training import progress

log = logging.getLogger(__name__)


Outcome = tuple[float | None, str | None, float]      # (fidelity, error, seconds)


class Executor(Protocol):
    def map(self, specs: Sequence[ArchSpec]) -> list[Outcome]:
        """Evaluate a batch of candidates; results in the order of `specs`."""


def evaluate_one(evaluator, spec: ArchSpec) -> Outcome:
    t0 = time.perf_counter()
    try:
        value = float(evaluator.evaluate(spec))
    except (RuntimeError, ValueError, MemoryError) as err:   # OOM and broken candidates are results too
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", time.perf_counter() - t0
    return value, None, time.perf_counter() - t0


class InProcessExecutor:
    def __init__(self, evaluator):
        self.evaluator = evaluator

    def map(self, specs: Sequence[ArchSpec]) -> list[Outcome]:
        return [evaluate_one(self.evaluator, s) for s in specs]


def best_feasible(trials: Sequence[Trial]) -> Trial | None:
    ok = [t for t in trials if t.feasible and t.objective is not None]
    return min(ok, key=lambda t: t.objective) if ok else None


def rescore(trials: Sequence[Trial], problem: SearchProblem) -> list[Trial]:
    """Trials with costs, feasibility and objective recomputed under `problem`: the fidelity of a
    candidate does not depend on the cost model, so a refitted cost model or a budget at another
    machine speed re-scores what was evaluated without evaluating it again."""
    out = []
    for t in trials:
        spec = problem.space.spec(t.choices)
        costs = problem.costs(spec).to_dict()
        if t.fidelity is None:
            out.append(dataclasses.replace(t, costs=costs, feasible=False, objective=None))
        else:
            out.append(dataclasses.replace(t, costs=costs, feasible=problem.feasible(spec, t.fidelity),
                                           objective=problem.objective(spec, t.fidelity)))
    return out


def run_search(problem: SearchProblem, method: str, budget: int, out_dir: str | Path, seed: int = 0, q: int = 4,
               executor: Executor | None = None, show_progress: bool = True, **strategy_kwargs) -> list[Trial]:
    """Evaluate up to `budget` candidates with `method`; every trial is in out_dir/trials.jsonl.

    Trials already in the log (a resumed search, or an earlier round under another cost model) are
    re-scored under `problem` before the strategy sees them; the log keeps what was recorded then."""
    trial_log = TrialLog(Path(out_dir) / "trials.jsonl")
    trials = rescore(trial_log.read(), problem)
    strategy = make_strategy(method, problem, seed, **strategy_kwargs)
    strategy.tell(trials)
    executor = executor or InProcessExecutor(problem.fidelity)
    seen = {t.key for t in trials}
    bar_cm = progress(f"search/{method}", budget, len(trials)) if show_progress else None
    bar = bar_cm.__enter__() if bar_cm else None
    try:
        while len(trials) < budget:
            specs = [s for s in strategy.ask(min(q, budget - len(trials))) if s.key not in seen]
            if not specs:
                log.info("%s proposes nothing more after %d evaluations", method, len(trials))
                break
            results = executor.map(specs)
            new = []
            for spec, (fid, err, wall) in zip(specs, results, strict=True):
                costs = problem.costs(spec).to_dict()
                feasible = fid is not None and problem.feasible(spec, fid)
                trial = Trial(index=len(trials), key=spec.key, choices=dict(spec.items()), fidelity=fid, costs=costs,
                              objective=problem.objective(spec, fid) if fid is not None else None, feasible=feasible,
                              method=method, seed=seed, wall_s=wall, error=err)
                trial_log.append(trial)
                trials.append(trial)
                seen.add(spec.key)
                new.append(trial)
            strategy.tell(new)
            if bar:
                best = best_feasible(trials)
                bar.update(len(new), best_feasible=best.objective if best else float("nan"))
    finally:
        if bar_cm:
            bar_cm.__exit__(None, None, None)
    return trials
