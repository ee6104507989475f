"""Which decoder a device deploys (search.decoder): the ε-constraint on the part's fidelity, then the cheapest; and,
on a simulated device, a budget the autoencoder's decoder cannot meet met with the tiny one, re-measured."""

from __future__ import annotations

import pytest

from bench.costtable import measure_cost_table
from bench.pipeline import measure_pipeline_parts
from bench.profile import replace
from search.decoder import DecoderOption, choose_decoder, decoder_options, teacher_budget_ms
from search.run import run_search
from search.selection import SearchInfeasible, choose
from tests.search.conftest import FakeFidelity
from tests.simdevice import SimPipelineMeter, SimPipelineProbe, SimProbe, SimulatedDevice
from tocsr.core.errors import ConfigError

KL = DecoderOption("kl", 0.0, 0.0, 0, decoder_ms=6.0, cheapest_pipeline_ms=12.0)
TINY = DecoderOption("tiny", 0.10, 0.19, 12, decoder_ms=1.5, cheapest_pipeline_ms=7.5)


def test_a_decoder_within_the_fidelity_bound_is_free_and_the_cheapest_is_deployed():
    choice = choose_decoder([KL, TINY], latency_budget_ms=20.0, max_loss_db=0.25)
    assert choice.decoder == "tiny" and "cheapest decoder within the fidelity bound" in choice.reason
    assert [o["kind"] for o in choice.to_dict()["options"]] == ["kl", "tiny"]


def test_a_decoder_over_the_bound_is_not_deployed_while_the_autoencoders_own_fits():
    assert choose_decoder([KL, TINY], latency_budget_ms=20.0, max_loss_db=0.1).decoder == "kl"
    assert choose_decoder([KL, TINY], latency_budget_ms=None, max_loss_db=0.0).decoder == "kl"


def test_a_budget_only_the_tiny_decoder_meets_relaxes_the_bound_and_says_so():
    choice = choose_decoder([KL, TINY], latency_budget_ms=10.0, max_loss_db=0.1)
    assert choice.decoder == "tiny" and "bound relaxed" in choice.reason


def test_a_budget_nothing_meets_by_prediction_tries_the_cheapest_pipeline():
    choice = choose_decoder([KL, TINY], latency_budget_ms=5.0, max_loss_db=0.25)
    assert choice.decoder == "tiny" and "the selection measures it" in choice.reason


def test_a_negative_bound_is_refused():
    with pytest.raises(ConfigError, match="max_loss_db = -1"):
        choose_decoder([KL, TINY], 10.0, -1)


def _rounds(tmp_path):
    return lambda problem, cap: run_search(problem, "random", cap, tmp_path, seed=0, q=4, show_progress=False)


def test_a_budget_the_kl_pipeline_cannot_meet_is_met_with_the_tiny_decoder_when_remeasured(space, profile, tmp_path):
    """Issue 24's acceptance on a device whose truth is known: the autoencoder's decoder leaves no backbone under
    the budget; the choice deploys the tiny one, and the whole pipeline, re-measured with it, meets the budget."""
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=10)
    assert model.pipeline.decoders == ("kl", "tiny")
    cheapest = model.cheapest(space)
    probe = SimPipelineProbe(sim, **parts)
    # between the cheapest backbone with the tiny decoder and with the autoencoder's: only the tiny one can meet it
    budget = (probe.pipeline_ms(cheapest, "tiny") + probe.pipeline_ms(cheapest, "kl")) / 2 + 1.0
    tight = replace(profile, budgets={"latency_ms": budget, "peak_memory_mib": 4096, "scope": "pipeline"})
    with pytest.raises(SearchInfeasible):
        choose(space, FakeFidelity(space), model, tight, SimPipelineMeter(sim, tight, **parts), _rounds(tmp_path), 16)

    options = decoder_options(model, space, {"tiny": (0.1, 0.2, 24)})
    decision = choose_decoder(options, teacher_budget_ms(model, tight), max_loss_db=0.0)   # the bound must give way
    assert decision.decoder == "tiny" and "bound relaxed" in decision.reason
    meter = SimPipelineMeter(sim, tight, **parts, deploy="tiny")
    sel = choose(space, FakeFidelity(space), model.with_decoder("tiny"), tight, meter, _rounds(tmp_path), 16)
    assert sel.choice.latency_ms <= budget
    assert probe.pipeline_ms(sel.choice.spec, "tiny") <= budget * 1.05        # the truth agrees
    assert sel.table.pipeline.decoder == "tiny"


def test_a_latency_vs_teacher_budget_stays_relative_to_the_teacher_as_shipped(space, profile, tmp_path):
    """What the tiny decoder saves is the backbone's to spend: the budget is a multiple of the teacher-shaped
    pipeline with the autoencoder's decoder, not of one with the decoder the device deploys."""
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=10)
    relative = replace(profile, budgets={"latency_vs_teacher": 0.8, "peak_memory_mib": 4096, "scope": "pipeline"})
    meter = SimPipelineMeter(sim, relative, **parts, deploy="tiny")
    sel = choose(space, FakeFidelity(space), model.with_decoder("tiny"), relative, meter, _rounds(tmp_path), 24)
    shipped = meter.probe.pipeline_ms(space.all_teacher(), "kl")
    assert sel.decision.teacher_at_ms / sel.decision.reference_ms == pytest.approx(
        shipped / sim.true_ms(space.all_teacher()), rel=0.1)
    assert sel.choice.latency_ms <= sel.decision.latency_budget_ms
    # the backbone got what the decoder saved on top of what the autoencoder's parts would have left it
    left_with_kl = (0.8 * shipped - 10.0) / sim.true_ms(space.all_teacher())
    assert sim.true_ratio(sel.choice.spec) > left_with_kl
