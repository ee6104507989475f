"""Evaluate SR methods: quality on held-out photographs (once), cost on every device profile."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from bench.measure import measure_workload
from bench.profile import DeviceProfile, replace
from bench.workloads import Workload
from reports.metrics import MetricSuite
from reports.rows import ReportRow, is_tocsr_method
from search.selection import ShippedYardstick
from tocsr.core.data import Photo
from tocsr.core.provenance import environment
from tocsr.core.sr.evaluate import eval_pairs
from tocsr.core.training import progress


class LanczosSR(nn.Module):
    """PIL's Lanczos resampling as a module (CPU), so it is measured like every other method."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, lr01: torch.Tensor) -> torch.Tensor:
        out = []
        for img in lr01:
            arr = (img.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            pil = Image.fromarray(arr).resize((arr.shape[1] * self.scale, arr.shape[0] * self.scale), Image.LANCZOS)
            out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255)
        return torch.stack(out).to(lr01.device)


@dataclass
class SRMethod:
    name: str
    kind: str                   # interpolation | classical | one-step | multi-step | external
    module: nn.Module
    unit_range: bool            # True: module maps [0, 1] -> [0, 1]; False: [-1, 1] -> [-1, 1]
    arch_key: str = ""
    # What one inference runs, where it is less than `module` holds: a per-degradation student holds a
    # network per degradation but runs one, so params, MACs and latency are measured on that one.
    cost_module: nn.Module | None = None

    def sr(self, lr: torch.Tensor, degradation: str | None = None) -> torch.Tensor:
        """lr in [-1, 1] -> sr in [-1, 1]. `degradation` (what made lr) reaches only modules that take it
        (a per-degradation student, `takes_degradation`); every other method is blind."""
        told = (degradation,) if degradation is not None and getattr(self.module, "takes_degradation", False) else ()
        with torch.no_grad():
            if self.unit_range:
                return (self.module((lr + 1) / 2, *told).clamp(0, 1) * 2 - 1).float()
            return self.module(lr, *told).clamp(-1, 1).float()


def evaluate_quality(methods: list[SRMethod], photos: list[Photo], patch_px: int, scale: int,
                     kinds: tuple[str, ...] = ("bicubic", "realesrgan"), batch: int = 8) -> dict[str, dict[str, dict]]:
    """{method: {degradation: metrics}}, on the same fixed crops and degradation seeds for every method."""
    suite = MetricSuite.load()
    out: dict[str, dict[str, dict]] = {m.name: {} for m in methods}
    with progress("eval/quality", len(methods) * len(kinds)) as bar:
        for kind in kinds:
            hr, lr = eval_pairs(photos, patch_px, scale, kind)
            for m in methods:
                sr = torch.cat([m.sr(lr[i:i + batch], kind).cpu() for i in range(0, len(lr), batch)])
                out[m.name][kind] = suite.score(sr, hr, scale) | {"n_images": len(hr)}
                bar.update(1)
    return out


# Method kinds whose one call is many network calls (the multi-step SR teacher: chains x steps of the UNet),
# so tens of times any other method's. The profile's full timing (its repeats, a warm-up until stable, up to
# `max_retries` more attempts while the spread is above `max_cv`) took over three minutes of the main job for
# this one figure; it is timed with the fewest paired samples the rounds allow (two per round), the
# shortest warm-up and one attempt, and its row says so. Its spread is in the row like every other method's.
FEW_SAMPLES_KINDS = ("multi-step",)


def timing_profile(method: SRMethod, profile: DeviceProfile) -> DeviceProfile:
    """The profile `method`'s latency is measured under: `profile` itself, or for a FEW_SAMPLES_KINDS method
    the same profile with a short timing policy."""
    if method.kind not in FEW_SAMPLES_KINDS:
        return profile
    t = profile.timing
    # one call is hundreds of network calls, warm after the first few: the warm-up stops at its minimum
    short = {"repeats": max(3, 2 * t.paired_rounds), "max_retries": 0, "warmup_max_iters": t.warmup_min_iters}
    return replace(profile, timing={**profile.to_dict()["timing"], **short})


