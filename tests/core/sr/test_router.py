"""tocsr.core.sr.router: a router that tells the SR stage's degradations apart from the LR image alone."""

from __future__ import annotations

import pytest
import skimage.data
import torch

from tocsr.core.data import Photo
from tocsr.core.errors import ConfigError
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.router import DegradationRouter, train_router

KINDS = ("bicubic", "realesrgan")


def test_a_trained_router_tells_the_degradations_apart_on_crops_of_a_photograph_it_never_saw():
    train = [Photo("astronaut", skimage.data.astronaut()), Photo("coffee", skimage.data.coffee())]
    router, seconds = train_router(train, KINDS, scale=4, patch_px=128, steps=60, batch=16)
    assert seconds > 0 and not router.training
    held_out = SRPairs([Photo("chelsea", skimage.data.chelsea())], 128, 4, 64, seed=123, kinds=KINDS)
    lr = torch.stack([held_out[i][1] for i in range(len(held_out))])
    truth = [held_out.kind(i) for i in range(len(held_out))]
    routed = router.route(lr)
    right = sum(a == b for a, b in zip(routed, truth, strict=True)) / len(truth)
    # chance is 0.5 (the kinds alternate); an untrained router answers one kind for nearly everything
    assert right >= 0.75, right
    untrained = DegradationRouter(KINDS).eval()
    assert sum(a == b for a, b in zip(untrained.route(lr), truth, strict=True)) / len(truth) < right


def test_a_router_decides_once_per_whole_image_of_any_size_and_round_trips_its_folder(tmp_path):
    torch.manual_seed(0)
    router = DegradationRouter(KINDS).eval()
    for size in ((17, 23), (64, 40)):
        assert len(router.route(torch.rand(3, 3, *size) * 2 - 1)) == 3
    router.save_pretrained(tmp_path / "router")
    again = DegradationRouter.from_pretrained(tmp_path / "router").eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert again.kinds == KINDS and torch.equal(again(x), router(x))


def test_a_router_needs_two_degradations_and_positive_steps():
    with pytest.raises(ConfigError, match="at least two degradations"):
        DegradationRouter(("bicubic",))
    with pytest.raises(ConfigError, match="steps 0"):
        train_router([], KINDS, scale=4, steps=0)
