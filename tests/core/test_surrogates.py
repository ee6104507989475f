"""Generated from the registry: every family (built-in or newly registered) is checked here."""

from __future__ import annotations

import pytest
import torch

from bench.counting import count_macs, count_params
from bench.probe import capture_slot_inputs
from tocsr.core.models.unet import build_unet_from_preset, get_unet_preset, unet_example_inputs
from tocsr.core.space import derive_search_space
from tocsr.core.surrogates import build_surrogate, get_family, list_families
from tocsr.core.surrogates.attention import transformer_macs
from tocsr.core.surrogates.registry import SurrogateFamily, register_family

LATENT = 16


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    unet = build_unet_from_preset("tiny").eval()
    space = derive_search_space(unet)
    args, kwargs = unet_example_inputs(get_unet_preset("tiny").config, 1, 2, LATENT)
    return unet, space, capture_slot_inputs(unet, space, args, kwargs)


@pytest.mark.parametrize("family", list_families())
def test_family_declares_its_exact_params_and_macs(setup, family):
    unet, space, inputs = setup
    fam = get_family(family)
    slots = [s for s in space.slots if family in s.choices]
    assert slots, f"{family} applies to no slot of the tiny teacher"
    for slot in slots:
        module = build_surrogate(family, slot)
        args, kwargs = inputs[slot.name]
        out = module(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        teacher_out = unet.get_submodule(slot.module_path)(*args, **kwargs)
        teacher_out = teacher_out[0] if isinstance(teacher_out, tuple) else teacher_out
        assert out.shape == teacher_out.shape
        assert fam.params(slot) == count_params(module)["params"], slot.name
        batch = args[0].shape[0]
        assert batch * fam.macs(slot, LATENT, 1) == count_macs(module, args, kwargs).total_macs, slot.name


@pytest.mark.parametrize("family", list_families())
def test_family_is_cheaper_than_the_teacher_block(setup, family):
    unet, space, _ = setup
    for slot in (s for s in space.slots if family in s.choices):
        teacher = count_params(unet.get_submodule(slot.module_path))["params"]
        assert get_family(family).params(slot) < teacher, slot.name


def test_teacher_attention_closed_form_matches_counter(setup):
    unet, space, inputs = setup
    for slot in (s for s in space.slots if s.kind == "attention"):
        args, kwargs = inputs[slot.name]
        counted = count_macs(unet.get_submodule(slot.module_path), args, kwargs).total_macs
        expected = args[0].shape[0] * transformer_macs(slot.in_channels, slot.heads * slot.head_dim, 1,
                                                       slot.tokens(LATENT), 1, slot.cross_attention_dim)
        assert counted == expected


def test_registry_refuses_duplicates_and_lists_on_miss():
    from tocsr.core.errors import ConfigError

    with pytest.raises(ValueError, match="already registered"):
        register_family(SurrogateFamily("res_skip", "resnet", "", lambda s: None, lambda s: 0, lambda *a: 0))
    with pytest.raises(ConfigError, match="res_bneck2"):
        get_family("res_magic")
