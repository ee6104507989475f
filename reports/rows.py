"""ReportRow: one flat row per device x method x architecture, the unit every report is built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReportRow:
    device_profile: str
    device_name: str
    method: str
    kind: str                                   # interpolation | classical | one-step | multi-step | external
    arch_key: str                               # ArchSpec key for TOC-SR models, the method name otherwise
    params_m: float
    gmacs: float | None
    latency_median_ms: float | None
    latency_p90_ms: float | None
    latency_iqr_ms: float | None
    latency_cv: float | None
    peak_memory_mib: float | None
    energy_mj: float | None
    measurement_status: str                     # ok | unstable | error | predicted
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)   # degradation -> metric -> value or {"unavailable": why}
    provenance: dict[str, Any] = field(default_factory=dict)
    latency_vs_reference: float | None = None   # median latency / the reference workload's, measured beside it
    # A device whose search judged candidates beside the teacher as shipped (search.selection.ShippedYardstick): its
    # TOC-SR row's latency at the profile's percentile as a share of the teacher as shipped, timed paired with it,
    # what the device's `latency_vs_teacher` budget bounds. None for every other row.
    latency_share_of_shipped: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReportRow:
        return cls(**d)

    def metric(self, degradation: str, name: str) -> float | None:
        v = self.quality.get(degradation, {}).get(name)
        return v if isinstance(v, (int, float)) else None


def flat(rows: list[ReportRow]) -> list[dict[str, Any]]:
    """Rows with quality spread into columns, for CSV."""
    out = []
    for r in rows:
        d = {k: v for k, v in r.to_dict().items() if k not in ("quality", "provenance")}
        for deg, metrics in r.quality.items():
            for name, v in metrics.items():
                d[f"{deg}.{name}"] = v if isinstance(v, (int, float)) else "unavailable"
        d["commit"] = r.provenance.get("commit")
        out.append(d)
    return out


TOCSR_METHOD = "tocsr-onestep"


def tocsr_method_name(profile_name: str, variant: str = "") -> str:
    """The name a device's TOC-SR student goes by in every table and row: "tocsr-onestep (cpu-2core)", with a
    variant after a comma ("tocsr-onestep (cpu-2core, routed)")."""
    return f"{TOCSR_METHOD} ({profile_name}{f', {variant}' if variant else ''})"


def is_tocsr_method(name: str, profile_name: str) -> bool:
    """Whether `name` is the TOC-SR student of `profile_name`, with or without a variant. An exact match on the
    profile: a prefix would read cpu-2core-tight's student as cpu-2core's."""
    return name == tocsr_method_name(profile_name) or name.startswith(f"{TOCSR_METHOD} ({profile_name}, ")


def tocsr_row(rows: list[ReportRow], profile_name: str) -> ReportRow | None:
    """The report row of a device's TOC-SR student, as trained and deployed; None where the eval stage wrote none."""
    return next((r for r in rows if r.device_profile == profile_name and is_tocsr_method(r.method, profile_name)),
                None)
