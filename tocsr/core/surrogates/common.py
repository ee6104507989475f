"""Pieces shared by surrogate families."""

from __future__ import annotations

from torch import nn


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    """GroupNorm with the most groups (<= the teacher's) that divide `channels`."""
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


def group_norm_params(channels: int) -> int:
    return 2 * channels