def evaluate_cost(method: SRMethod, profile: DeviceProfile, reference: Workload | None = None, node=None):
    """The method's cost on the profile's device: measured here, or on `node` (a bench.remote.RemoteDevice,
    the Ray node that has the device), under `timing_profile(method, profile)`."""
    profile = timing_profile(method, profile)
    side = profile.resolution.input_px
    x = torch.rand(profile.batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    x = x if method.unit_range else x * 2 - 1
    workload = Workload(method.name, method.cost_module or method.module, (x,), {})
    if node is not None:
        return node.measure_workload(workload, reference, profile)
    return measure_workload(workload, profile, reference=reference)


def report_rows(methods: list[SRMethod], quality: dict[str, dict[str, dict]], profiles: list[DeviceProfile],
                reference: Callable[[DeviceProfile], Workload] | None = None,
                nodes: Mapping[str, Any] | None = None,
                decision_speeds_ms: Mapping[str, float] | None = None,
                shipped: Callable[[DeviceProfile], Workload] | None = None,
                yardsticks: Mapping[str, ShippedYardstick] | None = None) -> list[ReportRow]:
    """One row per profile x method. With `reference` (a workload per profile, e.g. the teacher UNet), every
    latency is measured paired with it and the rows of one profile are put at one speed of the machine:
    ms = the method's ratio to the reference x the reference's milliseconds at that speed, so a machine that
    slowed down while some methods were measured does not reorder them. That speed is the profile's entry in
    `decision_speeds_ms` (the reference's median when the search chose the profile's model, the speed its latency
    budget and its measured latency are stated at), else the reference's median over this profile's rows.
    `nodes` maps a profile's name to the bench.remote.RemoteDevice its device is measured on (its rows carry
    that node's provenance). A profile in `yardsticks` (its search judged candidates beside the teacher as shipped)
    has its TOC-SR rows timed once more, paired with `shipped(profile)`, and judged as the search judged them:
    `latency_share_of_shipped`, comparable with the search's chosen share and the budget's."""
    here = environment()
    rows = []
    for profile in profiles:
        node = (nodes or {}).get(profile.name)
        env = node.provenance if node is not None else here
        ref = reference(profile) if reference is not None and profile.is_measured else None
        measured = [(m, evaluate_cost(m, profile, ref, node)) for m in methods]
        reference_medians = [meas.paired.reference_ms for _, meas in measured if meas.paired is not None]
        measured_speed_ms = float(np.median(reference_medians)) if reference_medians else None
        # A shared machine can run the same reference far slower in the eval stage than when the search chose minutes
        # before (reports/evidence/latency-agreement/): stated at the eval's speed, the chosen pipeline's row then
        # disagrees with the search's figure and its budget by as much. The search's speed puts a run in one frame.
        decision_ms = (decision_speeds_ms or {}).get(profile.name)
        speed_ms = decision_ms if decision_ms is not None and measured_speed_ms is not None else measured_speed_ms
        at = (f"ms at the search's decision speed, where it takes {speed_ms:.3f} ms (the speed this device's budget "
              f"and chosen latency are stated at); in these measurements it took {measured_speed_ms:.3f} ms"
              if decision_ms is not None and measured_speed_ms is not None else
              f"ms at one speed, where it takes {speed_ms:.3f} ms (its median over this profile's rows)"
              if speed_ms is not None else "")
        yardstick = (yardsticks or {}).get(profile.name) if shipped is not None and profile.is_measured else None
        ours = [m for m in methods if yardstick is not None and is_tocsr_method(m.name, profile.name)]
        shipped_ref = shipped(profile) if ours else None
        beside = {m.name: evaluate_cost(m, profile, shipped_ref, node) for m in ours}
        for m, meas in measured:
            lat, paired = meas.latency, meas.paired
            judged = beside.get(m.name)
            share = yardstick.share(judged.paired) if yardstick and judged and judged.paired is not None else None
            if paired is not None and speed_ms is not None:
                median, p90 = paired.ms_at(50, speed_ms), paired.ms_at(profile.timing.percentile, speed_ms)
                iqr, cv = (paired.ratio_at(75) - paired.ratio_at(25)) * speed_ms, paired.relative_cv
            elif lat is not None:
                median, p90, iqr, cv = lat.median_ms, lat.p90_ms, lat.iqr_ms, lat.cv
            else:
                median = meas.prediction.latency_ms if meas.prediction else None
                p90 = iqr = cv = None
            rows.append(ReportRow(
                device_profile=profile.name, device_name=meas.device_name, method=m.name, kind=m.kind,
                arch_key=m.arch_key or m.name, params_m=meas.params / 1e6,    # what one call runs (bench.counting.count_params)
                gmacs=meas.macs.gmacs if meas.macs else None,
                latency_median_ms=median, latency_p90_ms=p90, latency_iqr_ms=iqr, latency_cv=cv,
                peak_memory_mib=meas.peak_memory_mib, energy_mj=meas.energy_mj_per_inference,
                measurement_status=meas.status, quality=quality[m.name],
                latency_vs_reference=paired.ratio if paired is not None else None,
                latency_share_of_shipped=share,
                provenance={"commit": env["git"]["sha"], "profile_sha256": profile.sha256,
                            "torch": env["packages"]["torch"], "cpu": env["cpu_model"], "measured_utc": env["created_utc"],
                            **({"host": env["hostname"], "ray_node_id": env["ray_node_id"]} if node is not None else {}),
                            "error": meas.error,
                            "latency": ("predicted" if meas.status == "predicted" else
                                        f"paired with {ref.name}; {at}" if paired is not None else
                                        "measured alone"),
                            "latency_raw_median_ms": lat.median_ms if lat is not None else None,
                            "latency_speed": ({"reference_ms": speed_ms, "reference_ms_measured": measured_speed_ms,
                                               "from": "search decision" if decision_ms is not None else "these rows"}
                                              if paired is not None else None),
                            "latency_samples": len(lat.samples_ms) if lat is not None else None,
                            "effective_cores": meas.extra.get("effective_cores"),
                            **({"beside_teacher_as_shipped": {
                                "yardstick": yardstick.to_dict(), "share": share,
                                "ms_at_decision": share * yardstick.teacher_at_ms,
                                "paired": judged.paired.summary(),   # its ratios are to the teacher as shipped
                                "effective_cores": judged.extra.get("effective_cores"),
                                "status": judged.status}} if share is not None else {}),
                            **({"timing": "few samples, one attempt: one call is many network calls "
                                          "(reports.evaluate.FEW_SAMPLES_KINDS)"}
                               if m.kind in FEW_SAMPLES_KINDS and lat is not None else {})}))
    return rows
