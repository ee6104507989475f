"""The stages of the suite: each reads typed inputs, calls one layer, and writes typed outputs.

Used by the CLI and the main job (tocsr.app). The work itself lives in the layers below: cost tables in
bench.costtable, the choice in search.selection (recorded as search.result.SearchResult), SR training in
tocsr.core.sr.run (recorded as tocsr.core.sr.info.SRModelInfo), the comparison in reports.comparison.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from bench.costtable import (
    CostTable,
    CostTableInvalid,
    measure_cost_table,
)
from bench.pipeline import PipelineCostModel, load_cost_model, measure_pipeline_parts, pipeline_parts_path
from bench.probe import DeployedPipelineMeter, cost_probe, deployed_meter, pipeline_probe, teacher_inputs
from bench.profile import DeviceProfile, load_profile
from bench.rapl import energy_unmeasurable
from bench.table_prediction import TablePredictionMeter
from reports.build import write_rows
from reports.comparison import compare_methods
from reports.rows import ReportRow
from search.analysis import convergence, plot_convergence
from search.benchmark import MemoFidelity, benchmark_strategies
from search.parts import (
    DEFAULT_MAX_LOSS_DB,
    PartLosses,
    PartsChoice,
    autoencoders_own,
    choose_parts,
    latency_target_at_table_ms,
    parts_options,
)
from search.problem import Constraints, SearchProblem
from search.result import SearchResult
from search.run import run_search
from search.selection import SelectionConfig, ShippedYardstick, check_reachable, choose
from search.sweep import DEFAULT_EPS_REL, EpsSweep, carry_forward, eps_values
from tocsr.core.artifacts import write_artifact
from tocsr.core.distill.bank import new_bank
from tocsr.core.distill.config import DEFAULT_PROXY
from tocsr.core.distill.fidelity import CandidateFidelity, build_proxy
from tocsr.core.distill.train import load_surrogates
from tocsr.core.errors import TocsrError
from tocsr.core.provenance import environment
from tocsr.core.space import derive_search_space
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.teacher.train import load_teacher, teacher_latents
from tocsr.core.training import progress

log = logging.getLogger(__name__)


def _usable_profile(profile_ref: str | Path, on_ray: bool = False) -> DeviceProfile:
    """The profile, refused up front when it asks for what this machine cannot give. A predicted profile
    is usable anywhere: its costs are the roofline (bench.predicted), labelled predicted. A profile
    measured on a Ray node (`on_ray` and `device.ray_resource`) is checked there (bench.remote)."""
    profile = load_profile(profile_ref)
    if on_ray and profile.device.ray_resource:
        return profile
    if not profile.is_measured:
        log.info("profile %s is a predicted device: its cost table, pipeline parts and the choice's check are "
                 "roofline predictions, not measurements", profile.name)
    if profile.budgets.energy_mj is not None:
        why = energy_unmeasurable(profile.device.kind, profile.device.index)
        if why:
            raise TocsrError(f"profile {profile.name!r} sets budgets.energy_mj = {profile.budgets.energy_mj:g} and this "
                             f"machine cannot measure energy ({why}); remove the energy budget or run where the "
                             "counters are readable")
    if profile.device.threads:
        torch.set_num_threads(profile.device.threads)
    return profile


@contextmanager
def _measuring_node(profile: DeviceProfile, teacher_dir: str | Path, ray_address: str | None) -> Iterator:
    """The profile's device on the Ray cluster at `ray_address` (bench.remote.RemoteDevice), released on exit;
    None (measure in this process) without an address or when the profile names no Ray resource."""
    if not ray_address or not profile.device.ray_resource:
        if ray_address:
            log.info("profile %s names no device.ray_resource: measured on this machine", profile.name)
        yield None
        return
    from bench.remote import RemoteDevice

    device = RemoteDevice(profile, teacher_dir, ray_address)
    log.info("profile %s is measured on the Ray node with %r: %s (%s), node %s", profile.name,
             profile.device.ray_resource, device.provenance["hostname"], device.device_name,
             device.provenance["ray_node_id"])
    try:
        yield device
    finally:
        device.shutdown()


def stage_costs(teacher_dir: str | Path, profile_ref: str | Path, out_path: str | Path, n_calibration: int = 16,
                n_holdout: int = 50, seed: int = 0, n_pipelines: int = 10, ray_address: str | None = None,
                remote=None, keep_invalid: bool = False, n_overhead: int = 3) -> PipelineCostModel:
    """Measure the per-(slot, choice) cost table of the teacher's space on the profile's device, then the
    one-step SR pipeline's fixed parts, each pair of parts' overhead on `n_overhead` whole pipelines, and
    `n_pipelines` held-out whole pipelines (bench.pipeline), saved beside the table; returns both as the pipeline
    cost model (its `.table` is the backbone's).

    A table that misses its validation bar after its refits is written beside `out_path` as
    `<name>.rejected.json` for inspection, and the stage fails with the figures; with `keep_invalid` (the main
    job, and a search re-measuring a stale table) it is kept with a warning, its validation on record. A pipeline
    model that misses its bar is kept and says so: the choice is judged on a measured pipeline either way.

    With `ray_address` and a profile that names `device.ray_resource`, everything is measured on the Ray node
    advertising that resource (bench.remote), and the table records that node's provenance (`measured_on`)
    and the worker that measured each entry (`measured_by_pid`); `remote` is such a node already held."""
    teacher = load_teacher(teacher_dir)
    profile = _usable_profile(profile_ref, on_ray=bool(ray_address) or remote is not None)
    space = derive_search_space(teacher.unet)
    with nullcontext(remote) if remote is not None else _measuring_node(profile, teacher_dir, ray_address) as device:
        return _measure_costs(teacher, space, profile, Path(out_path), n_calibration, n_holdout, seed, n_pipelines,
                              device, keep_invalid, n_overhead)


def _measure_costs(teacher, space, profile: DeviceProfile, out_path: Path, n_calibration: int, n_holdout: int,
                   seed: int, n_pipelines: int, device, keep_invalid: bool = False, n_overhead: int = 3
                   ) -> PipelineCostModel:
    """stage_costs's measurement, in this process (`device` None) or on a bench.remote.RemoteDevice."""
    if device is None:
        args, kwargs = teacher_inputs(teacher, profile)
        # Cost does not depend on weight values: a fresh bank of surrogates is measured. The probe swaps
        # blocks into the UNet it is given: a copy, so the pipeline probe below builds from the teacher.
        probe = cost_probe(space, copy.deepcopy(teacher.unet), args, kwargs, profile, new_bank(space))
        env = environment()
    else:
        from bench.remote import RayTableMeter

        probe = RayTableMeter(device)
        env = environment({"measured_on": device.provenance})
    total = sum(len(s.choices) for s in space.slots) + n_calibration + n_holdout
    with progress(f"costs/{profile.name}", total) as bar:
        try:
            table = measure_cost_table(space, probe, profile, n_calibration, n_holdout, seed,
                                       progress=lambda _msg: bar.update(1))
        except CostTableInvalid as err:
            if not keep_invalid:
                rejected = out_path.with_name(out_path.stem + ".rejected.json")
                err.table.save(rejected, env)
                raise TocsrError(f"{err}; the rejected table is {rejected}") from None
            # Kept, it is saved once, where it is read (its failed validation inside it). A choice is judged on its own measurement, so an imperfect table steers a search rather than
            # stopping it (the search checks a table on fresh candidates before it uses it).
            log.warning("%s; kept: its validation is on record in the table and the search result", err)
            table = err.table
    if device is not None:
        table = dataclasses.replace(table, extra={**table.extra, "measured_on": device.provenance,
                                                  "measured_by_pid": probe.measured_by})
    table.save(out_path, env)
    if device is None:
        pipe_probe = pipeline_probe(teacher, space, new_bank(space), profile)
    else:
        from bench.remote import RayPipelineMeter

        pipe_probe = RayPipelineMeter(device)
    # four parts (two encoders, two decoders: bench.probe.TorchPipelineProbe), the teacher-shaped pipeline, the
    # overheads of four pairs (the teacher-shaped one counted once), the held-out pipelines
    total = 4 + 1 + max(0, 4 * n_overhead - 1) + n_pipelines
    with progress(f"pipeline/{profile.name}", total) as bar:
        model = measure_pipeline_parts(space, table, pipe_probe, profile, n_pipelines, seed,
                                       progress=lambda _msg: bar.update(1), n_overhead=n_overhead)
    v = model.validation_summary()
    if v["passes"] is False:
        log.warning("the pipeline cost model for %s misses its bar: %s", profile.name, v)
    model.pipeline.save(pipeline_parts_path(out_path), env, v)
    return model


def stage_costs_export(teacher_dir: str | Path, profile_ref: str | Path, out_dir: str | Path, n_calibration: int = 16,
                       n_holdout: int = 50, n_pipelines: int = 10, seed: int = 0, n_overhead: int = 3) -> Path:
    """Write the measurement bundle (bench.bundle) of the teacher's space at the profile's batch and sizes: the
    device itself is not needed here, it runs the bundle."""
    from bench.bundle import export_bundle

    teacher = load_teacher(teacher_dir)
    profile = load_profile(profile_ref)
    space = derive_search_space(teacher.unet)
    # the reference, blocks, candidates, four parts, the overhead pipelines of four pairs (the teacher-shaped one
    # counted once), the held-out pipelines
    total = (1 + sum(len(s.choices) for s in space.slots) + n_calibration + n_holdout + 4
             + max(1, 4 * n_overhead) + n_pipelines)
    with progress(f"bundle/{profile.name}", total) as bar:
        return export_bundle(teacher, profile, new_bank(space), out_dir, n_calibration, n_holdout, n_pipelines, seed,
                             progress=lambda _msg: bar.update(1), n_overhead=n_overhead)


def stage_costs_import(results: str | Path, out_path: str | Path, bundle: str | Path | None = None
                       ) -> PipelineCostModel:
    """The cost table (and pipeline parts beside it) from a bundle's results file, saved as `tocsr costs` saves
    a measured one, with the device's provenance from the results."""
    from bench.bundle import import_results

    model = import_results(results, bundle)
    env = environment({"measured_on": model.table.extra["device"]})
    model.table.save(out_path, env)
    model.pipeline.save(pipeline_parts_path(out_path), env, model.validation_summary())
    return model


REMEASURED_TABLE = "cost_table.remeasured.json"     # in a search folder: the table measured again when stale


def stage_search(teacher_dir: str | Path, surrogates_dir: str | Path, profile_ref: str | Path,
                 cost_table: CostTable | PipelineCostModel, out_dir: str | Path, method: str = "bo", evaluations: int = 60, seed: int = 0,
                 formulation: str = "device", eps_fid: float | None = None, complexity: str = "params",
                 q: int = 4, selection: SelectionConfig = SelectionConfig(), proxy: str = DEFAULT_PROXY,
                 ray_address: str | None = None, parts_dir: str | Path | None = None,
                 max_parts_loss_db: float = DEFAULT_MAX_LOSS_DB) -> SearchResult:
    """Search, then re-measure until a candidate meets the budgets (search.selection.choose).

    For a pipeline budget, the encoder and decoder the device deploys are chosen first (search.parts: the
    cheapest pair within `max_parts_loss_db` of the autoencoder's own, on the fidelity `stage_parts` measured in
    `parts_dir`); without `parts_dir` the pipeline keeps the autoencoder's parts.

    `evaluations` caps the fidelity evaluations. `cost_table` is the backbone's table, or the pipeline cost
    model (bench.pipeline.load_cost_model) when the profile's budgets bound the whole one-step SR call; then
    candidates are re-measured as whole pipelines. A cost table that no longer predicts this machine is
    measured again into `<out>/cost_table.remeasured.json`; the table the decision used (with the
    candidates measured while choosing) is written to `<out>/cost_table.json` (pipeline parts beside it).
    With `ray_address`, candidates are re-measured on the profile's Ray node, as `stage_costs` measures."""
    out = Path(out_dir)
    teacher = load_teacher(teacher_dir)
    profile = _usable_profile(profile_ref, on_ray=bool(ray_address))
    space = derive_search_space(teacher.unet)
    cost_table = _for_scope(cost_table, profile)
    table = cost_table.table if isinstance(cost_table, PipelineCostModel) else cost_table
    if table.space_id != space.space_id:
        raise TocsrError(f"cost table is for space {table.space_id}, the teacher's is {space.space_id}")
    parts_choice, encoder, decoder = None, None, None
    if isinstance(cost_table, PipelineCostModel):
        parts_choice = _parts_choice(cost_table, space, profile, parts_dir, max_parts_loss_db)
        log.info("parts for %s: %s encoder, %s decoder (%s)", profile.name, parts_choice.encoder,
                 parts_choice.decoder, parts_choice.reason)
        cost_table = cost_table.with_parts(parts_choice.encoder, parts_choice.decoder)
        if (parts_choice.encoder, parts_choice.decoder) != ("kl", "kl"):
            from tocsr.core.sr.parts import load_parts

            trained_encoder, trained_decoder, _ = load_parts(parts_dir)
            encoder = trained_encoder if parts_choice.encoder == "lr" else None
            decoder = trained_decoder if parts_choice.decoder == "tiny" else None
    bank, ftable = load_surrogates(surrogates_dir, space)
    _, val_latents = teacher_latents(teacher)
    evaluator = build_proxy(proxy, teacher, space, bank, val_latents)
    kwargs = {"block_error": ftable.error} if method in ("greedy", "bo") else {}

    def search_round(problem, cap: int):
        return run_search(problem, method, cap, out, seed=seed, q=q, **kwargs)

    with _measuring_node(profile, teacher_dir, ray_address) as device:
        on_table = device is None and not profile.is_measured and table.measured
        if on_table:
            # The table holds the device's own measurements (an ONNX bundle's results) and the device is not
            # attached: judge on them; a roofline check here would replace them with the profile's constants.
            log.warning("profile %s: the device is not attached and its cost table was measured on %s: the choice "
                        "is judged on that table, labelled predicted (not re-measured)", profile.name, table.device_name)
            meter = TablePredictionMeter(cost_table, space, profile)
        elif device is None:
            meter = (DeployedPipelineMeter(teacher, space, bank, profile, decoder, encoder)
                     if profile.budgets.scope == "pipeline" else deployed_meter(teacher, space, bank, profile))
        else:
            from bench.remote import RayCandidateMeter

            # the node builds the deployed parts' shapes itself (bench.remote): cost does not depend on weights
            meter = (RayCandidateMeter(device, parts_choice.decoder, parts_choice.encoder) if parts_choice
                     else RayCandidateMeter(device))

        def remeasure() -> CostTable | PipelineCostModel:
            """The same sizes as the table given: calibration and held-out candidates, held-out pipelines."""
            roles = [c.role for c in table.candidates]
            pipelines = len(cost_table.holdout()) if isinstance(cost_table, PipelineCostModel) else 0
            overhead = (max((len(o.residuals) for o in cost_table.pipeline.overheads), default=0)
                        if isinstance(cost_table, PipelineCostModel) else 0)
            fresh = _for_scope(stage_costs(teacher_dir, profile_ref, out / REMEASURED_TABLE,
                                           max(2, roles.count("calibration")), roles.count("holdout"),
                                           n_pipelines=max(2, pipelines), remote=device, keep_invalid=True,
                                           n_overhead=overhead),
                               profile)
            return fresh.with_parts(parts_choice.encoder, parts_choice.decoder) if parts_choice else fresh

        sel = choose(space, evaluator, cost_table, profile, meter, search_round, evaluations, formulation, eps_fid,
                     complexity, selection, None if on_table else remeasure)
    result = SearchResult.from_selection(sel, profile, space, method, seed, evaluations, formulation, complexity,
                                         proxy, parts_choice)
    sel.table.save(out / result.cost_table, environment({"measured_on": device.provenance} if device else None))
    plot_convergence({method: [convergence(sel.trials)]}, out / result.convergence_png,
                     title=f"{method} on {profile.name} ({formulation})",
                     ylabel="best feasible " + ("fidelity error" if formulation == "device" else complexity))
    result.save(out, environment())
    return result


def part_losses(parts_dir: str | Path) -> tuple[PartLosses, PartLosses]:
    """({"lr": ...}, {"tiny": ...}), each (mean, upper 95%, crops): the LR encoder's and the tiny decoder's PSNR-Y
    loss against HR vs the autoencoder's part, from the validation crops `stage_parts` scored (a paired bootstrap
    over the crops)."""
    from reports.intervals import paired_difference
    from tocsr.core.sr.parts import DECODER_DIR, ENCODER_DIR, PartsRecord

    scores = PartsRecord.load(parts_dir).psnr_y_db

    def loss(folder: str) -> tuple[float, float, int]:
        d = paired_difference(scores[folder]["through_kl"], scores[folder]["through_part"])
        return d.mean, d.high, d.n

    return {"lr": loss(ENCODER_DIR)}, {"tiny": loss(DECODER_DIR)}


def _parts_choice(model: PipelineCostModel, space, profile: DeviceProfile, parts_dir: str | Path | None,
                  max_loss_db: float) -> PartsChoice:
    if parts_dir is None:
        return autoencoders_own("no cheaper parts were trained for this run (`tocsr run` trains them in its parts "
                                "stage)")
    options = parts_options(model, space, *part_losses(parts_dir))
    return choose_parts(options, latency_target_at_table_ms(model, profile), max_loss_db)


def stage_parts(teacher_dir: str | Path, out_dir: str | Path, cfg=None, data=None):
    """Train the cheaper pipeline parts against the teacher's autoencoder and score them on validation crops
    (tocsr.core.sr.parts), once per run; the search weighs the tiny decoder with that score and the SR stage
    deploys it where chosen. Returns the record."""
    from tocsr.core.data import load_train_val
    from tocsr.core.sr.config import SRConfig
    from tocsr.core.sr.parts import PartsConfig, train_parts

    teacher = load_teacher(teacher_dir)
    cfg = cfg or PartsConfig()
    train, val, _ = load_train_val(data, teacher.preset.split, min_side=cfg.patch_px, train_first=cfg.train_photographs)
    record = train_parts(teacher, train, val, out_dir, cfg, SRConfig().scale)
    record.save(out_dir, environment())
    return record


def _for_scope(cost: CostTable | PipelineCostModel, profile: DeviceProfile) -> CostTable | PipelineCostModel:
    """The cost model a profile's budgets need: the pipeline model for scope "pipeline", the table for "backbone"."""
    if profile.budgets.scope == "backbone":
        return cost.table if isinstance(cost, PipelineCostModel) else cost
    if not isinstance(cost, PipelineCostModel):
        raise TocsrError(f"profile {profile.name!r} bounds the whole one-step SR pipeline (budgets.scope: pipeline) and "
                         "the cost table came without the pipeline's parts; load it with "
                         "bench.pipeline.load_cost_model, or measure it again with `tocsr costs`")
    return cost


def _chosen_spec(search_dir, teacher):
    chosen = SearchResult.load(search_dir).chosen
    space = derive_search_space(teacher.unet)
    if chosen.spec.space_id != space.space_id:
        raise TocsrError(f"{search_dir}: the search ran on space {chosen.spec.space_id}, the teacher's is "
                         f"{space.space_id}; search again with this teacher")
    return space, space.spec(dict(chosen.spec.items()))


def stage_finetune(teacher_dir, surrogates_dir, search_dir, out_dir, cfg=None, resume: bool = False):
    """Fine-tune the architecture a search chose as a diffusion model; sample fidelity before and after."""
    from tocsr.core.distill.config import FinetuneConfig
    from tocsr.core.distill.finetune import finetune_backbone

    teacher = load_teacher(teacher_dir)
    space, spec = _chosen_spec(search_dir, teacher)
    bank, _ = load_surrogates(surrogates_dir, space)
    latents, _ = teacher_latents(teacher)
    return finetune_backbone(teacher, space, spec, bank, latents, out_dir, cfg or FinetuneConfig(), resume)


def stage_sr_shared(teacher_dir, out_dir, cfg=None, data=None, resume: bool = False):
    """The SR stage's architecture-independent part (pair cache, SR teachers; tocsr.core.sr.shared), trained
    once for every device of a run; returns its record."""
    from tocsr.core.sr.data import sr_photographs
    from tocsr.core.sr.shared import SharedSRRecord, train_shared
    from tocsr.core.sr.train import SRConfig
    from tocsr.core.training import make_accelerator

    teacher = load_teacher(teacher_dir)
    cfg = cfg or SRConfig()
    train, _ = sr_photographs(data, teacher.preset.split, cfg)
    train_shared(teacher, train, out_dir, cfg, resume, make_accelerator())
    return SharedSRRecord.load(out_dir)


def stage_sr(teacher_dir, surrogates_dir, search_dir, out_dir, cfg=None, data=None, resume: bool = False,
             finetuned=None, shared=None, parts_dir=None, encoder: str | None = None) -> SRModelInfo:
    """SR adaptation + one-step distillation of the architecture a search chose (from its fine-tuned backbone
    when `finetuned` names a fine-tune folder; from the run's shared pair cache and SR teachers when `shared`
    names a `stage_sr_shared` folder), deploying the parts the search chose (the LR encoder and the tiny decoder
    from `parts_dir`). `encoder` overrides the search's encoder: "lr" deploys the LR encoder of `parts_dir`
    instead of bicubic + the autoencoder's encoder and trains the student on its latents; "kl" the reverse."""
    from tocsr.core.sr.parts import DECODER_DIR, ENCODER_DIR, load_parts
    from tocsr.core.sr.run import run_sr
    from tocsr.core.sr.train import SRConfig

    teacher = load_teacher(teacher_dir)
    space, spec = _chosen_spec(search_dir, teacher)
    bank, _ = load_surrogates(surrogates_dir, space)
    searched = SearchResult.load(search_dir)
    encoder = searched.encoder if encoder is None else encoder
    if encoder not in ("kl", "lr"):
        raise TocsrError(f"encoder {encoder!r}: expected 'kl' (bicubic + the autoencoder's encoder) or 'lr'")
    decoder, decoder_s, lr_encoder, encoder_s = None, 0.0, None, 0.0
    if (encoder, searched.decoder) != ("kl", "kl"):
        if parts_dir is None:
            raise TocsrError(f"{search_dir}: the model deploys the {encoder} encoder and the {searched.decoder} "
                             "decoder; give the parts folder they were trained in (--parts runs/<r>/parts)")
        trained_encoder, trained_decoder, record = load_parts(parts_dir)
        if searched.decoder == "tiny":
            decoder, decoder_s = trained_decoder, record.train_s[DECODER_DIR]
        if encoder == "lr":
            lr_encoder, encoder_s = trained_encoder, record.train_s[ENCODER_DIR]
    return run_sr(teacher, space, spec, bank, out_dir, cfg or SRConfig(), data, resume, finetuned, shared,
                  decoder=decoder, decoder_train_s=decoder_s, encoder=lr_encoder, encoder_train_s=encoder_s)


def stage_search_benchmark(teacher_dir, surrogates_dir, profile_ref, cost_table: CostTable | PipelineCostModel, out_dir,
                           methods=("bo", "random", "evolution", "greedy", "tpe"), evaluations: int = 250,
                           seeds: int = 5, random_evaluations: int = 600, best_known_evaluations: int = 2000,
                           tolerance: float = 0.02) -> dict:
    """BO against the baselines on one device problem, `seeds` seeds, equal evaluation caps."""
    out = Path(out_dir)
    teacher = load_teacher(teacher_dir)
    profile = load_profile(profile_ref)
    cost_table = _for_scope(cost_table, profile)
    space = derive_search_space(teacher.unet)
    bank, table = load_surrogates(surrogates_dir, space)
    _, val_latents = teacher_latents(teacher)
    # The cheap one-call proxy: what is compared here is the search strategies on one objective, over thousands
    # of evaluations (best known), not which proxy predicts samples (`tocsr fidelity-check` does that).
    memo = MemoFidelity(CandidateFidelity(teacher.denoiser, space, bank, teacher.scheduler, val_latents))
    # One speed for the whole benchmark: the table's own (the fidelity is what is compared here).
    budgets = Constraints.from_profile(profile, cost_table.predict_latency_at_ms(space.all_teacher()))
    problem = SearchProblem(space, memo, cost_table, budgets, "device")
    check_reachable(problem)
    doc = benchmark_strategies(problem, memo, out, table.error, methods, evaluations, seeds, random_evaluations,
                               best_known_evaluations, tolerance, title=f"{profile.name}: {seeds} seeds, "
                               f"{evaluations} evaluations")
    doc = {"profile": profile.name, **doc, "cost_table_validation": cost_table.validation_summary()}
    write_artifact(out / "search_benchmark.json", "tocsr.search_benchmark", 1, doc, environment=environment())
    return doc


def stage_eval(run_dir: str | Path, profiles: list[str], teacher_dir: str | Path, sr_dirs: dict[str, Path],
               baselines=("srvgg",), external: list[str] | None = None, data: str | Path | None = None,
               test_max_px: int = 384, baseline_max_steps: int | None = None,
               ray_address: str | None = None, decision_speeds_ms: dict[str, float] | None = None,
               yardsticks: dict[str, ShippedYardstick] | None = None) -> list[ReportRow]:
    """Every method on every profile: quality once on the test photographs, cost per device; rows, the test
    tables and crops under <run>/eval (reports.comparison.compare_methods says what makes it fair). With
    `ray_address`, a profile naming `device.ray_resource` has its costs measured on that Ray node.
    `decision_speeds_ms` (profile name -> the teacher UNet's ms when its search chose) states each profile's
    latencies at the speed its budget was (reports.evaluate.report_rows); `yardsticks` (profile name -> how its
    search judged candidates beside the teacher as shipped) has its TOC-SR rows judged the same way."""
    run = Path(run_dir)
    loaded = [load_profile(p) for p in profiles]
    with ExitStack() as stack:
        # One measurement actor per Ray resource: profiles of one device share it (a second would wait for the
        # resource the first holds).
        by_resource: dict[str, Any] = {}
        nodes = {}
        for p in loaded:
            key = p.device.ray_resource
            if ray_address and key and key not in by_resource:
                by_resource[key] = stack.enter_context(_measuring_node(p, teacher_dir, ray_address))
            if ray_address and key:
                nodes[p.name] = by_resource[key]
        rows, scored_on = compare_methods(run, loaded, load_teacher(teacher_dir), sr_dirs, tuple(baselines),
                                          list(external or []), data, test_max_px, baseline_max_steps, nodes=nodes,
                                          decision_speeds_ms=decision_speeds_ms, yardsticks=yardsticks)
    write_rows(rows, run / "eval", scored_on)
    return rows


def stage_sweep(teacher_dir: str | Path, surrogates_dir: str | Path, profile_ref: str | Path,
                cost_table: CostTable | PipelineCostModel,
                out_dir: str | Path, eps: tuple[float, ...] = DEFAULT_EPS_REL, relative: bool = True,
                complexity: str = "params", method: str = "bo", evaluations: int = 60, samples: int = 16,
                steps: int = 10, seed: int = 0, proxy: str = DEFAULT_PROXY) -> EpsSweep:
    """The paper formulation over a list of ε fixed up front (search.sweep): one search per ε into
    <out>/eps-<i>/, each choice sampled beside the teacher; sweep.json, sweep.md and sweep.png in <out>."""
    from reports.plots import eps_sweep_plot
    from tocsr.core.artifacts import atomic_write_bytes, atomic_write_text
    from tocsr.core.distill.sample_fidelity import SampleFidelity

    out = Path(out_dir)
    teacher = load_teacher(teacher_dir)
    space = derive_search_space(teacher.unet)
    bank, _ = load_surrogates(surrogates_dir, space)
    _, val = teacher_latents(teacher)
    reference = cost_table.cheapest(space)
    ref_error = build_proxy(proxy, teacher, space, bank, val).evaluate(reference)
    values = eps_values(tuple(eps), relative, ref_error)
    sampler = SampleFidelity(teacher.denoiser, space, bank, dict(teacher.scheduler.config), teacher.autoencoder,
                             tuple(val.shape[1:]), n=samples, steps=steps, seed=seed + 2024)
    points, first = [], None
    for i, e in enumerate(values):
        folder = out / f"eps-{i}"
        res = stage_search(teacher_dir, surrogates_dir, profile_ref, cost_table, folder, method, evaluations, seed,
                           "paper", e, complexity, proxy=proxy)
        first = first or res
        if (folder / REMEASURED_TABLE).exists():
            # the table went stale during this search and was measured again: the next ε starts from that one
            cost_table = load_cost_model(folder / REMEASURED_TABLE, load_profile(profile_ref).budgets.scope)
        c = res.chosen
        s = sampler.evaluate(c.spec)
        points.append({"eps_fid": e, "key": c.key, "fidelity": c.fidelity, "replaced": len(c.spec.replaced()),
                       "params_m": c.params_m, "gmacs": c.gmacs, "latency_ms": c.measured_latency_ms,
                       "params_x": res.teacher_params_m / c.params_m,
                       "gmacs_x": res.teacher_gmacs / c.gmacs if c.gmacs and res.teacher_gmacs else None,
                       "latency_x": c.teacher_latency_ms / c.measured_latency_ms,
                       "paired_error": s.paired_error, "paired_error_std": s.paired_error_std,
                       "spectrum_kid": s.spectrum_kid, "spectrum_kid_std": s.spectrum_kid_std,
                       "folder": folder.name})
    points = carry_forward(points, complexity)
    assert first is not None
    sweep = EpsSweep(first.profile_name, complexity, method, evaluations, tuple(eps) if relative else None,
                     ref_error, reference.key, tuple(points),
                     {"params_m": first.teacher_params_m, "gmacs": first.teacher_gmacs,
                      "latency_ms": first.chosen.teacher_latency_ms}, samples, steps, seed, proxy)
    sweep.save(out, environment())
    atomic_write_text(out / "sweep.md", "\n".join(sweep.describe()) + "\n")
    atomic_write_bytes(out / "sweep.png", eps_sweep_plot(sweep))
    return sweep
