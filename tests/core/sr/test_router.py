"""tocsr.core.sr.router: a router that tells the SR stage's degradations apart from the LR image alone."""

from __future__ import annotations

import math

import pytest
import skimage.data
import torch

from tocsr.core.data import Photo
from tocsr.core.errors import ConfigError
from tocsr.core.metrics import psnr
from tocsr.core.resize import matlab_imresize
from tocsr.core.sr.data import SRPairs
from tocsr.core.sr.router import STATISTICS, DegradationRouter, misroute_loss_db, train_router

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
    # chance is 0.5 (the kinds alternate; 45 of 64 right by chance has odds under 1 in 1000); an untrained router
    # answers one kind for nearly everything
    assert right >= 0.7, right
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


def _gray(image: torch.Tensor) -> torch.Tensor:
    """(h, w) in [0, 1] -> (1, 3, h, w) in [-1, 1], in 8-bit levels as a photograph is."""
    return ((image.clamp(0, 1) * 255).round() / 255)[None, None].expand(1, 3, *image.shape) * 2 - 1


def test_the_noise_of_the_flattest_blocks_tells_texture_from_noise_where_the_whole_image_estimate_does_not():
    """A clean photograph half smooth, half brick wall against a smooth one with faint noise: the whole-image noise
    estimate reads the texture as the stronger noise; the flattest blocks read the truth."""
    router = DegradationRouter(KINDS).eval()
    h = 96
    ramp = torch.linspace(0.3, 0.6, h)[None].expand(h, h)
    brick = torch.from_numpy(skimage.data.brick()[:h, :h]).float() / 255
    textured = torch.cat([ramp[:, :h // 2], brick[:, h // 2:]], dim=1)
    noisy = ramp + 0.001 * torch.randn(h, h, generator=torch.Generator().manual_seed(0))
    stats = {name: dict(zip(STATISTICS, router.statistics(_gray(x))[0].tolist(), strict=True))
             for name, x in (("textured", textured), ("noisy", noisy))}
    assert stats["textured"]["noise"] > stats["noisy"]["noise"]
    assert stats["textured"]["noise_flattest"] < stats["noisy"]["noise_flattest"] - 1.0      # logs: e-fold apart
    # colour noise shows in the chroma of the flattest blocks; grey noise does not
    colour = _gray(noisy).clone()
    colour[:, 0] += 0.01 * torch.randn(h, h, generator=torch.Generator().manual_seed(1))
    chroma = STATISTICS.index("chroma_noise_flattest")
    assert router.statistics(colour)[0, chroma] > router.statistics(_gray(noisy))[0, chroma] + 1.0


def test_a_router_with_misroute_costs_needs_more_evidence_for_the_costly_answer(tmp_path):
    router = DegradationRouter(KINDS).eval()
    with torch.no_grad():                         # P(realesrgan) = 0.8 whatever the image
        router.head.weight.zero_()
        router.head.bias.copy_(torch.tensor([0.0, math.log(4.0)]))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert router.route(x) == ["realesrgan", "realesrgan"]
    # what it weighs, per image, is kept beside its answers
    assert router.probabilities(x) == [pytest.approx({"bicubic": 0.2, "realesrgan": 0.8})] * 2
    # given costs (test inputs, not measurements): a wrong answer on a clean image costs 2.3, the reverse 0.3, and
    # 0.2 x 2.3 > 0.8 x 0.3
    costly = router.with_loss_db(((0.0, 2.3), (0.3, 0.0)))
    assert costly.route(x) == ["bicubic", "bicubic"] and torch.equal(costly(x), router(x))
    assert router.with_loss_db(((0.0, 0.5), (0.3, 0.0))).route(x) == ["realesrgan", "realesrgan"]   # 0.1 < 0.24
    costly.save_pretrained(tmp_path / "router")
    again = DegradationRouter.from_pretrained(tmp_path / "router").eval()
    assert again.route(x) == ["bicubic", "bicubic"] and again.config.loss_db == [[0.0, 2.3], [0.3, 0.0]]
    with pytest.raises(ConfigError, match="not 2 x 2"):
        DegradationRouter(KINDS, loss_db=((0.0, 1.0),))


class _TwoStudents(torch.nn.Module):
    """Stands in for a OneStepSR with one student per degradation: "bicubic" upsamples, "realesrgan" also blurs."""

    class student:                                   # noqa: N801 - the attribute OneStepSR has
        degradations = KINDS

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, lr: torch.Tensor, degradation: str) -> torch.Tensor:
        up = matlab_imresize(lr, 4)
        return up if degradation == "bicubic" else torch.nn.functional.avg_pool2d(up, 5, 1, 2, count_include_pad=False)


def test_misroute_costs_are_each_students_psnr_y_gap_on_each_degradation():
    photos = [Photo("astronaut", skimage.data.astronaut())]
    model = _TwoStudents()
    loss = misroute_loss_db(model, photos, KINDS, scale=4, patch_px=64, crops=4, seed=3)
    pairs = SRPairs(photos, 64, 4, 8, 3 + 11, KINDS)
    for t, row in zip(KINDS, loss, strict=True):
        hr = torch.stack([pairs[i][0] for i in range(8) if pairs.kind(i) == t])
        lr = torch.stack([pairs[i][1] for i in range(8) if pairs.kind(i) == t])
        got = {c: psnr(model(lr, c).clamp(-1, 1), hr, y_channel=True).mean().item() for c in KINDS}
        assert row == pytest.approx(tuple(got[t] - got[c] for c in KINDS), abs=1e-4)
    assert loss[0][0] == loss[1][1] == 0.0 and loss[0][1] > 0.5          # blurring a clean upscale costs
    with pytest.raises(ConfigError, match="no student for"):
        misroute_loss_db(model, photos, ("bicubic", "jpeg"), scale=4, patch_px=64)
