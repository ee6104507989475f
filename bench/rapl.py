"""CPU energy from Linux RAPL counters (/sys/class/powercap): what an energy budget on a CPU is measured with.

Each top-level package zone (`intel-rapl:<n>`, named `package-<n>`) exposes a cumulative `energy_uj`
counter that wraps at `max_energy_range_uj`. A reading is one snapshot of every package; the energy
between two snapshots is the sum of per-package differences, a wrap counted once. Virtual machines
and unprivileged containers usually hide these files; then `available` is False and `reason` says
why, and an energy budget on such a device is refused before anything runs (`energy_unmeasurable`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")          # top-level zones only (sub-zones are intel-rapl:n:m)


@dataclass(frozen=True)
class RaplSnapshot:
    counters_uj: tuple[int, ...]
    ranges_uj: tuple[int, ...]


class Rapl:
    """The package energy counters under `root`; `available` is False (with `reason`) where none is readable."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else POWERCAP
        self.zones: list[Path] = []
        self.reason = ""
        if not self.root.is_dir():
            self.reason = f"no {self.root} (no RAPL on this machine; virtual machines usually hide it)"
            return
        zones = sorted(p for p in self.root.iterdir() if _PACKAGE.match(p.name))
        if not zones:
            self.reason = f"no package zone (intel-rapl:<n>) under {self.root}"
            return
        unreadable = []
        for zone in zones:
            try:
                int((zone / "energy_uj").read_text())
                self.zones.append(zone)
            except (OSError, ValueError) as err:
                unreadable.append(f"{zone.name}: {type(err).__name__}")
        if not self.zones:
            self.reason = ("energy_uj not readable (" + "; ".join(unreadable) +
                           "); reading RAPL needs root on recent kernels")

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def snapshot(self) -> RaplSnapshot:
        counters, ranges = [], []
        for zone in self.zones:
            counters.append(int((zone / "energy_uj").read_text()))
            try:
                ranges.append(int((zone / "max_energy_range_uj").read_text()))
            except (OSError, ValueError):
                ranges.append(0)
        return RaplSnapshot(tuple(counters), tuple(ranges))

    @staticmethod
    def delta_mj(before: RaplSnapshot, after: RaplSnapshot) -> float:
        """Energy between two snapshots in mJ; a counter that went down wrapped once at its range."""
        total = 0
        for a, b, span in zip(before.counters_uj, after.counters_uj, after.ranges_uj, strict=True):
            total += b - a if b >= a else b + span - a
        return total / 1000.0


def energy_unmeasurable(device_kind: str, cuda_index: int = 0) -> str | None:
    """Why energy cannot be measured on this device (None when it can)."""
    if device_kind == "cpu":
        rapl = Rapl()
        return None if rapl.available else f"RAPL: {rapl.reason}"
    if device_kind == "cuda":
        from bench.nvml import Nvml

        nvml = Nvml(cuda_index)
        if not nvml.available:
            return f"NVML: {nvml.reason}"
        return None if nvml.energy_mj() is not None else "NVML: this GPU has no total-energy counter"
    return "a predicted device has nothing to measure"


__all__ = ["POWERCAP", "Rapl", "RaplSnapshot", "energy_unmeasurable"]
