"""One registry for surrogate families (timm-style): register, list, build through one front door.

A family declares what it costs in closed form (`params(slot)`, `macs(slot, latent_px, cond_tokens)`
per image); tests check both against the module itself and the bench counter, for every family
registered, so a new family is tested by registering it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from tocsr.core.errors import ConfigError


@dataclass(frozen=True)
class SurrogateFamily:
    name: str
    kind: str                                          # "resnet" or "attention"
    description: str
    build: Callable[..., nn.Module]                    # build(slot) -> module with the teacher block's call signature
    params: Callable[..., int]                         # params(slot)
    macs: Callable[..., int]                           # macs(slot, latent_px, cond_tokens) per image
    applies: Callable[..., bool] = lambda slot: True   # applies(slot)


_FAMILIES: dict[str, SurrogateFamily] = {}


def register_family(family: SurrogateFamily) -> SurrogateFamily:
    if family.name in _FAMILIES:
        raise ValueError(f"surrogate family {family.name!r} is already registered")
    if family.name == "teacher":
        raise ValueError("'teacher' is reserved for keeping the teacher block")
    _FAMILIES[family.name] = family
    return family


def list_families(kind: str | None = None) -> list[str]:
    return [n for n, f in _FAMILIES.items() if kind is None or f.kind == kind]


def get_family(name: str) -> SurrogateFamily:
    if name not in _FAMILIES:
        raise ConfigError(f"surrogate family {name!r} does not exist; registered: {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def applicable_families(slot, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    chosen = names if names is not None else tuple(list_families(slot.kind))
    for n in chosen:
        if get_family(n).kind != slot.kind:
            raise ConfigError(f"family {n!r} replaces {get_family(n).kind} blocks, not {slot.kind} blocks")
    return tuple(n for n in chosen if get_family(n).applies(slot))


def build_surrogate(name: str, slot) -> nn.Module:
    family = get_family(name)
    if family.kind != slot.kind:
        raise ConfigError(f"family {name!r} replaces {family.kind} blocks; slot {slot.name} is a {slot.kind} block")
    module = family.build(slot)
    module.tocsr_family = name   # lets assembled models and checkpoints be inspected
    return module
