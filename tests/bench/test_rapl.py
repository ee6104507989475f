"""CPU energy through RAPL counters, on a fake /sys/class/powercap the test writes (these machines have none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import bench.rapl
from bench.measure import measure_workload
from bench.profile import parse_profile
from bench.rapl import Rapl, energy_unmeasurable
from bench.workloads import Workload
from tests.conftest import CPU_PROFILE_YAML


def _zone(root: Path, name: str, uj: int, range_uj: int = 10**9) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"package-{name[-1]}\n")
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return zone


def test_package_zones_are_summed_and_a_wrapped_counter_counted_once(tmp_path):
    a = _zone(tmp_path, "intel-rapl:0", 1_000)
    b = _zone(tmp_path, "intel-rapl:1", 999_999_000)
    _zone(tmp_path / "intel-rapl:0", "intel-rapl:0:0", 5)          # a sub-zone (core) is not a package
    rapl = Rapl(tmp_path)
    assert rapl.available and len(rapl.zones) == 2
    s0 = rapl.snapshot()
    (a / "energy_uj").write_text("3000\n")              # +2,000 uJ
    (b / "energy_uj").write_text("2000\n")              # wrapped at 1e9: +1,000 + 2,000 uJ
    assert Rapl.delta_mj(s0, rapl.snapshot()) == pytest.approx(5.0)


def test_no_powercap_says_why(tmp_path):
    assert not Rapl(tmp_path / "absent").available and "no RAPL" in Rapl(tmp_path / "absent").reason
    (tmp_path / "empty").mkdir()
    assert "no package zone" in Rapl(tmp_path / "empty").reason


class _Burns(nn.Module):
    """A workload that spends 7 mJ of (fake) package energy per call."""

    def __init__(self, counter: Path):
        super().__init__()
        self.counter = counter
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        self.counter.write_text(str(int(self.counter.read_text()) + 7_000))
        return self.lin(x)


def test_a_cpu_measurement_records_energy_per_call_from_rapl(tmp_path, monkeypatch):
    zone = _zone(tmp_path, "intel-rapl:0", 0)
    monkeypatch.setattr(bench.rapl, "POWERCAP", tmp_path)
    profile = parse_profile(CPU_PROFILE_YAML)
    m = measure_workload(Workload("burns", _Burns(zone / "energy_uj"), (torch.randn(1, 4),), {}), profile)
    assert m.energy_mj_per_inference == pytest.approx(7.0) and "RAPL" in m.energy_note
    monkeypatch.setattr(bench.rapl, "POWERCAP", tmp_path / "absent")
    m = measure_workload(Workload("burns", _Burns(zone / "energy_uj"), (torch.randn(1, 4),), {}), profile)
    assert m.energy_mj_per_inference is None and "no RAPL" in m.energy_note


def test_an_energy_budget_where_nothing_measures_energy_is_refused_before_anything_runs(tmp_path, monkeypatch):
    from tocsr.app.stages import _usable_profile
    from tocsr.core.errors import TocsrError

    monkeypatch.setattr(bench.rapl, "POWERCAP", tmp_path / "absent")
    assert energy_unmeasurable("cpu") and energy_unmeasurable("predicted")
    path = tmp_path / "p.yaml"
    path.write_text(CPU_PROFILE_YAML.replace("peak_memory_mib: 1024", "peak_memory_mib: 1024, energy_mj: 50"))
    with pytest.raises(TocsrError, match=r"budgets.energy_mj = 50 .*cannot measure energy \(RAPL: no "):
        _usable_profile(path)
    _zone(tmp_path / "powercap", "intel-rapl:0", 0)
    monkeypatch.setattr(bench.rapl, "POWERCAP", tmp_path / "powercap")
    assert _usable_profile(path).budgets.energy_mj == 50
