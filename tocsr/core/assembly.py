"""Turn an ArchSpec into a model: `build_unet` (a saveable diffusers model) and `ModuleSwapper`
(swap blocks of one live model in place, for measuring many candidates without rebuilding).

Example:
    >>> model = build_unet(space, space.uniform({"resnet": "res_bneck4"}))
    >>> model.save_pretrained("runs/x"); CompactUNet2DConditionModel.from_pretrained("runs/x")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from tocsr.core.errors import ConfigError
from tocsr.core.space import TEACHER, ArchSpec, SearchSpace, derive_search_space
from tocsr.core.surrogates import build_surrogate


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    if isinstance(parent, (nn.ModuleList, nn.Sequential)):
        parent[int(leaf)] = module
    else:
        setattr(parent, leaf, module)


class CompactUNet2DConditionModel(ModelMixin, ConfigMixin):
    """A teacher-shaped diffusers UNet with some blocks replaced by surrogates.

    Saves and loads as a diffusers folder (config.json + safetensors). The config holds the teacher
    UNet config and the {slot: choice} map, so `from_pretrained` rebuilds the same structure and
    then loads the weights. `self.unet` is a real `UNet2DConditionModel`.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, unet_config: dict[str, Any] | None = None, arch_choices: dict[str, str] | None = None):
        super().__init__()
        if unet_config is None:
            raise ConfigError("CompactUNet2DConditionModel needs unet_config (the teacher UNet's config)")
        self.unet = UNet2DConditionModel(**unet_config)
        space = derive_search_space(self.unet)
        spec = space.spec(dict(arch_choices or {}))
        for slot_name, choice in spec.replaced().items():
            slot = space.slot(slot_name)
            set_submodule(self.unet, slot.module_path, build_surrogate(choice, slot))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor, return_dict: bool = True, **kwargs):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=return_dict, **kwargs)


def build_unet(space: SearchSpace, spec: ArchSpec, teacher: UNet2DConditionModel | None = None,
               device: str | torch.device = "cpu") -> CompactUNet2DConditionModel:
    """The candidate `spec` as a diffusers model. With `teacher`, every teacher-choice block and the
    fixed parts (conv_in, time embedding, samplers, conv_out) take the teacher's weights."""
    space.check(spec)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(space.unet_config).items()}
    with torch.device(device):
        model = CompactUNet2DConditionModel(unet_config=config, arch_choices=spec.replaced())
    if teacher is not None:
        load_teacher_weights(model, teacher, space, spec)
    return model


def load_teacher_weights(model: CompactUNet2DConditionModel, teacher: UNet2DConditionModel, space: SearchSpace,
                         spec: ArchSpec) -> None:
    """Copy the teacher's weights into every part the candidate shares with it; refuse anything else."""
    replaced = [space.slot(s).module_path + "." for s in spec.replaced()]
    teacher_sd = {k: v for k, v in teacher.state_dict().items() if not any(k.startswith(p) for p in replaced)}
    missing, unexpected = model.unet.load_state_dict(teacher_sd, strict=False)
    stray = [k for k in missing if not any(k.startswith(p) for p in replaced)]
    if stray or unexpected:
        raise ConfigError(f"teacher weights do not fit the search space: missing {stray[:3]}, unexpected "
                          f"{unexpected[:3]}; was the space derived from another teacher?")


def load_surrogate_weights(model: CompactUNet2DConditionModel, space: SearchSpace, spec: ArchSpec,
                           bank: Mapping[tuple[str, str], Mapping[str, torch.Tensor]]) -> None:
    """Load trained surrogate weights, `bank[(slot, choice)] = state_dict`, into the replaced blocks."""
    for slot_name, choice in spec.replaced().items():
        key = (slot_name, choice)
        if key not in bank:
            raise ConfigError(f"no trained weights for slot {slot_name} choice {choice}; run `tocsr distill` "
                              "for this teacher first")
        model.unet.get_submodule(space.slot(slot_name).module_path).load_state_dict(bank[key])


class ModuleSwapper:
    """Sets the blocks of one live UNet to a candidate's choices, from a bank of prebuilt modules.

    Used for measuring many candidates on a device: nothing is rebuilt or copied between candidates.
    `bank[(slot, choice)]` holds surrogate modules; teacher blocks are remembered on construction.
    """

    def __init__(self, unet: nn.Module, space: SearchSpace, bank: Mapping[tuple[str, str], nn.Module]):
        self.unet, self.space, self.bank = unet, space, dict(bank)
        self.teacher_blocks = {s.name: unet.get_submodule(s.module_path) for s in space.slots}

    def module_for(self, slot: str, choice: str) -> nn.Module:
        if choice == TEACHER:
            return self.teacher_blocks[slot]
        if (slot, choice) not in self.bank:
            raise ConfigError(f"the module bank has no {choice!r} for slot {slot}")
        return self.bank[(slot, choice)]

    def apply(self, spec: ArchSpec) -> nn.Module:
        self.space.check(spec)
        for slot_name, choice in spec.items():
            set_submodule(self.unet, self.space.slot(slot_name).module_path, self.module_for(slot_name, choice))
        return self.unet

    def restore(self) -> nn.Module:
        return self.apply(self.space.all_teacher())


def build_module_bank(space: SearchSpace, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> dict[tuple[str, str], nn.Module]:
    """One freshly initialised module per (slot, non-teacher choice), on `device` in `dtype`."""
    bank = {}
    for slot in space.slots:
        for choice in slot.choices:
            if choice != TEACHER:
                with torch.device(device):
                    module = build_surrogate(choice, slot)
                bank[(slot.name, choice)] = nn.Module.to(module, dtype=dtype).eval()
    return bank
