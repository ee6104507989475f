"""Random search over cheap-feasible candidates: the baseline every other method must beat."""

from __future__ import annotations

import random

from search.problem import SearchProblem
from search.strategies.base import register_strategy, sample_feasible
from search.trials import Trial
from tocsr.core.space import ArchSpec


@register_strategy("random")
class RandomSearch:
    name = "random"

    def __init__(self, problem: SearchProblem, seed: int = 0):
        self.problem, self.rng, self.seen = problem, random.Random(seed), set()

    def ask(self, n: int) -> list[ArchSpec]:
        out = []
        for _ in range(n):
            spec = sample_feasible(self.problem, self.rng, self.seen | {s.key for s in out})
            if spec is None:
                break
            out.append(spec)
        return out

    def tell(self, trials: list[Trial]) -> None:
        self.seen.update(t.key for t in trials)
