"""Choosing for a device that is not attached on the cost table measured there (an ONNX bundle's results):
candidates are judged on that table, nothing is re-measured here, every figure says predicted and where from."""

from __future__ import annotations

import dataclasses

import pytest

from bench.costtable import measure_cost_table
from bench.pipeline import measure_pipeline_parts
from bench.profile import parse_profile
from bench.table_prediction import TablePredictionMeter
from search.run import run_search
from search.selection import choose
from tests.search.conftest import FakeFidelity
from tests.simdevice import SIM_PROFILE_YAML, SimPipelineProbe, SimProbe, SimulatedDevice
from tocsr.core.errors import ConfigError
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import derive_search_space

# The simulated device's profile as a user holds it for a board this machine cannot reach: same name, predicted
# here (its `predicted:` constants give the roofline the usual check would use), budget on the whole call.
BOARD_YAML = SIM_PROFILE_YAML.replace("device: {kind: cpu, threads: 2}", "device: {kind: predicted, name: a board}") \
    .replace("budgets: {latency_vs_teacher: 0.5, peak_memory_mib: 4096, scope: backbone}",
             "budgets: {latency_vs_teacher: 0.8, peak_memory_mib: 4096, scope: pipeline}") + \
    "predicted: {peak_tflops: {fp32: 1.0}, memory_bandwidth_gbps: 50.0, launch_overhead_us: 10.0}\n"
PARTS_MS = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.5}


@pytest.fixture(scope="module")
def measured():
    """A pipeline cost model measured on the simulated device (as a bundle's runner measures it there)."""
    space = derive_search_space(build_unet_from_preset("tiny", "meta"))
    sim = SimulatedDevice(space)
    profile = parse_profile(SIM_PROFILE_YAML, "sim.yaml")
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **PARTS_MS), profile, n_holdout=6)
    return space, sim, model


def test_each_candidate_is_the_measured_tables_prediction_labelled_predicted(measured):
    space, _, model = measured
    board = parse_profile(BOARD_YAML, "board.yaml")
    tiny = model.with_parts("kl", "tiny")
    meter = TablePredictionMeter(tiny, space, board)
    spec = tiny.cheapest(space)
    m = meter.measure(spec)
    ref = model.table.reference_ms
    assert m.status == "predicted" and m.device_name == model.table.device_name and m.profile_name == "sim"
    assert "not re-measured" in m.notes[0] and model.table.device_name in m.notes[0] and "memory" not in m.notes[0]
    assert m.paired.ratio == pytest.approx(tiny.predict_ratio(spec))
    assert m.paired.ms_at(90, ref) == pytest.approx(tiny.predict_latency_at_ms(spec))
    assert m.paired.ms_at(90, 2 * ref) == pytest.approx(2 * tiny.predict_latency_at_ms(spec))   # at another speed
    assert m.peak_memory_mib == pytest.approx(tiny.predict_memory_mib(spec)) and m.params == model.table.params(spec)
    # the teacher as shipped has the autoencoder's decoder, whatever this device deploys
    shipped = meter.measure_teacher_as_shipped()
    assert shipped.paired.ratio == pytest.approx(model.with_parts("kl", "kl").predict_ratio(space.all_teacher()))
    assert shipped.paired.ratio > meter.measure(space.all_teacher()).paired.ratio


def test_a_table_for_another_profile_or_a_roofline_table_is_refused(measured):
    space, _, model = measured
    other = parse_profile(BOARD_YAML.replace("name: sim", "name: orin"), "orin.yaml")
    with pytest.raises(ConfigError, match="measured for profile 'sim', the search is for 'orin'"):
        TablePredictionMeter(model, space, other)
    roofline = dataclasses.replace(model, table=dataclasses.replace(model.table, measured=False))
    with pytest.raises(ConfigError, match="itself a roofline prediction"):
        TablePredictionMeter(roofline, space, parse_profile(BOARD_YAML, "board.yaml"))


def test_a_bundles_table_says_its_memory_is_the_weights_alone(measured):
    """`tocsr costs import` records that the bundle's runner read no memory; a choice judged on that table says so."""
    space, _, model = measured
    weights_only = "weights only: the bundle runner times, it does not read memory"
    imported = dataclasses.replace(model, table=dataclasses.replace(model.table, extra={"memory": weights_only}))
    m = TablePredictionMeter(imported, space, parse_profile(BOARD_YAML, "board.yaml")).measure(space.all_teacher())
    assert m.notes[0].endswith(f"; memory: {weights_only}")


def test_the_choice_is_made_on_the_devices_table_without_a_measurement_here_and_holds_on_the_device(measured,
                                                                                                     tmp_path):
    space, sim, model = measured
    board = parse_profile(BOARD_YAML, "board.yaml")
    tiny = model.with_parts("kl", "tiny")
    calls = sim.calls
    sel = choose(space, FakeFidelity(space), tiny, board, TablePredictionMeter(tiny, space, board),
                 lambda problem, cap: run_search(problem, "random", cap, tmp_path, seed=0, q=4, show_progress=False),
                 evaluations=24)
    assert sim.calls == calls                        # nothing ran on the device while choosing
    assert len(sel.decision.teacher_at_readings_ms) == 1   # a prediction is read once, and not called readings
    assert sel.revalidation is None                  # the table was judged on the device, not against a roofline
    assert sel.choice.measurement.status == "predicted" and sel.teacher.device_name == model.table.device_name
    assert sel.choice.latency_ms <= sel.decision.latency_budget_ms
    probe = SimPipelineProbe(sim, **PARTS_MS)
    teacher_as_shipped = probe.pipeline_ms(space.all_teacher(), "kl")
    assert sel.decision.teacher_at_ms / sel.decision.reference_ms == pytest.approx(
        teacher_as_shipped / sim.true_ms(space.all_teacher()), rel=0.1)
    # on the device itself the chosen pipeline (tiny decoder) is within the budget: the table predicts it
    assert probe.pipeline_ms(sel.choice.spec, "tiny") <= 0.8 * teacher_as_shipped * 1.1
