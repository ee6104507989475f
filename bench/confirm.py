"""Confirming a choice on the device it was made for: a small ONNX bundle of what would ship, and its verdict.

A device that is not attached is chosen for on a cost table (a roofline, or a bundle's measurements fitted
into one): the choice is a prediction. `export_confirmation` writes the few workloads that settle it, with the
same runner as a cost bundle (bench.bundle). For a profile whose budgets bound the deployed pipeline, whole
one-step SR calls (LR image in, HR image out); for one that bounds the backbone, one backbone call each:

  * the reference workload (the teacher UNet), timed beside every workload as a cost bundle times it;
  * the teacher as shipped (its backbone, the autoencoder's parts), or its backbone: what a relative budget
    is a fraction of;
  * the chosen model (with the encoder and decoder it deploys) and runners-up (the next feasible trials by the search's
    objective).

`confirm_results` turns the device's timings into a `Confirmation`: each workload's p90 at one speed of the
device (the median of every reference burst of the run), the budget in ms on the device, whether each meets
it, a bootstrap interval on latency / budget (the verdict is "clear" when it excludes 1), and what to ship.
The runner times, it does not read memory: a memory budget is not confirmed here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.bundle import (
    OPSET,
    device_name,
    export_onnx,
    export_profile,
    paired_latency,
    read_results,
    write_bundle,
)
from bench.probe import (
    TorchPipelineProbe,
    TorchProbe,
    parts_for_cost,
    pipeline_builder,
    teacher_inputs,
)
from bench.profile import DeviceProfile, parse_profile
from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.errors import ConfigError
from tocsr.core.space import ArchSpec, SearchSpace, derive_search_space
from tocsr.core.sr.onestep import DECODERS, ENCODERS

CONFIRM_BUNDLE_KIND = "tocsr.bench.confirm_bundle"
CONFIRM_BUNDLE_VERSION = 1
CONFIRMATION_KIND = "tocsr.bench.confirmation"
CONFIRMATION_VERSION = 1
BOOTSTRAP = 2000


@dataclass(frozen=True)
class ConfirmTarget:
    """A pipeline to confirm: `role` "chosen" or "runner-up"; `decoder` and `encoder` the parts it deploys; what
    the search said of its latency relative to the teacher as shipped (None where it said nothing)."""

    role: str
    spec: ArchSpec
    decoder: str = "kl"
    search_vs_teacher: float | None = None
    encoder: str = "kl"

    def __post_init__(self) -> None:
        if self.role not in ("chosen", "runner-up"):
            raise ValueError(f"role must be 'chosen' or 'runner-up', got {self.role!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")


def export_confirmation(teacher, profile: DeviceProfile, bank: dict, out: str | Path, targets: Sequence[ConfirmTarget],
                        search: dict[str, Any], progress: Callable[[str], None] | None = None) -> Path:
    """Write the confirmation bundle of `targets` for `profile` (its batch and sizes) to `out` (see module doc).
    `search` is what the manifest records of the search that chose (folder, status, budget in words).

    What is timed is what the profile's budgets bound: whole one-step SR pipelines (scope "pipeline"), or one
    backbone call at the latent size (scope "backbone": the candidate UNets, the teacher's as the yardstick)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: the folder is not empty; give a new folder for the confirmation bundle")
    if sum(t.role == "chosen" for t in targets) != 1:
        raise ConfigError(f"a confirmation bundle holds exactly one chosen pipeline, got "
                          f"{sum(t.role == 'chosen' for t in targets)}")
    space = derive_search_space(teacher.unet)
    local = export_profile(profile)
    args, kwargs = teacher_inputs(teacher, local)
    scope = profile.budgets.scope
    if scope == "pipeline":
        pipes = TorchPipelineProbe(teacher, space, bank, local)

        def build(spec: ArchSpec, encoder: str, decoder: str) -> tuple[nn.Module, tuple, dict, int]:
            if (encoder, decoder) == ("kl", "kl"):
                model = pipes.model(spec)
            else:
                enc, dec = parts_for_cost(encoder, decoder, local.resolution.scale)
                model = pipeline_builder(teacher, space, bank, local.resolution.scale, dec, enc)(spec)
            return model, pipes.lr, {}, pipes.candidate_params(spec)
    else:
        probe = TorchProbe(space, copy.deepcopy(teacher.unet), args, kwargs, local, bank)

        def build(spec: ArchSpec, encoder: str, decoder: str) -> tuple[nn.Module, tuple, dict, int]:
            # the probe's UNet with spec's blocks swapped in: exported before the next spec swaps its own
            return probe.swapper.apply(spec), probe.args, probe.kwargs, probe.candidate_params(spec)
    workloads: list[dict[str, Any]] = []

    def add(wid: str, role: str, module: nn.Module, args: tuple, kwargs: dict, **info: Any) -> None:
        file = f"models/{len(workloads):04d}-{role}.onnx"
        workloads.append({"id": wid, "role": role, "file": file, "inputs": export_onnx(module, args, kwargs, out / file),
                          **info})
        if progress:
            progress(wid)

    add("reference", "reference", nn.Module.to(copy.deepcopy(teacher.unet), "cpu", torch.float32).eval(), args, kwargs)
    # the teacher as shipped first: the yardstick of a relative budget
    rows = [("teacher", space.all_teacher(), "kl", "kl", None),
            *((t.role, t.spec, t.encoder, t.decoder, t.search_vs_teacher) for t in targets)]
    for role, spec, encoder, decoder, said in rows:
        model, a, k, params = build(spec, encoder, decoder)
        add(f"{scope}:{role}:{spec.key}:{encoder}:{decoder}", role, model, a, k, key=spec.key,
            choices=dict(spec.items()), encoder=encoder, decoder=decoder, params=params, search_vs_teacher=said)
    manifest = {"profile_name": profile.name, "profile": profile.to_dict(), "profile_sha256": profile.sha256,
                "space_id": space.space_id, "input_px": profile.resolution.input_px,
                "output_px": profile.resolution.output_px, "batch": profile.batch, "onnx_precision": "fp32",
                "opset": OPSET, "timing": dataclasses.asdict(profile.timing), "search": search, "scope": scope,
                "then": "tocsr costs confirm {results}", "workloads": workloads}
    return write_bundle(out, CONFIRM_BUNDLE_KIND, CONFIRM_BUNDLE_VERSION, manifest,
                        _readme(profile, targets, search))


def _readme(profile: DeviceProfile, targets: Sequence[ConfirmTarget], search: dict[str, Any]) -> str:
    chosen = next(t for t in targets if t.role == "chosen")
    res = profile.resolution
    what, shipped = ((f"whole one-step SR pipelines (LR {res.input_px} px in, HR {res.output_px} px out)",
                      " as shipped") if profile.budgets.scope == "pipeline" else
                     (f"backbone calls (one UNet call at {res.latent_px} px latents)", "'s backbone"))
    return f"""# Confirmation bundle: {profile.name}

Confirms on the device the choice `{chosen.spec.key}` ({chosen.encoder} encoder, {chosen.decoder} decoder) that a
search made without it
({search.get('status', '?')}: {search.get('basis') or search.get('folder', '')}). The budget:
{search.get('budget_in_words', '?')}.

{len(targets) + 1} {what} (batch {profile.batch}, fp32 ONNX, opset {OPSET}): the teacher{shipped}, the chosen
one, {len(targets) - 1} runner(s)-up; and the reference workload each is timed beside. The networks' weights
are untrained: cost does not depend on them.

    python run_bundle.py .                                   # CPU; or --provider CUDAExecutionProvider, ...

Then, where the suite is installed: `tocsr costs confirm results.json` (this folder beside it): whether the
choice meets the budget on this device, with an interval, and what to ship if it does not.
"""


@dataclass(frozen=True)
class ConfirmedPipeline:
    """One pipeline (or backbone call, for a backbone-scoped profile) as the device timed it, at the run's speed
    (ms at the profile's percentile)."""

    role: str                      # "teacher" (as shipped, or its backbone), "chosen" or "runner-up"
    key: str
    decoder: str
    params: int                    # the backbone's
    p_ms: float
    p_ms_low: float                # 95% bootstrap interval of the percentile
    p_ms_high: float
    vs_budget: float | None        # p_ms / the budget on the device; None without a latency budget
    vs_budget_low: float | None
    vs_budget_high: float | None
    meets_budget: bool | None
    clear: bool | None             # the interval of vs_budget is on one side of 1
    measured_vs_teacher: float     # p_ms / the teacher row's
    # what the search said of latency / the teacher's: predicted for a device that is not attached, measured where
    # the search ran on it (Confirmation.search["status"] says which); None for runners-up
    search_vs_teacher: float | None
    encoder: str = "kl"            # confirmations written before the encoder was a choice: the autoencoder's

    @property
    def error_vs_search(self) -> float | None:
        """Measured here / what the search said - 1, of latency relative to the teacher row (speed-free)."""
        if self.search_vs_teacher is None:
            return None
        return self.measured_vs_teacher / self.search_vs_teacher - 1


@dataclass(frozen=True)
class Confirmation:
    """What the device said of a choice made without it. Every latency is measured on that device."""

    profile_name: str
    device_name: str
    device: dict[str, Any]
    search: dict[str, Any]
    percentile: float
    budget_in_words: str
    budget_ms: float | None
    reference_median_ms: float
    pipelines: tuple[ConfirmedPipeline, ...]
    recommendation: str
    scope: str = "pipeline"        # what was timed: whole one-step SR calls, or one backbone call
    memory: str = "not confirmed: the bundle runner times, it does not read memory"
    kind: str = CONFIRMATION_KIND
    schema_version: int = CONFIRMATION_VERSION

    @property
    def chosen(self) -> ConfirmedPipeline:
        return next(p for p in self.pipelines if p.role == "chosen")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pipelines"] = [{**dataclasses.asdict(p), "error_vs_search": p.error_vs_search} for p in self.pipelines]
        return {k: v for k, v in d.items() if k not in ("kind", "schema_version")}

    def save(self, path: str | Path) -> Path:
        return write_artifact(path, self.kind, self.schema_version, self.to_dict(),
                              environment={"measured_on": self.device})

    @classmethod
    def load(cls, path: str | Path) -> Confirmation:
        d = read_artifact(path, CONFIRMATION_KIND, CONFIRMATION_VERSION,
                          rebuild="confirm again with `tocsr costs confirm RESULTS`")
        names = {f.name for f in dataclasses.fields(ConfirmedPipeline)}
        rows = tuple(ConfirmedPipeline(**{k: v for k, v in p.items() if k in names}) for p in d["pipelines"])
        keep = {f.name for f in dataclasses.fields(cls)} - {"pipelines", "kind", "schema_version"}
        return cls(**{k: v for k, v in d.items() if k in keep}, pipelines=rows)

    def lines(self) -> list[str]:
        """The verdict as a person reads it."""
        q = f"p{self.percentile:g}"
        out = [f"{self.profile_name}: confirmed on {self.device_name} (measured; every pipeline timed beside the "
               f"reference, at one speed of the device: reference median {self.reference_median_ms:.2f} ms)",
               f"budget: {self.budget_in_words}" + (f" = {self.budget_ms:.2f} ms on this device"
                                                    if self.budget_ms is not None else "")]
        pipeline = self.scope == "pipeline"
        out.append("timed: " + ("whole one-step SR calls (LR image in, HR image out)" if pipeline else
                                "one backbone call each (the profile's budgets bound the backbone)"))
        teacher = "the teacher as shipped" if pipeline else "the teacher's backbone"
        for p in self.pipelines:
            parts = f"{p.encoder} encoder, {p.decoder} decoder, " if pipeline else ""
            line = (f"  {p.role:9s} {p.key} ({parts}{p.params / 1e6:.2f} M "
                    f"backbone params): {q} {p.p_ms:.2f} ms [{p.p_ms_low:.2f}, {p.p_ms_high:.2f}], "
                    f"{p.measured_vs_teacher:.3f} x {teacher}")
            if p.vs_budget is not None and p.role != "teacher":
                word = "meets" if p.meets_budget else "MISSES"
                line += (f"; {word} the budget ({p.vs_budget:.3f} x [{p.vs_budget_low:.3f}, {p.vs_budget_high:.3f}]"
                         f"{'' if p.clear else ', within the noise'})")
            if p.error_vs_search is not None:
                said = "predicted" if self.search.get("status") != "measured" else "measured where it ran"
                line += f"; the search {said} {p.search_vs_teacher:.3f} x ({100 * p.error_vs_search:+.1f}%)"
            out.append(line)
        out.append(f"memory: {self.memory}")
        out.append(self.recommendation)
        return out


def _percentile_interval(rel: np.ndarray, q: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Bootstrap draws of the q-th percentile of `rel`, and the point value."""
    draws = rng.choice(rel, size=(BOOTSTRAP, rel.size), replace=True)
    return np.percentile(draws, q, axis=1), float(np.percentile(rel, q))


def confirm_results(results_path: str | Path, bundle: str | Path | None = None, seed: int = 0) -> Confirmation:
    """The verdict of a confirmation bundle's results (see module doc). Refuses results of another bundle."""
    bundle = Path(bundle) if bundle is not None else Path(results_path).parent
    manifest, results = read_results(results_path, bundle, CONFIRM_BUNDLE_KIND, CONFIRM_BUNDLE_VERSION)
    profile = parse_profile(json.dumps(manifest["profile"]), f"{bundle}/manifest.json")
    device = results["device"]
    timer = f"{device['runtime']} {device['provider']}"
    q = profile.timing.percentile
    paired = {w["id"]: paired_latency(results["results"][w["id"]], timer)
              for w in manifest["workloads"] if w["role"] != "reference"}
    # one speed for every figure: the median of all reference bursts of the run
    ref_ms = float(np.median(np.concatenate([p.reference.samples_ms for p in paired.values()])))
    rng = np.random.default_rng(seed)
    draws, points = {}, {}
    for wid, p in paired.items():
        d, v = _percentile_interval(np.asarray(p.relative_samples), q, rng)
        draws[wid], points[wid] = d * ref_ms, v * ref_ms
    pipes = [w for w in manifest["workloads"] if w["role"] != "reference"]
    teacher = next(w["id"] for w in pipes if w["role"] == "teacher")
    budget = profile.budgets

    def budget_of(teacher_ms):
        limits = ([np.full_like(teacher_ms, budget.latency_ms)] if budget.latency_ms is not None else []) + (
            [budget.latency_vs_teacher * teacher_ms] if budget.latency_vs_teacher is not None else [])
        return np.minimum.reduce(limits) if limits else None

    budget_ms = budget_of(np.asarray(points[teacher]))
    budget_draws = budget_of(draws[teacher])
    rows = []
    for w in pipes:
        wid = w["id"]
        lo, hi = np.percentile(draws[wid], [2.5, 97.5])
        vs = vs_lo = vs_hi = meets = clear = None
        if budget_ms is not None:
            ratio = draws[wid] / budget_draws
            vs, (vs_lo, vs_hi) = points[wid] / float(budget_ms), np.percentile(ratio, [2.5, 97.5])
            vs_lo, vs_hi = float(vs_lo), float(vs_hi)
            meets, clear = vs <= 1.0, bool(vs_hi < 1.0 or vs_lo > 1.0)
        rows.append(ConfirmedPipeline(w["role"], w["key"], w["decoder"], int(w["params"]), points[wid], float(lo),
                                      float(hi), vs, vs_lo, vs_hi, meets, clear, points[wid] / points[teacher],
                                      w.get("search_vs_teacher"), w.get("encoder", "kl")))
    return Confirmation(profile.name, device_name(device), device, manifest["search"], q,
                        manifest["search"].get("budget_in_words") or budget.describe_latency(q),
                        None if budget_ms is None else float(budget_ms), ref_ms, tuple(rows), _recommend(rows),
                        manifest.get("scope", "pipeline"))


def _recommend(rows: Sequence[ConfirmedPipeline]) -> str:
    chosen = next(p for p in rows if p.role == "chosen")
    if chosen.meets_budget is None:
        return f"no latency budget to confirm: {chosen.key} as timed above"
    if chosen.meets_budget:
        return (f"ship {chosen.key}: it meets the budget on the device"
                + ("" if chosen.clear else " (within the noise of this run: time it again before relying on it)"))
    ups = [p for p in rows if p.role == "runner-up" and p.meets_budget]
    if ups:
        return (f"{chosen.key} misses the budget on the device; ship {ups[0].key}, the first runner-up (by the "
                "search's objective) that meets it, or search again on a cost table measured there (`tocsr costs export`)")
    return (f"{chosen.key} misses the budget on the device and no runner-up meets it: search again on a cost table "
            "measured there (`tocsr costs export`, `tocsr costs import`), or relax the budget")


def targets_from(space: SearchSpace, chosen: dict[str, str], decoder: str, search_vs_teacher: float | None,
                 runners_up: Sequence[dict[str, str]], encoder: str = "kl") -> list[ConfirmTarget]:
    """The chosen pipeline and its runners-up as confirmation targets (runners-up deploy the same parts)."""
    return [ConfirmTarget("chosen", space.spec(chosen), decoder, search_vs_teacher, encoder),
            *(ConfirmTarget("runner-up", space.spec(c), decoder, encoder=encoder) for c in runners_up)]


__all__ = ["Confirmation", "ConfirmTarget", "ConfirmedPipeline", "confirm_results", "export_confirmation",
           "targets_from"]
