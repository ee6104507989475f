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
