"""Fixtures of the cost-table and pipeline tests: the tiny space and the simulated device's profile."""

from __future__ import annotations

import pytest

from bench.profile import parse_profile
from tests.simdevice import SIM_PROFILE_YAML
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import derive_search_space


@pytest.fixture(scope="module")
def space():
    return derive_search_space(build_unet_from_preset("tiny", "meta"))


@pytest.fixture(scope="module")
def profile():
    return parse_profile(SIM_PROFILE_YAML, "sim.yaml")
