"""PSNR against closed forms and against pyiqa (the field's reference implementation)."""

from __future__ import annotations

import math

import pytest
import torch

from tocsr.core.metrics import psnr, rgb_to_y


def _grey(level01: float, n: int = 1, side: int = 16) -> torch.Tensor:
    return torch.full((n, 3, side, side), level01 * 2 - 1)       # the suite's [-1, 1] images


def test_psnr_of_a_uniform_grey_offset_matches_the_closed_form():
    a, b = _grey(0.4), _grey(0.5)
    assert psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)                       # -20 log10(0.1)
    # on BT.601 luma a grey step of 0.1 moves Y by 0.1 * 219/255
    assert psnr(a, b, y_channel=True).item() == pytest.approx(-20 * math.log10(0.1 * 219 / 255), abs=1e-4)


def test_rgb_to_y_follows_matlab_rgb2ycbcr():
    black, white = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    assert rgb_to_y(black).item() == pytest.approx(16 / 255)
    assert rgb_to_y(white).item() == pytest.approx(235 / 255, abs=1e-6)


def test_the_border_crop_removes_exactly_scale_pixels():
    a, b = _grey(0.5, side=20), _grey(0.5, side=20)
    b[..., :4, :] = 1.0                                   # differences only in the top 4 rows
    assert psnr(a, b, y_channel=True, crop=4).item() > 100
    assert psnr(a, b, y_channel=True, crop=3).item() < 40


def test_psnr_y_equals_pyiqa_psnry():
    pyiqa = pytest.importorskip("pyiqa")
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(5, 3, 48, 48, generator=g)
    sr = (hr + 0.05 * torch.randn(5, 3, 48, 48, generator=g)).clamp(0, 1)
    ref = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    ours = psnr(sr * 2 - 1, hr * 2 - 1, y_channel=True)
    assert torch.allclose(ours, ref(sr, hr).flatten().float(), atol=1e-3)
