"""Discrete hill climbing of a score over the cheaply-feasible candidates.

BO's acquisition is only as good as the candidates it is maximised over. A random pool of ~1500
candidates from a space of ~10^19 (28 slots x 5 choices here) rarely holds the acquisition's
maximiser: the good candidates sit on the latency boundary, where a random draw almost never lands. Climbing from the best
points (the way BoTorch's `optimize_acqf_discrete_local_search` and CASMOPOLITAN do) finds it.

Two kinds of move, both kept inside every cheap budget:
  * one slot changes its choice (walks away from or towards a budget);
  * two slots change at once (a sampled subset), e.g. one more expensive and one cheaper: how a
    candidate moves *along* a tight latency budget that no single move can keep.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from search.problem import SearchProblem
from tocsr.core.space import ArchSpec

Score = Callable[[list[ArchSpec]], torch.Tensor]   # higher is better, one value per candidate


def neighbours(problem: SearchProblem, spec: ArchSpec, rng: random.Random, pairs: int) -> list[ArchSpec]:
    """Every feasible one-slot change of `spec`, and up to `pairs` sampled feasible two-slot changes."""
    base = dict(spec.items())
    singles = [(slot.name, c) for slot in problem.space.slots for c in slot.choices if c != base[slot.name]]
    out: dict[str, ArchSpec] = {}
    for slot, c in singles:
        cand = spec.with_choice(slot, c)
        if problem.cheap_feasible(cand):
            out[cand.key] = cand
    for _ in range(pairs):
        (s1, c1), (s2, c2) = rng.sample(singles, 2)
        if s1 == s2:
            continue
        cand = spec.with_choice(s1, c1).with_choice(s2, c2)
        if cand.key not in out and problem.cheap_feasible(cand):
            out[cand.key] = cand
    return list(out.values())


def hill_climb(problem: SearchProblem, starts: Sequence[ArchSpec], score: Score, rng: random.Random,
               pairs: int = 300, max_steps: int = 30) -> list[ArchSpec]:
    """Steepest-ascent climb of `score` from each start; returns the distinct local optima reached
    (each is a candidate no sampled move improves)."""
    optima: dict[str, ArchSpec] = {}
    for start in starts:
        current, value = start, float(score([start])[0])
        for _ in range(max_steps):
            nbrs = neighbours(problem, current, rng, pairs)
            if not nbrs:
                break
            values = score(nbrs)
            i = int(values.argmax())
            if float(values[i]) <= value:
                break
            current, value = nbrs[i], float(values[i])
        optima[current.key] = current
    return list(optima.values())
