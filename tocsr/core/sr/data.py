"""SR training pairs: HR crops of real photographs and their LR counterparts, degraded on the fly."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from tocsr.core.data import DataSplit, Photo, RandomPatches, load_train_val
from tocsr.core.sr.degradations import degrade

# Seed offset between draws of one item's degradation (SRPairs.degraded).
DRAW_STRIDE = 2**50


class SRPairs(Dataset):
    """Item i -> (hr in [-1, 1] (3, P, P), lr in [-1, 1] (3, P/s, P/s)); reproducible per (seed, i).

    `kinds` are mixed evenly: with ("bicubic", "realesrgan") half the pairs use each. Crops are
    rotated by a seeded multiple of 90 degrees (with the crops' own flips: all 8 dihedral poses),
    the usual SR augmentation; it matters here, where a few dozen photographs feed every pair.
    """

    def __init__(self, photos: list[Photo], patch_px: int, scale: int, length: int, seed: int,
                 kinds: tuple[str, ...] = ("bicubic", "realesrgan")):
        self.crops = RandomPatches(photos, patch_px, length, seed)
        self.scale, self.seed, self.kinds = scale, seed, kinds

    def __len__(self) -> int:
        return len(self.crops)

    def _posed(self, i: int) -> tuple[torch.Tensor, torch.Generator]:
        """HR crop i in its seeded pose, and the generator (already advanced) its degradation draws from."""
        gen = torch.Generator().manual_seed(self.seed * 7_919 + i)
        return torch.rot90(self.crops[i], int(torch.randint(0, 4, (1,), generator=gen)), dims=(1, 2)), gen

    def hr(self, i: int) -> torch.Tensor:
        return self._posed(i)[0]

    def kind(self, i: int) -> str:
        return self.kinds[i % len(self.kinds)]

    def degraded(self, i: int, draw: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Item i (draw 0), or the same HR crop in the same pose degraded by another draw of its degradation's
        random parameters (draw > 0: another noise, blur, JPEG quality; a bicubic item comes out the same).
        Item indices stay far below DRAW_STRIDE, so no draw repeats another item's."""
        hr, gen = self._posed(i)
        if draw:
            gen = torch.Generator().manual_seed(self.seed * 7_919 + i + draw * DRAW_STRIDE)
        lr = degrade((hr[None] + 1) / 2, self.scale, self.kind(i), gen)[0] * 2 - 1
        return hr, lr

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.degraded(i)





def sr_photographs(data, split: DataSplit, cfg) -> tuple[list[Photo], list[Photo]]:
    """The photographs the SR stage trains and validates on: (train, validation) of `split`, at least `cfg.patch_px`
    on the shorter side, the training ones cut to the first `cfg.train_photographs` in the split's order (0 keeps
    all). Everything that trains an SR model or its baselines reads them here, so a comparison stays on the same
    photographs."""
    train, val, _ = load_train_val(data, split, min_side=cfg.patch_px, train_first=cfg.train_photographs)
    return train, val
