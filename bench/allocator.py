"""The CPU allocator's state, set once per process before anything is timed on a CPU, and recorded.

Why: glibc's malloc serves a block above its mmap threshold with mmap and unmaps it on free, and that threshold
adapts: it starts small and rises to the size of the largest mmapped block freed so far (up to a cap). So in a
fresh process every call of a model with large activations page-faults them in again, and after one large free
(a batch decoded earlier, training) the same call reuses heap blocks with no faults. The autoencoder's parts ran
clearly faster in the second state, so a reading depended on what the process had done before
(reports/evidence/latency-agreement, "the allocator's state").

What is set: the thresholds glibc's own adaptation reaches at its cap (mmap threshold at its 64-bit maximum, trim
threshold twice that, as glibc pairs them), i.e. the state of a long-running process that has served one large
call. Setting them explicitly also stops the adaptation, so no later free moves them. On another C library
nothing is set and the record says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import asdict, dataclass

from tocsr.core.provenance import note_process_fact

ALLOCATOR_STATE_KIND = "tocsr.bench.allocator_state"
ALLOCATOR_STATE_VERSION = 1
GLIBC_MMAP_THRESHOLD_MAX_BYTES = 32 * 2**20     # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's malloc.h


@dataclass(frozen=True)
class AllocatorState:
    allocator: str                          # "glibc 2.36", or what the C library is when not glibc
    mmap_threshold_bytes: int | None        # None: not set by the suite
    trim_threshold_bytes: int | None
    note: str
    kind: str = ALLOCATOR_STATE_KIND
    version: int = ALLOCATOR_STATE_VERSION

    @property
    def is_set(self) -> bool:
        return self.mmap_threshold_bytes is not None

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        if not self.is_set:
            return f"{self.allocator} allocator in whatever state the process had reached ({self.note})"
        return (f"{self.allocator} malloc, mmap threshold {self.mmap_threshold_bytes / 2**20:g} MiB, "
                f"trim threshold {self.trim_threshold_bytes / 2**20:g} MiB (set before timing)")


_STATE: AllocatorState | None = None


def _set_glibc(libc: ctypes.CDLL, version: str) -> AllocatorState:
    mmap_bytes, trim_bytes = GLIBC_MMAP_THRESHOLD_MAX_BYTES, 2 * GLIBC_MMAP_THRESHOLD_MAX_BYTES
    if libc.mallopt(_M_MMAP_THRESHOLD, mmap_bytes) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes) != 1:
        return AllocatorState(f"glibc {version}", None, None, "mallopt refused the thresholds")
    return AllocatorState(f"glibc {version}", mmap_bytes, trim_bytes,
                          "glibc's adaptive thresholds fixed at their cap: a long-running process's state")


def settle_cpu_allocator() -> AllocatorState:
    """Put this process's CPU allocator in the one stated state (module docstring), once; later calls return
    the same record. It is also added to every artifact's provenance written afterwards (`environment()`)."""
    global _STATE
    if _STATE is None:
        name, version = platform.libc_ver()
        path = ctypes.util.find_library("c")
        if name != "glibc" or path is None:
            _STATE = AllocatorState(name or "unknown C library", None, None,
                                    "not glibc: its allocator's state is not set by the suite")
        else:
            _STATE = _set_glibc(ctypes.CDLL(path), version)
        note_process_fact("cpu_allocator", _STATE.to_dict())
    return _STATE


def recorded_state(env: dict) -> AllocatorState | None:
    """The state an artifact's provenance records (`environment()["cpu_allocator"]`); None where it records none
    (written before anything was timed on a CPU in its process, or by a version before the state was set)."""
    d = env.get("cpu_allocator")
    if not d:
        return None
    return AllocatorState(d["allocator"], d["mmap_threshold_bytes"], d["trim_threshold_bytes"], d["note"])


def current_state() -> AllocatorState | None:
    """The state set in this process, or None when nothing has been timed on a CPU yet."""
    return _STATE
