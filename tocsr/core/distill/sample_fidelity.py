"""Sample-level fidelity: what a candidate generates, against what the teacher generates from the same noise.

The search's objective (`fidelity.CandidateFidelity`) compares one prediction call on noised held-out
latents; what the paper means by generative fidelity is what comes out of sampling. Here a candidate
(its surrogates swapped into the teacher) runs the whole DDIM chain from fixed noise, and so does the
teacher, once:
* paired error: per sample, ||z_candidate - z_teacher||^2 / mean ||z_teacher||^2 (same noise, same sampler,
  so the teacher scores 0 and the error grows as the candidate's trajectory departs); mean and the
  spread over samples;
* spectrum KID: the candidate's decoded samples against the teacher's, on radial power spectra
  (`teacher.evaluate.image_spectrum_features`), mean and spread over KID subsets.
The noise is fixed by `seed`, so two candidates are compared on the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tocsr.core.assembly import ModuleSwapper
from tocsr.core.models.autoencoder import decode_latents
from tocsr.core.space import ArchSpec, SearchSpace
from tocsr.core.teacher.evaluate import image_spectrum_features, sample, spectrum_kid


@dataclass(frozen=True)
class SampleScore:
    paired_error: float              # mean over samples
    paired_error_std: float          # spread over samples
    spectrum_kid: float              # vs the teacher's samples
    spectrum_kid_std: float          # spread over KID subsets
    n_samples: int
    steps: int


class SampleFidelity:
    """Scores whole candidates by their samples. The teacher's samples are drawn once."""

    def __init__(self, denoiser, space: SearchSpace, bank: dict, scheduler_config: dict, autoencoder,
                 latent_shape: tuple[int, ...], n: int = 32, steps: int = 10, seed: int = 2024,
                 device: str | torch.device = "cpu"):
        self.denoiser, self.space, self.device = denoiser.eval().to(device), space, torch.device(device)
        for m in bank.values():
            m.eval().to(device)
        self.swapper = ModuleSwapper(self.denoiser.unet, space, bank)
        self.autoencoder, self.config = autoencoder.eval(), dict(scheduler_config)
        self.shape, self.steps, self.seed, self.n = (n, *latent_shape), steps, seed, n
        self.swapper.restore()
        self.teacher_samples = self._sample()
        self.teacher_spectra = image_spectrum_features(self._decode(self.teacher_samples))
        self.scale = float(self.teacher_samples.float().square().mean())
        self.evaluations = 0

    def _sample(self) -> torch.Tensor:
        return sample(lambda z, t: self.denoiser(z, t), self.config, self.shape, self.steps, self.seed,
                      self.device).cpu()

    @torch.no_grad()
    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([decode_latents(self.autoencoder, z[i:i + 16]).cpu() for i in range(0, len(z), 16)])

    @torch.no_grad()
    def evaluate(self, spec: ArchSpec) -> SampleScore:
        """A candidate: its surrogates swapped into the teacher."""
        self.swapper.apply(spec)
        try:
            z = self._sample()
        finally:
            self.swapper.restore()
        return self._score(z)

    @torch.no_grad()
    def evaluate_denoiser(self, denoise) -> SampleScore:
        """Any `denoise(z_t, t) -> prediction` in the teacher's parametrisation (e.g. a fine-tuned backbone)."""
        z = sample(denoise, self.config, self.shape, self.steps, self.seed, self.device).cpu()
        return self._score(z)

    def _score(self, z: torch.Tensor) -> SampleScore:
        self.evaluations += 1
        finite = bool(torch.isfinite(z).all())
        per_sample = ((z.float() - self.teacher_samples.float()).square().mean(dim=(1, 2, 3)) / self.scale).numpy() \
            if finite else np.full(self.n, np.inf)
        kid_mean, kid_std = spectrum_kid(image_spectrum_features(self._decode(z)), self.teacher_spectra) \
            if finite else (float("inf"), 0.0)
        return SampleScore(float(per_sample.mean()), float(per_sample.std()), kid_mean, kid_std, self.n, self.steps)
