"""MACs and parameters, attention included, per module and in total.

Counter: torch's FlopCounterMode (which counts conv, mm/addmm/bmm/baddbmm and the CUDA attention
kernels) plus rules this suite adds for the CPU attention kernel, which torch 2.9-2.14 counts as
zero (`aten._scaled_dot_product_flash_attention_for_cpu` has no formula). MACs = FLOPs / 2 for
these ops. Elementwise work (norms, activations, residual adds) is not counted, the convention
of the field's GMAC figures. `thop` (the maintained `ultralytics-thop`) is run as a cross-check on
request; results always name the counter that produced each number.

Counting only needs shapes, so a model on the meta device is counted without computing anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter as fc

COUNTER_NAME = "torch.FlopCounterMode+cpu-sdpa-rules"


def _sdpa_cpu_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _extra_rules() -> dict[Any, Any]:
    aten = torch.ops.aten
    rules = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        rules[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_fwd
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        rules[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_bwd
    return rules


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass. `per_module` maps a module path to MACs of its whole subtree."""

    total_macs: int
    per_op: dict[str, int]
    per_module: dict[str, int] = field(repr=False)
    counter: str = COUNTER_NAME
    thop_macs: int | None = None
    thop_note: str | None = None

    @property
    def gmacs(self) -> float:
        return self.total_macs / 1e9

    def top_modules(self, depth: int = 2, limit: int = 15) -> list[tuple[str, int]]:
        rows = [(k, v) for k, v in self.per_module.items() if k.count(".") == depth - 1 and k != "Global"]
        return sorted(rows, key=lambda kv: -kv[1])[:limit]

    def to_dict(self) -> dict:
        return {"total_macs": self.total_macs, "gmacs": self.gmacs, "counter": self.counter,
                "per_op": self.per_op, "top_modules": self.top_modules(depth=2, limit=30),
                "thop_macs": self.thop_macs, "thop_note": self.thop_note}


def call_module(module: nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> Any:
    return module(*args, **kwargs)


def meta_call(module: nn.Module, args: tuple, kwargs: Mapping[str, Any], dtype: torch.dtype) -> Callable[[], Any]:
    """`module(*args, **kwargs)` with meta tensors of the same shapes in place of the module's parameters,
    buffers and inputs (floating ones in `dtype`), as a zero-argument call: it runs the model's operators
    without computing or allocating, and leaves the module as it was. The stand-ins are made now, so a
    counter wrapped around the call sees only the model's own operators."""

    def to_meta(x):
        if isinstance(x, torch.Tensor):
            return torch.empty(x.shape, dtype=dtype if x.is_floating_point() else x.dtype, device="meta")
        return x

    # One name per tensor and tie_weights=False: a submodule registered under two names is one object, so
    # swapping it under one name swaps it everywhere; with every alias named (or tie_weights=True)
    # functional_call leaves the aliases on the stand-ins after the call.
    state = {name: to_meta(t) for name, t in [*module.named_parameters(), *module.named_buffers()]}
    margs, mkwargs = tuple(to_meta(a) for a in args), {k: to_meta(v) for k, v in kwargs.items()}

    def call() -> Any:
        # Some models keep plain tensor attributes and replace them in forward (spandrel's SPAN:
        # `self.mean = self.mean.type_as(x)`); after a meta call they would hold meta tensors. Put back what
        # was there and drop meta tensors forward created, so the module is as it was.
        saved = [(m, k, v) for m in module.modules() for k, v in vars(m).items() if isinstance(v, torch.Tensor)]
        try:
            return torch.func.functional_call(module, state, margs, mkwargs, tie_weights=False)
        finally:
            for m in module.modules():
                for k in [k for k, v in vars(m).items() if isinstance(v, torch.Tensor) and v.is_meta]:
                    del m.__dict__[k]
            for m, k, v in saved:
                m.__dict__[k] = v

    return call


def count_macs(module: nn.Module, args: tuple = (), kwargs: Mapping[str, Any] | None = None,
               thop_check: bool = False, meta_dtype: torch.dtype | None = None) -> MacCount:
    """Count MACs of `module(*args, **kwargs)` on whatever device the module and inputs are on, or, with
    `meta_dtype`, on meta stand-ins in that dtype (no computation; the module is not touched).

    Example:
        >>> conv = nn.Conv2d(8, 16, 3, padding=1)
        >>> count_macs(conv, (torch.randn(1, 8, 10, 10),)).total_macs   # 16*100 outputs * 8*9
        115200
    """
    kwargs = dict(kwargs or {})
    mode = fc.FlopCounterMode(display=False, depth=None, custom_mapping=_extra_rules())
    if meta_dtype is not None:
        call = meta_call(module, args, kwargs, meta_dtype)
        with torch.no_grad(), mode:
            call()
    else:
        with torch.no_grad(), mode:
            call_module(module, args, kwargs)
    counts = mode.get_flop_counts()
    per_op = {str(op).split(".")[-1] if "." in str(op) else str(op): int(v) // 2
              for op, v in counts.get("Global", {}).items()}
    per_module = {name: int(sum(ops.values())) // 2 for name, ops in counts.items()}
    total = int(mode.get_total_flops()) // 2
    thop_macs, note = (None, None)
    if thop_check:
        thop_macs, note = thop_macs_of(module, args, kwargs)
    return MacCount(total_macs=total, per_op=per_op, per_module=per_module, thop_macs=thop_macs, thop_note=note)


class _KwargsAdapter(nn.Module):
    """thop only passes positional inputs; this forwards them with the fixed keyword arguments."""

    def __init__(self, inner: nn.Module, kwargs: Mapping[str, Any]):
        super().__init__()
        self.inner = inner
        self._kwargs = dict(kwargs)

    def forward(self, *args):
        return self.inner(*args, **self._kwargs)


def thop_macs_of(module: nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> tuple[int | None, str]:
    """thop's count for the same call, on a copy (thop attaches buffers to the modules it visits)."""
    try:
        import thop
    except ImportError:
        return None, "thop (ultralytics-thop) is not installed"
    if any(p.device.type == "meta" for p in module.parameters()):
        return None, "thop cannot count a model on the meta device"
    clone = copy.deepcopy(module)
    with torch.no_grad():
        macs, _ = thop.profile(_KwargsAdapter(clone, kwargs), inputs=tuple(args), verbose=False)
    return int(round(float(macs))), "ultralytics-thop profile(); counts conv/linear and F.scaled_dot_product_attention"


def count_params(module: nn.Module) -> dict[str, int]:
    """Parameters (shared ones once) and buffers. A module that holds parameters its call never runs says which it
    runs (`params_in_call()`: a one-step SR model holds the whole autoencoder, whose parts the deployed LR encoder
    and tiny decoder replace); those are its count."""
    params = {id(p): p.numel() for p in module.parameters()}
    buffers = {id(b): b.numel() for b in module.buffers()}
    in_call = getattr(module, "params_in_call", None)
    return {"params": int(in_call()) if callable(in_call) else int(sum(params.values())),
            "buffers": int(sum(buffers.values()))}
