"""Devices that are not attached: the roofline on a virtual clock, cost tables built from it, and its labels."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bench import roofline
from bench.costtable import CostTable, measure_cost_table
from bench.measure import measure_workload
from bench.predicted import RooflineClock, predicted_pair
from bench.probe import RooflineProbe, TorchProbe, cost_probe
from bench.profile import load_profile, parse_profile, predicted_stand_in, replace
from bench.timing import measure_paired
from bench.workloads import Workload
from tests.conftest import CPU_PROFILE_YAML, REPO
from tocsr.core.distill.bank import new_bank
from tocsr.core.errors import ConfigError
from tocsr.core.models.unet import build_unet_from_preset, unet_example_inputs
from tocsr.core.space import TEACHER, derive_search_space


class _Twice(nn.Module):
    """One submodule registered under two names, and a plain tensor attribute replaced in forward (as
    spandrel's SPAN does with its mean): a meta call must leave both as they were."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = self.a
        self.mean = torch.ones(4)

    def forward(self, x):
        self.mean = self.mean.type_as(x)
        return self.b(self.a(x)) + self.mean


def test_a_roofline_estimate_leaves_the_module_as_it_was(predicted_profile):
    m = _Twice()
    x = torch.randn(2, 4)
    before = m(x)
    est = roofline.estimate(m, (x,), {}, predicted_profile.predicted, "fp16")
    assert est.latency_ms > 0 and est.flops >= 2 * 2 * 2 * 4 * 4
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in m.parameters())
    assert m.mean.device.type == "cpu" and torch.equal(m(x), before)


def test_the_roofline_clock_advances_by_the_estimate_and_names_itself(predicted_profile):
    clock = RooflineClock(predicted_profile)
    lin, x = nn.Linear(64, 64), torch.randn(8, 64)
    expected_ns = round(roofline.estimate(lin, (x,), {}, predicted_profile.predicted, "fp16").latency_ms * 1e6)
    call = clock.call(lin, (x,), {})
    call()
    call()
    assert clock() == 2 * expected_ns
    paired = measure_paired(call, clock.call(nn.Linear(64, 256), (x,), {}), predicted_profile.timing,
                            torch.device("cpu"), clock)
    assert paired.target.timer == "roofline" and paired.relative_cv == 0.0 and 0 < paired.ratio < 1
    with pytest.raises(ValueError, match="needs a predicted profile"):
        RooflineClock(parse_profile(CPU_PROFILE_YAML))


@pytest.fixture
def tiny():
    """A fresh tiny UNet per test: a probe swaps blocks into the UNet it is given."""
    torch.manual_seed(0)
    unet = build_unet_from_preset("tiny")
    return unet, derive_search_space(unet)


def test_a_predicted_candidate_is_estimated_once_for_its_memory_and_its_call(tiny, predicted_profile, monkeypatch):
    from bench.costtable import ProbeMeter

    unet, space = tiny
    args, kwargs = unet_example_inputs(dict(unet.config), 4, 1, predicted_profile.resolution.latent_px)
    probe = cost_probe(space, unet, args, kwargs, predicted_profile, new_bank(space))
    meter = ProbeMeter(probe, predicted_profile)
    meter.candidate(space.all_teacher(), "calibration")          # warms the reference up
    seen = []
    real = RooflineClock.estimate
    monkeypatch.setattr(RooflineClock, "estimate", lambda self, *a: seen.append(1) or real(self, *a))
    spec = space.spec({s.name: s.choices[-1] for s in space.slots})
    m = meter.candidate(spec, "holdout")
    assert len(seen) == 1
    # the one estimate is the candidate's: its call's latency and its memory bound
    whole = roofline.estimate(probe.swapper.apply(spec), probe.args, probe.kwargs, predicted_profile.predicted,
                              predicted_profile.precision)
    assert m.latency.target.median_ms == pytest.approx(whole.latency_ms, rel=1e-6)
    assert m.peak_memory_mib == pytest.approx(whole.memory_lower_bound_mib)


