from __future__ import annotations

from search.benchmark import benchmark_verdict


def _row(reach_median, final):
    return {"median_evaluations_to_within_tol": reach_median, "median_final_best": final}


def test_bo_within_a_third_of_randoms_bound_and_ahead_of_each_baseline():
    summary = {"bo": _row(150, 0.001), "random": _row(None, 0.05), "evolution": _row(None, 0.004),
               "tpe": _row(None, 0.0009), "random@600": _row(None, 0.02)}
    needs = {"median_evaluations_lower_bound": 1042}
    v = benchmark_verdict(summary, needs, evaluations=250)
    assert v["bo_within_a_third_of_random"] is True
    assert v["random_median_evaluations_to_target_at_least"] == 1042
    assert v["bo_ahead_at_equal_budget"] == {"random": True, "evolution": True, "tpe": False}   # random@600: not equal budget


def test_bo_that_never_reaches_the_target_fails_and_random_reaching_it_is_used_directly():
    assert benchmark_verdict({"bo": _row(None, 0.01), "random": _row(None, 0.05)},
                              {"median_evaluations_lower_bound": 5000}, 250)["bo_within_a_third_of_random"] is False
    v = benchmark_verdict({"bo": _row(150, 0.001), "random": _row(300, 0.002)}, {"median_evaluations_lower_bound": 10}, 250)
    assert v["random_median_evaluations_to_target_at_least"] == 300 and v["bo_within_a_third_of_random"] is False
    assert benchmark_verdict({"random": _row(None, 0.05)}, None, 250) == {}
