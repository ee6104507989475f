"""`tocsr bench`: resolve, measure, write the versioned JSON, optionally in a fresh subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.measure import MEASUREMENT_KIND, MEASUREMENT_SCHEMA_VERSION, Measurement, measure_workload
from bench.profile import DeviceProfile, load_profile, resolve_profile_path
from bench.workloads import resolve_workload
from tocsr.core.artifacts import write_artifact
from tocsr.core.errors import TocsrError
from tocsr.core.provenance import environment


def write_measurement(out: Path, profile: DeviceProfile, measurement: Measurement) -> Path:
    env = environment({"measured_device": measurement.device_name, "driver_version": measurement.driver_version})
    return write_artifact(out, MEASUREMENT_KIND, MEASUREMENT_SCHEMA_VERSION,
                          {"profile": profile.to_dict(), "measurement": measurement.to_dict()}, environment=env)


def bench_in_process(profile_ref: str, model_ref: str, out: Path, thop_check: bool) -> Measurement:
    profile = load_profile(profile_ref)
    measurement = measure_workload(resolve_workload(model_ref, profile), profile, thop_check=thop_check)
    write_measurement(out, profile, measurement)
    return measurement


def bench_isolated(profile_ref: str, model_ref: str, out: Path, thop_check: bool) -> int:
    """Re-run the same command in a fresh interpreter: no allocator, cache or JIT state carries over."""
    cmd = [sys.executable, "-m", "tocsr", "bench", "--profile", str(resolve_profile_path(profile_ref)),
           "--model", model_ref, "--out", str(out), "--in-process"]
    if thop_check:
        cmd.append("--thop")
    proc = subprocess.run(cmd, check=False)
    if proc.returncode not in (0, 1):
        raise TocsrError(f"isolated measurement subprocess exited with code {proc.returncode}")
    return proc.returncode
