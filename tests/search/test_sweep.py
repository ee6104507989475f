import pytest

from search.sweep import EpsSweep, eps_values
from tocsr.core.errors import ConfigError


def test_relative_eps_scale_with_the_cheapest_candidates_error_and_come_out_sorted():
    assert eps_values((0.4, 0.1), True, 0.5) == pytest.approx([0.05, 0.2])
    assert eps_values((0.4, 0.1), False, 0.5) == pytest.approx([0.1, 0.4])
    with pytest.raises(ConfigError, match="positive"):
        eps_values((0.1, 0.0), True, 0.5)
    with pytest.raises(ConfigError, match="absolute"):
        eps_values((0.1,), True, 0.0)


def test_the_sweep_record_round_trips_and_its_table_has_a_row_per_eps(tmp_path):
    point = {"eps_fid": 0.02, "key": "abc", "fidelity": 0.018, "replaced": 5, "params_m": 0.5, "gmacs": 0.2,
             "latency_ms": 4.0, "params_x": 5.0, "gmacs_x": 2.0, "latency_x": 3.5, "paired_error": 0.1,
             "paired_error_std": 0.01, "spectrum_kid": 1.5, "spectrum_kid_std": 0.3, "folder": "eps-0"}
    sweep = EpsSweep("cpu-2core", "params", "bo", 40, (0.1, 0.2), 0.2, "cheap", (point, point | {"eps_fid": 0.04}),
                     {"params_m": 2.5, "gmacs": 0.4, "latency_ms": 14.0}, 16, 10, 0, "rollout-spectrum")
    sweep.save(tmp_path, {})
    again = EpsSweep.load(tmp_path)
    assert again == sweep
    lines = again.describe()
    assert sum(line.startswith("| 0.0") for line in lines) == 2 and "(5.00x)" in lines[4]
    assert "rollout-spectrum proxy" in lines[0]


def test_a_looser_eps_keeps_a_tighter_eps_choice_when_its_own_search_found_worse():
    from search.sweep import carry_forward

    def point(eps, key, fidelity, params):
        return {"eps_fid": eps, "key": key, "fidelity": fidelity, "params_m": params, "gmacs": 0.2,
                "latency_ms": 4.0, "folder": f"eps-{eps}"}

    pts = carry_forward([point(0.02, "a", 0.018, 0.53), point(0.05, "b", 0.04, 0.46), point(0.1, "c", 0.09, 0.71),
                         point(0.4, "d", 0.3, 0.49)], "params")
    assert [p["key"] for p in pts] == ["a", "b", "b", "b"]
    assert [p["carried_from"] for p in pts] == [None, None, 1, 1]
    assert [p["searched_key"] for p in pts] == ["a", "b", "c", "d"] and pts[2]["eps_fid"] == 0.1
    # a tighter choice with more parameters is not carried
    assert carry_forward([point(0.02, "a", 0.018, 0.9), point(0.05, "b", 0.04, 0.5)], "params")[1]["carried_from"] is None
