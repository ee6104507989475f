"""Which encoder and decoder a device deploys around its backbone: the autoencoder's own ("kl") or the cheaper
parts trained against them (the LR encoder "lr", the tiny decoder "tiny"; tocsr.core.sr.parts).

Decided before the backbone search, as an ε-constraint on the parts' fidelity like the one the search puts on
the backbone. A pair's loss against HR is its parts' losses added (each part's PSNR-Y through the autoencoder's
own part minus through it, on validation crops, scored alone by the parts stage; the pair is not scored as a
pair, and the record says so). A pair whose loss (upper end of the 95% intervals, added) is within
`max_loss_db` counts as free, and among those the cheapest is deployed, because what it saves is latency the
backbone can use under the same budget. If no pair within the bound lets even the cheapest backbone meet the
latency budget, the least lossy pair that does is taken and the choice says the bound was relaxed; if none
does by prediction, the pair of the cheapest pipeline is tried (the selection measures it, and reports the
budget infeasible with its figures if it misses: search.selection.choose).

The costs are the pipeline cost model's predictions at the speed the table was measured (the budget of a
`latency_vs_teacher` profile from the teacher-shaped pipeline measured with it); the search that follows
judges every pick on its own measurement. Pairs are ranked by their parts, each timed alone; a pair's whole-call
overhead (what its whole pipelines cost beyond their parts and backbone: the median of a few residuals) counts in
whether its cheapest pipeline fits, not in the ranking: on a shared machine it is mostly the noise of those few
readings, and one noisy reading was enough to make the autoencoder's encoder look the cheaper of the two.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from bench.pipeline import OVERHEAD_PART, PipelineCostModel
from bench.profile import DeviceProfile
from tocsr.core.errors import ConfigError
from tocsr.core.space import SearchSpace

DEFAULT_MAX_LOSS_DB = 0.25

# part kind -> (mean PSNR-Y loss in dB against the autoencoder's own part, upper end of its 95% interval, crops)
PartLosses = dict[str, tuple[float, float, int]]


@dataclass(frozen=True)
class PartsOption:
    """One (encoder, decoder) pair a device could deploy: what it gives up and what the pipeline costs with it."""

    encoder: str
    decoder: str
    loss_db: float                  # the two parts' mean PSNR-Y losses against HR, added (0 for the KL pair)
    loss_db_high: float             # the upper ends of their 95% bootstrap intervals, added
    parts_ms: float                 # encoder + decoder medians, each timed alone, at the table's speed
    cheapest_pipeline_ms: float     # the pipeline with the cheapest backbone, at the profile's percentile
    overhead_ms: float = 0.0        # the pair's whole-call overhead (in cheapest_pipeline_ms, not in parts_ms)

    @property
    def name(self) -> str:
        return f"{self.encoder} encoder + {self.decoder} decoder"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PartsChoice:
    """The pair chosen for a device, why, and every option weighed (recorded in the search result)."""

    encoder: str
    decoder: str
    reason: str
    max_loss_db: float
    latency_budget_ms: float | None   # the target (the budget less the profile's guard), at the table's speed
    options: tuple[PartsOption, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "decoder": self.decoder, "reason": self.reason,
                "max_loss_db": self.max_loss_db, "latency_budget_ms": self.latency_budget_ms,
                "losses_added": "each part scored alone by the parts stage; a pair's loss is the sum",
                "options": [o.to_dict() for o in self.options]}


def autoencoders_own(reason: str) -> PartsChoice:
    """No choice was offered (no cheaper parts trained or measured for this device, or budgets on the backbone)."""
    return PartsChoice("kl", "kl", reason, 0.0, None, ())


def parts_options(model: PipelineCostModel, space: SearchSpace, encoder_losses: PartLosses,
                  decoder_losses: PartLosses) -> list[PartsOption]:
    """Every (encoder, decoder) pair measured on the device whose parts have a fidelity figure ("kl" needs none),
    with its predicted costs."""
    cheapest = model.cheapest(space)
    encoders = [k for k in model.pipeline.encoders if k == "kl" or k in encoder_losses]
    decoders = [k for k in model.pipeline.decoders if k == "kl" or k in decoder_losses]
    out = []
    for enc, dec in itertools.product(encoders, decoders):
        e, d = encoder_losses.get(enc, (0.0, 0.0, 0)), decoder_losses.get(dec, (0.0, 0.0, 0))
        m = model.with_parts(enc, dec)
        fixed = m.fixed_latency_at_ms()
        overhead = fixed.pop(OVERHEAD_PART, 0.0)
        out.append(PartsOption(enc, dec, e[0] + d[0], e[1] + d[1], sum(fixed.values()),
                               m.predict_latency_at_ms(cheapest), overhead))
    return out


def latency_target_at_table_ms(model: PipelineCostModel, profile: DeviceProfile) -> float | None:
    """The latency the chosen model must meet (the profile's budget less its guard, `DeviceProfile.latency_target_ms`)
    at the table's speed, from the teacher-shaped pipeline measured with it."""
    [teacher] = [c for c in model.pipeline.candidates if c.role == "teacher"] or [None]
    if teacher is None:
        raise ConfigError(f"the pipeline parts measured on {model.device_name} have no teacher-shaped pipeline; "
                          "measure them again with `tocsr costs`")
    q = model.pipeline.percentile
    return profile.latency_target_ms(teacher.latency.ms_at(q, model.reference_ms))


def choose_parts(options: list[PartsOption], latency_budget_ms: float | None,
                 max_loss_db: float = DEFAULT_MAX_LOSS_DB) -> PartsChoice:
    """The encoder and decoder to deploy (module doc)."""
    if max_loss_db < 0:
        raise ConfigError(f"max_loss_db = {max_loss_db}: a loss bound in dB must be >= 0 (0 keeps the autoencoder's "
                          "parts unless the budget needs others)")
    if not options:
        return autoencoders_own("no cheaper parts were measured")

    def fits(o: PartsOption) -> bool:
        return latency_budget_ms is None or o.cheapest_pipeline_ms <= latency_budget_ms

    def chosen(o: PartsOption, reason: str) -> PartsChoice:
        return PartsChoice(o.encoder, o.decoder, reason, max_loss_db, latency_budget_ms, tuple(options))

    within = [o for o in options if (o.encoder, o.decoder) == ("kl", "kl") or o.loss_db_high <= max_loss_db]
    free = sorted((o for o in within if fits(o)), key=lambda o: o.parts_ms)
    if free:
        best = free[0]
        why = "the cheapest parts within the fidelity bound" if len(within) > 1 else "the only parts within the bound"
        return chosen(best, f"{why} ({best.name}: loss {best.loss_db:+.3f} dB, upper 95% {best.loss_db_high:+.3f} "
                            f"<= {max_loss_db:g} dB; parts {best.parts_ms:.2f} ms)")
    forced = sorted((o for o in options if fits(o)), key=lambda o: (o.loss_db, o.parts_ms))
    if forced:
        best = forced[0]
        return chosen(best, f"no parts within the {max_loss_db:g} dB bound let the cheapest backbone meet the "
                            f"{latency_budget_ms:.2f} ms target (the budget less its guard, at the cost table's speed); bound relaxed: {best.name} (loss {best.loss_db:+.3f} "
                            f"dB, upper 95% {best.loss_db_high:+.3f}; cheapest pipeline "
                            f"{best.cheapest_pipeline_ms:.2f} ms)")
    best = min(options, key=lambda o: o.cheapest_pipeline_ms)
    return chosen(best, f"no parts let the cheapest backbone meet the {latency_budget_ms:.2f} ms target (the budget less its guard; predicted, at "
                        "the cost table's speed); "
                        f"the cheapest pipeline's ({best.name}, {best.cheapest_pipeline_ms:.2f} ms) is tried, and "
                        "the selection measures it")


__all__ = ["DEFAULT_MAX_LOSS_DB", "PartLosses", "PartsChoice", "PartsOption", "autoencoders_own", "choose_parts", "parts_options",
           "latency_target_at_table_ms"]
