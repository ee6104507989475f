"""A synthetic search problem: the real tiny-UNet space with a known additive cost and a fidelity
with slot interactions, so strategies are tested in milliseconds without any training."""

from __future__ import annotations

import random

import pytest

from search.problem import Constraints, SearchProblem
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import TEACHER, derive_search_space


class FakeCost:
    def __init__(self, space, seed=0):
        rng = random.Random(seed)
        self.lat, self.par = {}, {}
        for s in space.slots:
            for _i, c in enumerate(s.choices):
                self.lat[(s.name, c)] = 1.0 if c == TEACHER else rng.uniform(0.05, 0.8)
                self.par[(s.name, c)] = 100_000 if c == TEACHER else int(rng.uniform(0, 60_000))

    def predict_latency_at_ms(self, spec):
        return 2.0 + sum(self.lat[k] for k in spec.items())

    def predict_memory_mib(self, spec):
        return 10 + self.params(spec) * 4 / 2**20

    def params(self, spec):
        return 500_000 + sum(self.par[k] for k in spec.items())

    def macs(self, spec):
        return 1000 * self.params(spec)


class FakeFidelity:
    def __init__(self, space, seed=0, fail_keys=()):
        rng = random.Random(seed + 1)
        self.err = {(s.name, c): 0.0 if c == TEACHER else rng.uniform(0.001, 0.05) for s in space.slots for c in s.choices}
        self.fail_keys, self.calls = set(fail_keys), 0

    def evaluate(self, spec):
        self.calls += 1
        if spec.key in self.fail_keys:
            raise RuntimeError("CUDA out of memory (simulated)")
        base = sum(self.err[k] for k in spec.items())
        n = len(spec.replaced())
        return base * (1 + 0.02 * n)          # removing many blocks compounds


@pytest.fixture(scope="session")
def space():
    return derive_search_space(build_unet_from_preset("tiny", "meta"))


@pytest.fixture
def problem(space):
    cost = FakeCost(space)
    teacher_lat = cost.predict_latency_at_ms(space.all_teacher())
    return SearchProblem(space, FakeFidelity(space), cost, Constraints(latency_ms=0.5 * teacher_lat, peak_memory_mib=1e6))


@pytest.fixture(scope="module")
def profile():
    """The simulated device's profile (tests/simdevice.py)."""
    from bench.profile import parse_profile
    from tests.simdevice import SIM_PROFILE_YAML

    return parse_profile(SIM_PROFILE_YAML, "sim.yaml")
