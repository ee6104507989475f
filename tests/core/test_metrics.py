"""PSNR and SSIM against closed forms and against pyiqa set to the field's conventions (8-bit images,
MATLAB's rgb2ycbcr luma rounded to 8-bit levels, an 11x11 Gaussian SSIM window)."""

from __future__ import annotations

import math

import pytest
import torch

from tocsr.core.metrics import psnr, rgb_to_y, ssim_y, y_levels


def _grey(level: float, n: int = 1, side: int = 16) -> torch.Tensor:
    """A uniform grey at an 8-bit `level`, as the suite's [-1, 1] images."""
    return torch.full((n, 3, side, side), level / 127.5 - 1)


def test_psnr_of_a_uniform_grey_offset_matches_the_closed_form_on_8_bit_levels():
    a, b = _grey(100), _grey(125)
    assert psnr(a, b).item() == pytest.approx(20 * math.log10(255 / 25), abs=1e-4)
    # luma levels: round(16 + 219/255 * 100) = 102, round(16 + 219/255 * 125) = 123: 21 levels apart
    # (21.47 unrounded, which would give 0.19 dB less)
    assert psnr(a, b, y_channel=True).item() == pytest.approx(20 * math.log10(255 / 21), abs=1e-4)


def test_images_are_scored_as_saved_8_bit_images():
    a = _grey(100)
    assert psnr(a, a + 0.3 / 127.5).item() > 100           # under half a level: the same saved image
    assert psnr(a, a + 0.7 / 127.5).item() == pytest.approx(20 * math.log10(255), abs=1e-4)   # one level


def test_rgb_to_y_follows_matlab_rgb2ycbcr():
    black, white = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    assert rgb_to_y(black).item() == pytest.approx(16 / 255)
    assert rgb_to_y(white).item() == pytest.approx(235 / 255, abs=1e-6)
    assert y_levels(torch.ones(1, 3, 2, 2)).unique().tolist() == [235.0]


def test_the_border_crop_removes_exactly_scale_pixels():
    a, b = _grey(128, side=20), _grey(128, side=20)
    b[..., :4, :] = 1.0                                   # differences only in the top 4 rows
    assert psnr(a, b, y_channel=True, crop=4).item() > 100
    assert psnr(a, b, y_channel=True, crop=3).item() < 40


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 48, 48, generator=g) * 2 - 1
    assert torch.allclose(ssim_y(hr, hr), torch.ones(2))
    mild, strong = (hr + s * torch.randn(hr.shape, generator=g) for s in (0.05, 0.3))
    assert 1 > ssim_y(mild, hr).min() > ssim_y(strong, hr).max() > 0


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hr = (torch.rand(5, 3, 48, 48, generator=g) * 255).round() / 255          # 8-bit images in [0, 1]
    hr = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)                          # some structure for SSIM
    sr = (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    return (sr * 255).round() / 255, (hr * 255).round() / 255


def test_psnr_y_equals_pyiqa_psnr_on_8_bit_ycbcr_luma():
    pyiqa = pytest.importorskip("pyiqa")
    sr, hr = _pair()
    ref = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", data_range=255, device="cpu")
    assert torch.allclose(psnr(sr * 2 - 1, hr * 2 - 1, y_channel=True), ref(sr, hr).flatten().float(), atol=1e-4)


def test_ssim_y_equals_pyiqa_ssim_on_8_bit_ycbcr_luma():
    pyiqa = pytest.importorskip("pyiqa")
    sr, hr = _pair(1)
    ref = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    ours = ssim_y(sr * 2 - 1, hr * 2 - 1)
    assert torch.allclose(ours, ref(sr, hr).flatten().float(), atol=1e-5), (ours, ref(sr, hr))
    assert ours.min() < 0.99          # a real comparison, not two perfect scores