def test_a_predicted_profile_gets_a_cost_table_labelled_predicted_and_judged_on_whole_model_rooflines(
        tiny, predicted_profile, tmp_path):
    unet, space = tiny
    args, kwargs = unet_example_inputs(dict(unet.config), 4, 1, predicted_profile.resolution.latent_px)
    probe = cost_probe(space, unet, args, kwargs, predicted_profile, new_bank(space))
    assert isinstance(probe, RooflineProbe) and probe.device_name == "test edge (predicted)"
    table = measure_cost_table(space, probe, predicted_profile, n_calibration=8, n_holdout=8)
    assert table.measured is False and table.how == "predicted" and table.percentile_ratio == pytest.approx(1.0)
    # an entry is the block's roofline over the teacher's, exactly
    slot = space.slots[0]
    block = roofline.estimate(probe.swapper.module_for(slot.name, TEACHER), *probe.slot_inputs[slot.name],
                              predicted_profile.predicted, "fp16").latency_ms
    teacher = roofline.estimate(probe.teacher, args, kwargs, predicted_profile.predicted, "fp16").latency_ms
    assert 0 < block < teacher
    assert table.entries[(slot.name, TEACHER)].ratio == pytest.approx(block / teacher, rel=1e-5)
    # held-out whole candidates judge the additive table against their own roofline
    v = table.validation_summary()
    assert v["n"] == 8 and v["median_abs_err"] < 0.5
    assert all(c.latency.target.timer == "roofline" for c in table.candidates)
    loaded = CostTable.load(table.save(tmp_path / "t.json", {}))
    assert loaded.measured is False and loaded.device_name == "test edge (predicted)"


def test_a_version_2_cost_table_was_measured_and_still_loads(tiny, predicted_profile, tmp_path):
    unet, space = tiny
    args, kwargs = unet_example_inputs(dict(unet.config), 4, 1, predicted_profile.resolution.latent_px)
    table = measure_cost_table(space, RooflineProbe(space, unet, args, kwargs, predicted_profile, new_bank(space)),
                               predicted_profile, n_calibration=4, n_holdout=2)
    path = table.save(tmp_path / "t.json", {})
    doc = json.loads(path.read_text())
    doc["schema_version"] = 2
    del doc["measured"]
    path.write_text(json.dumps(doc))
    assert CostTable.load(path).measured is True
    doc["schema_version"] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match="schema_version = 1.*tocsr costs"):
        CostTable.load(path)


def test_a_measured_profile_gets_the_torch_probe(tiny, cpu_profile):
    unet, space = tiny
    args, kwargs = unet_example_inputs(dict(unet.config), 4, 1, cpu_profile.resolution.latent_px)
    probe = cost_probe(space, unet, args, kwargs, cpu_profile, new_bank(space))
    assert type(probe) is TorchProbe and probe.clock is None


def test_a_predicted_measurement_with_a_reference_is_a_pair_of_rooflines(predicted_profile):
    lin, big, x = nn.Linear(64, 64), nn.Linear(64, 512), torch.randn(4, 64)
    m = measure_workload(Workload("lin", lin, (x,), {}), predicted_profile, reference=Workload("ref", big, (x,), {}))
    assert m.status == "predicted" and m.device_name == "test edge (predicted)"
    est = roofline.estimate(lin, (x,), {}, predicted_profile.predicted, "fp16")
    ref = roofline.estimate(big, (x,), {}, predicted_profile.predicted, "fp16")
    assert m.paired.ratio == pytest.approx(est.latency_ms / ref.latency_ms)
    assert m.paired == predicted_pair(est, ref)


class _Numpy(nn.Module):
    def forward(self, x):
        return torch.from_numpy(x.cpu().numpy() * 2)


def test_a_model_torch_cannot_see_has_no_roofline_and_says_so(predicted_profile):
    m = measure_workload(Workload("numpy", _Numpy(), (torch.randn(2, 2),), {}), predicted_profile)
    assert m.status == "error" and m.error.startswith("no roofline estimate: the model runs work torch does not see")


def test_a_cuda_profile_has_a_predicted_stand_in_only_with_constants():
    h100 = load_profile(REPO / "hw_profiles" / "h100-bf16.yaml")
    stand_in = predicted_stand_in(h100)
    assert stand_in.device.kind == "predicted" and not stand_in.is_measured and stand_in.name == h100.name
    assert stand_in.budgets == h100.budgets and stand_in.precision == h100.precision
    assert "Predicted here" in stand_in.description
    bare = replace(h100, predicted=None)
    with pytest.raises(ConfigError, match="measures a CUDA device and this machine has none; add a 'predicted:'"):
        predicted_stand_in(bare)
    with pytest.raises(ConfigError, match="cpu profile .* may not have a 'predicted:' section"):
        replace(parse_profile(CPU_PROFILE_YAML), predicted=h100.to_dict()["predicted"])
