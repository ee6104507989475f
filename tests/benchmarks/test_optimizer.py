"""The optimiser step of the tiny teacher UNet: `tocsr.core.training.adamw` (fused) against torch's per-tensor loop.

Run by `nox -s bench`; what the fused kernel saves per step, times the steps of each training stage, is what
the main job saves (docs/status.md, thirty-fifth session).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from tocsr.core.models.unet import get_unet_preset
from tocsr.core.training import adamw

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("kind", ["fused", "loop"])
def test_adamw_step_tiny_unet(benchmark, provenance, kind):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**get_unet_preset("tiny").config)
    params = list(unet.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opt = (adamw(params, lr=1e-4, weight_decay=1e-2) if kind == "fused"
           else torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2, foreach=False))
    provenance.update(workload="unet-tiny optimiser step", tensors=len(params),
                      params=sum(p.numel() for p in params), fused=bool(opt.defaults["fused"]))
    before = params[0].detach().clone()
    benchmark.pedantic(opt.step, rounds=40, warmup_rounds=3, iterations=1)
    assert not torch.equal(before, params[0])
