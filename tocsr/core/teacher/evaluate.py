"""Teacher fidelity measures that work offline.

* Held-out denoising error: MSE of the model's prediction target on validation latents, noised
  with fixed seeds at a fixed timestep grid, so two models (or the same model before and after
  training) are compared on exactly the same noise.
* Samples: DDIM from fixed noise, decoded to a PNG grid.
* Latent KID: kernel inception distance computed on autoencoder-latent features instead of Inception
  features (no Inception weights offline); unbiased MMD^2 with the cubic polynomial kernel, mean and
  std over random subsets, as KID does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

TIMESTEP_GRID = (50, 150, 250, 350, 450, 550, 650, 750, 850, 950)


def latent_ddim(scheduler_config: dict) -> DDIMScheduler:
    """DDIM for normalised latents. diffusers defaults to clip_sample=True, which clamps every x0
    estimate to [-1, 1]: right for pixels, wrong for unit-variance latents (a third of the values lie
    outside), so it is switched off here whatever the saved config says (SD's own configs do the same).
    """
    return DDIMScheduler.from_config(scheduler_config, clip_sample=False)


def prediction_target(scheduler: DDPMScheduler, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(z0, noise, t)
    return noise


@torch.no_grad()
def denoising_error(denoise, scheduler: DDPMScheduler, latents: torch.Tensor, grid=TIMESTEP_GRID,
                    seed: int = 1234, batch: int = 64) -> dict[str, float]:
    """`denoise(z_t, t) -> prediction`. Returns {"t=<t>": mse} and "mean"."""
    out = {}
    for t_val in grid:
        errs = []
        gen = torch.Generator().manual_seed(seed * 10_000 + t_val)
        noise_all = torch.randn(latents.shape, generator=gen)
        for i in range(0, len(latents), batch):
            z0 = latents[i:i + batch]
            noise = noise_all[i:i + batch].to(z0)
            t = torch.full((len(z0),), t_val, dtype=torch.long, device=z0.device)
            zt = scheduler.add_noise(z0, noise, t)
            pred = denoise(zt, t)
            errs.append(F.mse_loss(pred.float(), prediction_target(scheduler, z0, noise, t).float(),
                                   reduction="none").mean(dim=(1, 2, 3)))
        out[f"t={t_val}"] = torch.cat(errs).mean().item()
    out["mean"] = float(np.mean([out[f"t={t}"] for t in grid]))
    return out


@torch.no_grad()
def sample(denoise, scheduler_config: dict, shape: tuple[int, ...], steps: int, seed: int,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """DDIM sampling (eta 0) from seeded Gaussian noise; returns normalised latents."""
    ddim = latent_ddim(scheduler_config)
    ddim.set_timesteps(steps)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    for t in ddim.timesteps:
        tt = torch.full((shape[0],), int(t), dtype=torch.long, device=device)
        z = ddim.step(denoise(z, tt), t, z).prev_sample
    return z


def latent_features(latents: torch.Tensor) -> np.ndarray:
    return F.adaptive_avg_pool2d(latents.float(), 4).flatten(1).cpu().numpy().astype(np.float64)


SPECTRUM_BINS = 12


def image_spectrum_features(images: torch.Tensor, bins: int = SPECTRUM_BINS) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, bins): log10 radially averaged power spectrum of the luma, in
    log-spaced frequency bands.

    Offline there are no Inception weights; the power spectrum is the image statistic that is most
    stable across photographs (roughly 1/f^2), and what a diverged or untrained sampler gets wrong:
    flat (noise) or peaked at the latent grid (8x8 blocks). It does not see objects: a pass says the
    samples have image-like texture, not that they depict anything.
    """
    y = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).double().cpu()
    y = y - y.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(y).abs() ** 2, dim=(1, 2))
    _, h, w = power.shape
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    ring = (yy ** 2 + xx ** 2).double().sqrt().round().long()          # integer radius: every ring has pixels
    top = min(h, w) // 2
    # log-spaced bands over whole rings, so no band is empty whatever the rounding (fewer bands on tiny images)
    edges = np.unique(np.round(np.geomspace(1, top + 1, bins + 1)).astype(int))
    bands = [torch.log10(power[:, (ring >= lo) & (ring < hi)].mean(dim=1) + 1e-12)
             for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return torch.stack(bands, 1).numpy()


def spectrum_kid(features: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """KID between spectrum features, each band standardised by the reference set's spread (bands differ
    by orders of magnitude in variance; unscaled, the noisiest band would decide alone)."""
    mu, sd = reference.mean(0), reference.std(0) + 1e-6
    return kid((features - mu) / sd, (reference - mu) / sd)


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 20, subset_size: int | None = None,
        seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3; (mean, std) over random subsets, by default of half the
    smaller set (subsets as large as both sets would all be the same draw, and the spread would read 0)."""
    d = features_a.shape[1]
    m = subset_size or max(2, min(len(features_a), len(features_b)) // 2)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        a = features_a[rng.choice(len(features_a), m, replace=False)]
        b = features_b[rng.choice(len(features_b), m, replace=False)]
        kaa, kbb, kab = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
        mmd = ((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
               - 2 * kab.mean())
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def image_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> one uint8 HxWx3 grid."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
    n, c, h, w = x.shape
    rows = (n + columns - 1) // columns
    canvas = torch.zeros(c, rows * h, columns * w, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = x[i]
    return canvas.permute(1, 2, 0).numpy()
