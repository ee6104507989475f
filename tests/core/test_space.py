from __future__ import annotations

import random

import pytest
import torch

from tocsr.core.assembly import CompactUNet2DConditionModel, ModuleSwapper, build_module_bank, build_unet
from tocsr.core.errors import ConfigError
from tocsr.core.models.unet import build_unet_from_preset, get_unet_preset, unet_example_inputs
from tocsr.core.space import TEACHER, ArchSpec, SearchSpace, derive_search_space


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_unet_from_preset("tiny").eval()


@pytest.fixture(scope="module")
def space(teacher):
    return derive_search_space(teacher)


@pytest.fixture(scope="module")
def inputs():
    return unet_example_inputs(get_unet_preset("tiny").config, 1, 2, 16, seed=3)


def test_slots_cover_every_resnet_and_attention_block(space, teacher):
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    expected = sum(isinstance(m, (ResnetBlock2D, Transformer2DModel)) for m in teacher.modules())
    assert len(space.slots) == expected == 28
    assert {s.kind for s in space.slots} == {"resnet", "attention"}
    assert all(s.choices[0] == TEACHER and len(s.choices) == 5 for s in space.slots)


def test_slot_strides_match_the_forward_pass(space, teacher, inputs):
    seen = {}
    hooks = [teacher.get_submodule(s.module_path).register_forward_pre_hook(
        lambda m, a, name=s.name: seen.__setitem__(name, a[0].shape[-1])) for s in space.slots]
    with torch.no_grad():
        teacher(*inputs[0], **inputs[1])
    for h in hooks:
        h.remove()
    assert all(seen[s.name] == 16 // s.stride for s in space.slots)


def test_archspec_key_is_stable_and_json_round_trips(space):
    spec = space.sample(random.Random(7))
    again = space.sample(random.Random(7))
    assert spec.key == again.key and len(spec.key) == 16
    assert ArchSpec.from_dict(spec.to_dict(), space) == spec
    assert SearchSpace.from_dict(space.to_dict()).space_id == space.space_id
    assert space.all_teacher().key != spec.key


def test_spec_validation_names_the_slot_and_choices(space):
    with pytest.raises(ConfigError, match="down.0.resnets.0: choice = 'res_huge'"):
        space.spec({"down.0.resnets.0": "res_huge"})
    with pytest.raises(ConfigError, match="unknown slot"):
        space.spec({"sideways.9": "res_skip"})


def test_tampered_space_file_is_detected(space):
    d = space.to_dict()
    d["slots"][0]["out_channels"] += 1
    with pytest.raises(ConfigError, match="edited or corrupted"):
        SearchSpace.from_dict(d)


def test_all_teacher_spec_rebuilds_the_teacher_bit_identically(space, teacher, inputs):
    model = build_unet(space, space.all_teacher(), teacher).eval()
    with torch.no_grad():
        assert torch.equal(model(*inputs[0], **inputs[1])[0], teacher(*inputs[0], **inputs[1])[0])


def test_candidate_saves_and_loads_exactly(space, teacher, inputs, tmp_path):
    spec = space.sample(random.Random(1))
    model = build_unet(space, spec, teacher).eval()
    model.save_pretrained(tmp_path / "cand")
    loaded = CompactUNet2DConditionModel.from_pretrained(tmp_path / "cand").eval()
    assert dict(loaded.config["arch_choices"]) == spec.replaced()
    with torch.no_grad():
        assert torch.equal(model(*inputs[0], **inputs[1])[0], loaded(*inputs[0], **inputs[1])[0])


def test_candidate_can_be_fine_tuned(space, inputs):
    model = build_unet(space, space.uniform({"resnet": "res_bneck4", "attention": "attn_linear"}))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = model(*inputs[0], **inputs[1])[0].square().mean()
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_swapper_applies_and_restores(space, teacher, inputs):
    swapper = ModuleSwapper(teacher, space, build_module_bank(space))
    with torch.no_grad():
        before = teacher(*inputs[0], **inputs[1])[0]
        swapper.apply(space.uniform({"resnet": "res_skip", "attention": "attn_skip"}))
        skipped = teacher(*inputs[0], **inputs[1])[0]
        swapper.restore()
        after = teacher(*inputs[0], **inputs[1])[0]
    assert torch.equal(before, after) and not torch.equal(before, skipped)


def test_sd21_shaped_space_has_costs_without_training():
    from bench.counting import count_params
    from tocsr.core.surrogates import get_family

    unet = build_unet_from_preset("sd21", "meta")
    space = derive_search_space(unet)
    assert len(space.slots) >= 20
    assert count_params(unet)["params"] == pytest.approx(866e6, rel=0.01)
    for slot in space.slots:
        for choice in slot.choices[1:]:
            fam = get_family(choice)
            assert fam.params(slot) >= 0 and fam.macs(slot, 64, 77) >= 0
