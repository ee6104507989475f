"""Analytic latency for devices that are not attached (phone NPUs, edge GPUs): a roofline estimate.

Every aten op that launches work is recorded on the meta device (no computation, any model size).
Each op costs max(FLOPs / peak, bytes / bandwidth) plus the device's per-op launch overhead; FLOPs
of matrix ops come from torch's counter rules (attention included), other ops count one FLOP per
output element, bytes are every input read once and every output written once. The result is
always labelled `predicted`: it is a floor for that device, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils import flop_counter as fc
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.counting import meta_call
from bench.profile import PredictedConstants

_NO_KERNEL = {"detach", "alias", "lift_fresh", "empty", "empty_like", "empty_strided", "_to_copy_meta"}
BYTES_PER_ELEMENT = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class RooflineEstimate:
    latency_ms: float
    compute_bound_ms: float
    memory_bound_ms: float
    launch_overhead_ms: float
    ops: int
    flops: int
    bytes_moved: int
    memory_lower_bound_mib: float
    method: str = "roofline(max(flops/peak, bytes/bandwidth) + launch overhead per op), predicted"
    calibration: str | None = None        # the evidence a calibration was fitted on, when one was applied

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class _OpRecorder(TorchDispatchMode):
    def __init__(self, element_bytes: int):
        super().__init__()
        self.element_bytes = element_bytes
        self.records: list[tuple[int, int]] = []   # (flops, bytes) per kernel-launching op
        self.max_working_set = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if getattr(func, "is_view", False) or name in _NO_KERNEL:
            return out
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        nbytes = sum(t.numel() for t in ins + outs) * self.element_bytes
        formula = fc.flop_registry.get(func.overloadpacket)
        if formula is not None:
            flops = int(formula(*args, out_val=out, **kwargs))
        else:
            flops = sum(t.numel() for t in outs)
        self.records.append((flops, nbytes))
        self.max_working_set = max(self.max_working_set, nbytes)
        return out


def estimate(module: torch.nn.Module, args: tuple, kwargs: dict, constants: PredictedConstants,
             precision: str) -> RooflineEstimate:
    """Roofline latency of `module(*args, **kwargs)` on the described device.

    The call runs with meta stand-ins for the module's parameters and buffers (`torch.func.functional_call`):
    nothing is computed or copied, so a paper-scale model costs no memory, and the module is left as it was.
    Inputs may be on any device.
    """
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    call = meta_call(module, args, kwargs, dtype)
    element_bytes = BYTES_PER_ELEMENT[precision]
    recorder = _OpRecorder(element_bytes)
    with torch.no_grad(), recorder:
        call()
    peak = constants.peak_tflops[precision] * 1e12
    bandwidth = constants.memory_bandwidth_gbps * 1e9
    compute = sum(f for f, _ in recorder.records) / peak
    memory = sum(b for _, b in recorder.records) / bandwidth
    total = sum(max(f / peak, b / bandwidth) for f, b in recorder.records)
    cal = constants.calibration
    per_launch_us = cal.launch_overhead_us if cal else constants.launch_overhead_us
    launch = len(recorder.records) * per_launch_us * 1e-6
    body_ms = total * 1e3 * (cal.compute_scale if cal else 1.0) + (cal.intercept_ms if cal else 0.0)
    weight_bytes = sum(p.numel() for p in module.parameters()) * element_bytes
    return RooflineEstimate(
        latency_ms=body_ms + launch * 1e3, compute_bound_ms=compute * 1e3, memory_bound_ms=memory * 1e3,
        launch_overhead_ms=launch * 1e3, ops=len(recorder.records),
        flops=sum(f for f, _ in recorder.records), bytes_moved=sum(b for _, b in recorder.records),
        memory_lower_bound_mib=(weight_bytes + recorder.max_working_set) / 2**20,
        method=("calibrated roofline(scale x max(flops/peak, bytes/bandwidth) + fitted launch cost per op + fixed "
                "cost), predicted") if cal else RooflineEstimate.method,
        calibration=cal.source if cal else None,
    )
