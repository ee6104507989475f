"""DistillConfig: the settings of feature-wise surrogate distillation. Light on purpose (no torch): the
CLI takes its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

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
