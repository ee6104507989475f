"""The `tocsr` command. Each sub-command parses, makes one library call and writes one artifact.

Part of tocsr.app, the top layer: it wires tocsr.core, bench, search and reports together.
Errors the user can fix (TocsrError, bad arguments) print one line and exit 1; set TOCSR_DEBUG=1
for the traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import typer

from search.sweep import DEFAULT_EPS_REL
from tocsr.core.distill.config import DEFAULT_PROXY, PROXIES, DistillConfig, FinetuneConfig
from tocsr.core.errors import ConfigError, TocsrError
from tocsr.core.locking import folder_lock
from tocsr.core.sr.config import SRConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="TOC-SR: hardware-aware compact diffusion super-resolution.")
# Commands take their defaults from the config dataclasses, so the two cannot disagree.
SR_DEFAULTS = SRConfig()
DISTILL_DEFAULTS = DistillConfig()
profiles_app = typer.Typer(no_args_is_help=True, help="List and validate device profiles.")
app.add_typer(profiles_app, name="profiles")
teacher_app = typer.Typer(no_args_is_help=True, help="The 16-channel teacher: train, expand, sample.")
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
def teacher_train(
    preset: str = typer.Option("tiny", "--preset", help="tiny (CPU, minutes), base (one GPU), sd21 (paper scale)."),
    out: Path = typer.Option(Path("runs/teacher"), "--out", "-o"),
    data: Path | None = typer.Option(None, "--data", help="Image folder; default: photographs shipped in packages."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    init_unet: Path | None = typer.Option(None, "--init-unet", help="Start the UNet from this (expanded) folder."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
    steps: int | None = typer.Option(None, "--steps", min=1,
                                     help="diffusion UNet steps (default: the preset's); for learning curves"),
) -> None:
    """Train the 16-channel autoencoder and the expanded diffusion UNet."""
    from tocsr.core.teacher.train import train_teacher

    with folder_lock(out, "teacher train"):
        record = train_teacher(preset, out, data, resume, threads, init_unet, diffusion_steps=steps)
    typer.echo("\n".join(record.describe(out)))


@teacher_app.command("presets")
def teacher_presets() -> None:
    """Each preset's autoencoder and UNet, constructed without weights, with parameter counts."""
    from bench.counting import count_params
    from tocsr.core.models.autoencoder import build_autoencoder_from_preset
    from tocsr.core.models.unet import build_unet_from_preset
    from tocsr.core.teacher.presets import TEACHER_PRESETS

    for p in TEACHER_PRESETS.values():
        ae = count_params(build_autoencoder_from_preset(p.autoencoder, "meta"))["params"]
        unet = count_params(build_unet_from_preset(p.unet, "meta"))["params"]
        trains = "trains it" if p.ae_training.steps else "imports it (--vae)"
        typer.echo(f"{p.name:9s} autoencoder {p.autoencoder:9s} {ae / 1e6:7.2f} M, {trains:18s} unet {p.unet:9s} "
                   f"{unet / 1e6:7.2f} M   {p.image_px}px   {p.description}")


