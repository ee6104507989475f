"""The trained surrogates of one search space, saved as one safetensors file.

Keys are "<slot>|<choice>|<parameter>"; the space itself is saved beside them, so a bank is only
ever loaded into the space it was trained for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from tocsr.core.errors import ArtifactError
from tocsr.core.space import TEACHER, SearchSpace
from tocsr.core.surrogates import build_surrogate

Bank = dict[tuple[str, str], nn.Module]


def new_bank(space: SearchSpace, seed: int = 0) -> Bank:
    torch.manual_seed(seed)
    return {(s.name, c): build_surrogate(c, s) for s in space.slots for c in s.choices if c != TEACHER}


def bank_state(bank: Bank) -> dict[str, torch.Tensor]:
    return {f"{slot}|{choice}|{k}": v.detach().cpu().contiguous()
            for (slot, choice), m in bank.items() for k, v in m.state_dict().items()}


def save_bank(bank: Bank, path: str | Path, space: SearchSpace) -> None:
    from safetensors.torch import save as save_bytes

    from tocsr.core.artifacts import atomic_write_bytes

    atomic_write_bytes(path, save_bytes(bank_state(bank), metadata={"space_id": space.space_id}))


def load_bank(space: SearchSpace, path: str | Path) -> Bank:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: surrogate weights not found; run `tocsr distill` first")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except Exception as err:  # noqa: BLE001  safetensors raises several types for broken files
        raise ArtifactError(f"{path}: unreadable surrogate weights ({type(err).__name__}: {err})") from None
    if meta.get("space_id") != space.space_id:
        raise ArtifactError(f"{path}: trained for search space {meta.get('space_id')}, not {space.space_id}")
    bank = new_bank(space)
    for (slot, choice), module in bank.items():
        prefix = f"{slot}|{choice}|"
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return bank


__all__ = ["Bank", "bank_state", "load_bank", "new_bank", "save_bank"]
