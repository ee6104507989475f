"""The main job, `tocsr run`: every stage that exists, in order, per device profile.

Like tocsr.cli, this module wires stages together, so it may import bench/search/reports (see
tests/test_layering.py). Stages not built yet are listed as such in the summary, never faked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench.measure import measure_workload
from bench.profile import load_profile
from bench.run import write_measurement
from bench.table import print_measurements
from bench.workloads import resolve_workload

PRESET_WORKLOADS = {"quick": "unet-tiny", "full": "unet-base"}

# The stages of the main job that are not implemented yet, with the issue that builds each.
PENDING_STAGES = (
    ("teacher training", "issue 3"),
    ("surrogate distillation", "issue 4"),
    ("per-device cost tables and search", "issue 5"),
    ("SR adaptation and one-step distillation", "issue 6"),
    ("evaluation against baselines and report", "issue 7"),
)


@dataclass(frozen=True)
class RunSummary:
    out_dir: Path
    measurements: dict[str, Path]
    pending: tuple[tuple[str, str], ...]
    wall_s: float


def run_main_job(profiles: list[str], preset: str, out_dir: Path) -> RunSummary:
    console = Console()
    t0 = time.perf_counter()
    if preset not in PRESET_WORKLOADS:
        from tocsr.errors import ConfigError

        raise ConfigError(f"--preset {preset!r} does not exist; available: {', '.join(PRESET_WORKLOADS)}")
    written: dict[str, Path] = {}
    rows = []
    for ref in profiles:
        profile = load_profile(ref)
        console.print(f"[bold]stage: bench[/bold] teacher backbone ({PRESET_WORKLOADS[preset]}) on {profile.name}")
        m = measure_workload(resolve_workload(PRESET_WORKLOADS[preset], profile), profile)
        path = write_measurement(out_dir / "bench" / f"{profile.name}.json", profile, m)
        written[profile.name] = path
        rows.append(m)
    print_measurements(rows, title="teacher backbone cost per device")
    for stage, issue in PENDING_STAGES:
        console.print(f"[yellow]not yet available[/yellow]: {stage} ({issue}); skipped, nothing faked")
    return RunSummary(out_dir, written, PENDING_STAGES, time.perf_counter() - t0)
