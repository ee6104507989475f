"""The pipeline cost model: fixed parts measured once plus the backbone's cost table, judged on whole
pipelines (bench.pipeline), on a simulated device whose truth is known (tests/simdevice.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.costtable import measure_cost_table
from bench.pipeline import (
    PipelineParts,
    backbone_equivalent,
    load_cost_model,
    measure_pipeline_parts,
    pipeline_parts_path,
)
from bench.stats import LatencyStats
from tests.simdevice import SimPipelineProbe, SimProbe, SimulatedDevice
from tocsr.core.errors import ConfigError


@pytest.fixture(scope="module")
def measured(space, profile):
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    probe = SimPipelineProbe(sim, encoder_ms=4.0, decoder_ms=6.0)
    return sim, probe, measure_pipeline_parts(space, table, probe, profile, n_holdout=30, seed=3)


def test_the_fixed_parts_add_to_the_backbone_table_within_the_bar_on_30_held_out_pipelines(space, measured):
    sim, probe, model = measured
    teacher_ms = sim.true_ms(space.all_teacher())
    parts = {p.name: p.ratio for p in model.pipeline.parts}
    assert parts["bicubic + encoder"] == pytest.approx(4.0 / teacher_ms, rel=0.05)
    assert parts["decoder"] == pytest.approx(6.0 / teacher_ms, rel=0.05)
    v = model.validation_summary()
    assert v["n"] == 30 and v["passes"] and v["within_10pct"] >= 0.9
    assert not {c.key for c in model.holdout()} & {c.key for c in model.table.candidates}   # never fitted on
    for spec in (space.all_teacher(), model.cheapest(space)):
        assert model.predict_ratio(spec) == pytest.approx(probe.pipeline_ms(spec) / teacher_ms, rel=0.05)
    # the backbone's share of the teacher-shaped call is what the truth says
    share = model.backbone_ratio(space.all_teacher()) / model.predict_ratio(space.all_teacher())
    assert share == pytest.approx(teacher_ms / probe.pipeline_ms(space.all_teacher()), rel=0.05)
    # params and GMACs stay the backbone's
    assert model.params(space.all_teacher()) == model.table.params(space.all_teacher())


def test_a_pipeline_that_costs_more_than_its_parts_fails_its_validation(space, profile, measured):
    sim, _, model = measured
    # 40% of the teacher-shaped call that no part shows alone (e.g. a copy between encoder and backbone)
    overhead = 0.4 * (10.0 + sim.true_ms(space.all_teacher()))
    probe = SimPipelineProbe(sim, encoder_ms=4.0, decoder_ms=6.0, overhead_ms=overhead)
    bad = measure_pipeline_parts(space, model.table, probe, profile, n_holdout=10, seed=5)
    v = bad.validation_summary()
    assert v["passes"] is False and v["mean_signed_err"] < -0.2


def test_a_measured_pipeline_joins_the_backbone_calibration_without_its_fixed_parts(space, measured):
    _, _, model = measured
    pipe = model.holdout()[0]
    back = backbone_equivalent(pipe, model.pipeline.fixed_ratio)
    assert back.latency.ratio == pytest.approx(pipe.latency.ratio - model.pipeline.fixed_ratio, rel=1e-6)
    refit = model.recalibrated(space, [pipe])
    assert refit.table.candidates[-1].latency.ratio == pytest.approx(back.latency.ratio)
    assert refit.candidates[-1] is pipe and len(refit.candidates) == len(model.candidates) + 1


def test_a_pipeline_measured_faster_than_its_fixed_parts_is_kept_but_not_fitted_and_the_model_saves(
        space, measured, tmp_path):
    # CI once stopped here: such a pipeline became a zero-cost backbone (cv = inf) that JSON refused
    _, _, model = measured
    pipe = model.holdout()[0]
    p = pipe.latency
    fixed = model.pipeline.fixed_ratio
    below = dataclasses.replace(p, target=LatencyStats.from_samples(
        [0.9 * fixed * p.reference.median_ms] * p.target.n, p.target.timer, p.target.warmup_iters),
        relative_samples=tuple(0.9 * fixed for _ in p.relative_samples))
    fast = dataclasses.replace(pipe, latency=below)
    assert backbone_equivalent(fast, fixed) is None
    refit = model.recalibrated(space, [fast, pipe])
    assert refit.candidates[-2:] == (fast, pipe)                                  # both kept as pipelines
    assert len(refit.table.candidates) == len(model.table.candidates) + 1         # only one refits the table
    assert refit.table.candidates[-1].latency.ratio == pytest.approx(pipe.latency.ratio - fixed, rel=1e-6)
    refit.save(tmp_path / "t.json", {})
    assert load_cost_model(tmp_path / "t.json", "pipeline").candidates[-2].key == fast.key


def test_the_parts_round_trip_beside_their_table_and_a_missing_file_is_named(space, measured, tmp_path):
    _, _, model = measured
    path = tmp_path / "costs" / "abc.json"
    model.save(path, {})
    assert pipeline_parts_path(path).name == "abc.pipeline.json"
    loaded = load_cost_model(path, "pipeline")
    spec = model.cheapest(space)
    assert loaded.predict_latency_at_ms(spec) == pytest.approx(model.predict_latency_at_ms(spec))
    assert loaded.pipeline == PipelineParts.from_dict(model.pipeline.to_dict())
    assert np.allclose(loaded.errors(loaded.holdout()), model.errors(model.holdout()))
    assert load_cost_model(path, "backbone").scope == "backbone"
    pipeline_parts_path(path).unlink()
    with pytest.raises(ConfigError, match=r"abc\.pipeline\.json is missing"):
        load_cost_model(path, "pipeline")


def test_parts_measured_before_the_lr_encoder_was_timed_read_as_offering_the_autoencoders_encoder_only(
        space, measured, tmp_path):
    import json

    _, _, model = measured                        # the simulated device times no LR encoder, as version 1 did not
    path = tmp_path / "abc.json"
    model.save(path, {})
    doc = json.loads(pipeline_parts_path(path).read_text())
    doc["schema_version"] = 1
    pipeline_parts_path(path).write_text(json.dumps(doc))
    old = load_cost_model(path, "pipeline")
    assert old.pipeline.encoders == ("kl",) and old.pipeline.encoder == "kl"
    with pytest.raises(ConfigError, match="pipeline encoder 'lr'.*offer kl; measure them again"):
        old.with_parts("lr", "kl")


def test_a_pipeline_that_deploys_the_tiny_decoder_is_predicted_and_judged_with_its_own_parts(space, profile, measured):
    from bench.pipeline import pipeline_meter

    sim, _, kl_only = measured
    with pytest.raises(ConfigError, match="offer kl"):
        kl_only.with_parts("kl", "tiny")
    table = kl_only.table
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=10, seed=4)
    tiny = model.with_parts("kl", "tiny")
    teacher_ms = sim.true_ms(space.all_teacher())
    spec = model.cheapest(space)
    assert model.pipeline.decoders == ("kl", "tiny") and tiny.pipeline.decoder == "tiny"
    assert tiny.predict_ratio(spec) == pytest.approx(model.predict_ratio(spec) - 5.0 / teacher_ms, rel=0.02)
    assert set(tiny.fixed_latency_at_ms()) == {"bicubic + encoder", "tiny decoder"}
    # the held-out pipelines were measured with the autoencoder's parts and are judged with them, whatever is deployed
    assert np.allclose(tiny.errors(tiny.holdout()), model.errors(model.holdout()))
    # a pipeline measured with the tiny decoder (while choosing) is judged with the tiny decoder
    [fresh] = pipeline_meter(SimPipelineProbe(sim, **parts, deploy="tiny"), profile).candidates([spec], "selection")
    assert abs(tiny.errors([fresh])[0]) < 0.05 < model.errors([fresh])[0]
    # and joins the backbone calibration without the tiny decoder's share
    refit = tiny.recalibrated(space, [fresh])
    assert refit.table.candidates[-1].latency.ratio == pytest.approx(fresh.latency.ratio - tiny.pipeline.fixed_ratio,
                                                                     rel=1e-6)
    assert PipelineParts.from_dict(tiny.pipeline.to_dict()).decoder == "tiny"


def test_predicted_memory_swaps_the_autoencoders_parts_weights_for_the_deployed_parts(space, profile, measured):
    sim, _, kl_only = measured
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0, "lr_encoder_ms": 1.5}
    model = measure_pipeline_parts(space, kl_only.table, SimPipelineProbe(sim, **parts), profile, n_holdout=4, seed=5)
    spec, bpp = model.cheapest(space), model.table.bytes_per_param
    # measured with the autoencoder's parts: backbone weights + the teacher-shaped pipeline's peak less its backbone
    assert model.predict_memory_mib(spec) == pytest.approx(
        model.table.params(spec) * bpp / 2**20 + model.pipeline.fixed_memory_mib)
    p = {part.name: part.params for part in model.pipeline.parts}
    for encoder, decoder, kl_params, own_params in (
            ("kl", "tiny", p["decoder"], p["tiny decoder"]),
            ("lr", "tiny", p["bicubic + encoder"] + p["decoder"], p["lr encoder"] + p["tiny decoder"])):
        cheaper = model.with_parts(encoder, decoder)
        saved = (kl_params - own_params) * bpp / 2**20
        assert saved > 0
        assert cheaper.predict_memory_mib(spec) == pytest.approx(model.predict_memory_mib(spec) - saved)
