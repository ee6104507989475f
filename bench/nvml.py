"""NVML telemetry (clocks, temperature, power, energy counter) where nvidia-ml-py and a driver exist.

Without them the suite says so once per process and goes on: the fields are `None`, never zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def _warn_once(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        log.warning("NVML unavailable (%s): clocks, power and energy will not be recorded", reason)


@dataclass(frozen=True)
class GpuTelemetry:
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    temperature_c: int | None
    power_w: float | None
    memory_used_mib: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Nvml:
    """A handle on one GPU through NVML; `available` is False (with `reason`) where there is none."""

    def __init__(self, cuda_index: int = 0):
        self.available = False
        self.reason = ""
        self._handle = None
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
            _warn_once(self.reason)
            return
        self._nv = pynvml
        try:
            pynvml.nvmlInit()
            self._handle = self._match_handle(cuda_index)
        except pynvml.NVMLError as err:
            self.reason = f"{type(err).__name__}: {err}"
            _warn_once(self.reason)
            return
        self.available = True

    def _match_handle(self, cuda_index: int):
        """NVML numbers all GPUs; CUDA only the visible ones. Match by UUID where torch exposes it."""
        nv = self._nv
        try:
            import torch

            uuid = str(torch.cuda.get_device_properties(cuda_index).uuid)
            for i in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                nv_uuid = nv.nvmlDeviceGetUUID(handle)
                nv_uuid = nv_uuid.decode() if isinstance(nv_uuid, bytes) else nv_uuid
                if nv_uuid.replace("GPU-", "") == uuid.replace("GPU-", ""):
                    return handle
        except (AttributeError, RuntimeError, AssertionError):
            pass
        return nv.nvmlDeviceGetHandleByIndex(cuda_index)

    def _try(self, fn, *args):
        try:
            return fn(self._handle, *args)
        except self._nv.NVMLError:
            return None

    def driver_version(self) -> str | None:
        if not self.available:
            return None
        try:
            v = self._nv.nvmlSystemGetDriverVersion()
        except self._nv.NVMLError:
            return None
        return v.decode() if isinstance(v, bytes) else v

    def snapshot(self) -> GpuTelemetry | None:
        if not self.available:
            return None
        nv = self._nv
        power = self._try(nv.nvmlDeviceGetPowerUsage)
        mem = self._try(nv.nvmlDeviceGetMemoryInfo)
        return GpuTelemetry(
            sm_clock_mhz=self._try(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
            mem_clock_mhz=self._try(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM),
            temperature_c=self._try(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU),
            power_w=power / 1000.0 if power is not None else None,
            memory_used_mib=mem.used / 2**20 if mem is not None else None,
        )

    def energy_mj(self) -> float | None:
        """Total energy since driver load, in millijoules (Volta and newer); None if unsupported."""
        if not self.available:
            return None
        value = self._try(self._nv.nvmlDeviceGetTotalEnergyConsumption)
        return float(value) if value is not None else None
