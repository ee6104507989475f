"""reports.comparison: the fairness rule that sets the trained baselines' seconds."""

from types import SimpleNamespace

from reports.comparison import baseline_budget_from


def test_the_baselines_get_the_longest_sr_stage_of_the_run_so_no_device_gives_them_less_than_its_student():
    infos = [SimpleNamespace(name="cpu-2core", training_s=224.0), SimpleNamespace(name="h100", training_s=310.5),
             SimpleNamespace(name="edge", training_s=97.0)]
    assert baseline_budget_from(infos).training_s == 310.5
    assert baseline_budget_from(infos[:1]).name == "cpu-2core"
