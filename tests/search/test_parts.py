"""Which encoder and decoder a device deploys (search.parts): the ε-constraint on the parts' fidelity, then the
cheapest pair; and, on a simulated device, budgets the autoencoder's parts cannot meet met with cheaper ones,
re-measured."""

from __future__ import annotations

import dataclasses

import pytest

from bench.costtable import measure_cost_table
from bench.pipeline import PartsOverhead, measure_pipeline_parts
from bench.profile import replace
from search.parts import PartsOption, choose_parts, latency_target_at_table_ms, parts_options
from search.run import run_search
from search.selection import SearchInfeasible, choose
from tests.search.conftest import FakeFidelity
from tests.simdevice import SimPipelineMeter, SimPipelineProbe, SimProbe, SimulatedDevice
from tocsr.core.errors import ConfigError

# encoder 4 ms (kl) or 1 ms (lr, -0.85 dB); decoder 6 ms (kl) or 1.5 ms (tiny, -0.10 dB); cheapest backbone 2 ms
KL = PartsOption("kl", "kl", 0.0, 0.0, parts_ms=10.0, cheapest_pipeline_ms=12.0)
TINY = PartsOption("kl", "tiny", 0.10, 0.19, parts_ms=5.5, cheapest_pipeline_ms=7.5)
LR = PartsOption("lr", "kl", 0.85, 1.68, parts_ms=7.0, cheapest_pipeline_ms=9.0)
LR_TINY = PartsOption("lr", "tiny", 0.95, 1.87, parts_ms=2.5, cheapest_pipeline_ms=4.5)
ALL = [KL, TINY, LR, LR_TINY]


def _pair(choice):
    return choice.encoder, choice.decoder


def test_parts_within_the_fidelity_bound_are_free_and_the_cheapest_pair_is_deployed():
    choice = choose_parts(ALL, latency_budget_ms=20.0, max_loss_db=0.25)
    assert _pair(choice) == ("kl", "tiny") and "cheapest parts within the fidelity bound" in choice.reason
    assert [(o["encoder"], o["decoder"]) for o in choice.to_dict()["options"]] == [
        ("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")]
    # a bound wide enough for the LR encoder too: the cheapest pair of all
    assert _pair(choose_parts(ALL, latency_budget_ms=20.0, max_loss_db=2.0)) == ("lr", "tiny")


def test_parts_over_the_bound_are_not_deployed_while_the_autoencoders_own_fit():
    assert _pair(choose_parts(ALL, latency_budget_ms=20.0, max_loss_db=0.1)) == ("kl", "kl")
    assert _pair(choose_parts(ALL, latency_budget_ms=None, max_loss_db=0.0)) == ("kl", "kl")


def test_a_budget_only_the_tiny_decoder_meets_relaxes_the_bound_and_says_so():
    choice = choose_parts(ALL, latency_budget_ms=8.0, max_loss_db=0.1)
    assert _pair(choice) == ("kl", "tiny") and "bound relaxed" in choice.reason


def test_a_budget_only_the_lr_encoder_meets_deploys_it_with_the_least_lossy_decoder_that_fits():
    # 5 ms: only the LR encoder with the tiny decoder lets the cheapest backbone in
    choice = choose_parts(ALL, latency_budget_ms=5.0, max_loss_db=0.25)
    assert _pair(choice) == ("lr", "tiny") and "bound relaxed" in choice.reason and "lr encoder" in choice.reason
    # without a tiny decoder on offer, the LR encoder alone
    assert _pair(choose_parts([KL, LR], latency_budget_ms=9.5, max_loss_db=0.25)) == ("lr", "kl")


def test_a_budget_nothing_meets_by_prediction_tries_the_cheapest_pipeline():
    choice = choose_parts(ALL, latency_budget_ms=3.0, max_loss_db=0.25)
    assert _pair(choice) == ("lr", "tiny") and "the selection measures it" in choice.reason


def test_a_negative_bound_is_refused():
    with pytest.raises(ConfigError, match="max_loss_db = -1"):
        choose_parts(ALL, 10.0, -1)


