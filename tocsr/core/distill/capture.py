"""Record what every slot's block receives and returns during one teacher forward pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from tocsr.core.space import SearchSpace


def block_output(out: Any) -> torch.Tensor:
    """A block's output as a tensor: resnets return one, transformers a tuple or an output object."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    return out.sample


@contextmanager
def record_slots(unet: nn.Module, space: SearchSpace):
    """Yields a dict filled during the forward pass: slot -> (args, kwargs, output), all detached."""
    record: dict[str, tuple[tuple, dict, torch.Tensor]] = {}
    inputs: dict[str, tuple[tuple, dict]] = {}
    handles = []
    for slot in space.slots:
        module = unet.get_submodule(slot.module_path)

        def pre(m, args, kwargs, name=slot.name):
            inputs[name] = (tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                            {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})

        def post(m, args, kwargs, out, name=slot.name):
            a, k = inputs.pop(name)
            record[name] = (a, k, block_output(out).detach())

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    try:
        yield record
    finally:
        for h in handles:
            h.remove()
