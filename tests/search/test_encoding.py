from __future__ import annotations

import random

import torch

from search.encoding import OneHot


def test_one_hot_rows_decode_to_their_specs_and_weights_sum_additive_values(space):
    enc = OneHot(space)
    rng = random.Random(0)
    specs = [space.all_teacher()] + [space.sample_mixed(rng) for _ in range(20)]
    x = enc.encode(specs)
    assert x.shape == (len(specs), enc.dim) and x.dtype == torch.float64
    assert torch.equal(x.sum(1), torch.full((len(specs),), float(len(space.slots)), dtype=torch.float64))
    assert [enc.decode(row) for row in x] == specs
    value = {(s.name, c): float(len(s.name) + k) for s in space.slots for k, c in enumerate(s.choices)}
    w = enc.linear_weights(lambda s, c: value[(s, c)])
    assert torch.allclose(x @ w, torch.tensor([sum(value[k] for k in s.items()) for s in specs], dtype=torch.float64))
    assert enc.encode([]).shape == (0, enc.dim)
