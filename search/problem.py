"""The search problem: what is minimised, under which ε-constraints, with which cost and fidelity.

Two formulations, both ε-constraint:
  * "device":  minimise fidelity error  s.t. latency <= ε_lat, peak memory <= ε_mem (+ optional
               params / GMACs budgets) from the device profile. All constraints come from the cost
               model (cheap), so they are applied analytically before any evaluation.
  * "paper":   minimise complexity (params, GMACs or predicted latency) s.t. fidelity <= ε_fid. The
               constraint is the expensive quantity; the objective is known in closed form.
Constraint slack is value / budget - 1: <= 0 is feasible (BoTorch's convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec, SearchSpace


class CostModel(Protocol):
    def predict_latency_at_ms(self, spec: ArchSpec) -> float: ...
    def predict_memory_mib(self, spec: ArchSpec) -> float: ...
    def params(self, spec: ArchSpec) -> int: ...
    def macs(self, spec: ArchSpec) -> int: ...


class FidelityEvaluator(Protocol):
    def evaluate(self, spec: ArchSpec) -> float: ...


Formulation = Literal["device", "paper"]
Complexity = Literal["params", "gmacs", "latency"]


@dataclass(frozen=True)
class Constraints:
    """The ε of the search. None = unconstrained."""

    latency_ms: float | None = None
    peak_memory_mib: float | None = None
    params_m: float | None = None
    gmacs: float | None = None
    fidelity: float | None = None          # the paper formulation's ε_fid
    energy_mj: float | None = None         # per call; judged on measurements only (no cost model predicts it)

    @classmethod
    def from_profile(cls, profile, teacher_ms: float | None, fidelity: float | None = None) -> Constraints:
        """The profile's budgets, latency in ms where the teacher takes `teacher_ms` (at the percentile), less the
        profile's guard (`DeviceProfile.latency_target_ms`): what a chosen model must meet."""
        b = profile.budgets
        return cls(profile.latency_target_ms(teacher_ms), b.peak_memory_mib, b.params_m, b.gmacs, fidelity, b.energy_mj)


@dataclass(frozen=True)
class Costs:
    latency_ms: float
    peak_memory_mib: float
    params_m: float
    gmacs: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


_COST_FIELDS = ("latency_ms", "peak_memory_mib", "params_m", "gmacs")


@dataclass
class SearchProblem:
    space: SearchSpace
    fidelity: FidelityEvaluator
    cost: CostModel
    constraints: Constraints
    formulation: Formulation = "device"
    complexity: Complexity = "params"
    _cache: dict[str, Costs] = field(default_factory=dict, repr=False)
    _additive: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._additive = self._additive_costs()
        if self.formulation == "paper" and self.constraints.fidelity is None:
            raise ConfigError("the paper formulation needs a fidelity budget (ε_fid), e.g. --eps-fid 0.05")
        if self.formulation == "device" and self.constraints.latency_ms is None and self.constraints.peak_memory_mib is None:
            raise ConfigError("the device formulation needs a latency or memory budget from the profile")

    def _direct(self, spec: ArchSpec) -> np.ndarray:
        return np.array([self.cost.predict_latency_at_ms(spec), self.cost.predict_memory_mib(spec),
                         self.cost.params(spec) / 1e6, self.cost.macs(spec) / 1e9])

    def _additive_costs(self) -> tuple | None:
        """(base vector, {(slot, choice): delta vector}) when every cheap cost is additive over slots
        (true of CostTable: block sums under an affine correction), verified on random candidates;
        None otherwise, and costs are then asked of the cost model each time."""
        base_spec = self.space.all_teacher()
        base = self._direct(base_spec)
        deltas = {(s.name, c): (np.zeros(4) if c == "teacher" else self._direct(base_spec.with_choice(s.name, c)) - base)
                  for s in self.space.slots for c in s.choices}
        import random as _random

        rng = _random.Random(12345)
        for _ in range(5):
            spec = self.space.sample_mixed(rng)
            if not np.allclose(self._direct(spec), base + sum(deltas[k] for k in spec.items()), rtol=1e-6, atol=1e-9):
                return None
        return base, deltas

    def cost_vector(self, spec: ArchSpec) -> np.ndarray:
        if self._additive is None:
            return self._direct(spec)
        base, deltas = self._additive
        return base + sum(deltas[k] for k in spec.items())

    def costs(self, spec: ArchSpec) -> Costs:
        if spec.key not in self._cache:
            self._cache[spec.key] = Costs(*(float(v) for v in self.cost_vector(spec)))
        return self._cache[spec.key]

    def slacks_of_vector(self, vec: np.ndarray) -> dict[str, float]:
        return {k: float(vec[i]) / getattr(self.constraints, k) - 1.0 for i, k in enumerate(_COST_FIELDS)
                if getattr(self.constraints, k) is not None}

    def cheap_slacks(self, spec: ArchSpec) -> dict[str, float]:
        """Slack of every budget the cost model decides (value / budget - 1; <= 0 feasible)."""
        return self.slacks_of_vector(self.cost_vector(spec))

    def cheap_feasible(self, spec: ArchSpec) -> bool:
        return all(s <= 0 for s in self.cheap_slacks(spec).values())

    def complexity_of(self, spec: ArchSpec) -> float:
        c = self.costs(spec)
        return {"params": c.params_m, "gmacs": c.gmacs, "latency": c.latency_ms}[self.complexity]

    def objective(self, spec: ArchSpec, fidelity: float) -> float:
        """The value minimised."""
        return fidelity if self.formulation == "device" else self.complexity_of(spec)

    def feasible(self, spec: ArchSpec, fidelity: float) -> bool:
        if not self.cheap_feasible(spec):
            return False
        return self.formulation == "device" or fidelity <= self.constraints.fidelity

    def tightest(self, specs: Sequence[ArchSpec]) -> tuple[str, ArchSpec, dict[str, float]]:
        """For an infeasible problem: the constraint that binds most, and the candidate closest to meeting all."""
        best = min(specs, key=lambda s: max(self.cheap_slacks(s).values(), default=0.0))
        slacks = self.cheap_slacks(best)
        worst = max(slacks, key=slacks.get) if slacks else "fidelity"
        return worst, best, slacks
