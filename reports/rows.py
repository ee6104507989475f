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
