"""DistillConfig: the settings of feature-wise surrogate distillation. Light on purpose (no torch): the
CLI takes its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

from tocsr.core.errors import ConfigError

# Whole-candidate fidelity proxies the search can minimise (tocsr.core.distill.fidelity.build_proxy).
PROXIES = ("one-call", "rollout", "rollout-spectrum")
# What searches minimise unless told otherwise: the proxy that ranks candidates by the distribution of what they
# generate, close candidates included (`tocsr fidelity-check`; reports/evidence/proxy-check-run8/).
DEFAULT_PROXY = "rollout-spectrum"


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 1500
    batch: int = 16
    lr: float = 1e-3
    val_batches: int = 2
    checkpoint_every: int = 250
    seed: int = 0
    spearman_candidates: int = 100


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300
    batch: int = 16
    lr: float = 1e-4
    kd_weight: float = 1.0           # matching the teacher's prediction, beside the diffusion target
    ema_decay: float = 0.99
    checkpoint_every: int = 100
    samples: int = 16                # sample-level fidelity before / after, same noise
    sample_steps: int = 10
    # Recompute the teacher blocks' activations in the backward pass instead of keeping them: less memory for
    # about a third more time per step; what lets paper-scale backbones fine-tune at a useful batch on one card.
    gradient_checkpointing: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.samples < 4:
            raise ConfigError(f"fine-tune needs steps >= 1, batch >= 1 and samples >= 4, got steps {self.steps}, "
                              f"batch {self.batch}, samples {self.samples}")
