"""What one training step of each discriminator costs: the student's adversarial term (forward and backward to its
input) and the discriminator's own update (reals and fakes), on the batch the quick preset's student feeds it:
16 decoded images of 128 px for the pixel one, their 16-channel latents for the latent one. Alternated, 3 rounds
of 10 steps each; prints the median ms per step.

    python reports/evidence/sr-pd/run52-pixel-discriminator/disc_cost.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from tocsr.core.sr.models import LatentDiscriminator, PixelDiscriminator  # noqa: E402


def step(disc: torch.nn.Module, shape: tuple[int, ...]):
    fake = torch.randn(*shape, requires_grad=True)
    real = torch.randn(*shape)
    opt = torch.optim.AdamW(disc.parameters(), lr=1e-4)

    def run() -> None:
        (-disc(fake).mean()).backward()
        d = F.relu(1 - disc(real)).mean() + F.relu(1 + disc(fake.detach())).mean()
        opt.zero_grad()
        d.backward()
        opt.step()
    return run


def main() -> None:
    torch.manual_seed(0)
    cands = {"latent (16 x 16ch x 16 px)": step(LatentDiscriminator(16), (16, 16, 16, 16)),
             "pixel width 16 (16 x 3 x 128 px)": step(PixelDiscriminator(16), (16, 3, 128, 128)),
             "pixel width 32 (16 x 3 x 128 px)": step(PixelDiscriminator(32), (16, 3, 128, 128))}
    ms = {k: [] for k in cands}
    for _ in range(3):
        for name, run in cands.items():
            run()
            t = time.perf_counter()
            for _ in range(10):
                run()
            ms[name].append((time.perf_counter() - t) / 10 * 1000)
    for name, v in ms.items():
        print(f"{name}: median {statistics.median(v):.1f} ms per step (rounds: {', '.join(f'{x:.1f}' for x in v)}); "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
