"""Sample-level fidelity (tocsr.core.distill.sample_fidelity) and the proxy check (search.proxy_check), on a tiny
random teacher: behaviour, not quality."""

from __future__ import annotations

import pytest
import torch

from search.proxy_check import ProxyCheck, check_proxy, spanning_candidates
from tocsr.core.distill.bank import new_bank
from tocsr.core.distill.sample_fidelity import SampleFidelity
from tocsr.core.models.autoencoder import build_autoencoder_from_preset
from tocsr.core.models.condition import ConditionEmbedding
from tocsr.core.models.unet import build_unet_from_preset, get_unet_preset
from tocsr.core.space import derive_search_space
from tocsr.core.teacher.diffusion_train import Denoiser, make_scheduler
from tocsr.core.teacher.presets import get_teacher_preset


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    unet = build_unet_from_preset("tiny").eval()
    cond = ConditionEmbedding(1, get_unet_preset("tiny").cond_tokens, int(unet.config.cross_attention_dim)).eval()
    denoiser = Denoiser(unet, cond).eval()
    space = derive_search_space(unet)
    bank = new_bank(space, 0)
    ae = build_autoencoder_from_preset("tiny").eval()
    config = dict(make_scheduler(get_teacher_preset("smoke")).config)
    samples = SampleFidelity(denoiser, space, bank, config, ae, (16, 8, 8), n=8, steps=3, seed=5)
    return space, samples


def test_the_teacher_scores_zero_and_a_replaced_candidate_does_not(tiny):
    space, samples = tiny
    teacher = samples.evaluate(space.all_teacher())
    assert teacher.paired_error == 0.0 and teacher.paired_error_std == 0.0
    spec = spanning_candidates(space, 4, seed=0)[-1]           # most slots replaced
    score = samples.evaluate(spec)
    assert score.paired_error > 1e-3 and score.spectrum_kid > teacher.spectrum_kid
    assert samples.evaluate(spec) == score                       # same noise: the same score again
    assert score.n_samples == 8 and score.steps == 3


def test_spanning_candidates_are_distinct_and_run_from_few_to_many_replaced_slots(tiny):
    space, _ = tiny
    specs = spanning_candidates(space, 12, seed=1)
    assert len({s.key for s in specs}) == 12 and all(s.replaced() for s in specs)
    counts = [len(s.replaced()) for s in specs]
    assert sum(counts[:4]) < sum(counts[-4:])


@pytest.mark.extended
def test_the_check_reports_rank_agreement_per_proxy_and_the_ceiling_and_round_trips(tiny, tmp_path):
    space, samples = tiny
    specs = spanning_candidates(space, 6, seed=2)

    paired = {s.key: samples.evaluate(s).paired_error for s in specs}

    class PairedAsProxy:           # a proxy that is the sample measure itself must correlate perfectly
        def evaluate(self, spec):
            return paired[spec.key]

    class Reversed:
        def evaluate(self, spec):
            return -paired[spec.key]

    check = check_proxy({"same": PairedAsProxy(), "reversed": Reversed()}, samples, specs, repeat=samples)
    assert check.agreement["same"]["paired"] == pytest.approx(1.0) == check.agreement["same"]["paired_upper"]
    assert check.agreement["reversed"]["paired"] == pytest.approx(-1.0) and len(check.candidates) == 6
    # the same scorer as its own repeat: the ceiling is perfect
    assert check.ceiling["same"]["paired"] == pytest.approx(1.0) and check.proxy_seconds["same"] >= 0
    check.save(tmp_path, {"test": True})
    assert ProxyCheck.load(tmp_path) == check
    text = "\n".join(check.describe())
    assert "same" in text and "1.000 / 1.000" in text and "ceiling (same)" in text


def test_the_rollout_proxy_scores_the_teacher_zero_and_orders_few_before_many_replaced(tiny):
    from tocsr.core.distill.fidelity import RolloutFidelity

    space, samples = tiny
    proxy = RolloutFidelity(samples.denoiser, space, samples.swapper.bank, samples.config, (16, 8, 8), n=4, steps=3,
                            noise_draws=2)
    assert proxy.evaluate(space.all_teacher()) == 0.0
    specs = spanning_candidates(space, 6, seed=3)
    few, many = proxy.evaluate(specs[0]), proxy.evaluate(specs[-1])
    assert 0 < few < many and proxy.evaluate(specs[0]) == few and proxy.evaluations == 4


def test_an_unknown_proxy_is_refused_with_the_choices(tiny):
    from tocsr.core.distill.fidelity import build_proxy
    from tocsr.core.errors import ConfigError

    space, samples = tiny
    with pytest.raises(ConfigError, match="one-call, rollout"):
        build_proxy("two-call", None, space, {}, torch.zeros(1, 16, 8, 8))


def test_the_rollout_spectrum_proxy_is_zero_for_the_teacher_and_grows_with_replaced_slots(tiny):
    from tocsr.core.distill.fidelity import RolloutFidelity

    space, samples = tiny
    proxy = RolloutFidelity(samples.denoiser, space, samples.swapper.bank, samples.config, (16, 8, 8), n=4, steps=3,
                            measure="spectrum", autoencoder=samples.autoencoder)
    assert proxy.evaluate(space.all_teacher()) == pytest.approx(0.0, abs=1e-9)
    assert proxy.evaluate(spanning_candidates(space, 6, seed=3)[-1]) > 1e-4
    with pytest.raises(ValueError, match="autoencoder"):
        RolloutFidelity(samples.denoiser, space, samples.swapper.bank, samples.config, (16, 8, 8), measure="spectrum")
