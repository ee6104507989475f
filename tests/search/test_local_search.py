from __future__ import annotations

import math
import random

import pytest
import torch

from search.analysis import median_evaluations, random_search_needs
from search.strategies.local_search import hill_climb, neighbours


def _additive_score(problem):
    """Higher is better: minus the synthetic fidelity error (additive with a small interaction)."""
    return lambda specs: -torch.tensor([problem.fidelity.evaluate(s) for s in specs], dtype=torch.float64)


def _cheapest(problem):
    """Every slot at its lowest-latency choice: feasible whenever anything is."""
    lat = problem.cost.lat
    return problem.space.spec({s.name: min(s.choices, key=lambda c: lat[(s.name, c)]) for s in problem.space.slots})


def test_neighbours_change_one_or_two_slots_and_stay_inside_the_budgets(problem):
    start = _cheapest(problem)
    assert problem.cheap_feasible(start)
    nbrs = neighbours(problem, start, random.Random(0), pairs=200)
    assert nbrs and len({n.key for n in nbrs}) == len(nbrs)
    changed = [sum(a != b for a, b in zip(n.choices, start.choices, strict=True)) for n in nbrs]
    assert set(changed) == {1, 2}
    assert all(problem.cheap_feasible(n) for n in nbrs)


def test_hill_climb_ends_in_a_local_optimum_better_than_its_start(problem):
    rng = random.Random(3)
    score = _additive_score(problem)
    start = _cheapest(problem)
    (end,) = hill_climb(problem, [start], score, rng, pairs=0)
    assert float(score([end])[0]) > float(score([start])[0])
    assert problem.cheap_feasible(end)
    # no feasible one-slot move improves on the end point (pairs=0: the certificate is exhaustive)
    assert float(score(neighbours(problem, end, rng, pairs=0)).max()) <= float(score([end])[0])


def test_random_search_needs_is_the_clopper_pearson_bound_of_a_geometric_median():
    none = random_search_needs([1.0] * 3000, target=0.5)
    assert none["hits"] == 0
    assert none["p_upper"] == pytest.approx(1 - 0.05 ** (1 / 3000), rel=1e-9)
    assert none["median_evaluations_lower_bound"] == math.ceil(math.log(2) / -math.log1p(-none["p_upper"]))
    more = random_search_needs([1.0] * 6000, target=0.5)
    some = random_search_needs([0.1] * 30 + [1.0] * 2970, target=0.5)
    assert more["median_evaluations_lower_bound"] > none["median_evaluations_lower_bound"] > \
        some["median_evaluations_lower_bound"] >= 1
    assert random_search_needs([0.1] * 5, target=0.5)["median_evaluations_lower_bound"] == 1
    with pytest.raises(ValueError, match="at least one"):
        random_search_needs([], target=0.5)


def test_median_evaluations_counts_a_seed_that_never_reached_as_infinite():
    assert median_evaluations([100, 200, None, 150, None]) == 200   # 100, 150, 200, inf, inf
    assert median_evaluations([100, None, None, 150, None]) is None
    assert median_evaluations([]) is None
