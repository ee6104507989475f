"""Which decoder a device deploys: the autoencoder's own ("kl") or the tiny one distilled from it ("tiny").

Decided before the backbone search, as an ε-constraint on the part's fidelity like the one the search puts on
the backbone: a decoder whose loss against HR (PSNR-Y through the autoencoder's decoder minus through it, on
validation crops, upper end of its 95% interval) is within `max_loss_db` counts as free, and among those the
cheapest is deployed, because what it saves is latency the backbone can use under the same budget. If no
decoder within the bound lets even the cheapest backbone meet the latency budget, the least lossy decoder that
does is taken and the choice says the bound was relaxed; if none does by prediction, the one of the cheapest
pipeline is tried (the selection measures it, and reports the budget infeasible with its figures if it misses:
search.selection.choose).

The costs are the pipeline cost model's predictions at the speed the table was measured (the budget of a
`latency_vs_teacher` profile from the teacher-shaped pipeline measured with it); the search that follows
judges every pick on its own measurement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.pipeline import PipelineCostModel
from bench.profile import DeviceProfile
from tocsr.core.errors import ConfigError
from tocsr.core.space import SearchSpace

DEFAULT_MAX_LOSS_DB = 0.25


@dataclass(frozen=True)
class DecoderOption:
    """One decoder a device could deploy: what it gives up and what the pipeline costs with it."""

    kind: str
    loss_db: float                  # mean PSNR-Y loss against HR vs the autoencoder's decoder (0 for "kl")
    loss_db_high: float             # upper end of its 95% bootstrap interval
    n_crops: int
    decoder_ms: float               # the part's median, predicted at the table's speed
    cheapest_pipeline_ms: float     # the pipeline with the cheapest backbone, at the profile's percentile

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder chosen for a device, why, and every option weighed (recorded in the search result)."""

    decoder: str
    reason: str
    max_loss_db: float
    latency_budget_ms: float | None   # at the table's speed
    options: tuple[DecoderOption, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"decoder": self.decoder, "reason": self.reason, "max_loss_db": self.max_loss_db,
                "latency_budget_ms": self.latency_budget_ms, "options": [o.to_dict() for o in self.options]}


def only_kl(reason: str) -> DecoderChoice:
    """No choice was offered (no tiny decoder trained or measured for this device, or budgets on the backbone)."""
    return DecoderChoice("kl", reason, 0.0, None, ())


def decoder_options(model: PipelineCostModel, space: SearchSpace, losses: dict[str, tuple[float, float, int]]
                    ) -> list[DecoderOption]:
    """The decoders measured on the device that have a fidelity figure (`losses`: kind -> (mean, high, n)), with
    their predicted costs; "kl" needs none."""
    cheapest = model.cheapest(space)
    out = []
    for kind in model.pipeline.decoders:
        if kind != "kl" and kind not in losses:
            continue
        loss, high, n = losses.get(kind, (0.0, 0.0, 0))
        m = model.with_decoder(kind)
        out.append(DecoderOption(kind, loss, high, n, m.fixed_latency_at_ms()[m.pipeline.fixed_parts[1].name],
                                 m.predict_latency_at_ms(cheapest)))
    return out


def teacher_budget_ms(model: PipelineCostModel, profile: DeviceProfile) -> float | None:
    """The profile's latency budget at the table's speed, from the teacher-shaped pipeline measured with it."""
    [teacher] = [c for c in model.pipeline.candidates if c.role == "teacher"] or [None]
    if teacher is None:
        raise ConfigError(f"the pipeline parts measured on {model.device_name} have no teacher-shaped pipeline; "
                          "measure them again with `tocsr costs`")
    q = model.pipeline.percentile
    return profile.budgets.latency_budget_ms(teacher.latency.ms_at(q, model.reference_ms))


def choose_decoder(options: list[DecoderOption], latency_budget_ms: float | None,
                   max_loss_db: float = DEFAULT_MAX_LOSS_DB) -> DecoderChoice:
    """The decoder to deploy (module doc)."""
    if max_loss_db < 0:
        raise ConfigError(f"max_loss_db = {max_loss_db}: a loss bound in dB must be >= 0 (0 keeps the autoencoder's "
                          "decoder unless the budget needs another)")
    if not options:
        return only_kl("no decoder options were measured")

    def fits(o: DecoderOption) -> bool:
        return latency_budget_ms is None or o.cheapest_pipeline_ms <= latency_budget_ms

    within = [o for o in options if o.kind == "kl" or o.loss_db_high <= max_loss_db]
    free = sorted((o for o in within if fits(o)), key=lambda o: o.decoder_ms)
    if free:
        best = free[0]
        why = ("the cheapest decoder within the fidelity bound" if len(within) > 1 else
               "the only decoder within the fidelity bound")
        reason = (f"{why} ({best.kind}: loss {best.loss_db:+.3f} dB, upper 95% {best.loss_db_high:+.3f} <= "
                  f"{max_loss_db:g} dB; decoder {best.decoder_ms:.2f} ms)")
        return DecoderChoice(best.kind, reason, max_loss_db, latency_budget_ms, tuple(options))
    forced = sorted((o for o in options if fits(o)), key=lambda o: o.loss_db)
    if forced:
        best = forced[0]
        reason = (f"no decoder within the {max_loss_db:g} dB bound lets the cheapest backbone meet the "
                  f"{latency_budget_ms:.2f} ms budget; bound relaxed: {best.kind} (loss {best.loss_db:+.3f} dB, upper "
                  f"95% {best.loss_db_high:+.3f}; cheapest pipeline {best.cheapest_pipeline_ms:.2f} ms)")
        return DecoderChoice(best.kind, reason, max_loss_db, latency_budget_ms, tuple(options))
    best = min(options, key=lambda o: o.cheapest_pipeline_ms)
    return DecoderChoice(best.kind, f"no decoder lets the cheapest backbone meet the {latency_budget_ms:.2f} ms budget "
                         f"(predicted); the cheapest pipeline's ({best.kind}, {best.cheapest_pipeline_ms:.2f} ms) is "
                         "tried, and the selection measures it", max_loss_db, latency_budget_ms, tuple(options))
