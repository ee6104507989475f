"""Classical baselines (tocsr.core.baselines): how they are initialised and trained for the fair comparison."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tocsr.core.baselines import build_baseline, he_init, load_baseline, save_baseline, train_baseline
from tocsr.core.data import load_train_val
from tocsr.core.errors import ConfigError


def _input_dependence(model) -> float:
    """How much the network's residual over nearest-neighbour upsampling changes from one input to another."""
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        r = model(x) - F.interpolate(x, scale_factor=4, mode="nearest")
    return float(r.std(0).mean())


def test_he_init_lets_srvgg_see_its_input_where_the_default_init_does_not():
    torch.manual_seed(0)
    default = build_baseline("srvgg", 4)
    torch.manual_seed(0)
    he = he_init(build_baseline("srvgg", 4))
    # the default init passes nothing of the input through 18 convolutions: a constant plus nearest upsampling,
    # which is what left the main job's from-scratch SRVGG below bicubic
    assert _input_dependence(default) < 1e-5
    assert _input_dependence(he) > 1e-3


def test_a_trained_baseline_records_its_recipe_and_round_trips(tmp_path):
    train, _, _ = load_train_val(None, min_side=128)
    model, info = train_baseline("espcn", train[:2], 4, max_steps=2, batch=2)
    assert (info.steps, info.init, info.head, info.batch) == (2, "he", "as published", 2)
    save_baseline(model, info, tmp_path)
    loaded, meta = load_baseline(tmp_path)
    assert meta["init"] == "he" and meta["pairs_seen"] == 4
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))


def test_an_unknown_init_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="he, pytorch-default"):
        train_baseline("espcn", [], 4, max_steps=1, init="xavier")


def test_a_baseline_trains_where_the_sr_stage_trains_and_one_trained_elsewhere_is_not_reused(tmp_path):
    # Equal seconds are an equal budget only on the same hardware: the baselines train on the accelerator the
    # SR stage trains on (a GPU run's baselines on the GPU), and the run's cache retrains one recorded elsewhere.
    import json

    from reports.comparison import _baselines
    from tocsr.core.training import make_accelerator

    here = str(make_accelerator().device)
    train, _, _ = load_train_val(None, min_side=128)
    model, info = train_baseline("espcn", train[:2], 4, max_steps=1, batch=2)
    assert info.device == here and next(model.parameters()).device.type == "cpu"
    folder = tmp_path / "baselines" / "espcn"
    save_baseline(model, info, folder)
    meta = json.loads((folder / "baseline.json").read_text())
    _, trained = _baselines(["espcn"], tmp_path, train[:2], 4, None, 1, 128)
    assert trained["espcn"]["seconds"] == meta["seconds"]                 # same device, same budget: reused
    (folder / "baseline.json").write_text(json.dumps({**meta, "device": "cuda:0" if here == "cpu" else "cpu"}))
    _, trained = _baselines(["espcn"], tmp_path, train[:2], 4, None, 1, 128)
    assert trained["espcn"]["device"] == here                             # recorded elsewhere: trained again here


def test_a_learning_curve_scores_the_baseline_at_its_training_seconds_and_keeps_scoring_off_the_clock():
    # tocsr.app.sr_curve scores a baseline at the student's seconds: what is scored at x seconds must be a model
    # trained for x seconds, so a slow scoring must not eat the budget (nor end the training early).
    import time

    train, _, _ = load_train_val(None, min_side=128)
    calls = []

    def evaluate(step, seconds, model):
        calls.append((step, seconds, model.training))
        time.sleep(1.5)

    wall = time.perf_counter()
    model, info = train_baseline("espcn", train[:2], 4, budget_s=1.0, batch=2, patch_px=32, evaluate=evaluate,
                                 evaluate_at_s=(0.3, 0.6))
    wall = time.perf_counter() - wall
    assert [c[2] for c in calls] == [False, False]                     # scored in eval mode
    assert 0.3 <= calls[0][1] < calls[1][1] and calls[1][1] >= 0.6
    assert 0 < calls[0][0] < calls[1][0] < info.steps                  # training went on after each scoring
    assert 1.0 <= info.seconds < 2.0 and wall >= 4.0                    # 3 s of scoring kept off its clock
    assert model.training is False