@teacher_app.command("import")
def teacher_import(
    vae: Path = typer.Option(..., "--vae", help="A 16-channel diffusers AutoencoderKL folder (SD3/FLUX-style)."),
    unet: Path | None = typer.Option(None, "--unet", help="A UNet2DConditionModel folder, 4 channels (widened "
                                                          "on import) or 16; default: the preset's, from scratch."),
    out: Path = typer.Option(..., "--out", "-o"),
    preset: str = typer.Option("sd21", "--preset", help="the shapes and training to check against and run "
                                                        "(`tocsr teacher presets`)"),
    data: Path | None = typer.Option(None, "--data", help="Image folder; default: photographs shipped in packages."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="diffusion steps on the 16-channel latents "
                                                                  "(default: the preset's)"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
) -> None:
    """Start a teacher from real weights: import the autoencoder, widen the UNet, fine-tune it on the latents.
    The result is a normal teacher folder every later stage accepts."""
    from tocsr.core.teacher.train import train_teacher

    with folder_lock(out, "teacher import"):
        record = train_teacher(preset, out, data, resume, threads, unet, diffusion_steps=steps, vae=vae,
                               unet_option="--unet")
    typer.echo("\n".join(record.describe(out)))


@teacher_app.command("expand")
def teacher_expand(
    unet: Path = typer.Option(..., "--unet", help="A 4-channel diffusers UNet2DConditionModel folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the 16-channel UNet folder."),
) -> None:
    """Widen a 4-channel UNet to the 16-channel latent (documented, function-preserving init)."""
    from tocsr.core.teacher.expand import expand_folder

    model = expand_folder(unet, out)
    typer.echo(f"wrote {out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params); fine-tune with "
               f"`tocsr teacher train --init-unet {out}` (or in one step: `tocsr teacher import --vae VAE --unet UNET`)")


@teacher_app.command("sample")
def teacher_sample(
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o"),
    n: int = typer.Option(16, "--n", min=1, max=256),
    steps: int = typer.Option(25, "--steps", min=1, max=1000),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """DDIM samples from a trained teacher, as a PNG grid."""
    import math

    import torch

    from tocsr.core.imageio import save_png
    from tocsr.core.models.autoencoder import decode_latents
    from tocsr.core.teacher.evaluate import image_grid, sample
    from tocsr.core.teacher.train import load_teacher

    t = load_teacher(teacher)
    side = t.preset.image_px // 8
    z = sample(lambda zz, tt: t.denoiser(zz, tt), t.scheduler.config, (n, 16, side, side), steps, seed)
    with torch.no_grad():
        images = decode_latents(t.autoencoder, z)
    save_png(out, image_grid(images, math.ceil(math.sqrt(n))))
    typer.echo(f"wrote {out}")


@app.command()
def bench(
    profile: str = typer.Option(..., "--profile", "-p", help="Profile YAML path, or a name in hw_profiles/."),
    model: str = typer.Option(..., "--model", "-m",
                              help="Built-in workload, diffusers config.json/folder, TOC-SR model folder (the "
                                   "deployed one-step call), SR checkpoint (.pth, .safetensors; via spandrel), or "
                                   "file.py:factory / module:factory."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the measurement JSON."),
    thop: bool = typer.Option(False, "--thop", help="Also count MACs with thop, as a cross-check."),
    in_process: bool = typer.Option(False, "--in-process", hidden=True),
) -> None:
    """Measure one model on the device a profile names: latency, memory, energy, MACs, params."""
    from bench.profile import load_profile
    from bench.run import bench_in_process, bench_isolated
    from bench.table import print_measurements

    prof = load_profile(profile)
    if prof.timing.isolate and not in_process:
        raise typer.Exit(bench_isolated(profile, model, out, thop))
    m = bench_in_process(profile, model, out, thop)
    print_measurements([m], prof.timing.percentile, title=f"{prof.name}: {m.model}")
    typer.echo(f"wrote {out}")
    if m.status == "error":
        raise typer.Exit(1)


_RAY_ADDRESS = typer.Option(None, "--ray-address",
                                          help="Ray cluster (host:port or ray://...): profiles naming "
                                               "device.ray_resource are measured on the node advertising it")


@app.command()
def run(
    profile: list[str] = typer.Option(["hw_profiles/cpu-2core.yaml"], "--profile", "-p",
                                      help="Device profile(s); repeat for several devices."),
    preset: str = typer.Option("quick", "--preset", help="quick (CPU, under 30 minutes), full, gpu (paper scale on "
                               "one CUDA card; needs --vae) or gpu-tiny (the gpu preset's stages at reduced width)."),
    out: Path = typer.Option(Path("runs/quick"), "--out", "-o", help="Run folder."),
    data: Path | None = typer.Option(None, "--data", help="Image folder; default: photographs shipped in packages. "
                                     "Its train/, val/ and test/ subfolders are kept; without them a quarter of the "
                                     "photographs is set aside for the reported test table (tocsr.core.data.DataSplit)."),
    report_dir: Path | None = typer.Option(None, "--report-dir", help="default: <run folder>/report"),
    baseline: list[str] = typer.Option([], "--baseline",
                                       help="NAME=CHECKPOINT: a pretrained SR model spandrel recognises (.pth, "
                                            ".safetensors), scored and costed beside the job's methods; repeatable"),
    vae: Path | None = typer.Option(None, "--vae", help="start the teacher from this 16-channel AutoencoderKL folder "
                                                        "(imported, not trained; `tocsr teacher import`)"),
    unet: Path | None = typer.Option(None, "--unet", help="start the teacher's UNet from this folder (4 channels are "
                                                          "widened), then fine-tune it on the latents"),
    ray_address: str | None = _RAY_ADDRESS,
    max_steps: int | None = typer.Option(None, "--max-steps", help="cut every training stage to at most this many "
                                         "steps: checks that each stage runs at the preset's shapes (not for models "
                                         "anyone uses)"),
    estimate_only: bool = typer.Option(False, "--estimate-only", help="time a few steps of each training stage at "
                                       "the preset's shapes, print and write <out>/estimate.json, train nothing"),
    fixed_steps: bool = typer.Option(False, "--fixed-steps", help="train the preset's steps as listed; by default "
                                     "the quick preset trains fewer after its teacher stage where this machine is "
                                     "too slow this hour for its minutes (<out>/step_plan.json says how many)"),
) -> None:
    """The main job: teacher, surrogates, per-device search and SR, evaluation, report."""
    from tocsr.app.mainjob import run_main_job

    with folder_lock(out, "run"):
        run_main_job(profile, preset, out, data, report_dir, tuple(baseline), vae=vae, unet=unet,
                     ray_address=ray_address, max_steps=max_steps, estimate_only=estimate_only,
                     fixed_steps=fixed_steps)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run folder (with eval/rows.json) or a `tocsr eval` folder"),
    out: Path | None = typer.Option(None, "--out", "-o", help="default: <run folder>/report"),
) -> None:
    """Render a run's (or a `tocsr eval` folder's) self-contained HTML report, then open it in headless Chromium."""
    from reports.build import build_report
    from reports.eval_report import build_eval_report
    from reports.protocol import EvalResult
    from tocsr.app.mainjob import browser_check

    if not run_dir.is_dir():
        raise TocsrError(f"{run_dir}: no such folder; give a run folder (`tocsr run --out`) or a `tocsr eval` "
                         "folder (`tocsr eval -o`)")
    if (run_dir / EvalResult.FILE_NAME).is_file():
        path = build_eval_report(run_dir, out or run_dir / "report")
    else:
        path = build_report(run_dir, out or run_dir / "report")
    typer.echo(f"wrote {path}")
    check = browser_check(path)
    if check["checked"]:
        typer.echo(f"headless Chromium: {check['images_ok']} images loaded, {check['images_failed']} failed, "
                   f"{len(check['console_errors'])} console errors; screenshot {check['screenshot']}")
    else:
        typer.echo(f"headless Chromium check skipped: {check['why']}")


@app.command()
def distill(
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher", help="Teacher run folder."),
    out: Path = typer.Option(Path("runs/surrogates"), "--out", "-o"),
    steps: int = typer.Option(DISTILL_DEFAULTS.steps, "--steps", min=1),
    batch: int = typer.Option(DISTILL_DEFAULTS.batch, "--batch", min=1),
    resume: bool = typer.Option(False, "--resume"),
    threads: int | None = typer.Option(None, "--threads"),
) -> None:
    """Distil every surrogate block against its teacher block; write the fidelity table."""
    import torch

    from tocsr.core.distill.train import distill as run_distill
    from tocsr.core.teacher.train import load_teacher, teacher_latents

    if threads:
        torch.set_num_threads(threads)
    with folder_lock(out, "distill"):
        t = load_teacher(teacher)
        latents, val = teacher_latents(t)
        record = run_distill(t, latents, val, out, dataclasses.replace(DISTILL_DEFAULTS, steps=steps, batch=batch),
                             resume)
    typer.echo("\n".join(record.describe(out)))


def _cost_model(path: Path, profile: str):
    """The cost model a profile's budget scope needs, from a cost table file (and the pipeline parts beside it)."""
    from bench.pipeline import load_cost_model
    from bench.profile import load_profile

    return load_cost_model(path, load_profile(profile).budgets.scope)


costs_app = typer.Typer(invoke_without_command=True, help=(
    "Measure the cost table of the teacher's space on a device (predicted profiles: the roofline); "
    "`costs export` / `costs import` measure it on a device without torch through an ONNX bundle."))
app.add_typer(costs_app, name="costs")

_CALIBRATION = typer.Option(16, "--calibration", min=2)
_HOLDOUT = typer.Option(50, "--holdout", min=0)
_PIPELINES = typer.Option(10, "--pipelines", min=0,
                          help="held-out whole one-step SR pipelines that judge the pipeline cost model")
_OVERHEAD = typer.Option(3, "--overhead-pipelines", min=0,
                         help="whole pipelines per pair of parts that measure what the call costs beyond its parts "
                              "(0: the model is the sum of the parts)")


def _describe_costs(model, teacher_spec, out: Path) -> None:
    from bench.costtable import describe_validation
    from bench.pipeline import describe_pipeline, pipeline_parts_path

    table = model.table
    typer.echo(f"{len(table.entries)} entries on {table.device_name} ({table.execution_mode}, {table.how}), paired "
               f"with the teacher ({table.reference_ms:.2f} ms median); {table.correction.kind} correction "
               f"after {len(table.rounds)} fit(s); {describe_validation(table.validation_summary())}")
    typer.echo(f"one-step SR pipeline with the teacher as backbone: {describe_pipeline(model, teacher_spec)}; "
               f"whole pipelines: {describe_validation(model.validation_summary())}")
    typer.echo(f"wrote {out} and {pipeline_parts_path(out)}")


@costs_app.callback()
def costs(
    ctx: typer.Context,
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    profile: str = typer.Option("hw_profiles/cpu-2core.yaml", "--profile", "-p"),
    out: Path | None = typer.Option(None, "--out", "-o", help="cost table JSON to write"),
    calibration: int = _CALIBRATION,
    holdout: int = _HOLDOUT,
    pipelines: int = _PIPELINES,
    overhead_pipelines: int = _OVERHEAD,
    ray_address: str | None = _RAY_ADDRESS,
) -> None:
    """Measure the per-(slot, choice) cost table of the teacher's search space on a device, and the one-step
    SR pipeline's fixed parts (bicubic + encoder, decoder) beside it."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise ConfigError("tocsr costs needs --out FILE (the cost table JSON to write)")
    from tocsr.app.stages import stage_costs
    from tocsr.core.space import derive_search_space
    from tocsr.core.teacher.train import load_teacher

    model = stage_costs(teacher, profile, out, calibration, holdout, n_pipelines=pipelines, ray_address=ray_address,
                        n_overhead=overhead_pipelines)
    _describe_costs(model, derive_search_space(load_teacher(teacher).unet).all_teacher(), out)


@costs_app.command("export")
def costs_export(
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    profile: str = typer.Option(..., "--profile", "-p", help="the device's profile: its batch and sizes"),
    out: Path = typer.Option(..., "--out", "-o", help="a new folder for the bundle"),
    calibration: int = _CALIBRATION,
    holdout: int = _HOLDOUT,
    pipelines: int = _PIPELINES,
    overhead_pipelines: int = _OVERHEAD,
    confirm: Path | None = typer.Option(None, "--confirm", help=(
        "a search folder: write the small bundle that confirms its choice on the device instead (the teacher as "
        "shipped, the chosen pipeline with its decoder, runners-up)")),
    runners_up: int = typer.Option(2, "--runners-up", min=0, help="with --confirm: runners-up to time beside the choice"),
) -> None:
    """Write an ONNX measurement bundle for a device with no torch: every workload of the cost table, a
    manifest, and run_bundle.py (onnxruntime) to time them there. With --confirm, the bundle that confirms a
    search's choice there (then `tocsr costs confirm`)."""
    if confirm is not None:
        from tocsr.app.confirm import stage_confirm_export

        bundle = stage_confirm_export(confirm, teacher, profile, out, runners_up)
        then = f"`tocsr costs confirm {bundle.name}/results.json`"
    else:
        from tocsr.app.stages import stage_costs_export

        bundle = stage_costs_export(teacher, profile, out, calibration, holdout, pipelines,
                                    n_overhead=overhead_pipelines)
        then = f"`tocsr costs import {bundle.name}/results.json -o costs.json`"
    n = len(list((bundle / "models").glob("*.onnx")))
    typer.echo(f"wrote {n} ONNX files, manifest.json, run_bundle.py and README.md to {bundle}; on the device: "
               f"`python run_bundle.py {bundle.name}`, then {then}")


@costs_app.command("confirm")
def costs_confirm(
    results: Path = typer.Argument(..., help="results.json written by a confirmation bundle's run_bundle.py"),
    bundle: Path | None = typer.Option(None, "--bundle", help="the bundle folder (default: the results' folder)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="verdict JSON (default: confirmation.json beside the "
                                                               "results)"),
) -> None:
    """Whether a search's choice meets its budget on the device, from the device's timings of a confirmation
    bundle (`tocsr costs export --confirm SEARCH_DIR`), and what to ship if it does not."""
    from tocsr.app.confirm import stage_confirm

    conf, path = stage_confirm(results, bundle, out)
    for line in conf.lines():
        typer.echo(line)
    typer.echo(f"wrote {path}")


@costs_app.command("import")
def costs_import(
    results: Path = typer.Argument(..., help="results.json written by the bundle's run_bundle.py"),
    out: Path = typer.Option(..., "--out", "-o", help="cost table JSON to write"),
    bundle: Path | None = typer.Option(None, "--bundle", help="the bundle folder (default: the results' folder)"),
) -> None:
    """Turn a bundle's measured results into a cost table (and pipeline parts) with the device's provenance."""
    from bench.bundle import bundle_space
    from tocsr.app.stages import stage_costs_import

    model = stage_costs_import(results, out, bundle)
    _describe_costs(model, bundle_space(bundle or results.parent).all_teacher(), out)


@app.command()
def search(
    profile: str = typer.Option(..., "--profile", "-p"),
    surrogates: Path = typer.Option(Path("runs/surrogates"), "--surrogates"),
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    cost_table: Path | None = typer.Option(None, "--costs", help="cost table JSON; measured into --out if absent"),
    evaluations: int = typer.Option(60, "--evaluations", min=1,
                                    help="fidelity evaluations the search may make (the ε come from the profile)"),
    method: str = typer.Option("bo", "--method", help="bo, random, evolution, greedy, tpe, tpe-nni"),
    formulation: str = typer.Option("device", "--formulation", help="device (min fidelity s.t. cost) or paper"),
    eps_fid: float | None = typer.Option(None, "--eps-fid", help="fidelity budget (paper formulation)"),
    complexity: str = typer.Option("params", "--complexity", help="paper objective: params, gmacs or latency"),
    proxy: str = typer.Option(DEFAULT_PROXY, "--proxy", help=f"fidelity proxy minimised: {', '.join(PROXIES)}"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o"),
    ray_address: str | None = _RAY_ADDRESS,
    parts: Path | None = typer.Option(None, "--parts", help="a run's parts/ folder (LR encoder and tiny decoder "
                                      "trained and scored): the pipeline may deploy them; without it, the "
                                      "autoencoder's own parts"),
    max_parts_loss_db: float | None = typer.Option(None, "--max-parts-loss-db", min=0.0,
                                                   help="PSNR-Y (dB) the deployed encoder and decoder together may "
                                                        "lose against the autoencoder's and count as free (upper 95% "
                                                        "ends; default: search.parts.DEFAULT_MAX_LOSS_DB)"),
    judged_against: str = typer.Option("shipped", "--judged-against",
                                       help="a latency_vs_teacher pipeline budget: 'shipped' times each candidate "
                                            "beside the teacher as shipped and takes the search's target from the "
                                            "cost model's teacher as shipped; 'unet' times it beside the teacher "
                                            "UNet against the teacher as shipped read just before (the earlier "
                                            "way, kept to compare the two)"),
    upward_step: str = typer.Option("continuous", "--upward-step",
                                    help="where the cost model over-predicts the measured cheapest candidate: "
                                         "'continuous' searches above the target by whatever it over-predicts; "
                                         "'beyond tolerance' only past the table's tolerance (the earlier way, kept "
                                         "to compare; search.selection.SelectionConfig.upward_step)"),
    bias_probes: int = typer.Option(0, "--bias-probes", min=0,
                                    help="candidates near the target measured once each to read the cost model's "
                                         "bias where the first round's picks land as well; 0 (default) reads it at "
                                         "the cheapest candidate alone (search.selection.SelectionConfig.bias_probes)"),
    search_bound: str = typer.Option("moving", "--search-bound",
                                     help="'moving' (default): the search is bounded by each round's target, which "
                                          "follows the moment's readings; 'fixed': by the cost model as it stood "
                                          "before them, at the target plus its tolerance, the readings deciding only "
                                          "which trials are measured (search.selection.SelectionConfig.search_bound)"),
) -> None:
    """ε-constrained search for the backbone that fits the device's budgets."""
    from search.selection import SelectionConfig, reference_text
    from tocsr.app.stages import stage_costs, stage_search

    if formulation not in ("device", "paper"):
        raise typer.BadParameter(f"--formulation {formulation!r}: expected device or paper")
    if complexity not in ("params", "gmacs", "latency"):
        raise typer.BadParameter(f"--complexity {complexity!r}: expected params, gmacs or latency")
    _check_proxy(proxy)
    if judged_against not in ("shipped", "unet"):
        raise typer.BadParameter(f"--judged-against {judged_against!r}: expected shipped or unet")
    if upward_step not in ("beyond tolerance", "continuous"):
        raise typer.BadParameter(f"--upward-step {upward_step!r}: expected 'beyond tolerance' or 'continuous'")
    if search_bound not in ("moving", "fixed"):
        raise typer.BadParameter(f"--search-bound {search_bound!r}: expected moving or fixed")
    with folder_lock(out, "search"):
        table_path = cost_table or out / "cost_table.json"
        table = (_cost_model(table_path, profile) if table_path.is_file()
                 else stage_costs(teacher, profile, table_path, ray_address=ray_address))
        result = stage_search(teacher, surrogates, profile, table, out, method, evaluations, seed, formulation,
                              eps_fid, complexity, proxy=proxy, ray_address=ray_address, parts_dir=parts,
                              selection=SelectionConfig(judge_beside_shipped=judged_against == "shipped",
                                                        upward_step=upward_step, bias_probes=bias_probes,
                                                        search_bound=search_bound),
                              **({} if max_parts_loss_db is None else {"max_parts_loss_db": max_parts_loss_db}))
    c = result.chosen
    budget = "none" if result.latency_budget_ms is None else f"{result.latency_budget_ms:.2f} ms"
    guard = result.decision.get("latency_guard") or 0.0
    if guard and result.decision.get("latency_target_ms") is not None:
        budget += f", chosen at <= {result.decision['latency_target_ms']:.2f} ms: less the {100 * guard:g}% guard"
    memory = "-" if c.measured_memory_mib is None else f"{c.measured_memory_mib:.0f}"
    what, teacher_is = (("one-step SR pipeline", "teacher as shipped") if result.scope == "pipeline"
                        else ("backbone", "teacher"))
    typer.echo(f"chosen {c.key}: fidelity error ({result.proxy} proxy) {c.fidelity:.4g}; {what} {c.how} "
               f"p{result.percentile:g} {c.measured_latency_ms:.2f} ms ({c.latency_vs_teacher:.2f} x the {teacher_is}'s "
               f"{c.teacher_latency_ms:.2f} ms{reference_text(result.decision)}; "
               f"budget {budget}), {memory} MiB, "
               f"backbone {c.params_m:.2f} M params (teacher {result.teacher_params_m:.2f} M)")
    if c.how == "predicted":
        typer.echo(f"PREDICTED, not measured: {c.basis or 'the device is not attached'}")
    if result.pipeline:
        typer.echo(f"pipeline: {result.pipeline['line']}")
    if result.parts_choice:
        typer.echo(f"parts deployed: {result.encoder} encoder, {result.decoder} decoder: {result.parts_choice['reason']}")
    typer.echo(f"wrote {out / 'search_result.json'} and {out / 'convergence.png'}")


@app.command()
def sr(
    search_result: Path = typer.Option(..., "--search", help="search output folder (its chosen architecture)"),
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    surrogates: Path = typer.Option(Path("runs/surrogates"), "--surrogates"),
    out: Path = typer.Option(Path("runs/sr"), "--out", "-o"),
    teacher_steps: int = typer.Option(SR_DEFAULTS.teacher_steps, "--teacher-steps", min=1),
    student_steps: int = typer.Option(SR_DEFAULTS.student_steps, "--student-steps", min=1),
    data: Path | None = typer.Option(None, "--data"),
    finetuned: Path | None = typer.Option(None, "--finetuned",
                                          help="`tocsr finetune` output: start the students from that backbone"),
    resume: bool = typer.Option(False, "--resume"),
    parts: Path | None = typer.Option(None, "--parts", help="the parts/ folder the search was given: needed when "
                                      "it chose the LR encoder or the tiny decoder, or with --encoder lr"),
    encoder: str | None = typer.Option(None, "--encoder", help=(
        "default: the search's choice. kl: bicubic upscale + the autoencoder's encoder; lr: the parts stage's LR "
        "encoder, reading the LR image at LR resolution (cheaper, less faithful: see parts.json), the student "
        "trained on its latents")),
    train_parts: bool = typer.Option(False, "--train-parts", help=(
        "train the deployed LR encoder and tiny decoder with the student, by a per-image log pixel MSE through them "
        "(what the main job's quick preset does; tocsr.core.sr.config.TRAINED_PARTS); the autoencoder's own parts "
        "stay frozen")),
) -> None:
    """Adapt the chosen backbone to SR and distil it into a one-step generator."""
    from tocsr.app.stages import stage_sr
    from tocsr.core.sr.config import TRAINED_PARTS

    with folder_lock(out, "sr"):
        cfg = dataclasses.replace(SR_DEFAULTS, teacher_steps=teacher_steps, student_steps=student_steps,
                                  **(dict(TRAINED_PARTS) if train_parts else {}))
        info = stage_sr(teacher, surrogates, search_result, out, cfg, data, resume, finetuned, parts_dir=parts,
                        encoder=encoder)
    for kind, rows in info.quality.items():
        typer.echo(f"{kind}: " + ", ".join(f"{m} {r['psnr_y']:.2f} dB" for m, r in rows.items()))
    typer.echo(f"wrote {out} (upscale with `tocsr upscale IMAGE -o OUT --model {out}`)")


@app.command()
def finetune(
    search_result: Path = typer.Option(..., "--search", help="search output folder (its chosen architecture)"),
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    surrogates: Path = typer.Option(Path("runs/surrogates"), "--surrogates"),
    out: Path = typer.Option(Path("runs/finetune"), "--out", "-o"),
    steps: int = typer.Option(FinetuneConfig.steps, "--steps", min=1),
    kd_weight: float = typer.Option(FinetuneConfig.kd_weight, "--kd-weight", min=0.0,
                                    help="weight of matching the teacher's prediction beside the diffusion target"),
    samples: int = typer.Option(FinetuneConfig.samples, "--samples", min=4,
                                help="samples for the fidelity before / after (same noise)"),
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """Fine-tune the chosen backbone as a diffusion model; its sample-level fidelity before and after."""
    from tocsr.app.stages import stage_finetune

    with folder_lock(out, "finetune"):
        record = stage_finetune(teacher, surrogates, search_result, out,
                                FinetuneConfig(steps=steps, kd_weight=kd_weight, samples=samples), resume)
    typer.echo("\n".join(record.describe()))
    typer.echo(f"wrote {out} (SR from it: `tocsr sr --search {search_result} --finetuned {out}`)")


@app.command("eval")
def eval_cmd(
    hr: Path = typer.Option(..., "--hr", help="folder of ground-truth images (Set5/HR, DIV2K_valid_HR, ...)"),
    lr: Path | None = typer.Option(None, "--lr", help="folder of paired LR inputs (x4, _x4, LR4 names recognised); "
                                                      "default: degrade the HR images here"),
    scale: int = typer.Option(4, "--scale", min=2),
    degrade: str = typer.Option("bicubic", "--degrade", help="without --lr: bicubic (MATLAB imresize) or realesrgan"),
    seed: int = typer.Option(0, "--seed", help="without --lr: seed of the Real-ESRGAN degradation (per image)"),
    method: list[Path] = typer.Option([], "--method", help="TOC-SR model folder (`tocsr sr --out`); repeatable"),
    baseline: list[str] = typer.Option([], "--baseline",
                                       help="an interpolation (bicubic, lanczos, ...) or NAME=PATH: a folder a run "
                                            "trained (<run>/baselines/<name>) or a checkpoint spandrel recognises"),
    metrics: str = typer.Option("lpips,dists,niqe", "--metrics",
                                help="pyiqa metrics beyond PSNR-Y/SSIM-Y (n/a when their weights are not cached); "
                                     "'' for none"),
    out: Path = typer.Option(Path("runs/eval"), "--out", "-o"),
    against: str | None = typer.Option(None, "--against",
                                       help="also print every method minus this one, paired by image, for every "
                                            "metric (a model folder's method is named tocsr:<folder name>)"),
) -> None:
    """Score SR methods on a folder the way the field does: whole images, PSNR-Y/SSIM-Y, intervals, paired differences."""
    from reports.protocol import baseline_method, evaluate_folder, find_images, require_method, tocsr_method
    from tocsr.core.provenance import environment

    images = find_images(hr, lr, scale)
    specs = ["bicubic", *[b for b in baseline if b != "bicubic"]]
    methods = [baseline_method(b, scale) for b in specs] + [tocsr_method(m, scale) for m in method]
    if against is not None:
        require_method(against, [m.name for m in methods])      # before any image is scored
    result = evaluate_folder(images, methods, scale, degrade, seed, tuple(k for k in metrics.split(",") if k),
                             str(hr), str(lr) if lr else None)
    path = result.save(out, environment())
    typer.echo("\n".join(result.describe() + (result.against(against) if against else [])))
    typer.echo(f"wrote {path} and {out / 'per_image.csv'}")


@app.command()
def upscale(
    source: Path = typer.Argument(..., help="an image file, or a folder of images"),
    out: Path = typer.Option(..., "--out", "-o", help="output file, or folder when SOURCE is a folder"),
    model: Path = typer.Option(Path("runs/sr"), "--model", help="SR model folder from `tocsr sr`"),
    scale: int | None = typer.Option(None, "--scale", help="must match the model's scale"),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16 (NaN-guarded)"),
    tile: int = typer.Option(128, "--tile", min=8, help="LR tile side in pixels"),
    context: int = typer.Option(16, "--context", min=0,
                                help="LR pixels of real context read around each tile (more = closer to untiled)"),
    color_fix: str = typer.Option("wavelet", "--color-fix", help="wavelet, adain or none"),
    degradation: str | None = typer.Option(
        None, "--degradation",
        help="what degraded the input, for a model with a student per degradation: realesrgan (real "
             "photographs) or bicubic (a clean downscale). Unset: the model's router reads it from each image "
             "where the model has one, else realesrgan"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Upscale an image or a folder with the one-step SR model."""
    from tocsr.core.imageio import IMAGE_SUFFIXES, ImageReadError
    from tocsr.core.sr.pipeline import TOCSRPipeline
    from tocsr.core.sr.upscale import upscale_file
    from tocsr.core.training import progress

    pipe = TOCSRPipeline.from_pretrained(model, device=device, dtype=dtype, tile_lr=tile, color_fix=color_fix,
                                         context_lr=context, degradation=degradation)
    if scale is not None and scale != pipe.scale:
        raise typer.BadParameter(f"--scale {scale}: the model at {model} upscales x{pipe.scale}")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise typer.BadParameter(f"{source}: no images found ({', '.join(IMAGE_SUFFIXES)})")
        failed, routed = [], Counter()
        with progress("upscale", len(files)) as bar:
            for f in files:
                try:
                    info = upscale_file(pipe, f, out / f.relative_to(source).with_suffix(".png"))
                    routed[info["degradation"]] += info["routed"]
                except ImageReadError as err:
                    failed.append(str(err))
                bar.update(1)
        for msg in failed:
            typer.echo(f"skipped: {_one_line(msg)}", err=True)
        read = f" (degradation read from each image: {_counts(routed)})" if routed else ""
        typer.echo(f"wrote {len(files) - len(failed)} images to {out}{read}")
        if failed:
            raise typer.Exit(1)
    else:
        info = upscale_file(pipe, source, out)
        told = f", degradation {info['degradation']}" if info["degradation"] else ""
        told += " (read from the image by the model's router)" if info["routed"] else ""
        typer.echo(f"wrote {out} ({info['output_size'][0]}x{info['output_size'][1]}, {info['tiles']} tiles, "
                   f"{info['fp32_fallbacks']} fp32 fallbacks{told})")


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()))


def _check_proxy(proxy: str) -> None:
    if proxy not in PROXIES:
        raise typer.BadParameter(f"{proxy!r}: expected one of {', '.join(PROXIES)}", param_hint="--proxy")


@app.command("fidelity-check")
def fidelity_check(
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher", help="Teacher run folder."),
    surrogates: Path = typer.Option(Path("runs/surrogates"), "--surrogates", help="`tocsr distill` output folder."),
    candidates: int = typer.Option(24, "--candidates", min=3, help="candidates spanning few to most slots replaced"),
    samples: int = typer.Option(32, "--samples", min=4, help="samples per candidate (same noise for all)"),
    steps: int = typer.Option(10, "--steps", min=2, help="DDIM steps per sample"),
    proxies: str = typer.Option("one-call,rollout*4,rollout-spectrum", "--proxies",
                                help=f"comma-separated proxies to check, of {', '.join(PROXIES)}, each optionally "
                                     "*N for N noise draws per evaluation"),
    ceiling: bool = typer.Option(True, "--ceiling/--no-ceiling",
                                 help="score the samples again from independent noise: the ranking ceiling"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/fidelity-check"), "--out", "-o"),
) -> None:
    """Check the search's fidelity proxy against what candidates generate: Spearman over candidates, with a plot."""
    from reports.plots import proxy_vs_samples
    from search.proxy_check import check_proxy, spanning_candidates
    from tocsr.core.artifacts import atomic_write_bytes
    from tocsr.core.distill.fidelity import build_proxy
    from tocsr.core.distill.sample_fidelity import SampleFidelity
    from tocsr.core.distill.train import load_surrogates
    from tocsr.core.provenance import environment
    from tocsr.core.space import derive_search_space
    from tocsr.core.teacher.train import load_teacher, teacher_latents

    names = [p.strip() for p in proxies.split(",") if p.strip()]
    parsed = {n: (n.partition("*")[0], n.partition("*")[2] or "1") for n in names}
    bad = [n for n, (base, draws) in parsed.items() if base not in PROXIES or not draws.isdigit() or int(draws) < 1]
    if bad or not names:
        raise typer.BadParameter(f"cannot read {bad or proxies!r}: give NAME or NAME*DRAWS, NAME one of "
                                 f"{', '.join(PROXIES)}, DRAWS >= 1", param_hint="--proxies")
    with folder_lock(out, "fidelity-check"):
        t = load_teacher(teacher)
        space = derive_search_space(t.unet)
        bank, _ = load_surrogates(surrogates, space)
        _, val = teacher_latents(t)
        built = {n: build_proxy(base, t, space, bank, val, int(draws)) for n, (base, draws) in parsed.items()}
        sampler = SampleFidelity(t.denoiser, space, bank, dict(t.scheduler.config), t.autoencoder,
                                 tuple(val.shape[1:]), n=samples, steps=steps, seed=seed + 2024)
        repeat = SampleFidelity(t.denoiser, space, bank, dict(t.scheduler.config), t.autoencoder,
                                tuple(val.shape[1:]), n=samples, steps=steps, seed=seed + 4048) if ceiling else None
        check = check_proxy(built, sampler, spanning_candidates(space, candidates, seed), seed, repeat)
        path = check.save(out, environment())
        png = proxy_vs_samples(check)
        if png is not None:
            atomic_write_bytes(out / "proxy_vs_samples.png", png)
    typer.echo("\n".join(check.describe()))
    typer.echo(f"wrote {path} and {out / 'proxy_vs_samples.png'}")


@app.command()
def sweep(
    profile: str = typer.Option(..., "--profile", "-p"),
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    surrogates: Path = typer.Option(Path("runs/surrogates"), "--surrogates"),
    cost_table: Path = typer.Option(..., "--costs", help="cost table JSON (a run's runs/<r>/costs/<key>.json)"),
    eps: str = typer.Option(",".join(map(str, DEFAULT_EPS_REL)), "--eps",
                            help="comma-separated ε, fixed before the sweep: fractions of the cheapest candidate's "
                                 "fidelity error (or absolute with --absolute)"),
    absolute: bool = typer.Option(False, "--absolute", help="--eps are absolute fidelity errors"),
    complexity: str = typer.Option("params", "--complexity", help="what each point minimises: params, gmacs, latency"),
    evaluations: int = typer.Option(60, "--evaluations", min=1, help="fidelity evaluations per ε"),
    samples: int = typer.Option(16, "--samples", min=4, help="samples per choice (same noise as the teacher's)"),
    steps: int = typer.Option(10, "--steps", min=2, help="DDIM steps per sample"),
    proxy: str = typer.Option(DEFAULT_PROXY, "--proxy", help=f"fidelity proxy ε bounds: {', '.join(PROXIES)}"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/sweep"), "--out", "-o"),
) -> None:
    """The paper's table: minimise complexity s.t. fidelity <= ε for each ε; reductions vs samples, plotted."""
    from tocsr.app.stages import stage_sweep

    if complexity not in ("params", "gmacs", "latency"):
        raise typer.BadParameter(f"--complexity {complexity!r}: expected params, gmacs or latency")
    try:
        values = tuple(float(x) for x in eps.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"--eps {eps!r}: expected comma-separated numbers, e.g. 0.05,0.1,0.2") from None
    _check_proxy(proxy)
    with folder_lock(out, "sweep"):
        result = stage_sweep(teacher, surrogates, profile, _cost_model(cost_table, profile), out, values, not absolute,
                             complexity, "bo", evaluations, samples, steps, seed, proxy)
    typer.echo("\n".join(result.describe()))
    typer.echo(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'} and {out / 'sweep.png'}")


@app.command("search-benchmark")
def search_benchmark(
    profile: str = typer.Option("hw_profiles/cpu-2core.yaml", "--profile", "-p"),
    teacher: Path = typer.Option(Path("runs/teacher"), "--teacher"),
    surrogates: Path = typer.Option(Path("runs/surrogates"), "--surrogates"),
    cost_table: Path = typer.Option(..., "--costs"),
    evaluations: int = typer.Option(250, "--evaluations", min=4, help="fidelity evaluations per method and seed"),
    seeds: int = typer.Option(5, "--seeds", min=1),
    random_evaluations: int = typer.Option(600, "--random-evaluations", min=4),
    best_known_evaluations: int = typer.Option(2000, "--best-known-evaluations", min=10),
    methods: str = typer.Option("bo,random,evolution,greedy,tpe", "--methods"),
    out: Path = typer.Option(Path("runs/search-benchmark"), "--out", "-o"),
) -> None:
    """BO vs random, evolution, greedy and TPE at equal evaluation caps over several seeds (JSON + plot)."""
    from search.benchmark import describe_benchmark
    from tocsr.app.stages import stage_search_benchmark

    with folder_lock(out, "search-benchmark"):
        doc = stage_search_benchmark(teacher, surrogates, profile, _cost_model(cost_table, profile), out,
                                     tuple(methods.split(",")), evaluations, seeds, random_evaluations,
                                     best_known_evaluations)
    typer.echo("\n".join(describe_benchmark(doc)))
    typer.echo(f"wrote {out / 'search_benchmark.json'} and {out / 'convergence.png'}")


def _named_numbers(items: list[str], option: str, expected: str) -> dict[str, float]:
    """NAME=NUMBER options as a mapping; a malformed one is refused naming the option and the value."""
    out = {}
    for item in items:
        name, _, number = item.partition("=")
        try:
            out[name] = float(number)
        except ValueError:
            raise typer.BadParameter(f"{option} {item!r}: expected {expected}") from None
    return out


nightly_app = typer.Typer(invoke_without_command=True, help=(
    "Measure the nightly matrix, append it to the history, flag regressions, render the trend report. "
    "Exit 0: complete and nothing flagged; 3: a regression flagged (regressions.json); 1: something could not "
    "be measured. `tocsr nightly compare A B` puts two nights side by side."))
app.add_typer(nightly_app, name="nightly")


@nightly_app.callback()
def nightly(
    ctx: typer.Context,
    profile: list[str] = typer.Option(["hw_profiles/cpu-2core.yaml"], "--profile", "-p"),
    models: str = typer.Option("unet-tiny,toy-conv-attn,sr:espcn,sr:srvgg", "--models",
                               help="built-in workloads and sr:<baseline> architectures"),
    history: Path = typer.Option(Path("runs/nightly/history"), "--history"),
    out: Path = typer.Option(Path("runs/nightly"), "--out", "-o"),
    inject: list[str] = typer.Option([], "--inject-slowdown", help="MODEL=FACTOR (testing the detector)"),
    perturb: list[str] = typer.Option([], "--perturb-weights",
                                      help="MODEL=SIGMA: weight noise in a --run model (testing the quality check)"),
    run: Path | None = typer.Option(None, "--run", help="a main-job run folder: track the models it selected "
                                                         "per profile and the baselines it trained, with quality"),
    label: str | None = typer.Option(None, "--label"),
) -> None:
    """Measure the nightly matrix, append it to the history, flag regressions, render the trend report."""
    if ctx.invoked_subcommand is not None:
        return
    from reports.nightly import describe_flag, exit_code, load_history, render_nightly, run_night
    from tocsr.app.mainjob import browser_check

    factors = _named_numbers(inject, "--inject-slowdown", "MODEL=FACTOR, e.g. unet-tiny=1.2")
    noise = _named_numbers(perturb, "--perturb-weights", "MODEL=SIGMA, e.g. tocsr:cpu-2core=0.05")
    with folder_lock(out, "nightly"):
        night = run_night(profile, tuple(m for m in models.split(",") if m), history, factors, label=label,
                          run_dir=run, perturb=noise)
    page, flagged = render_nightly(history, out, run_dir=run)
    latest = next(n for n in load_history(history)[0] if n["file"] == night.stem)
    code = exit_code(latest, flagged)
    typer.echo(f"night {night.name} ({latest['status']}): {len(flagged)} regression(s)" +
               "".join(f"\n  {describe_flag(f)}" for f in flagged))
    check = browser_check(page)
    typer.echo(f"headless Chromium: {check['images_ok']} images loaded, {check['images_failed']} failed; screenshot "
               f"{check['screenshot']}" if check["checked"] else f"headless Chromium check skipped: {check['why']}")
    typer.echo(f"wrote {page} and {out / 'regressions.json'}; exit {code}")
    raise typer.Exit(code)


@nightly_app.command("compare")
def nightly_compare(
    a: str = typer.Argument(..., help="a night: its stamp, label, history file name or commit"),
    b: str = typer.Argument(..., help="the night to compare with A"),
    history: Path = typer.Option(Path("runs/nightly/history"), "--history"),
) -> None:
    """Two nights side by side: per profile and model, the change and whether it is beyond noise."""
    from reports.nightly import compare_nights, describe_comparison, find_night, load_history

    nights, _ = load_history(history)
    night_a, night_b = find_night(nights, a), find_night(nights, b)
    typer.echo("\n".join(describe_comparison(night_a, night_b, compare_nights(night_a, night_b, nights))))


@app.command()
def export(
    model: Path = typer.Option(Path("runs/sr"), "--model", help="SR model folder from `tocsr sr`"),
    out: Path = typer.Option(..., "--out", "-o", help="the .onnx file to write"),
    opset: int = typer.Option(17, "--opset", min=13),
    degradation: str | None = typer.Option(
        None, "--degradation", help="for a model with a student per degradation: the one exported "
                                    "(realesrgan by default, or bicubic)"),
) -> None:
    """Export the one-step generator plus decoder (and the LR encoder, where deployed) to ONNX and check it
    against torch."""
    from tocsr.core.sr.export import check_onnx, export_onnx, graph_input
    from tocsr.core.sr.pipeline import TOCSRPipeline

    pipe = TOCSRPipeline.from_pretrained(model, degradation=degradation)
    path = export_onnx(pipe, out, opset=opset)
    err = check_onnx(pipe, path)
    told = f", degradation {pipe.degradation}" if pipe.degradation else ""
    takes = ("lr_image, the LR image in [-1, 1] (its LR encoder is in the graph: the whole call)"
             if graph_input(pipe) == "lr_image" else
             f"lr_latent, the autoencoder's encoder's latent of the bicubic x{pipe.scale} upscale")
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB{told}; input: {takes}); "
               f"onnxruntime vs torch max |diff| {err:.2e}")
    if err > 1e-3:
        raise typer.Exit(1)


@app.command("workloads")
def workloads_cmd() -> None:
    """List the built-in workloads `--model` accepts."""
    from bench.workloads import list_workloads

    for name, desc in list_workloads().items():
        typer.echo(f"{name:18s} {desc}")


@profiles_app.command("list")
def profiles_list() -> None:
    """List the shipped profiles with their budgets."""
    from bench.profile import PROFILES_DIR, load_profile

    for path in sorted(PROFILES_DIR.glob("*.yaml")):
        p = load_profile(path)
        typer.echo(f"{p.name:24s} {p.device.kind:9s} {p.precision:5s} {p.execution_mode:11s} "
                   f"out {p.resolution.output_px}px x{p.resolution.scale}  "
                   f"{p.budgets.describe_latency(p.timing.percentile)}, memory <= {p.budgets.peak_memory_mib:g} MiB")


@profiles_app.command("check")
def profiles_check(paths: list[Path] = typer.Argument(..., help="Profile files to validate.")) -> None:
    """Validate profile files; print one line per file."""
    from bench.profile import load_profile

    for path in paths:
        p = load_profile(path)
        typer.echo(f"{path}: ok ({p.name}, sha256 {p.sha256[:12]})")


def _click_error_types() -> tuple[type[Exception], ...]:
    """Usage-error classes: typer >= 0.20 vendors click as typer._click, older typer uses click itself."""
    types: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except ImportError:
            continue
    return tuple(types)


def _usage_message(err) -> str:
    """A usage error in words, pointing at the help of the command it came from. A group called without one of
    its commands (`tocsr`, `tocsr profiles`) has already printed its help, and click's message for it is empty:
    name the commands instead."""
    ctx = getattr(err, "ctx", None)
    path = ctx.command_path if ctx is not None else "tocsr"
    message = err.format_message()
    if not message and ctx is not None and hasattr(ctx.command, "list_commands"):
        message = f"`{path}` needs one of its commands: {', '.join(ctx.command.list_commands(ctx))}"
    return f"{message or 'not a valid command line'} (see `{path} --help`)"


def _one_line(message: object) -> str:
    """A message on one line: control characters a user's path may carry (newline, carriage return)
    are shown escaped, so an error never splits over lines or overwrites itself."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO if os.environ.get("TOCSR_VERBOSE") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    debug = bool(os.environ.get("TOCSR_DEBUG"))
    try:
        code = app(args=argv, standalone_mode=False, prog_name="tocsr")
    except TocsrError as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:
        # The file system refused a path the user gave (name too long, permission, disk full):
        # a user-facing condition, reported in one line (TOCSR_DEBUG=1 shows the traceback).
        if debug:
            raise
        where = f": {err.filename}" if err.filename else ""
        shown = where if len(where) <= 120 else where[:117] + "..."
        print(f"error: {err.strerror or type(err).__name__}{_one_line(shown)} (set TOCSR_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as err:
        sys.exit(getattr(err, "exit_code", 0))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except _click_error_types() as err:
        if debug:
            raise
        print(f"error: {_one_line(_usage_message(err))}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
