"""Regularised (aging) evolution, Real et al. 2019: tournament selection, mutation, oldest dies."""

from __future__ import annotations

import random
from collections import deque

from search.problem import SearchProblem
from search.strategies.base import mutate, register_strategy, sample_feasible
from search.trials import Trial
from tocsr.core.space import ArchSpec


@register_strategy("evolution")
class RegularizedEvolution:
    name = "evolution"

    def __init__(self, problem: SearchProblem, seed: int = 0, population: int = 16, sample_size: int = 4):
        self.problem, self.rng = problem, random.Random(seed)
        self.population: deque[Trial] = deque(maxlen=population)
        self.pop_size, self.sample_size, self.seen = population, sample_size, set()

    def _score(self, t: Trial) -> float:
        # lower is better; infeasible ones lose every tournament
        return t.objective if (t.feasible and t.objective is not None) else float("inf")

    def ask(self, n: int) -> list[ArchSpec]:
        out: list[ArchSpec] = []
        taken = lambda: self.seen | {s.key for s in out}  # noqa: E731
        for _ in range(n):
            spec = None
            if len(self.population) >= self.pop_size:
                parent = min(self.rng.sample(list(self.population), self.sample_size), key=self._score)
                parent_spec = self.problem.space.spec(parent.choices)
                for _ in range(200):
                    child = mutate(self.problem, parent_spec, self.rng)
                    if child.key not in taken() and self.problem.cheap_feasible(child):
                        spec = child
                        break
            if spec is None:
                spec = sample_feasible(self.problem, self.rng, taken())
            if spec is None:
                break
            out.append(spec)
        return out

    def tell(self, trials: list[Trial]) -> None:
        for t in trials:
            self.seen.add(t.key)
            self.population.append(t)      # deque(maxlen) drops the oldest: aging
