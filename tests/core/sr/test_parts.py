"""The cheaper pipeline parts: their shapes at every supported scale, and training that makes them stand in
for the autoencoder's own parts (a tiny autoencoder, a few dozen steps)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import skimage.data
import torch

from tocsr.core.data import Photo
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import (
    build_autoencoder_from_preset,
    encode_latents,
    set_latent_stats,
)
from tocsr.core.models.parts import LREncoder, PixelBranch, TinyDecoder
from tocsr.core.resize import bicubic_upscale
from tocsr.core.sr import parts as parts_module
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.parts import (
    PartsConfig,
    PartsRecord,
    encoder_target,
    load_parts,
    part_fidelity,
    start_linear,
    train_parts,
)

CFG = PartsConfig(steps=50, batch=4, patch_px=64, encoder_width=16, decoder_widths=(16, 8, 8), lr=2e-3,
                  val_per_image=2, linear_fit_pairs=16)


@pytest.mark.parametrize(("scale", "latent_px"), [(2, 8), (4, 16), (8, 32)])
def test_the_lr_encoder_lands_on_the_hr_latent_grid_at_every_scale(scale, latent_px):
    z = LREncoder(scale=scale, width=8, blocks=1)(torch.zeros(2, 3, 32, 32))
    assert z.shape == (2, 16, latent_px, latent_px)        # 32 * scale px of HR, at f8
    assert TinyDecoder(widths=(8, 8, 8))(z).shape == (2, 3, 8 * latent_px, 8 * latent_px)


def test_a_scale_the_autoencoder_grid_cannot_take_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="scale 3 with an f8 autoencoder") as info:
        LREncoder(scale=3)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="one width per x2 stage"):
        TinyDecoder(widths=(8, 8))
    with pytest.raises(ConfigError, match="patch_px = 60"):
        PartsConfig(patch_px=60)
    with pytest.raises(ConfigError, match=r"steps = 0: must be at least 1 \(e.g. --steps 40\)"):
        PartsConfig(steps=0)



@pytest.mark.parametrize("init", ["zero", "he"])
def test_a_pixel_branch_starts_at_zero_or_as_a_network_whose_every_layer_learns_from_the_first_step(init):
    """PixelBranch(init=...): "zero" adds nothing until trained, and its zero last layer leaves every layer before it
    without a gradient on the first step; "he" starts as the SRVGG baseline does (small, not zero), so the first step
    reaches its first layer. The init is part of the saved config, and a name that is not an init is refused."""
    torch.manual_seed(0)
    branch = PixelBranch(scale=4, width=8, convs=3, init=init)
    lr = torch.rand(2, 3, 12, 12) * 2 - 1
    out = branch(lr)
    assert out.shape == (2, 3, 48, 48)
    out.square().mean().add(out.mean()).backward()
    first = branch.net[0].weight.grad.abs().max().item()
    if init == "zero":
        assert out.abs().max() == 0 and first == 0
    else:
        assert 0 < out.abs().max() < 1, "a he-started correction is a small one"
        assert first > 0, "the first step must reach the first layer"
    assert branch.config.init == init
    with pytest.raises(ConfigError, match="init 'uniform'"):
        PixelBranch(init="uniform")
    from tocsr.core.sr.config import SRConfig
    with pytest.raises(ConfigError, match="pixel_branch_init = 'uniform'"):
        SRConfig(pixel_branch_width=8, pixel_branch_init="uniform")

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    ae = build_autoencoder_from_preset("tiny").eval()
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    ae.init_shortcuts_from_images(x)
    # the deep paths start silent (the autoencoder is then linear, and so are the best stand-ins): open them
    for conv in (ae.encoder.conv_out, ae.decoder.conv_out):
        torch.nn.init.normal_(conv.weight, std=0.01)
    set_latent_stats(ae, x)
    teacher = SimpleNamespace(autoencoder=ae, folder=str(tmp_path_factory.mktemp("teacher")))
    train = [Photo("astronaut", skimage.data.astronaut()), Photo("coffee", skimage.data.coffee())]
    val = [Photo("chelsea", skimage.data.chelsea())]
    out = tmp_path_factory.mktemp("parts")
    record = train_parts(teacher, train, val, out, CFG, scale=4)
    record.save(out, {})
    return ae, val, out, record


def test_trained_parts_stand_in_for_the_autoencoders_better_than_their_linear_start(trained):
    ae, val, _, record = trained
    train = [Photo("astronaut", skimage.data.astronaut()), Photo("coffee", skimage.data.coffee())]
    pairs = SRPairs(train, CFG.patch_px, 4, CFG.steps * CFG.batch, CFG.seed, CFG.kinds)

    def fresh():
        torch.manual_seed(CFG.seed)
        return (LREncoder(scale=4, width=CFG.encoder_width, blocks=CFG.encoder_blocks),
                TinyDecoder(widths=CFG.decoder_widths, blocks=CFG.decoder_blocks))

    untrained = part_fidelity(ae, *fresh(), val, CFG, 4)
    encoder, decoder = fresh()
    start_linear(encoder, decoder, ae, pairs, 4, CFG.linear_fit_pairs)
    linear = part_fidelity(ae, encoder, decoder, val, CFG, 4)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    for part in ("lr-encoder", "tiny-decoder"):
        after = record.psnr_y_db[part]["part_vs_kl"]
        assert len(after) == len(linear[part]["part_vs_kl"]) > 0
        assert mean(linear[part]["part_vs_kl"]) > mean(untrained[part]["part_vs_kl"]) + 3, part
        assert mean(after) > mean(linear[part]["part_vs_kl"]), part      # the steps added to the linear start
    # the encoder is scored on every degradation's crops, the decoder on the HR crops once
    assert len(record.psnr_y_db["lr-encoder"]["through_kl"]) == 2 * len(record.psnr_y_db["tiny-decoder"]["through_kl"])
    assert record.params["lr-encoder"] < record.params["kl-encoder"]
    assert record.train_s["lr-encoder"] > 0 and record.config == json.loads(json.dumps(dataclasses.asdict(CFG)))


def test_saved_parts_load_back_and_compute_what_was_scored(trained):
    ae, val, out, record = trained
    encoder, decoder, loaded = load_parts(out)
    assert loaded == record and PartsRecord.load(out).params == record.params
    again = part_fidelity(ae, encoder, decoder, val, CFG, 4)
    for part, scores in again.items():
        assert scores["part_vs_kl"] == pytest.approx(record.psnr_y_db[part]["part_vs_kl"], abs=1e-3)


def test_the_encoder_takes_its_own_steps_and_the_decoder_is_left_as_it_was(trained, tmp_path):
    ae, val, _, record = trained
    with pytest.raises(ConfigError, match=r"encoder_steps = 0: must be at least 1, or None"):
        PartsConfig(encoder_steps=0)
    teacher = SimpleNamespace(autoencoder=ae, folder=str(tmp_path))
    train = [Photo("astronaut", skimage.data.astronaut()), Photo("coffee", skimage.data.coffee())]
    fewer = train_parts(teacher, train, val, tmp_path, dataclasses.replace(CFG, encoder_steps=3), scale=4)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert fewer.config["encoder_steps"] == 3 and record.config["encoder_steps"] is None
    # the fixture's encoder trained CFG.steps: more steps, a closer stand-in; the decoder is the same network
    assert mean(fewer.psnr_y_db["lr-encoder"]["part_vs_kl"]) < mean(record.psnr_y_db["lr-encoder"]["part_vs_kl"])
    assert fewer.psnr_y_db["tiny-decoder"] == record.psnr_y_db["tiny-decoder"]


def test_an_encoder_trained_towards_the_hr_latent_restores_where_the_stand_in_copies(trained, tmp_path, monkeypatch):
    """encoder_target "hr": the LR encoder regresses the HR crop's latent: it starts from the least-squares map to
    it and trains away from the bicubic + KL encoder path it otherwise copies. (Whether it then restores is a
    question for real photographs and steps: reports/evidence/sr-ablation/run31-hr-target-encoder/.)"""
    ae, val, out, record = trained
    with pytest.raises(ConfigError, match="encoder_target = 'HR': must be one of upscale, hr"):
        PartsConfig(encoder_target="HR")
    hr, lr = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(encoder_target(ae, hr, lr, 4, "hr"), encode_latents(ae, hr))
    assert torch.equal(encoder_target(ae, hr, lr, 4, "upscale"), encode_latents(ae, bicubic_upscale(lr, 4)))
    teacher = SimpleNamespace(autoencoder=ae, folder=str(tmp_path))
    train = [Photo("astronaut", skimage.data.astronaut()), Photo("coffee", skimage.data.coffee())]
    asked = []       # every target the training asks for: the linear start's and each step's

    def spy(*args):
        asked.append(args[-1])
        return encoder_target(*args)

    monkeypatch.setattr(parts_module, "encoder_target", spy)
    restoring = train_parts(teacher, train, val, tmp_path, dataclasses.replace(CFG, encoder_target="hr"), scale=4)
    monkeypatch.undo()
    assert asked == ["hr"] * (1 + CFG.steps)
    assert restoring.config["encoder_target"] == "hr" and record.config["encoder_target"] == "upscale"
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert mean(restoring.psnr_y_db["lr-encoder"]["part_vs_kl"]) < mean(record.psnr_y_db["lr-encoder"]["part_vs_kl"])
    assert restoring.psnr_y_db["tiny-decoder"] == record.psnr_y_db["tiny-decoder"]
    # each linear start is the least-squares map to its own target on the pairs it is fitted on
    pairs = SRPairs(train, CFG.patch_px, 4, CFG.linear_fit_pairs, CFG.seed, CFG.kinds)
    hr = torch.stack([pairs[i][0] for i in range(CFG.linear_fit_pairs)])
    lr = torch.stack([pairs[i][1] for i in range(CFG.linear_fit_pairs)])
    starts = {}
    for target in ("hr", "upscale"):
        torch.manual_seed(0)
        starts[target] = LREncoder(scale=4, width=CFG.encoder_width, blocks=CFG.encoder_blocks)
        start_linear(starts[target], TinyDecoder(widths=CFG.decoder_widths), ae, pairs, 4, CFG.linear_fit_pairs,
                     target)
    with torch.no_grad():
        for target in ("hr", "upscale"):
            z = encoder_target(ae, hr, lr, 4, target)
            other = "upscale" if target == "hr" else "hr"
            assert (starts[target](lr) - z).square().mean() < (starts[other](lr) - z).square().mean(), target
