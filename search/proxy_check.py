"""Does the search's fidelity proxy order candidates the way their samples do? (issue 22, step 2)

The search minimises a proxy: one prediction call per noised held-out latent against the teacher's
(`CandidateFidelity`). Here candidates spanning the proxy's range (from one replaced block to nearly
all) are also scored by what they generate (`SampleFidelity`: paired sample error and spectrum KID
against the teacher's samples from the same noise), and the Spearman rank correlation between the two
says whether minimising the proxy minimises what users care about.

Example:
    >>> check = check_proxy(proxy, samples, spanning_candidates(space, 24, seed=0))
    >>> check.spearman_paired, check.spearman_kid
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from tocsr.core.artifacts import FolderRecord
from tocsr.core.space import ArchSpec, SearchSpace
from tocsr.core.training import progress


class Proxy(Protocol):
    def evaluate(self, spec: ArchSpec) -> float: ...


def spanning_candidates(space: SearchSpace, n: int, seed: int) -> list[ArchSpec]:
    """`n` distinct candidates whose share of replaced slots runs evenly from low to high."""
    rng, specs, seen = random.Random(seed), [], set()
    attempts = 0
    while len(specs) < n and attempts < 50 * n:
        p = (len(specs) + 0.5) / n
        spec = space.sample_mixed(rng, replace_prob=p)
        attempts += 1
        if spec.key not in seen and spec.replaced():
            seen.add(spec.key)
            specs.append(spec)
    return specs


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


@dataclass(frozen=True)
class ProxyCheck(FolderRecord):
    FILE_NAME: ClassVar[str] = "proxy_check.json"
    KIND: ClassVar[str] = "tocsr.proxy_check"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "run `tocsr fidelity-check --out {folder}` again"

    candidates: tuple[dict[str, Any], ...]   # key, replaced, proxy, paired_error(_std), spectrum_kid(_std)
    # None where undefined (a constant column)
    spearman_paired: float | None             # proxy vs paired sample error
    spearman_kid: float | None                # proxy vs spectrum KID to the teacher's samples
    # The same over the candidates at or above the median proxy: where a search under a tight budget
    # chooses, a proxy must order close candidates, not only tell one replaced block from twenty.
    spearman_paired_upper: float | None
    spearman_kid_upper: float | None
    n_samples: int
    steps: int
    seed: int
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": [dict(c) for c in self.candidates], "spearman_paired": self.spearman_paired,
                "spearman_kid": self.spearman_kid, "spearman_paired_upper": self.spearman_paired_upper,
                "spearman_kid_upper": self.spearman_kid_upper, "n": len(self.candidates),
                "n_samples": self.n_samples, "steps": self.steps, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProxyCheck:
        return cls(tuple(d["candidates"]), d["spearman_paired"], d["spearman_kid"], d["spearman_paired_upper"],
                   d["spearman_kid_upper"], int(d["n_samples"]), int(d["steps"]), int(d["seed"]),
                   d.get("environment", {}))

    def describe(self) -> list[str]:
        return [f"{len(self.candidates)} candidates, {self.n_samples} samples each ({self.steps} DDIM steps, seed "
                f"{self.seed}), teacher's samples from the same noise as reference:",
                f"Spearman(proxy, paired sample error) = {_fmt(self.spearman_paired)}; "
                f"Spearman(proxy, spectrum KID) = {_fmt(self.spearman_kid)} (goal >= 0.8)",
                f"upper half by proxy ({self._upper_n()} candidates, where tight budgets choose): "
                f"{_fmt(self.spearman_paired_upper)} / {_fmt(self.spearman_kid_upper)}"]

    def _upper_n(self) -> int:
        return len(_upper(list(self.candidates)))


def check_proxy(proxy: Proxy, samples, specs: list[ArchSpec], seed: int = 0) -> ProxyCheck:
    """Score `specs` by the proxy and by their samples; the rank correlations between the two."""
    from scipy.stats import spearmanr

    rows = []
    with progress("fidelity-check", len(specs)) as bar:
        for spec in specs:
            s = samples.evaluate(spec)
            rows.append({"key": spec.key, "replaced": len(spec.replaced()), "proxy": proxy.evaluate(spec),
                         "paired_error": s.paired_error, "paired_error_std": s.paired_error_std,
                         "spectrum_kid": s.spectrum_kid, "spectrum_kid_std": s.spectrum_kid_std})
            bar.update(1)
    def rho(subset: list[dict], key: str) -> float | None:
        return _finite(float(spearmanr([r["proxy"] for r in subset], [r[key] for r in subset]).statistic))

    upper = _upper(rows)
    stored = tuple({k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return ProxyCheck(stored, rho(rows, "paired_error"), rho(rows, "spectrum_kid"), rho(upper, "paired_error"),
                      rho(upper, "spectrum_kid"), samples.n, samples.steps, seed)


def _upper(rows: list[dict]) -> list[dict]:
    median = float(np.median([r["proxy"] for r in rows]))
    return [r for r in rows if r["proxy"] >= median]
