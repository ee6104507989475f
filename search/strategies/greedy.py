"""Greedy removal in the spirit of SnapFusion's robustness analysis: starting from the teacher,
repeatedly take the single-slot change that costs the least fidelity per millisecond saved.

Fidelity cost of a move is estimated from the per-block distillation errors (the FidelityTable);
each accepted move's whole candidate is then evaluated (one evaluation per move). Device
formulation: stop at the first candidate meeting every budget. Paper formulation: keep taking moves
while the evaluated fidelity stays within ε_fid; a move that breaks it is undone and the next one
tried.
"""

from __future__ import annotations

from search.problem import SearchProblem
from search.strategies.base import register_strategy
from search.trials import Trial
from tocsr.core.space import TEACHER, ArchSpec


@register_strategy("greedy")
class GreedyRemoval:
    name = "greedy"

    def __init__(self, problem: SearchProblem, seed: int = 0, block_error=None):
        if block_error is None:
            raise ValueError("greedy needs block_error(slot, choice): the FidelityTable's per-block errors")
        self.problem, self.block_error = problem, block_error
        self.current = problem.space.all_teacher()
        self.banned: set[tuple[str, str]] = set()
        self.done, self.pending, self.seen = False, None, set()

    def _latency(self, spec: ArchSpec) -> float:
        return self.problem.costs(spec).latency_ms

    def _next_move(self) -> ArchSpec | None:
        base_lat = self._latency(self.current)
        best, best_score = None, float("inf")
        for slot in self.problem.space.slots:
            cur = self.current.choice(slot.name)
            cur_err = 0.0 if cur == TEACHER else self.block_error(slot.name, cur)
            for choice in slot.choices:
                if choice == cur or (slot.name, choice) in self.banned:
                    continue
                cand = self.current.with_choice(slot.name, choice)
                saved = base_lat - self._latency(cand)
                if saved <= 0 or cand.key in self.seen:
                    continue
                lost = (0.0 if choice == TEACHER else self.block_error(slot.name, choice)) - cur_err
                score = max(lost, 0.0) / saved
                if score < best_score:
                    best, best_score = cand, score
        return best

    def ask(self, n: int) -> list[ArchSpec]:
        if self.done or self.pending is not None:
            return []
        move = self._next_move()
        if move is None:
            self.done = True
            return []
        self.pending = move
        return [move]

    def tell(self, trials: list[Trial]) -> None:
        for t in trials:
            self.seen.add(t.key)
            if self.pending is None or t.key != self.pending.key:
                continue
            spec, self.pending = self.pending, None
            if self.problem.formulation == "device":
                self.current = spec
                self.done = self.problem.cheap_feasible(spec)
            elif t.feasible:
                self.current = spec
            else:
                changed = [(s, c) for (s, c), (_, c0) in zip(spec.items(), self.current.items(), strict=True) if c != c0]
                self.banned.update(changed)
