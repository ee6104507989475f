"""The search space: one slot per teacher block, one choice per slot.

A slot is every ResnetBlock2D and every attention (Transformer2DModel) block in the down, mid and up
blocks of a diffusers UNet. A choice is "teacher" (keep the block) or a registered surrogate
family. `ArchSpec` holds one choice per slot; its `key` is the stable join key used by every stage.

Example:
    >>> unet = build_unet_from_preset("tiny")
    >>> space = derive_search_space(unet)
    >>> spec = space.all_teacher()
    >>> spec.key, len(space.slots)
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from tocsr.core.errors import ConfigError
from tocsr.core.provenance import content_sha256

TEACHER = "teacher"
SlotKind = Literal["resnet", "attention"]


@dataclass(frozen=True)
class Slot:
    """One replaceable block. `stride` is how much smaller its feature map is than the latent."""

    name: str                      # stable, e.g. "down.1.resnets.0", "mid.attentions.0", "up.2.resnets.1"
    kind: SlotKind
    module_path: str               # attribute path inside the UNet, e.g. "down_blocks.1.resnets.0"
    in_channels: int
    out_channels: int
    stride: int
    temb_channels: int = 0         # resnet slots
    norm_groups: int = 32
    heads: int = 0                 # attention slots
    head_dim: int = 0
    cross_attention_dim: int = 0
    attention_config: tuple[tuple[str, Any], ...] = ()   # the teacher Transformer2DModel's config, sorted
    choices: tuple[str, ...] = (TEACHER,)

    def tokens(self, latent_px: int) -> int:
        side = max(1, latent_px // self.stride)
        return side * side

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["attention_config"] = dict(self.attention_config)
        d["choices"] = list(self.choices)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Slot:
        d = dict(d)
        d["attention_config"] = tuple(sorted(d.get("attention_config", {}).items()))
        d["choices"] = tuple(d["choices"])
        return cls(**d)


@dataclass(frozen=True)
class ArchSpec:
    """One choice per slot of a space, in slot order."""

    space_id: str
    slots: tuple[str, ...]
    choices: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.slots) != len(self.choices):
            raise ConfigError(f"ArchSpec has {len(self.slots)} slots but {len(self.choices)} choices")

    @functools.cached_property
    def key(self) -> str:
        """Stable across runs and machines: a hash of the space and the (slot, choice) pairs (computed once per
        spec: searches look keys up for every neighbour they weigh)."""
        return content_sha256([self.space_id, list(zip(self.slots, self.choices, strict=True))])[:16]

    def choice(self, slot: str) -> str:
        return self.choices[self.slots.index(slot)]

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.slots, self.choices, strict=True))

    def replaced(self) -> dict[str, str]:
        return {s: c for s, c in self.items() if c != TEACHER}

    def with_choice(self, slot: str, choice: str) -> ArchSpec:
        i = self.slots.index(slot)
        return ArchSpec(self.space_id, self.slots, self.choices[:i] + (choice,) + self.choices[i + 1:])

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "space_id": self.space_id, "choices": dict(self.items())}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any], space: SearchSpace | None = None) -> ArchSpec:
        choices = d["choices"]
        if space is not None:
            return space.spec(choices)
        return cls(d["space_id"], tuple(choices), tuple(choices.values()))


@dataclass(frozen=True)
class SearchSpace:
    unet_config: tuple[tuple[str, Any], ...]   # the teacher UNet's diffusers config, sorted
    slots: tuple[Slot, ...]

    @property
    def space_id(self) -> str:
        return content_sha256({"config": _jsonable(dict(self.unet_config)),
                               "slots": [s.to_dict() for s in self.slots]})[:16]

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise ConfigError(f"no slot named {name!r}; slots: {', '.join(self.slot_names)}")

    @property
    def size(self) -> int:
        n = 1
        for s in self.slots:
            n *= len(s.choices)
        return n

    def spec(self, choices: dict[str, str]) -> ArchSpec:
        """An ArchSpec from a {slot: choice} mapping; slots left out keep the teacher block."""
        unknown = set(choices) - set(self.slot_names)
        if unknown:
            raise ConfigError(f"ArchSpec names unknown slot(s) {sorted(unknown)}; this space has "
                              f"{len(self.slots)} slots, e.g. {self.slot_names[0]}")
        out = []
        for s in self.slots:
            c = choices.get(s.name, TEACHER)
            if c not in s.choices:
                raise ConfigError(f"slot {s.name}: choice = {c!r}: expected one of {', '.join(s.choices)}")
            out.append(c)
        return ArchSpec(self.space_id, self.slot_names, tuple(out))

    def all_teacher(self) -> ArchSpec:
        return self.spec({})

    def uniform(self, by_kind: dict[str, str]) -> ArchSpec:
        """Every slot of a kind takes the same choice (where offered), e.g. {"resnet": "res_bneck4"}."""
        return self.spec({s.name: by_kind[s.kind] for s in self.slots
                          if s.kind in by_kind and by_kind[s.kind] in s.choices})

    def sample(self, rng: random.Random) -> ArchSpec:
        return ArchSpec(self.space_id, self.slot_names, tuple(rng.choice(s.choices) for s in self.slots))

    def sample_mixed(self, rng: random.Random, replace_prob: float | None = None) -> ArchSpec:
        """Each slot keeps its teacher block with probability 1 - p, else takes a random surrogate.

        Uniform sampling replaces about 80% of slots, so nearly every candidate is tiny; drawing p
        uniformly per candidate (the default) spreads candidates over the whole cost range instead.
        """
        p = rng.random() if replace_prob is None else replace_prob
        choices = []
        for s in self.slots:
            surrogates = [c for c in s.choices if c != TEACHER]
            choices.append(rng.choice(surrogates) if surrogates and rng.random() < p else TEACHER)
        return ArchSpec(self.space_id, self.slot_names, tuple(choices))

    def check(self, spec: ArchSpec) -> None:
        if spec.space_id != self.space_id:
            raise ConfigError(f"ArchSpec {spec.key} belongs to search space {spec.space_id}, not {self.space_id}: "
                              "it was made for another teacher or surrogate set")

    def to_dict(self) -> dict[str, Any]:
        return {"space_id": self.space_id, "unet_config": _jsonable(dict(self.unet_config)),
                "slots": [s.to_dict() for s in self.slots]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        space = cls(tuple(sorted(d["unet_config"].items())), tuple(Slot.from_dict(s) for s in d["slots"]))
        if "space_id" in d and d["space_id"] != space.space_id:
            raise ConfigError(f"search space file claims id {d['space_id']} but its content hashes to "
                              f"{space.space_id}: it was edited or corrupted")
        return space


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _freeze(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    return x


def _unet_config(unet: nn.Module) -> dict[str, Any]:
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    return config


def _resnet_slot(name: str, path: str, block: nn.Module, stride: int) -> Slot:
    temb = block.time_emb_proj.in_features if getattr(block, "time_emb_proj", None) is not None else 0
    return Slot(name=name, kind="resnet", module_path=path, in_channels=block.in_channels,
                out_channels=block.out_channels, stride=stride, temb_channels=temb,
                norm_groups=block.norm1.num_groups)


def _attention_slot(name: str, path: str, block: nn.Module, stride: int) -> Slot:
    cfg = {k: v for k, v in dict(block.config).items() if not k.startswith("_")}
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg["attention_head_dim"])
    channels = int(cfg["in_channels"])
    return Slot(name=name, kind="attention", module_path=path, in_channels=channels, out_channels=channels,
                stride=stride, norm_groups=int(cfg.get("norm_num_groups", 32)), heads=heads, head_dim=head_dim,
                cross_attention_dim=int(cfg.get("cross_attention_dim") or 0),
                attention_config=tuple(sorted((k, _freeze(v)) for k, v in cfg.items())))


def iter_slot_modules(unet: nn.Module) -> Iterator[tuple[str, str, nn.Module, int]]:
    """(slot name, module path, module, stride) for every replaceable block, in forward order.

    Strides follow the diffusers UNet layout: every down block but the last halves the map, every
    up block but the last doubles it.
    """
    n = len(unet.down_blocks)
    for i, block in enumerate(unet.down_blocks):
        stride = 2 ** i
        for kind in ("resnets", "attentions"):
            for j, m in enumerate(getattr(block, kind, None) or []):
                yield f"down.{i}.{kind}.{j}", f"down_blocks.{i}.{kind}.{j}", m, stride
    if unet.mid_block is not None:
        for kind in ("resnets", "attentions"):
            for j, m in enumerate(getattr(unet.mid_block, kind, None) or []):
                yield f"mid.{kind}.{j}", f"mid_block.{kind}.{j}", m, 2 ** (n - 1)
    for i, block in enumerate(unet.up_blocks):
        stride = 2 ** (n - 1 - i)
        for kind in ("resnets", "attentions"):
            for j, m in enumerate(getattr(block, kind, None) or []):
                yield f"up.{i}.{kind}.{j}", f"up_blocks.{i}.{kind}.{j}", m, stride


def derive_search_space(unet: nn.Module, families: dict[str, tuple[str, ...]] | None = None) -> SearchSpace:
    """Slots for every ResnetBlock2D and Transformer2DModel of `unet`, with every registered surrogate
    family that applies to each as its choices (or the families named in `families` per kind)."""
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    from tocsr.core.surrogates.registry import applicable_families

    slots = []
    for name, path, module, stride in iter_slot_modules(unet):
        if isinstance(module, ResnetBlock2D):
            slot = _resnet_slot(name, path, module, stride)
        elif isinstance(module, Transformer2DModel):
            slot = _attention_slot(name, path, module, stride)
        else:
            continue   # a block type this suite has no surrogates for stays fixed
        allowed = applicable_families(slot, (families or {}).get(slot.kind))
        slots.append(Slot(**{**slot.__dict__, "choices": (TEACHER, *allowed)}))
    if not slots:
        raise ConfigError(f"{type(unet).__name__} has no ResnetBlock2D or Transformer2DModel blocks to search over")
    return SearchSpace(tuple(sorted((k, _freeze(v)) for k, v in _unet_config(unet).items())), tuple(slots))
