"""Peak memory of one inference: the bytes torch's allocator holds for it, on a GPU or on a CPU.

The memory budget applies to `MemoryStats.peak_mib`: weights plus the transient memory of one inference, read
after one call of warm-up (`measure_peak`), so lazy one-time work is not charged to the call.
* CUDA: the caching allocator's allocated-memory growth over one eager call (stats reset just before it). The
  reserved peak is recorded too, but it also holds blocks cached from earlier work.
* CPU: the same quantity from torch's CPU allocator: the profiler's memory events (every allocation and free
  through it, with its size) summed in order, and their peak above the start. Why not the resident set: glibc
  serves large blocks with mmap and returns them on free until one large free raises its thresholds, after
  which freed blocks stay resident. So resident growth over a call read the same model's activations in full in
  a fresh process and at almost nothing after other work in the same process (see
  reports/evidence/latency-agreement, "the allocator's state"). Bytes held by tensors do not depend on what
  the process did before. Memory outside torch's allocator (library code pages, thread stacks, a library's own
  malloc) is not counted here, as the CUDA figure does not count the CUDA context. Where the profiler cannot
  run (the caller is profiling already), Linux's resettable high-water mark of resident memory is read
  instead and `method` says so: it is the process-state-dependent figure above.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20
CPU_METHOD = "torch_cpu_allocated_growth_plus_weights"
CUDA_METHOD = "torch_cuda_allocated_growth_plus_weights"
# libkineto writes a line to fd 2 on every profiler start and stop ("USDT:2026-01-01 12:00:00 1:1 File.cpp:39] ...").
_PROFILER_LOG_LINE = re.compile(r"^[A-Z]+:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ \w+\.cpp:\d+\]")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryStats:
    method: str
    peak_mib: float                             # the figure the memory budget applies to
    weights_mib: float                          # parameters + buffers at the measured precision
    transient_peak_mib: float                   # peak beyond what was resident before the call
    allocated_peak_mib: float | None = None     # CUDA: peak of live tensors, what was held before included
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


@contextlib.contextmanager
def _without_profiler_log() -> Iterator[None]:
    """Hold back what is written to fd 2 while the profiler runs, then pass on every line but libkineto's own
    start/stop lines (printed on each use, at every log level: one per candidate measured would bury the job's
    output). Nothing else written there is lost, only delayed to the end of the call."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not _PROFILER_LOG_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def allocated_growth_mib(fn: Callable[[], object]) -> float:
    """The peak of bytes held through torch's CPU allocator during one call of `fn`, above what was held when it
    started: the profiler's memory events (+size on allocation, -size on free) summed in time order. Raises
    RuntimeError where a profiler is already running: starting another would end the caller's session."""
    if torch._C._autograd._profiler_enabled():
        raise RuntimeError("a torch profiler is already running in this process")
    with _without_profiler_log(), torch.autograd.profiler.profile(profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak / MIB


def _resident_growth(fn: Callable[[], object], weights: float) -> MemoryStats:
    """Weights plus the resident-set growth during one call of `fn`: the fallback, which depends on what the
    process's allocator kept resident from earlier work (module docstring)."""
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


def measure_cpu_peak(fn: Callable[[], object], weights: float) -> MemoryStats:
    """Weights plus the peak growth of bytes torch's CPU allocator holds during one call of `fn`. An error of `fn`
    itself propagates."""
    if torch._C._autograd._profiler_enabled():
        log.warning("CPU memory read as resident growth, which depends on the process's history: a torch profiler "
                    "is already running in this process, and starting another would end its session")
        return _resident_growth(fn, weights)
    growth = allocated_growth_mib(fn)
    return MemoryStats(CPU_METHOD, weights + growth, weights, growth)


def measure_peak(fn: Callable[[], object], device: torch.device, weights: float) -> MemoryStats:
    """Peak memory of one call of `fn` on `device`, after one call of warm-up. `fn` must allocate (an eager
    call): replaying a CUDA graph allocates nothing, its memory was taken at capture."""
    fn()
    if device.type == "cuda":
        return measure_cuda_peak(fn, device, weights)
    return measure_cpu_peak(fn, weights)


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
    return MemoryStats(CUDA_METHOD, weights + transient, weights, transient,
                       allocated_peak_mib=allocated, reserved_peak_mib=reserved)
