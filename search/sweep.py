"""The paper's table on our teacher (issue 22, step 4): the paper formulation swept over ε.

Each point minimises complexity (params, GMACs or measured latency) subject to the search's fidelity error
<= ε. The ε values are fixed before anything is searched: by default fractions of the fidelity error of the
cheapest candidate in the cost table (every slot at its cheapest choice), so the same list means the same on
any teacher, and nobody picks ε after seeing where the choices land. Every choice is reported with its
reductions against the teacher and with what it generates (paired sample error and spectrum KID against the
teacher's samples from the same noise, `tocsr.core.distill.sample_fidelity`), beside the paper's point:
6.6x fewer parameters and 2.8x fewer GMACs than the expanded model at preserved generative fidelity.

Example:
    >>> sweep = EpsSweep.load("runs/sweep")
    >>> print("\\n".join(sweep.describe()))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from tocsr.core.artifacts import FolderRecord
from tocsr.core.errors import ConfigError

PAPER_PARAMS_X = 6.6          # the paper's compact backbone: fewer parameters than the expanded model
PAPER_GMACS_X = 2.8           # and fewer GMACs
DEFAULT_EPS_REL = (0.02, 0.05, 0.1, 0.2, 0.4)


def eps_values(eps: tuple[float, ...], relative: bool, reference: float) -> list[float]:
    """The absolute ε of a sweep: `eps` as given, or as fractions of `reference` (the cheapest candidate's
    fidelity error)."""
    if len(eps) < 1 or any(e <= 0 for e in eps):
        raise ConfigError(f"--eps {list(eps)}: give one or more positive values")
    if relative and not reference > 0:
        raise ConfigError(f"the cheapest candidate's fidelity error is {reference}; relative ε needs it > 0: "
                          "give absolute values with --absolute")
    return sorted(e * reference if relative else e for e in eps)


COMPLEXITY_FIELD = {"params": "params_m", "gmacs": "gmacs", "latency": "latency_ms"}


def carry_forward(points: list[dict[str, Any]], complexity: str) -> list[dict[str, Any]]:
    """Points in ascending ε. A looser ε admits every candidate a tighter one admitted, so when an earlier point's
    choice meets this ε (fidelity <= ε) at lower complexity than this ε's own search found, it is the better
    answer: kept, marked `carried_from` (the earlier point's index), this search's own choice kept as
    `searched_key`. What the searches evaluated is shared across ε; how often a point is carried says how far
    a single search at this evaluation cap is from converged."""
    field_name = COMPLEXITY_FIELD[complexity]
    out: list[dict[str, Any]] = []
    for i, p in enumerate(points):
        best = {**p, "searched_key": p["key"], "carried_from": None}
        for j, q in enumerate(points[:i]):
            if q[field_name] is not None and best[field_name] is not None and q["fidelity"] <= p["eps_fid"] \
                    and q[field_name] < best[field_name]:
                best = {**q, "eps_fid": p["eps_fid"], "searched_key": p["key"], "carried_from": j,
                        "folder": p["folder"]}
        out.append(best)
    return out


@dataclass(frozen=True)
class EpsSweep(FolderRecord):
    FILE_NAME: ClassVar[str] = "sweep.json"
    KIND: ClassVar[str] = "tocsr.eps_sweep"
    SCHEMA_VERSION: ClassVar[int] = 3          # 2: names the fidelity proxy; 3: points carried forward
    REBUILD: ClassVar[str] = "run `tocsr sweep --out {folder}` again"

    profile: str
    complexity: str                        # params | gmacs | latency: what each point minimises
    method: str
    evaluations: int                       # per point
    eps_relative: tuple[float, ...] | None  # the fractions given, when ε was relative
    reference_fidelity: float              # the cheapest candidate's fidelity error (what relative ε scale)
    reference_key: str
    # eps_fid, key, fidelity, params_m, gmacs, latency_ms, params_x, gmacs_x, latency_x, replaced,
    # paired_error(_std), spectrum_kid(_std), folder, searched_key, carried_from (carry_forward)
    points: tuple[dict[str, Any], ...]
    teacher: dict[str, float]              # params_m, gmacs, latency_ms
    n_samples: int
    steps: int
    seed: int
    proxy: str                              # the fidelity proxy ε bounds (tocsr.core.distill.config.PROXIES)
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "complexity": self.complexity, "method": self.method, "proxy": self.proxy,
                "evaluations": self.evaluations,
                "eps_relative": None if self.eps_relative is None else list(self.eps_relative),
                "reference_fidelity": self.reference_fidelity, "reference_key": self.reference_key,
                "points": [dict(p) for p in self.points], "teacher": dict(self.teacher),
                "n_samples": self.n_samples, "steps": self.steps, "seed": self.seed,
                "paper": {"params_x": PAPER_PARAMS_X, "gmacs_x": PAPER_GMACS_X}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpsSweep:
        rel = d["eps_relative"]
        return cls(d["profile"], d["complexity"], d["method"], int(d["evaluations"]),
                   None if rel is None else tuple(rel), float(d["reference_fidelity"]), d["reference_key"],
                   tuple(d["points"]), d["teacher"], int(d["n_samples"]), int(d["steps"]), int(d["seed"]),
                   d["proxy"], d.get("environment", {}))

    def table(self) -> list[str]:
        """A markdown table: one row per ε."""
        rows = ["| ε (x cheapest's error) | chosen | fidelity error | params M (fewer) | GMACs (fewer) | "
                "p90 ms (faster) | paired sample error | spectrum KID vs teacher |",
                "|---|---|---|---|---|---|---|---|"]
        for p in self.points:
            rel = f" ({p['eps_fid'] / self.reference_fidelity:.3g}x)" if self.reference_fidelity > 0 else ""
            carried = f" (ε #{p['carried_from']}'s)" if p.get("carried_from") is not None else ""
            rows.append(f"| {p['eps_fid']:.4g}{rel} | {p['key']}{carried} | {p['fidelity']:.4g} | {p['params_m']:.3f} "
                        f"({p['params_x']:.2f}x) | {_num(p['gmacs'])} ({_num(p['gmacs_x'])}x) | "
                        f"{p['latency_ms']:.2f} ({p['latency_x']:.2f}x) | "
                        f"{p['paired_error']:.4f} ± {p['paired_error_std']:.4f} | "
                        f"{p['spectrum_kid']:.2f} ± {p['spectrum_kid_std']:.2f} |")
        return rows

    def describe(self) -> list[str]:
        t = self.teacher
        return [f"paper formulation on {self.profile}: minimise {self.complexity} s.t. fidelity error ({self.proxy} "
                "proxy) <= ε "
                f"({self.method}, {self.evaluations} evaluations per ε); ε fixed before the sweep"
                + (f" as {list(self.eps_relative)} x the cheapest candidate's error {self.reference_fidelity:.4g}"
                   if self.eps_relative else ""),
                f"teacher: {t['params_m']:.3f} M params, {_num(t['gmacs'])} GMACs, p90 {t['latency_ms']:.2f} ms "
                f"(measured); samples: {self.n_samples} per candidate, {self.steps} DDIM steps, seed {self.seed}, "
                "± = spread over samples / KID subsets",
                *self.table(),
                "(ε #j's): the choice of a tighter ε, which also meets this one at lower complexity than this ε's "
                "own search found (search.sweep.carry_forward); that search's choice is `searched_key` in sweep.json",
                f"paper: {PAPER_PARAMS_X}x fewer parameters, {PAPER_GMACS_X}x fewer GMACs at preserved fidelity"]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
