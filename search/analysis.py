"""Reading a search's trials: the Pareto front, convergence curves, evaluations to a target, random-search bounds."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.trials import Trial


def pareto_front(trials: Sequence[Trial], x: str = "latency_ms") -> list[Trial]:
    """Non-dominated evaluated trials, minimising fidelity error and cost `x` (sorted by cost)."""
    pts = sorted((t for t in trials if t.fidelity is not None), key=lambda t: (t.costs[x], t.fidelity))
    front, best = [], float("inf")
    for t in pts:
        if t.fidelity < best:
            front.append(t)
            best = t.fidelity
    return front


def convergence(trials: Sequence[Trial]) -> list[float]:
    """Best feasible objective after each evaluation (inf before the first feasible one)."""
    out, best = [], float("inf")
    for t in sorted(trials, key=lambda t: t.index):
        if t.feasible and t.objective is not None:
            best = min(best, t.objective)
        out.append(best)
    return out


def evaluations_to_reach(curve: Sequence[float], target: float) -> int | None:
    for i, v in enumerate(curve):
        if v <= target:
            return i + 1
    return None


def median_evaluations(reach: Sequence[int | None]) -> float | None:
    """Median over seeds of evaluations-to-target, a seed that never got there counting as infinitely
    many: finite when at least half the seeds reached the target, else None."""
    if not reach:
        return None
    med = float(np.median([np.inf if r is None else r for r in reach]))
    return med if np.isfinite(med) else None


def random_search_needs(objectives: Sequence[float], target: float, confidence: float = 0.95) -> dict:
    """How many evaluations random search needs to reach `target`, judged from a sample of its draws.

    Random search's evaluations-to-target are geometric in p = P(a draw is <= target). With `hits` of
    `draws` at or below the target, Clopper-Pearson bounds p <= p_upper at `confidence`, so random's
    median evaluations-to-target are at least median_geometric(p_upper) = ceil(ln 2 / -ln(1 - p_upper)).
    This turns "no random run got there" into a number a BO run can be compared with.
    """
    from scipy.stats import beta

    draws = len(objectives)
    if draws == 0:
        raise ValueError("random_search_needs needs at least one random draw")
    hits = sum(1 for v in objectives if v <= target)
    p_upper = 1.0 if hits == draws else float(beta.ppf(confidence, hits + 1, draws - hits))
    median_lower = 1 if p_upper >= 1.0 else int(np.ceil(np.log(2) / -np.log1p(-p_upper)))
    return {"draws": draws, "hits": hits, "confidence": confidence, "p_upper": p_upper,
            "median_evaluations_lower_bound": median_lower}


def plot_convergence(curves: dict[str, list[list[float]]], path: str | Path, best_known: float | None = None,
                     title: str = "", ylabel: str = "best feasible fidelity error") -> Path:
    """Median over seeds with the interquartile band, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for method, runs in sorted(curves.items()):
        n = min(len(r) for r in runs)
        arr = np.array([r[:n] for r in runs], dtype=float)
        arr[~np.isfinite(arr)] = np.nan
        x = np.arange(1, n + 1)
        with warnings.catch_warnings():     # a curve is NaN until its first feasible trial: expected
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(arr, axis=0)
            low, high = np.nanpercentile(arr, 25, axis=0), np.nanpercentile(arr, 75, axis=0)
        ax.plot(x, med, label=f"{method} (median of {len(runs)})")
        if len(runs) > 1:
            ax.fill_between(x, low, high, alpha=0.2)
    if best_known is not None:
        ax.axhline(best_known, color="k", ls=":", lw=1, label="best known")
        ax.axhline(best_known * 1.02, color="k", ls="--", lw=0.8, label="within 2% of best known")
    ax.set_yscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