def test_options_are_the_measured_and_scored_pairs_with_their_losses_added(space, profile):
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0, "lr_encoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=4)
    assert model.pipeline.encoders == ("kl", "lr") and model.pipeline.decoders == ("kl", "tiny")
    options = {(o.encoder, o.decoder): o for o in parts_options(model, space, {"lr": (0.8, 1.6, 24)},
                                                                 {"tiny": (0.1, 0.2, 24)})}
    assert set(options) == {("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")}
    both = options[("lr", "tiny")]
    assert (both.loss_db, both.loss_db_high) == pytest.approx((0.9, 1.8))
    assert both.parts_ms == pytest.approx(2.0, rel=0.15) and options[("kl", "kl")].parts_ms == pytest.approx(10, rel=0.15)
    # a part with no fidelity figure is not offered: the LR encoder without the parts stage's score
    assert {(o.encoder, o.decoder) for o in parts_options(model, space, {}, {"tiny": (0.1, 0.2, 24)})} == {
        ("kl", "kl"), ("kl", "tiny")}


def test_pairs_are_ranked_by_their_parts_timed_alone_and_their_overhead_counts_in_the_fit(space, profile):
    """A pair's whole-call overhead is the median of a few whole-pipeline residuals, noisy on a shared machine: one
    high reading must not rank the LR encoder behind the autoencoder's, but it does count in the pipeline's cost."""
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "lr_encoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=4)
    noisy = PartsOverhead("lr", "kl", (5.0,))       # five references: more than the LR encoder saves
    model = dataclasses.replace(model, pipeline=dataclasses.replace(
        model.pipeline, overheads=(*(o for o in model.pipeline.overheads if o.encoder == "kl"), noisy)))
    options = {(o.encoder, o.decoder): o for o in parts_options(model, space, {"lr": (0.05, 0.1, 24)}, {})}
    lr, kl = options[("lr", "kl")], options[("kl", "kl")]
    assert lr.parts_ms < kl.parts_ms and lr.overhead_ms == pytest.approx(5.0 * table.reference_ms)
    assert lr.cheapest_pipeline_ms > kl.cheapest_pipeline_ms > kl.parts_ms + kl.overhead_ms
    assert _pair(choose_parts(list(options.values()), latency_budget_ms=None)) == ("lr", "kl")
    # the fit still sees the overhead: a budget between the two pipelines keeps the autoencoder's encoder
    between = (lr.cheapest_pipeline_ms + kl.cheapest_pipeline_ms) / 2
    assert _pair(choose_parts(list(options.values()), latency_budget_ms=between)) == ("kl", "kl")


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

    options = parts_options(model, space, {}, {"tiny": (0.1, 0.2, 24)})
    decision = choose_parts(options, latency_target_at_table_ms(model, tight), max_loss_db=0.0)   # the bound must give way
    assert _pair(decision) == ("kl", "tiny") and "bound relaxed" in decision.reason
    meter = SimPipelineMeter(sim, tight, **parts, deploy="tiny")
    sel = choose(space, FakeFidelity(space), model.with_parts("kl", "tiny"), tight, meter, _rounds(tmp_path), 16)
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
    sel = choose(space, FakeFidelity(space), model.with_parts("kl", "tiny"), relative, meter, _rounds(tmp_path), 24)
    shipped = meter.probe.pipeline_ms(space.all_teacher(), "kl")
    assert sel.decision.teacher_at_ms / sel.decision.reference_ms == pytest.approx(
        shipped / sim.true_ms(space.all_teacher()), rel=0.1)
    assert sel.choice.latency_ms <= sel.decision.latency_budget_ms
    # the backbone got what the decoder saved on top of what the autoencoder's parts would have left it
    left_with_kl = (0.8 * shipped - 10.0) / sim.true_ms(space.all_teacher())
    assert sim.true_ratio(sel.choice.spec) > left_with_kl


