"""ArchSpec <-> tensor: one-hot per slot (the GP's input) and integer codes (TPE's)."""

from __future__ import annotations

import torch

from tocsr.core.space import ArchSpec, SearchSpace


class OneHot:
    def __init__(self, space: SearchSpace):
        self.space = space
        self.offsets, n = [], 0
        for s in space.slots:
            self.offsets.append(n)
            n += len(s.choices)
        self.dim = n
        # column of each (slot, choice): the searches encode thousands of neighbours per step, and setting
        # tensor elements one at a time from Python dominated their time
        self._column = [{c: off + k for k, c in enumerate(s.choices)} for s, off in zip(space.slots, self.offsets,
                                                                                         strict=True)]

    def encode(self, specs: list[ArchSpec]) -> torch.Tensor:
        x = torch.zeros(len(specs), self.dim, dtype=torch.float64)
        if specs:
            cols = [[col[choice] for col, choice in zip(self._column, spec.choices, strict=True)] for spec in specs]
            x.scatter_(1, torch.tensor(cols), 1.0)
        return x

    def decode(self, x: torch.Tensor) -> ArchSpec:
        choices = []
        for j, slot in enumerate(self.space.slots):
            block = x[self.offsets[j]:self.offsets[j] + len(slot.choices)]
            choices.append(slot.choices[int(block.argmax())])
        return ArchSpec(self.space.space_id, self.space.slot_names, tuple(choices))

    def linear_weights(self, value) -> torch.Tensor:
        """w such that w . onehot(spec) = sum over slots of value(slot, choice): for additive costs."""
        w = torch.zeros(self.dim, dtype=torch.float64)
        for j, slot in enumerate(self.space.slots):
            for k, choice in enumerate(slot.choices):
                w[self.offsets[j] + k] = value(slot.name, choice)
        return w
