from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.counting import count_macs, count_params
from bench.workloads import ConvLinearAttention
from tests.conftest import requires_cuda


def _toy(device: str):
    torch.manual_seed(0)
    model = ConvLinearAttention(32, 64, 4).to(device)
    x = torch.randn(2, 32, 8, 8, device=device)
    return model, x, ConvLinearAttention.analytic_macs(2, 32, 64, 8, 8)


def test_conv_linear_attention_count_matches_closed_form_on_cpu():
    model, x, analytic = _toy("cpu")
    counted = count_macs(model, (x,)).total_macs
    assert abs(counted - analytic) / analytic < 0.01
    assert counted == analytic


def test_torch_alone_misses_cpu_attention_which_our_rules_count():
    model, x, analytic = _toy("cpu")
    with FlopCounterMode(display=False) as plain:
        model(x)
    attention = 2 * 2 * 64 * 64 * 32  # 2*B*N*N*C
    assert plain.get_total_flops() // 2 == analytic - attention   # torch alone: attention counted as zero
    assert count_macs(model, (x,)).per_op["_scaled_dot_product_flash_attention_for_cpu"] == attention


@requires_cuda
def test_conv_linear_attention_count_matches_closed_form_on_gpu():
    model, x, analytic = _toy("cuda")
    assert count_macs(model, (x,)).total_macs == analytic


def test_meta_device_count_equals_real_count():
    model, x, analytic = _toy("cpu")
    meta_model = ConvLinearAttention(32, 64, 4).to("meta")
    assert count_macs(meta_model, (x.to("meta"),)).total_macs == analytic


@pytest.mark.parametrize("module,x", [
    (nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1)), torch.randn(1, 3, 12, 12)),
    (nn.Sequential(nn.Linear(10, 40), nn.GELU(), nn.Linear(40, 5)), torch.randn(7, 10)),
    (nn.Conv2d(8, 8, 3, groups=8, padding=1), torch.randn(2, 8, 9, 9)),
])
def test_thop_agrees_exactly_on_conv_and_linear(module, x):
    count = count_macs(module, (x,), thop_check=True)
    assert count.thop_macs == count.total_macs > 0


def test_per_module_counts_sum_to_children():
    model, x, _ = _toy("cpu")
    c = count_macs(model, (x,))
    root = [k for k in c.per_module if k.count(".") == 0 and k != "Global"][0]
    children = sum(v for k, v in c.per_module.items() if k.count(".") == 1 and k.startswith(root + "."))
    assert children + c.per_op["_scaled_dot_product_flash_attention_for_cpu"] == c.per_module[root]


def test_count_params_counts_shared_parameters_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, lin)
    model.register_buffer("scale", torch.ones(3))
    assert count_params(model) == {"params": 20, "buffers": 3}


def test_a_module_that_holds_parameters_its_call_never_runs_is_counted_by_what_it_runs():
    """A one-step SR model holds the whole autoencoder while its deployed LR encoder and tiny decoder replace its
    parts (tocsr.core.sr.onestep.OneStepSR.params_in_call): `tocsr bench -m <sr folder>` counts what one call runs."""
    class Holds(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.replaced = nn.Linear(4, 4), nn.Linear(4, 100)

        def forward(self, x):
            return self.used(x)

        def params_in_call(self) -> int:
            return sum(p.numel() for p in self.used.parameters())

    assert count_params(Holds())["params"] == 20
