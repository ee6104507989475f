"""Peak memory of one inference: GPU allocator peaks, or CPU peak resident-set growth.

The memory budget applies to `MemoryStats.peak_mib`: weights plus the transient memory of one
inference.
* CUDA: weights plus the allocator's allocated-memory growth over one eager call (stats reset just
  before it). The reserved peak is recorded too, but it also holds blocks cached from earlier work.
* CPU: Linux keeps a resettable high-water mark of resident memory (VmHWM, reset by writing "5" to
  /proc/self/clear_refs), so the peak of exactly the measured call is read, not sampled; peak_mib
  is the weights plus that growth. It is read on the first call: after it, glibc's adaptive mmap
  threshold keeps freed blocks resident and later calls would under-report. Where clear_refs is
  not permitted, a 1 ms psutil sampler gives a lower bound, and `method` says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20


@dataclass(frozen=True)
class MemoryStats:
    method: str
    peak_mib: float                             # the figure the memory budget applies to
    weights_mib: float                          # parameters + buffers at the measured precision
    transient_peak_mib: float                   # peak beyond what was resident before the call
    allocated_peak_mib: float | None = None     # CUDA: peak of live tensors
    reserved_peak_mib: float | None = None      # CUDA: peak of allocator-reserved blocks

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def weights_mib(module: torch.nn.Module) -> float:
    seen: dict[int, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values()) / MIB


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _RssSampler:
    def __init__(self, interval_s: float = 0.001):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def measure_cpu_peak(fn: Callable[[], object], weights: float) -> MemoryStats:
    """Weights plus the resident-set growth during one call of `fn`."""
    before = _status_kib("VmRSS")
    if before is not None and _reset_hwm():
        fn()
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            growth = max(0.0, (hwm - before) / 1024)
            return MemoryStats("linux_vmhwm_growth_plus_weights", weights + growth, weights, growth)
    import psutil

    base = psutil.Process().memory_info().rss
    with _RssSampler() as sampler:
        fn()
    growth = max(0.0, (sampler.peak - base) / MIB)
    return MemoryStats("psutil_rss_sampled_1ms_lower_bound_plus_weights", weights + growth, weights, growth)


def measure_cuda_peak(fn: Callable[[], object], device: torch.device, weights: float) -> MemoryStats:
    """Weights plus the allocator growth during one call of `fn`.

    Not the reserved peak: the caching allocator keeps blocks from earlier work (other models
    measured in the same process), which would be charged to this one. `fn` must allocate (an eager
    call): replaying a CUDA graph allocates nothing, its memory was taken at capture.
    """
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) / MIB
    fn()
    torch.cuda.synchronize(device)
    allocated = torch.cuda.max_memory_allocated(device) / MIB
    reserved = torch.cuda.max_memory_reserved(device) / MIB
    transient = max(0.0, allocated - base)
    return MemoryStats("torch_cuda_allocated_growth_plus_weights", weights + transient, weights, transient,
                       allocated_peak_mib=allocated, reserved_peak_mib=reserved)
