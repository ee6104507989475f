from __future__ import annotations

import json

import pytest

from search.analysis import convergence, pareto_front
from search.problem import Constraints, SearchProblem
from search.run import run_search
from search.strategies import list_strategies
from search.trials import TrialLog
from tests.search.conftest import FakeCost, FakeFidelity
from tocsr.core.errors import ArtifactError, ConfigError

FAST_BO = {"n_init": 6, "pool": 300, "fit_maxiter": 30}


def _kwargs(method, problem):
    if method == "bo":
        return FAST_BO
    if method == "greedy":
        return {"block_error": lambda s, c: problem.fidelity.err[(s, c)]}
    return {}


@pytest.mark.parametrize("method", ["random", "evolution", "greedy", "tpe", "bo"])
def test_every_strategy_finds_feasible_candidates_and_logs_each_once(problem, tmp_path, method):
    budget = 40 if method == "greedy" else 14   # greedy takes one slot per move until the budget is met
    trials = run_search(problem, method, budget, tmp_path, seed=1, q=3, show_progress=False, **_kwargs(method, problem))
    assert trials and len({t.key for t in trials}) == len(trials)
    assert all(problem.cheap_feasible(problem.space.spec(t.choices)) for t in trials if method != "greedy")
    assert any(t.feasible for t in trials)
    assert [t.key for t in TrialLog(tmp_path / "trials.jsonl").read()] == [t.key for t in trials]


def test_registry_lists_methods_and_names_them_on_a_miss(problem):
    assert {"bo", "random", "evolution", "greedy", "tpe"} <= set(list_strategies())
    from search.strategies import make_strategy

    with pytest.raises(ConfigError, match="available: .*bo"):
        make_strategy("annealing", problem, 0)


def test_killed_search_resumes_without_repeating_an_evaluation(problem, tmp_path):
    first = run_search(problem, "bo", 9, tmp_path, seed=0, q=3, show_progress=False, **FAST_BO)
    calls_before = problem.fidelity.calls
    resumed = run_search(problem, "bo", 15, tmp_path, seed=0, q=3, show_progress=False, **FAST_BO)
    assert [t.key for t in resumed[:9]] == [t.key for t in first]
    assert len({t.key for t in resumed}) == len(resumed) == 15
    assert problem.fidelity.calls - calls_before == 6


def test_truncated_last_line_is_dropped_and_named(problem, tmp_path, caplog):
    run_search(problem, "random", 5, tmp_path, seed=0, show_progress=False)
    path = tmp_path / "trials.jsonl"
    path.write_bytes(path.read_bytes() + b'{"index": 5, "key": "abc", "cho')
    with caplog.at_level("WARNING"):
        assert len(TrialLog(path).read()) == 5
    assert "incomplete" in caplog.text and str(path) in caplog.text
    assert path.read_bytes().endswith(b"\n")


def test_corrupted_middle_line_is_an_error_naming_the_line(problem, tmp_path):
    run_search(problem, "random", 4, tmp_path, seed=0, show_progress=False)
    path = tmp_path / "trials.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactError, match="line 2 is corrupted"):
        TrialLog(path).read()


def test_a_candidate_that_fails_is_recorded_infeasible_and_the_search_goes_on(space, tmp_path):
    import random

    cost = FakeCost(space)
    budget = 0.6 * cost.predict_latency_at_ms(space.all_teacher())
    probe = SearchProblem(space, FakeFidelity(space), cost, Constraints(latency_ms=budget))
    from search.strategies.base import sample_feasible

    doomed = sample_feasible(probe, random.Random(3), set())
    failing = SearchProblem(space, FakeFidelity(space, fail_keys={doomed.key}), cost, Constraints(latency_ms=budget))
    from search.strategies.random_search import RandomSearch

    assert RandomSearch(failing, seed=3).ask(1)[0].key == doomed.key
    trials = run_search(failing, "random", 6, tmp_path, seed=3, show_progress=False)
    bad = [t for t in trials if t.error]
    assert len(bad) == 1 and "out of memory" in bad[0].error and not bad[0].feasible
    assert len(trials) == 6


def test_paper_formulation_minimises_complexity_under_a_fidelity_budget(space, tmp_path):
    cost = FakeCost(space)
    problem = SearchProblem(space, FakeFidelity(space), cost, Constraints(fidelity=0.15), formulation="paper",
                            complexity="params")
    trials = run_search(problem, "bo", 16, tmp_path, seed=0, q=4, show_progress=False, **FAST_BO)
    feasible = [t for t in trials if t.feasible]
    assert feasible and all(t.fidelity <= 0.15 for t in feasible)
    assert all(t.objective == pytest.approx(t.costs["params_m"]) for t in feasible)


def test_paper_formulation_requires_a_fidelity_budget(space):
    with pytest.raises(ConfigError, match="fidelity budget"):
        SearchProblem(space, FakeFidelity(space), FakeCost(space), Constraints(), formulation="paper")


def test_pareto_front_and_convergence(problem, tmp_path):
    trials = run_search(problem, "random", 12, tmp_path, seed=2, show_progress=False)
    front = pareto_front(trials)
    assert front and all(a.costs["latency_ms"] <= b.costs["latency_ms"] and a.fidelity > b.fidelity
                         for a, b in zip(front, front[1:], strict=False))
    curve = convergence(trials)
    assert len(curve) == 12 and all(a >= b for a, b in zip(curve, curve[1:], strict=False))
    assert json.loads(trials[0].to_json())["key"] == trials[0].key


def test_tight_budgets_are_reached_by_repairing_samples(space, tmp_path):
    cost = FakeCost(space)
    base = space.spec({s.name: min(s.choices, key=lambda c, s=s: cost.lat[(s.name, c)]) for s in space.slots})
    tight = 1.15 * cost.predict_latency_at_ms(base)        # just above the cheapest candidate
    problem = SearchProblem(space, FakeFidelity(space), cost, Constraints(latency_ms=tight))
    trials = run_search(problem, "random", 5, tmp_path, seed=0, show_progress=False)
    assert len(trials) == 5 and all(t.feasible for t in trials)


def test_an_impossible_budget_names_the_tightest_constraint_and_closest_candidate(space):
    from search.selection import SearchInfeasible, check_reachable

    cost = FakeCost(space)
    cheapest = space.spec({s.name: min(s.choices, key=lambda c, s=s: cost.lat[(s.name, c)]) for s in space.slots})
    floor = cost.predict_latency_at_ms(cheapest)
    problem = SearchProblem(space, FakeFidelity(space), cost, Constraints(latency_ms=0.5 * floor, peak_memory_mib=1e6))
    with pytest.raises(SearchInfeasible) as info:
        check_reachable(problem)
    msg = str(info.value)
    assert "no candidate meets latency_ms" in msg and cheapest.key in msg and f"{floor:.4g}" in msg
