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


def test_what_a_whole_call_costs_beyond_its_parts_is_measured_and_without_it_the_model_fails_its_validation(
        space, profile, measured):
    sim, _, model = measured
    teacher_ms = sim.true_ms(space.all_teacher())
    # 40% of the teacher-shaped call that no part shows alone (e.g. a copy between encoder and backbone)
    overhead = 0.4 * (10.0 + teacher_ms)
    probe = SimPipelineProbe(sim, encoder_ms=4.0, decoder_ms=6.0, overhead_ms=overhead)
    summed = measure_pipeline_parts(space, model.table, probe, profile, n_holdout=10, seed=5, n_overhead=0)
    v = summed.validation_summary()
    assert v["passes"] is False and v["mean_signed_err"] < -0.2 and summed.pipeline.overheads == ()
    fitted = measure_pipeline_parts(space, model.table, probe, profile, n_holdout=10, seed=5, n_overhead=3)
    over = fitted.pipeline.overhead("kl", "kl")
    assert len(over.residuals) == 3 and over.ratio == pytest.approx(overhead / teacher_ms, rel=0.1)
    v = fitted.validation_summary()
    assert v["n"] == 10 and v["passes"] and abs(v["mean_signed_err"]) < 0.03
    spec = fitted.cheapest(space)
    assert fitted.predict_ratio(spec) == pytest.approx(probe.pipeline_ms(spec) / teacher_ms, rel=0.05)
    # what is not the backbone lists the overhead beside the parts, and the held-out pipelines were never fitted on
    assert fitted.fixed_latency_at_ms()["whole-call overhead"] == pytest.approx(over.ratio * fitted.reference_ms)
    overhead_keys = {c.key for c in fitted.candidates if c.role == "overhead"}
    assert overhead_keys and not overhead_keys & {c.key for c in fitted.holdout()}


def test_each_pair_of_parts_has_its_own_overhead_and_is_judged_on_held_out_pipelines_with_it(space, profile, measured):
    """On this CPU the LR encoder + tiny decoder pipeline ran ~9% over the sum of its parts, every backbone alike,
    while the autoencoder's parts added up (reports/evidence/pipeline-costs-cpu-deployed/)."""
    sim, _, model = measured
    teacher_ms = sim.true_ms(space.all_teacher())
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0, "lr_encoder_ms": 0.5}
    probe = SimPipelineProbe(sim, **parts, pair_overhead_ms={("lr", "tiny"): 2.0})
    fitted = measure_pipeline_parts(space, model.table, probe, profile, n_holdout=12, seed=6, n_overhead=2)
    assert [(o.encoder, o.decoder) for o in fitted.pipeline.overheads] == [("kl", "kl"), ("kl", "tiny"),
                                                                          ("lr", "kl"), ("lr", "tiny")]
    assert fitted.pipeline.overhead("lr", "tiny").ratio == pytest.approx(2.0 / teacher_ms, rel=0.25)
    assert abs(fitted.pipeline.overhead("kl", "tiny").ratio) < 0.25 * 2.0 / teacher_ms
    # the held-out pipelines are spread over the pairs, each predicted with its own parts and overhead
    roles = [c.role for c in fitted.holdout()]
    assert sorted(set(roles)) == ["holdout", "holdout kl+tiny", "holdout lr+kl", "holdout lr+tiny"]
    assert roles.count("holdout lr+tiny") == 3
    v = fitted.validation_summary()
    assert v["n"] == 12 and v["passes"] and v["max_abs_err"] < 0.1
    deployed = fitted.with_parts("lr", "tiny")
    spec = deployed.cheapest(space)
    assert deployed.predict_ratio(spec) == pytest.approx(probe.pipeline_ms(spec, "tiny", "lr") / teacher_ms, rel=0.05)
    # without the overhead the pipelines with the LR encoder and tiny decoder are under-predicted
    lr_tiny = [c for c in fitted.holdout() if c.role == "holdout lr+tiny"]
    summed = dataclasses.replace(fitted, pipeline=dataclasses.replace(fitted.pipeline, overheads=()))
    assert (summed.errors(lr_tiny) < -0.05).all() and (np.abs(fitted.errors(lr_tiny)) < 0.05).all()
    # the overheads travel with the parts and scale with them
    assert PipelineParts.from_dict(fitted.pipeline.to_dict()) == fitted.pipeline
    assert fitted.rescaled(1.5).pipeline.overhead("lr", "tiny").ratio == pytest.approx(
        1.5 * fitted.pipeline.overhead("lr", "tiny").ratio)


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
    assert set(tiny.fixed_latency_at_ms()) == {"bicubic + encoder", "tiny decoder", "whole-call overhead"}
    # each held-out pipeline is judged with the parts it was measured with, whatever is deployed
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
