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


def _rho(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    return _finite(float(spearmanr(a, b).statistic))


@dataclass(frozen=True)
class ProxyCheck(FolderRecord):
    """Rank agreement of each proxy with the sample-level measures, and the measures' own ceiling.

    `agreement[proxy]` holds Spearman(proxy, paired sample error) and Spearman(proxy, spectrum KID) over all
    candidates and over the upper half by that proxy (where a search under a tight budget chooses, a proxy
    must order close candidates, not only tell one replaced block from twenty). `ceiling` is the same
    measures drawn again from independent noise, ranked against the first draw: no proxy can agree with a
    sample measure better than the measure agrees with itself, so a low ceiling in the upper half says the
    reference, not the proxy, needs more samples. None where undefined (a constant column).
    """

    FILE_NAME: ClassVar[str] = "proxy_check.json"
    KIND: ClassVar[str] = "tocsr.proxy_check"
    SCHEMA_VERSION: ClassVar[int] = 2
    REBUILD: ClassVar[str] = "run `tocsr fidelity-check --out {folder}` again"

    proxies: tuple[str, ...]
    candidates: tuple[dict[str, Any], ...]      # key, replaced, proxy:<name>, paired_error(_std), spectrum_kid(_std)
    agreement: dict[str, dict[str, float | None]]   # proxy -> paired, kid, paired_upper, kid_upper
    ceiling: dict[str, dict[str, float | None]]     # proxy (whose upper half) -> paired, kid, paired_upper, kid_upper
    proxy_seconds: dict[str, float]             # mean wall-clock seconds per evaluation
    n_samples: int
    steps: int
    seed: int
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"proxies": list(self.proxies), "candidates": [dict(c) for c in self.candidates],
                "agreement": self.agreement, "ceiling": self.ceiling, "proxy_seconds": self.proxy_seconds,
                "n": len(self.candidates), "n_samples": self.n_samples, "steps": self.steps, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProxyCheck:
        return cls(tuple(d["proxies"]), tuple(d["candidates"]), d["agreement"], d["ceiling"], d["proxy_seconds"],
                   int(d["n_samples"]), int(d["steps"]), int(d["seed"]), d.get("environment", {}))

    def describe(self) -> list[str]:
        upper_n = len(self.candidates) - len(self.candidates) // 2
        lines = [f"{len(self.candidates)} candidates, {self.n_samples} samples each ({self.steps} DDIM steps, seed "
                 f"{self.seed}), teacher's samples from the same noise as reference; Spearman (goal >= 0.8), all "
                 f"candidates / upper half by the proxy (~{upper_n}, where tight budgets choose):",
                 f"{'proxy':<30} {'s/eval':>7} {'vs paired sample error':>24} {'vs spectrum KID':>20}"]
        for name in self.proxies:
            a = self.agreement[name]
            lines.append(f"{name:<30} {self.proxy_seconds[name]:>7.2f} "
                         f"{_fmt(a['paired']) + ' / ' + _fmt(a['paired_upper']):>24} "
                         f"{_fmt(a['kid']) + ' / ' + _fmt(a['kid_upper']):>20}")
        for name, c in self.ceiling.items():
            label = f"ceiling ({name})"
            lines.append(f"{label:<30} {'':>7} {_fmt(c['paired']) + ' / ' + _fmt(c['paired_upper']):>24} "
                         f"{_fmt(c['kid']) + ' / ' + _fmt(c['kid_upper']):>20}")
        if self.ceiling:
            lines.append("ceiling: the sample measures from independent noise against themselves, over the same "
                         "candidates; no proxy can rank better than that")
        return lines


def check_proxy(proxies: dict[str, Proxy], samples, specs: list[ArchSpec], seed: int = 0,
                repeat=None) -> ProxyCheck:
    """Score `specs` by each proxy and by their samples; the rank correlations between the two. `repeat` (a
    second sample scorer on independent noise) gives the ceiling."""
    import time

    rows, seconds = [], dict.fromkeys(proxies, 0.0)
    with progress("fidelity-check", len(specs)) as bar:
        for spec in specs:
            s = samples.evaluate(spec)
            row = {"key": spec.key, "replaced": len(spec.replaced()),
                   "paired_error": s.paired_error, "paired_error_std": s.paired_error_std,
                   "spectrum_kid": s.spectrum_kid, "spectrum_kid_std": s.spectrum_kid_std}
            for name, proxy in proxies.items():
                t0 = time.perf_counter()
                row[f"proxy:{name}"] = proxy.evaluate(spec)
                seconds[name] += time.perf_counter() - t0
            if repeat is not None:
                r = repeat.evaluate(spec)
                row.update(paired_error_repeat=r.paired_error, spectrum_kid_repeat=r.spectrum_kid)
            rows.append(row)
            bar.update(1)

    def agree(subset: list[dict], x: str) -> dict[str, float | None]:
        return {"paired": _rho([r[x] for r in subset], [r["paired_error"] for r in subset]),
                "kid": _rho([r[x] for r in subset], [r["spectrum_kid"] for r in subset])}

    agreement, ceiling = {}, {}
    for name in proxies:
        upper = _upper(rows, f"proxy:{name}")
        agreement[name] = {**agree(rows, f"proxy:{name}"),
                           **{f"{k}_upper": v for k, v in agree(upper, f"proxy:{name}").items()}}
        if repeat is not None:
            def own(subset: list[dict]) -> dict[str, float | None]:
                return {"paired": _rho([r["paired_error_repeat"] for r in subset], [r["paired_error"] for r in subset]),
                        "kid": _rho([r["spectrum_kid_repeat"] for r in subset], [r["spectrum_kid"] for r in subset])}
            ceiling[name] = {**own(rows), **{f"{k}_upper": v for k, v in own(upper).items()}}
    stored = tuple({k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return ProxyCheck(tuple(proxies), stored, agreement, ceiling,
                      {k: v / max(1, len(specs)) for k, v in seconds.items()}, samples.n, samples.steps, seed)


def _upper(rows: list[dict], key: str) -> list[dict]:
    median = float(np.median([r[key] for r in rows]))
    return [r for r in rows if r[key] >= median]
