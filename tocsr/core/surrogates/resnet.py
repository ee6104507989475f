"""Surrogates for ResnetBlock2D slots. Call signature as the teacher's: block(x, temb) -> tensor.

MACs below are per image with N = tokens at the slot's resolution, Ci/Co the slot's channels and T the
time-embedding width; a shortcut 1x1 (Ci*Co per token) is added wherever channels change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tocsr.core.surrogates.common import group_norm, group_norm_params
from tocsr.core.surrogates.registry import SurrogateFamily, register_family


def _shortcut(ci: int, co: int) -> nn.Module:
    return nn.Identity() if ci == co else nn.Conv2d(ci, co, 1)


def _shortcut_params(ci: int, co: int) -> int:
    return 0 if ci == co else ci * co + co


def _shortcut_macs(ci: int, co: int, n: int) -> int:
    return 0 if ci == co else n * ci * co


class BottleneckResBlock(nn.Module):
    """1x1 reduce to Co/r -> 3x3 (+ time embedding) -> 1x1 expand, plus the shortcut."""

    def __init__(self, ci: int, co: int, temb: int, reduction: int, max_groups: int):
        super().__init__()
        m = max(1, co // reduction)
        self.norm1 = group_norm(ci, max_groups)
        self.reduce = nn.Conv2d(ci, m, 1)
        self.norm2 = group_norm(m, max_groups)
        self.mid = nn.Conv2d(m, m, 3, padding=1)
        self.time_proj = nn.Linear(temb, m) if temb else None
        self.norm3 = group_norm(m, max_groups)
        self.expand = nn.Conv2d(m, co, 1)
        self.shortcut = _shortcut(ci, co)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        h = self.reduce(F.silu(self.norm1(input_tensor)))
        h = self.mid(F.silu(self.norm2(h)))
        if self.time_proj is not None and temb is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.expand(F.silu(self.norm3(h)))
        return self.shortcut(input_tensor) + h


class DepthwiseSeparableResBlock(nn.Module):
    """Two depthwise-3x3 + pointwise pairs (+ time embedding), plus the shortcut."""

    def __init__(self, ci: int, co: int, temb: int, max_groups: int):
        super().__init__()
        self.norm1 = group_norm(ci, max_groups)
        self.dw1 = nn.Conv2d(ci, ci, 3, padding=1, groups=ci)
        self.pw1 = nn.Conv2d(ci, co, 1)
        self.time_proj = nn.Linear(temb, co) if temb else None
        self.norm2 = group_norm(co, max_groups)
        self.dw2 = nn.Conv2d(co, co, 3, padding=1, groups=co)
        self.pw2 = nn.Conv2d(co, co, 1)
        self.shortcut = _shortcut(ci, co)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        h = self.pw1(self.dw1(F.silu(self.norm1(input_tensor))))
        if self.time_proj is not None and temb is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.pw2(self.dw2(F.silu(self.norm2(h))))
        return self.shortcut(input_tensor) + h


class SkipResBlock(nn.Module):
    """The block removed: identity, or a 1x1 projection where the channel count changes."""

    def __init__(self, ci: int, co: int):
        super().__init__()
        self.shortcut = _shortcut(ci, co)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        return self.shortcut(input_tensor)


def _bneck_params(slot, r: int) -> int:
    ci, co, t = slot.in_channels, slot.out_channels, slot.temb_channels
    m = max(1, co // r)
    return (group_norm_params(ci) + ci * m + m + group_norm_params(m) + 9 * m * m + m
            + (t * m + m if t else 0) + group_norm_params(m) + m * co + co + _shortcut_params(ci, co))


def _bneck_macs(slot, latent_px: int, cond_tokens: int, r: int) -> int:
    ci, co, t = slot.in_channels, slot.out_channels, slot.temb_channels
    m, n = max(1, co // r), slot.tokens(latent_px)
    return n * (ci * m + 9 * m * m + m * co) + t * m + _shortcut_macs(ci, co, n)


for _r in (2, 4):
    register_family(SurrogateFamily(
        name=f"res_bneck{_r}", kind="resnet",
        description=f"bottleneck residual block, inner width 1/{_r}",
        build=lambda slot, r=_r: BottleneckResBlock(slot.in_channels, slot.out_channels, slot.temb_channels, r,
                                                    slot.norm_groups),
        params=lambda slot, r=_r: _bneck_params(slot, r),
        macs=lambda slot, latent_px, cond_tokens=0, r=_r: _bneck_macs(slot, latent_px, cond_tokens, r),
    ))


def _dwsep_params(slot) -> int:
    ci, co, t = slot.in_channels, slot.out_channels, slot.temb_channels
    return (group_norm_params(ci) + 10 * ci + ci * co + co + (t * co + co if t else 0)
            + group_norm_params(co) + 10 * co + co * co + co + _shortcut_params(ci, co))


def _dwsep_macs(slot, latent_px: int, cond_tokens: int = 0) -> int:
    ci, co, t, n = slot.in_channels, slot.out_channels, slot.temb_channels, slot.tokens(latent_px)
    return n * (9 * ci + ci * co + 9 * co + co * co) + t * co + _shortcut_macs(ci, co, n)


register_family(SurrogateFamily(
    name="res_dwsep", kind="resnet", description="depthwise-separable residual block",
    build=lambda slot: DepthwiseSeparableResBlock(slot.in_channels, slot.out_channels, slot.temb_channels,
                                                  slot.norm_groups),
    params=_dwsep_params, macs=_dwsep_macs,
))

register_family(SurrogateFamily(
    name="res_skip", kind="resnet", description="block removed (identity, or 1x1 projection if channels change)",
    build=lambda slot: SkipResBlock(slot.in_channels, slot.out_channels),
    params=lambda slot: _shortcut_params(slot.in_channels, slot.out_channels),
    macs=lambda slot, latent_px, cond_tokens=0: _shortcut_macs(slot.in_channels, slot.out_channels,
                                                               slot.tokens(latent_px)),
))
