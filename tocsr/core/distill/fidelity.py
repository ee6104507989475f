"""Fidelity: how far a candidate built from surrogates departs from the teacher.

* Per block (FidelityTable): normalised feature error of each trained surrogate against the teacher
  block it replaces, on held-out latents: MSE / Var(teacher block output).
* Whole candidate, one call (CandidateFidelity): the candidate's prediction against the teacher's on
  fixed noised validation latents over a timestep grid, MSE / E[teacher prediction^2]. The all-teacher
  candidate scores exactly 0. This is the search's objective (not the sum of per-block errors).
* Whole candidate, short rollout (RolloutFidelity): a few DDIM steps from fixed noise, the candidate's
  final latents against the teacher's from the same noise, MSE / E[teacher latent^2] ("rollout"), or the
  decoded rollouts' power-spectrum distribution against the teacher's ("rollout-spectrum"). It sees errors
  compound along the sampler's own trajectory, which one call on noised real latents does not.
Both have the same interface (`evaluate(spec) -> float`, 0 for the teacher), so the search takes either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from tocsr.core.assembly import ModuleSwapper
from tocsr.core.distill.config import PROXIES
from tocsr.core.errors import ConfigError
from tocsr.core.models.autoencoder import decode_latents
from tocsr.core.space import ArchSpec, SearchSpace
from tocsr.core.teacher.evaluate import image_spectrum_features, sample

GRID = (100, 300, 500, 700, 900)


def normalised_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).square().mean() / target.float().var().clamp_min(1e-8)


@dataclass(frozen=True)
class FidelityTable:
    space_id: str
    entries: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)   # init / trained / params

    def error(self, slot: str, choice: str) -> float:
        return 0.0 if choice == "teacher" else self.entries[(slot, choice)]["trained"]

    def sum_of_errors(self, spec: ArchSpec) -> float:
        return sum(self.error(s, c) for s, c in spec.items())

    def to_dict(self) -> dict[str, Any]:
        return {"space_id": self.space_id,
                "entries": [{"slot": s, "choice": c, **v} for (s, c), v in sorted(self.entries.items())]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FidelityTable:
        return cls(d["space_id"], {(e["slot"], e["choice"]): {k: v for k, v in e.items() if k not in ("slot", "choice")}
                                   for e in d["entries"]})


class CandidateFidelity:
    """Evaluates whole candidates against the teacher. The teacher's predictions on the fixed inputs
    are computed once; each evaluation swaps the candidate's trained blocks into the teacher.
    `noise_draws` noises per (latent, timestep) lower the variance between close candidates."""

    def __init__(self, denoiser, space: SearchSpace, bank: dict, scheduler, val_latents: torch.Tensor,
                 grid: tuple[int, ...] = GRID, seed: int = 4321, device: str | torch.device = "cpu",
                 noise_draws: int = 1):
        self.denoiser, self.space, self.device = denoiser.eval().to(device), space, torch.device(device)
        for m in bank.values():
            m.eval().to(device)
        self.swapper = ModuleSwapper(self.denoiser.unet, space, bank)
        gen = torch.Generator().manual_seed(seed)
        inputs = []
        for t_val in [t for _ in range(noise_draws) for t in grid]:
            noise = torch.randn(val_latents.shape, generator=gen)
            t = torch.full((len(val_latents),), t_val, dtype=torch.long)
            inputs.append((scheduler.add_noise(val_latents, noise, t).to(device), t.to(device)))
        self.inputs = inputs
        self.swapper.restore()
        with torch.no_grad():
            self.targets = [self.denoiser(zt, t) for zt, t in inputs]
        self.scale = torch.stack([y.float().square().mean() for y in self.targets]).mean()
        self.evaluations = 0

    @torch.no_grad()
    def evaluate(self, spec: ArchSpec) -> float:
        self.swapper.apply(spec)
        try:
            err = torch.stack([(self.denoiser(zt, t).float() - y.float()).square().mean()
                               for (zt, t), y in zip(self.inputs, self.targets, strict=True)]).mean()
        finally:
            self.swapper.restore()
        self.evaluations += 1
        return float(err / self.scale)


class RolloutFidelity:
    """Evaluates whole candidates by short DDIM rollouts from fixed noise against the teacher's.

    `noise_draws` independent batches of `n` starting noises (their mean is the score) lower the
    variance of the comparison between two close candidates; the teacher's rollouts are computed once.
    `measure`: "paired" compares each final latent with the teacher's from the same noise; "spectrum"
    decodes them (needs `autoencoder`) and compares the distribution of their radial power spectra with
    the teacher's (per band, squared differences of mean and spread, bands standardised by the teacher's
    spread): a distribution-level score like the spectrum KID, deterministic for fixed seeds.
    """

    def __init__(self, denoiser, space: SearchSpace, bank: dict, scheduler_config: dict,
                 latent_shape: tuple[int, ...], n: int = 8, steps: int = 4, noise_draws: int = 1,
                 seed: int = 8765, device: str | torch.device = "cpu", measure: str = "paired", autoencoder=None):
        if n < 2 or steps < 1 or noise_draws < 1:
            raise ValueError(f"RolloutFidelity needs n >= 2, steps, noise_draws >= 1, got {n}, {steps}, {noise_draws}")
        if measure not in ("paired", "spectrum") or (measure == "spectrum" and autoencoder is None):
            raise ValueError(f"RolloutFidelity measure must be 'paired' or 'spectrum' (with an autoencoder), got "
                             f"{measure!r}")
        self.measure, self.autoencoder = measure, autoencoder
        self.denoiser, self.space, self.device = denoiser.eval().to(device), space, torch.device(device)
        for m in bank.values():
            m.eval().to(device)
        self.swapper = ModuleSwapper(self.denoiser.unet, space, bank)
        self.config, self.shape, self.steps = dict(scheduler_config), (n, *latent_shape), steps
        self.seeds = tuple(seed + 97 * k for k in range(noise_draws))
        self.swapper.restore()
        self.targets = [self._rollout(s) for s in self.seeds]
        self.scale = torch.stack([y.float().square().mean() for y in self.targets]).mean()
        if measure == "spectrum":
            feats = torch.cat([self._spectra(y) for y in self.targets])
            self.band_mean, self.band_sd = feats.mean(0), feats.std(0) + 1e-6
            self.target_stats = self._stats(feats)
        self.evaluations = 0

    def _rollout(self, seed: int) -> torch.Tensor:
        return sample(lambda z, t: self.denoiser(z, t), self.config, self.shape, self.steps, seed, self.device)

    @torch.no_grad()
    def _spectra(self, z: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(image_spectrum_features(decode_latents(self.autoencoder, z.float()).cpu()))

    def _stats(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (feats - self.band_mean) / self.band_sd
        return x.mean(0), x.std(0)

    @torch.no_grad()
    def evaluate(self, spec: ArchSpec) -> float:
        self.swapper.apply(spec)
        try:
            outs = [self._rollout(s).float() for s in self.seeds]
        finally:
            self.swapper.restore()
        self.evaluations += 1
        if not all(bool(torch.isfinite(z).all()) for z in outs):
            return float("inf")
        if self.measure == "paired":
            value = float(torch.stack([(z - y.float()).square().mean()
                                       for z, y in zip(outs, self.targets, strict=True)]).mean() / self.scale)
        else:
            (mu, sd), (mu_t, sd_t) = self._stats(torch.cat([self._spectra(z) for z in outs])), self.target_stats
            value = float(((mu - mu_t).square() + (sd - sd_t).square()).mean())
        return value if math.isfinite(value) else float("inf")


def build_proxy(name: str, teacher, space: SearchSpace, bank: dict, val_latents: torch.Tensor,
                noise_draws: int = 1, device: str | torch.device = "cpu"):
    """The whole-candidate proxy called `name` (one of PROXIES) for a loaded teacher."""
    if name == "one-call":
        return CandidateFidelity(teacher.denoiser, space, bank, teacher.scheduler, val_latents, device=device,
                                 noise_draws=noise_draws)
    if name == "rollout":
        return RolloutFidelity(teacher.denoiser, space, bank, dict(teacher.scheduler.config),
                               tuple(val_latents.shape[1:]), noise_draws=noise_draws, device=device)
    if name == "rollout-spectrum":
        return RolloutFidelity(teacher.denoiser, space, bank, dict(teacher.scheduler.config),
                               tuple(val_latents.shape[1:]), n=16, noise_draws=noise_draws, device=device,
                               measure="spectrum", autoencoder=teacher.autoencoder)
    raise ConfigError(f"fidelity proxy {name!r} does not exist; available: {', '.join(PROXIES)}")
