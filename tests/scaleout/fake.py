"""A picklable factory for the synthetic fidelity evaluator, built inside each Ray worker."""

from __future__ import annotations


def make_fake_fidelity():
    from tests.search.conftest import FakeFidelity
    from tocsr.models.unet import build_unet_from_preset
    from tocsr.space import derive_search_space

    return FakeFidelity(derive_search_space(build_unet_from_preset("tiny", "meta")))
