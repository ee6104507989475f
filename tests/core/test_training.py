"""tocsr.core.training.adamw: the one optimiser of every training stage and baseline."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tocsr.core.training import adamw

ROOT = Path(__file__).resolve().parents[2]


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((7, 5), (5,), (3, 3, 3, 2))]


def test_fused_on_cpu_and_the_same_update_as_the_loop():
    ours, ref = _params(0), _params(0)
    opt = adamw(ours, lr=1e-2, weight_decay=1e-2, betas=(0.5, 0.999))
    loop = torch.optim.AdamW(ref, lr=1e-2, weight_decay=1e-2, betas=(0.5, 0.999), foreach=False)
    assert opt.defaults["fused"] is True
    for step in range(5):
        g = torch.Generator().manual_seed(100 + step)
        for a, b in zip(ours, ref, strict=True):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        opt.step()
        loop.step()
    for a, b, start in zip(ours, ref, _params(0), strict=True):
        assert (a - start).abs().max() > 1e-3          # it moved
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_not_fused_where_torch_has_no_fused_kernel():
    """A device without a fused kernel (meta here) gets the plain loop instead of an error at the first step."""
    opt = adamw([torch.nn.Parameter(torch.zeros(3, device="meta"))], lr=1e-3)
    assert not opt.defaults["fused"]


def test_every_stage_and_baseline_builds_its_optimiser_with_adamw():
    """The baselines' budget is in seconds: an optimiser step cheaper for one method than another would buy it
    more steps. One constructor for all keeps that fair."""
    direct = re.compile(r"torch\.optim\.(Adam|AdamW|SGD)\(")
    offenders = [str(p.relative_to(ROOT)) for pkg in ("tocsr", "bench", "search", "reports")
                 for p in (ROOT / pkg).rglob("*.py")
                 if "evidence" not in p.parts and p.name != "training.py" and direct.search(p.read_text())]
    assert offenders == []
