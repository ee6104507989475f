"""A device that is not attached, seen through the same timing code as a real one.

A predicted profile (`device.kind: predicted`) has no clock to read. `RooflineClock` is one: a virtual
clock in nanoseconds, and `call(module, args, kwargs)` returns a zero-argument call that advances it by
the roofline latency of that module call on the profile's device (bench.roofline, computed once per
call, nothing run). bench.timing reads it as it reads perf_counter, so cost tables, pipeline parts and
their validation are built by exactly the code that measures a real device; every figure they hold is a
prediction, and the tables say so (`CostTable.measured` False, device names ending in "(predicted)",
timer "roofline").

What is learned this way is how far the additive per-block table is from the roofline of whole models
(launches, the parts no slot owns); how far the roofline is from a real card is a separate question,
answered by `python -m bench.roofline_check` against measurements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench import roofline
from bench.profile import DeviceProfile
from bench.stats import LatencyStats, PairedLatency

TIMER = "roofline"            # the `timer` of every latency sample from a predicted device


def predicted_device_name(profile: DeviceProfile) -> str:
    """The name every predicted figure of this profile carries: the device and the word "predicted"."""
    return f"{profile.device.name or profile.name} (predicted)"


class RooflineClock:
    """The virtual clock of a predicted device (see module doc)."""

    timer = TIMER

    def __init__(self, profile: DeviceProfile):
        if profile.predicted is None:
            raise ValueError(f"profile {profile.name!r} is measured (device.kind {profile.device.kind!r}): a roofline "
                             "clock needs a predicted profile with a 'predicted:' section")
        self.profile = profile
        self.t_ns = 0
        self._last: tuple[str, roofline.RooflineEstimate] | None = None

    def __call__(self) -> int:
        return self.t_ns

    def estimate(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> roofline.RooflineEstimate:
        return roofline.estimate(module, args, kwargs, self.profile.predicted, self.profile.precision)

    def estimate_of(self, key: str, build: Callable[[], torch.nn.Module], args: tuple, kwargs: dict
                    ) -> roofline.RooflineEstimate:
        """`estimate` of the module `build()` returns, named `key`. The last one is kept: a candidate's memory
        and its call read one estimate instead of counting the model twice."""
        if self._last is None or self._last[0] != key:
            self._last = (key, self.estimate(build(), args, kwargs))
        return self._last[1]

    def advancer(self, estimate: roofline.RooflineEstimate) -> Callable[[], None]:
        """A zero-argument call that advances the clock by `estimate`'s latency each time it is called."""
        ns = max(1, round(estimate.latency_ms * 1e6))

        def advance() -> None:
            self.t_ns += ns

        return advance

    def call(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> Callable[[], None]:
        """`module(*args, **kwargs)` on the predicted device: each call of the result advances the clock by
        the call's roofline latency (estimated now, once)."""
        return self.advancer(self.estimate(module, args, kwargs))


def predicted_pair(target: roofline.RooflineEstimate, reference: roofline.RooflineEstimate) -> PairedLatency:
    """A prediction in the form of a paired measurement (one round, no spread): what selection judges a
    candidate of a predicted device by, in units of the predicted reference."""
    ratio = target.latency_ms / reference.latency_ms
    return PairedLatency(LatencyStats.from_samples([target.latency_ms] * 2, TIMER, 0),
                         LatencyStats.from_samples([reference.latency_ms] * 2, TIMER, 0), (ratio, ratio), 1)
