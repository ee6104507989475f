"""The Real-ESRGAN degradation follows its reference code (realesrgan_model.py, basicsr's noise) where
the released x4plus model's training data depends on it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tocsr.core.sr.degradations import RealESRGANConfig, _degrade_once, add_poisson_noise, realesrgan_degrade


def test_the_low_resolution_image_comes_out_in_8_bit_levels():
    hr = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    lr = realesrgan_degrade(hr, 4, torch.Generator().manual_seed(3))
    assert lr.shape == (2, 3, 16, 16) and torch.equal(lr * 255, (lr * 255).round())


def test_the_second_resize_is_relative_to_the_low_resolution_size():
    # Always up, by 1.0-1.2: relative to the LR size (16 px) that is 16-19 px; relative to the
    # current 64 px image it would be 64-76 px, four times what the reference produces.
    cfg = dataclasses.replace(RealESRGANConfig(), resize_probs2=(1.0, 0.0, 0.0), second_blur_prob=0.0)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for seed in range(5):
        out = _degrade_once(x, torch.Generator().manual_seed(seed), cfg, first=False, lr_size=(16, 16))
        assert 16 <= out.shape[-1] <= 19, out.shape


def test_the_second_resize_takes_its_own_probabilities():
    assert RealESRGANConfig().resize_probs2 == (0.3, 0.4, 0.3)


def test_grey_poisson_noise_is_drawn_on_the_luma_of_the_8_bit_source():
    # A constant pure-red image has one 8-bit level, so basicsr scales counts by 2^ceil(log2(1)) = 1 and the
    # noise variance is the source itself: luma round(0.299 * 255) / 255 = 76/255. The channel mean (85/255)
    # or one more distinct level in the scale (variance halved) would each show.
    red = torch.zeros(1, 3, 256, 256)
    red[:, 0] = 1.0
    out = add_poisson_noise(red, 1.0, gray=True, gen=torch.Generator().manual_seed(0))
    noise = out - red
    assert torch.allclose(noise[:, 0], noise[:, 1], atol=1e-6) and torch.allclose(noise[:, 1], noise[:, 2], atol=1e-6)
    assert noise.var().item() == pytest.approx(76 / 255, rel=0.03)


def test_small_crops_take_the_second_blur_after_a_downward_resize():
    # The second-order blur (up to 21 taps) runs after the random resize; on a 64 px HR crop a downward
    # resize leaves about 10 px, less than the kernel's radius, where reflection padding is undefined.
    from tocsr.core.sr.degradations import filter2d, gaussian_kernel

    k = gaussian_kernel(21, 2.0, 2.0, 0.0)
    small = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    assert filter2d(small, k).shape == small.shape
    big = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    reflect = torch.nn.functional.conv2d(torch.nn.functional.pad(big, (10,) * 4, mode="reflect"),
                                         k[None, None].repeat(3, 1, 1, 1), groups=3)
    torch.testing.assert_close(filter2d(big, k), reflect)      # large enough: the reference's reflection
    hr = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    for seed in range(40):
        assert realesrgan_degrade(hr, 4, torch.Generator().manual_seed(seed)).shape == (1, 3, 16, 16)