def test_a_budget_only_the_lr_encoder_meets_is_met_with_it_when_remeasured(space, profile, tmp_path):
    """Issue 24's acceptance for the encoder, on a device whose truth is known: with the tiny decoder the
    autoencoder's encoder still leaves no backbone under the budget; the choice deploys the LR encoder, and the
    whole pipeline, re-measured with it, meets the budget."""
    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=20)
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0, "lr_encoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=10)
    cheapest = model.cheapest(space)
    probe = SimPipelineProbe(sim, **parts)
    # between the cheapest backbone with the LR encoder + tiny decoder and with the KL encoder + tiny decoder
    budget = (probe.pipeline_ms(cheapest, "tiny", "lr") + probe.pipeline_ms(cheapest, "tiny", "kl")) / 2
    tight = replace(profile, budgets={"latency_ms": budget, "peak_memory_mib": 4096, "scope": "pipeline"})
    with pytest.raises(SearchInfeasible):        # the tiny decoder alone is not enough
        choose(space, FakeFidelity(space), model.with_parts("kl", "tiny"), tight,
               SimPipelineMeter(sim, tight, **parts, deploy="tiny"), _rounds(tmp_path / "kl"), 16)

    options = parts_options(model, space, {"lr": (0.85, 1.68, 24)}, {"tiny": (0.1, 0.2, 24)})
    decision = choose_parts(options, latency_target_at_table_ms(model, tight), max_loss_db=0.25)
    assert _pair(decision) == ("lr", "tiny") and "bound relaxed" in decision.reason
    meter = SimPipelineMeter(sim, tight, **parts, deploy="tiny", deploy_encoder="lr")
    sel = choose(space, FakeFidelity(space), model.with_parts("lr", "tiny"), tight, meter, _rounds(tmp_path / "lr"), 16)
    assert sel.choice.latency_ms <= budget
    assert probe.pipeline_ms(sel.choice.spec, "tiny", "lr") <= budget * 1.05        # the truth agrees
    assert (sel.table.pipeline.encoder, sel.table.pipeline.decoder) == ("lr", "tiny")

    # the search result records the pair and why; its SR model gets a folder of its own
    from search.result import SearchResult
    from tocsr.core.provenance import environment

    result = SearchResult.from_selection(sel, tight, space, "random", 0, 16, "device", "params", "one-call", decision)
    result.save(tmp_path / "search", environment())
    again = SearchResult.load(tmp_path / "search")
    assert (again.encoder, again.decoder) == ("lr", "tiny") and again.parts_choice["reason"] == decision.reason
    assert again.sr_folder_name == f"{sel.choice.spec.key}-lr-encoder-tiny-decoder"


def test_a_search_result_written_before_the_encoder_was_a_choice_reads_with_the_autoencoders_encoder(space, profile,
                                                                                                    tmp_path):
    import json

    from search.result import SearchResult
    from tocsr.core.provenance import environment

    sim = SimulatedDevice(space)
    table = measure_cost_table(space, SimProbe(sim), profile, n_calibration=16, n_holdout=10)
    parts = {"encoder_ms": 4.0, "decoder_ms": 6.0, "tiny_decoder_ms": 1.0}
    model = measure_pipeline_parts(space, table, SimPipelineProbe(sim, **parts), profile, n_holdout=4)
    relative = replace(profile, budgets={"latency_vs_teacher": 0.9, "peak_memory_mib": 4096, "scope": "pipeline"})
    decision = choose_parts(parts_options(model, space, {}, {"tiny": (0.1, 0.2, 24)}), None)
    sel = choose(space, FakeFidelity(space), model.with_parts("kl", "tiny"), relative,
                 SimPipelineMeter(sim, relative, **parts, deploy="tiny"), _rounds(tmp_path), 8)
    SearchResult.from_selection(sel, relative, space, "random", 0, 8, "device", "params", "one-call",
                                decision).save(tmp_path / "s", environment())
    path = tmp_path / "s" / SearchResult.FILE_NAME
    doc = json.loads(path.read_text())
    # as schema 6 wrote it: no encoder, the choice under `decoder_choice`
    doc["schema_version"], doc["decoder_choice"] = 6, doc.pop("parts_choice")
    del doc["encoder"]
    path.write_text(json.dumps(doc))
    old = SearchResult.load(tmp_path / "s")
    assert (old.encoder, old.decoder) == ("kl", "tiny") and old.parts_choice["reason"] == decision.reason
    assert old.sr_folder_name == f"{sel.choice.spec.key}-tiny-decoder"      # the folder it always had
