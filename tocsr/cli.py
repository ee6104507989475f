"""The `tocsr` command. Each sub-command parses, makes one library call and writes one artifact.

This module is the one place that wires the stages (tocsr, bench, search, reports) together.
Errors the user can fix (TocsrError, bad arguments) print one line and exit 1; set TOCSR_DEBUG=1
for the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from tocsr.errors import TocsrError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="TOC-SR: hardware-aware compact diffusion super-resolution.")
profiles_app = typer.Typer(no_args_is_help=True, help="List and validate device profiles.")
app.add_typer(profiles_app, name="profiles")


@app.command()
def bench(
    profile: str = typer.Option(..., "--profile", "-p", help="Profile YAML path, or a name in hw_profiles/."),
    model: str = typer.Option(..., "--model", "-m",
                              help="Built-in workload, diffusers config.json/folder, or file.py:factory / module:factory."),
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


@app.command()
def run(
    profile: list[str] = typer.Option(["hw_profiles/cpu-2core.yaml"], "--profile", "-p",
                                      help="Device profile(s); repeat for several devices."),
    preset: str = typer.Option("quick", "--preset", help="quick (CPU, minutes) or full."),
    out: Path = typer.Option(Path("runs/quick"), "--out", "-o", help="Run folder."),
) -> None:
    """The main job: every available stage, end to end, for each device profile."""
    from tocsr.pipeline import run_main_job

    summary = run_main_job(profile, preset, out)
    typer.echo(f"run folder: {summary.out_dir} ({summary.wall_s:.1f} s)")


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
                   f"latency <= {p.budgets.latency_ms:g} ms (p{p.timing.percentile:g}), "
                   f"memory <= {p.budgets.peak_memory_mib:g} MiB")


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


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO if os.environ.get("TOCSR_VERBOSE") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    debug = bool(os.environ.get("TOCSR_DEBUG"))
    try:
        code = app(args=argv, standalone_mode=False, prog_name="tocsr")
    except TocsrError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as err:
        sys.exit(getattr(err, "exit_code", 0))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except _click_error_types() as err:
        if debug:
            raise
        print(f"error: {err.format_message()} (see `tocsr --help`)", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
