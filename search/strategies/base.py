"""The interface every strategy implements, and the registry of strategies."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from search.problem import SearchProblem
from search.trials import Trial
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec


class Strategy(Protocol):
    name: str

    def ask(self, n: int) -> list[ArchSpec]:
        """Up to n new candidates to evaluate (fewer, or none, when the strategy is done)."""

    def tell(self, trials: list[Trial]) -> None:
        """Completed evaluations (also replayed from the log on resume)."""


_STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register_strategy(name: str):
    def deco(factory):
        if name in _STRATEGIES:
            raise ValueError(f"strategy {name!r} is already registered")
        _STRATEGIES[name] = factory
        return factory
    return deco


def list_strategies() -> list[str]:
    _import_builtins()
    return sorted(_STRATEGIES)


def make_strategy(name: str, problem: SearchProblem, seed: int, **kwargs) -> Strategy:
    _import_builtins()
    if name not in _STRATEGIES:
        raise ConfigError(f"--method {name!r} does not exist; available: {', '.join(sorted(_STRATEGIES))}")
    return _STRATEGIES[name](problem, seed=seed, **kwargs)


def _import_builtins() -> None:
    from search.strategies import bo, evolution, greedy, random_search, tpe  # noqa: F401


def spec_from_choices(problem: SearchProblem, choices: dict[str, str]) -> ArchSpec:
    return problem.space.spec(choices)


def repair(problem: SearchProblem, spec: ArchSpec, rng: random.Random, max_moves: int = 400) -> ArchSpec | None:
    """Move random slots to choices that lower the worst constraint slack until all cheap constraints
    hold. Tight budgets leave few feasible candidates among random draws; repairing a draw keeps the
    randomness of the other slots while landing inside the budgets. Uses the problem's additive cost
    vectors, so a move costs one vector addition."""
    if problem._additive is None:
        return spec if problem.cheap_feasible(spec) else None
    base, deltas = problem._additive
    choices = dict(spec.items())
    vec = base + sum(deltas[k] for k in choices.items())

    def worst(v) -> float:
        return max(problem.slacks_of_vector(v).values(), default=0.0)

    for _ in range(max_moves):
        w = worst(vec)
        if w <= 0:
            return problem.space.spec(choices)
        slot = rng.choice(problem.space.slots)
        cur = choices[slot.name]
        moves = [(c, vec - deltas[(slot.name, cur)] + deltas[(slot.name, c)]) for c in slot.choices if c != cur]
        better = [(c, v) for c, v in moves if worst(v) < w]
        if better:
            choices[slot.name], vec = rng.choice(better)
    return problem.space.spec(choices) if worst(vec) <= 0 else None


def sample_feasible(problem: SearchProblem, rng: random.Random, exclude: set[str], tries: int = 200) -> ArchSpec | None:
    """A random candidate that meets every cheap constraint and was not evaluated yet."""
    for _ in range(tries):
        spec = problem.space.sample_mixed(rng)
        if not problem.cheap_feasible(spec):
            spec = repair(problem, spec, rng)
        if spec is not None and spec.key not in exclude:
            return spec
    return None


def mutate(problem: SearchProblem, spec: ArchSpec, rng: random.Random, max_changes: int = 2) -> ArchSpec:
    choices = dict(spec.items())
    for slot in rng.sample(problem.space.slots, rng.randint(1, max_changes)):
        choices[slot.name] = rng.choice([c for c in slot.choices if c != choices[slot.name]])
    return problem.space.spec(choices)
