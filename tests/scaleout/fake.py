"""A picklable factory for the synthetic fidelity evaluator, built inside each Ray worker."""

from __future__ import annotations


def make_fake_fidelity():
    from tests.search.conftest import FakeFidelity
    from tocsr.core.models.unet import build_unet_from_preset
    from tocsr.core.space import derive_search_space

    return FakeFidelity(derive_search_space(build_unet_from_preset("tiny", "meta")))


class _Slow:
    """The synthetic evaluator at 0.1 s a call, so a search lasts long enough to lose a worker mid-way."""

    def __init__(self, inner):
        self.inner = inner

    def evaluate(self, spec):
        import time

        time.sleep(0.1)
        return self.inner.evaluate(spec)


def make_slow_fake_fidelity():
    return _Slow(make_fake_fidelity())
