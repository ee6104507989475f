"""SR training pairs: HR crops of real photographs and their LR counterparts, degraded on the fly."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from tocsr.core.data import Photo, RandomPatches
from tocsr.core.sr.degradations import degrade


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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        hr, gen = self._posed(i)
        kind = self.kinds[i % len(self.kinds)]
        lr = degrade((hr[None] + 1) / 2, self.scale, kind, gen)[0] * 2 - 1
        return hr, lr


