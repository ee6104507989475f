"""Surrogates for attention (Transformer2DModel) slots.

They keep the teacher's call signature, block(hidden_states, encoder_hidden_states=..., return_dict=...),
and include the residual, as Transformer2DModel does. The cheap families keep the conditioning through
a pooled projection of the conditioning tokens added to the normalised features.

MACs per image with N tokens at the slot's resolution, C channels, d head dim, Dc conditioning width,
Tc conditioning tokens, I = heads * d the teacher's inner width:
  teacher (one layer):  2*N*C*I + 18*N*I^2 + 2*N^2*I + 2*Tc*Dc*I + 2*N*Tc*I
  attn_heads_half:      the same with I halved
  attn_linear:          8*N*C^2 + 2*N*C*d + Dc*C
  attn_convmixer:       N*(49*C + 4*C^2) + Dc*C
  attn_skip:            0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.transformers.transformer_2d import Transformer2DModel, Transformer2DModelOutput
from torch import nn

from tocsr.core.surrogates.common import group_norm, group_norm_params
from tocsr.core.surrogates.registry import SurrogateFamily, register_family


def _wrap(out: torch.Tensor, return_dict: bool):
    return Transformer2DModelOutput(sample=out) if return_dict else (out,)


class _PooledCondition(nn.Module):
    """Conditioning for cheap token mixers: mean over conditioning tokens, projected to channels."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, channels) if cond_dim else None

    def forward(self, h: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        if self.proj is None or encoder_hidden_states is None:
            return h
        return h + self.proj(encoder_hidden_states.mean(dim=1))[:, :, None, None]


class LinearAttentionBlock(nn.Module):
    """ReLU linear attention (EfficientViT/SANA-style), O(N) in tokens, plus a 2x pointwise FFN."""

    def __init__(self, channels: int, head_dim: int, cond_dim: int, max_groups: int):
        super().__init__()
        self.head_dim = head_dim
        self.norm = group_norm(channels, max_groups)
        self.cond = _PooledCondition(cond_dim, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.norm2 = group_norm(channels, max_groups)
        self.ff1 = nn.Conv2d(channels, 2 * channels, 1)
        self.ff2 = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, hidden_states, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        x = hidden_states
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.cond(self.norm(x), encoder_hidden_states)).chunk(3, dim=1)
        heads = c // self.head_dim
        q, k, v = (t.reshape(b, heads, self.head_dim, h * w) for t in (q, k, v))
        q, k = F.relu(q), F.relu(k)
        vk = torch.matmul(v, k.transpose(-1, -2))                    # (b, heads, d, d)
        num = torch.matmul(vk, q)                                     # (b, heads, d, N)
        den = (k.sum(dim=-1, keepdim=True) * q).sum(dim=2, keepdim=True)
        attn = (num / (den + 1e-6)).reshape(b, c, h, w)
        x = x + self.out(attn)
        x = x + self.ff2(F.gelu(self.ff1(self.norm2(x))))
        return _wrap(x, return_dict)


class ConvMixerBlock(nn.Module):
    """Depthwise 7x7 token mixing and a pointwise 2x MLP (ConvNeXt-style)."""

    def __init__(self, channels: int, cond_dim: int, max_groups: int):
        super().__init__()
        self.norm = group_norm(channels, max_groups)
        self.cond = _PooledCondition(cond_dim, channels)
        self.dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.pw1 = nn.Conv2d(channels, 2 * channels, 1)
        self.pw2 = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, hidden_states, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        h = self.dw(self.cond(self.norm(hidden_states), encoder_hidden_states))
        return _wrap(hidden_states + self.pw2(F.gelu(self.pw1(h))), return_dict)


class SkipAttentionBlock(nn.Module):
    def forward(self, hidden_states, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        return _wrap(hidden_states, return_dict)


def _narrow_config(slot) -> dict:
    cfg = dict(slot.attention_config)
    if slot.heads >= 2:
        cfg["num_attention_heads"] = slot.heads // 2
    else:
        cfg["attention_head_dim"] = max(1, slot.head_dim // 2)
    return cfg


def transformer_macs(channels: int, inner: int, layers: int, tokens: int, cond_tokens: int, cond_dim: int) -> int:
    n, c, i = tokens, channels, inner
    per_layer = 18 * n * i * i + 2 * n * n * i + (2 * cond_tokens * cond_dim * i + 2 * n * cond_tokens * i if cond_dim else 0)
    return 2 * n * c * i + layers * per_layer


def _heads_half_macs(slot, latent_px: int, cond_tokens: int = 1) -> int:
    cfg = _narrow_config(slot)
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    return transformer_macs(slot.in_channels, inner, int(cfg.get("num_layers", 1)), slot.tokens(latent_px),
                            cond_tokens, slot.cross_attention_dim)


def _heads_half_params(slot) -> int:
    cfg = _narrow_config(slot)
    c, i, dc = slot.in_channels, cfg["num_attention_heads"] * cfg["attention_head_dim"], slot.cross_attention_dim
    # norm, proj_in, proj_out; per layer: 3 LayerNorms, attn1 (q,k,v,out+bias), attn2 (q, k/v from Dc, out+bias),
    # GEGLU FFN (I -> 8I with bias, 4I -> I with bias).
    per_layer = 3 * 2 * i + (4 * i * i + i) + (2 * i * i + 2 * dc * i + i) + (8 * i * i + 8 * i + 4 * i * i + i)
    proj_in_out = (c * i + i) + (i * c + c)   # linear or 1x1 conv: the same count
    return group_norm_params(c) + proj_in_out + int(cfg.get("num_layers", 1)) * per_layer


def _has_full_attention(slot) -> bool:
    return slot.heads * slot.head_dim > 0


register_family(SurrogateFamily(
    name="attn_heads_half", kind="attention", description="the teacher's transformer with half the heads",
    build=lambda slot: Transformer2DModel(**_narrow_config(slot)),
    params=_heads_half_params, macs=_heads_half_macs, applies=_has_full_attention,
))

register_family(SurrogateFamily(
    name="attn_linear", kind="attention", description="ReLU linear attention + pointwise FFN, pooled conditioning",
    build=lambda slot: LinearAttentionBlock(slot.in_channels, slot.head_dim, slot.cross_attention_dim,
                                            slot.norm_groups),
    params=lambda slot: (2 * group_norm_params(slot.in_channels) + (slot.cross_attention_dim + 1) * slot.in_channels
                         * (1 if slot.cross_attention_dim else 0) + 3 * slot.in_channels ** 2 + 3 * slot.in_channels
                         + slot.in_channels ** 2 + slot.in_channels + 4 * slot.in_channels ** 2 + 3 * slot.in_channels),
    macs=lambda slot, latent_px, cond_tokens=1: (8 * slot.tokens(latent_px) * slot.in_channels ** 2
                                                 + 2 * slot.tokens(latent_px) * slot.in_channels * slot.head_dim
                                                 + slot.cross_attention_dim * slot.in_channels),
    applies=lambda slot: slot.head_dim > 0 and slot.in_channels % slot.head_dim == 0,
))

register_family(SurrogateFamily(
    name="attn_convmixer", kind="attention", description="depthwise 7x7 token mixer + pointwise MLP, pooled conditioning",
    build=lambda slot: ConvMixerBlock(slot.in_channels, slot.cross_attention_dim, slot.norm_groups),
    params=lambda slot: (group_norm_params(slot.in_channels) + (slot.cross_attention_dim + 1) * slot.in_channels
                         * (1 if slot.cross_attention_dim else 0) + 50 * slot.in_channels
                         + 4 * slot.in_channels ** 2 + 3 * slot.in_channels),
    macs=lambda slot, latent_px, cond_tokens=1: (slot.tokens(latent_px) * (49 * slot.in_channels
                                                                           + 4 * slot.in_channels ** 2)
                                                 + slot.cross_attention_dim * slot.in_channels),
))

register_family(SurrogateFamily(
    name="attn_skip", kind="attention", description="block removed (identity)",
    build=lambda slot: SkipAttentionBlock(), params=lambda slot: 0,
    macs=lambda slot, latent_px, cond_tokens=1: 0,
))
