"""The two bicubic conventions: MATLAB's imresize (the field's LR images and bicubic baseline) and torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tocsr.core.baselines import Interpolate
from tocsr.core.resize import bicubic_upscale, matlab_imresize
from tocsr.core.sr.degradations import bicubic_down


def test_matlab_upscaling_equals_pils_bicubic_away_from_the_borders():
    # Both use Keys' cubic with a = -0.5 when enlarging; they differ only in border handling (MATLAB
    # mirrors the image, PIL renormalises a clipped kernel).
    x = torch.rand(1, 1, 24, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = matlab_imresize(x, 4)[0, 0].numpy()
    pil = np.asarray(Image.fromarray(x[0, 0].numpy().astype(np.float32), mode="F").resize((80, 96), Image.BICUBIC))
    assert ours.shape == pil.shape == (96, 80)
    assert np.abs(ours - pil)[8:-8, 8:-8].max() < 1e-6
    assert np.abs(ours - pil).max() > 1e-3          # the borders do differ: the comparison sees them


def test_matlab_downscaling_of_a_ramp_gives_the_values_its_algorithm_defines():
    # Shrinking by 2 samples the ramp i (0-based) at 2o + 0.5 away from the border (the antialiased cubic
    # reproduces linear functions); at the first pixel the kernel reaches over the mirrored border:
    # weights 0.5 * cubic(d / 2) at d = 3.5 ... -3.5 on mirrored values 2, 1, 0, 0, 1, 2, 3, 4 give 0.44921875.
    ramp = torch.arange(64, dtype=torch.float64).view(1, 1, 1, 64).expand(1, 1, 8, 64)
    row = matlab_imresize(ramp, 0.5)[0, 0, 0]
    assert row.shape == (32,) and row[0].item() == pytest.approx(0.44921875, abs=1e-12)
    assert torch.allclose(row[2:-2], torch.arange(2, 30, dtype=torch.float64) * 2 + 0.5)


def test_a_constant_image_stays_constant_at_every_scale():
    x = torch.full((1, 3, 17, 13), 0.3, dtype=torch.float64)
    for s in (0.25, 0.5, 2, 4):
        y = matlab_imresize(x, s)
        assert y.shape[-2:] == (int(np.ceil(17 * s)), int(np.ceil(13 * s))) and torch.allclose(y, x.mean().expand_as(y))


def test_the_bicubic_degradation_and_baseline_use_matlab_and_torchs_kernel_stays_by_name():
    hr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(bicubic_down(hr, 4), matlab_imresize(hr, 0.25).clamp(0, 1))
    lr = bicubic_down(hr, 4)
    assert torch.allclose(Interpolate(4, "bicubic")(lr), matlab_imresize(lr, 4).clamp(0, 1))
    torch_up = Interpolate(4, "bicubic-torch")(lr)
    assert torch.allclose(torch_up, bicubic_upscale(lr, 4, 0, 1))
    assert not torch.allclose(torch_up, Interpolate(4, "bicubic")(lr), atol=1e-3)
