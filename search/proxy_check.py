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


@dataclass(frozen=True)
class ProxyCheck(FolderRecord):
    FILE_NAME: ClassVar[str] = "proxy_check.json"
    KIND: ClassVar[str] = "tocsr.proxy_check"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "run `tocsr fidelity-check --out {folder}` again"

    candidates: tuple[dict[str, Any], ...]   # key, replaced, proxy, paired_error(_std), spectrum_kid(_std)
    spearman_paired: float                    # proxy vs paired sample error
    spearman_kid: float                       # proxy vs spectrum KID to the teacher's samples
    n_samples: int
    steps: int
    seed: int
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": [dict(c) for c in self.candidates], "spearman_paired": self.spearman_paired,
                "spearman_kid": self.spearman_kid, "n": len(self.candidates), "n_samples": self.n_samples,
                "steps": self.steps, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProxyCheck:
        return cls(tuple(d["candidates"]), float(d["spearman_paired"]), float(d["spearman_kid"]), int(d["n_samples"]),
                   int(d["steps"]), int(d["seed"]), d.get("environment", {}))

    def describe(self) -> list[str]:
        return [f"{len(self.candidates)} candidates, {self.n_samples} samples each ({self.steps} DDIM steps, seed "
                f"{self.seed}), teacher's samples from the same noise as reference:",
                f"Spearman(proxy, paired sample error) = {self.spearman_paired:.3f}; "
                f"Spearman(proxy, spectrum KID) = {self.spearman_kid:.3f} (goal >= 0.8)"]


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
    proxies = [r["proxy"] for r in rows]
    rho_paired = float(spearmanr(proxies, [r["paired_error"] for r in rows]).statistic)
    rho_kid = float(spearmanr(proxies, [r["spectrum_kid"] for r in rows]).statistic)
    stored = tuple({k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return ProxyCheck(stored, rho_paired, rho_kid, samples.n, samples.steps, seed)
