"""Issue 24's pipeline cost model judged on the pipeline a device deploys (the LR encoder and the tiny decoder), not
only on pipelines with the autoencoder's parts (reports/evidence/pipeline-costs-cpu/).

Measures a fresh cost model on this machine with a run's teacher (what `tocsr costs` measures: since a2af01c with each
pair of parts' overhead on three whole pipelines), then `--pipelines` whole
one-step SR calls never measured for it, each with the run's trained LR encoder and tiny decoder (what the search's
selection measures: bench.probe.DeployedPipelineMeter), and compares them with the model's prediction for those parts,
in units of the reference (the teacher UNet timed beside each call), so the machine's speed between the two does not
enter. Writes `result.json` (every candidate's predicted and measured ratio, the validation summary, provenance) and
`deployed_holdout.png`.

    python reports/evidence/pipeline-costs-cpu-deployed/measure.py --run RUN --out DIR [--pipelines 30]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.costtable import CostTableInvalid, measure_cost_table, sample_candidates, summarize_errors  # noqa: E402
from bench.pipeline import measure_pipeline_parts  # noqa: E402
from bench.probe import DeployedPipelineMeter, cost_probe, pipeline_probe, teacher_inputs  # noqa: E402
from bench.profile import load_profile  # noqa: E402
from search.selection import as_candidate  # noqa: E402
from tocsr.core.distill.bank import new_bank  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.sr.parts import load_parts  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402
from tocsr.core.training import progress  # noqa: E402

PROFILE = "hw_profiles/cpu-2core.yaml"


def plot(rows: list[dict], summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    xs = [r["measured_ratio"] for r in rows]
    ys = [r["predicted_ratio"] for r in rows]
    lo, hi = min(xs + ys) * 0.95, max(xs + ys) * 1.05
    ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="0.88", label="±10%", zorder=0)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, zorder=1)
    ax.scatter(xs, ys, s=14, zorder=2, label="held-out pipeline")
    ax.set_xlabel("measured (x the teacher UNet's median)")
    ax.set_ylabel("predicted (parts + backbone table)")
    ax.set_title(f"LR encoder + tiny decoder, cpu-2core (measured)\n"
                 f"{100 * summary['within_tolerance']:.0f}% of {summary['n']} within ±10%", fontsize=10)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a main job's output folder (teacher/, parts/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pipelines", type=int, default=30)
    ap.add_argument("--holdout", type=int, default=20, help="held-out backbones of the fresh cost table")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from OUT/result.json")
    args = ap.parse_args()
    run, out = Path(args.run), Path(args.out)
    if args.replot:
        doc = json.loads((out / "result.json").read_text())
        plot(doc["pipelines"], doc["deployed_validation"], out / "deployed_holdout.png")
        return
    out.mkdir(parents=True, exist_ok=True)
    # what `tocsr costs` measures (tocsr.app.stages.stage_costs), through the same bench functions: this script sits
    # below the app layer
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    profile = load_profile(PROFILE)
    t_args, t_kwargs = teacher_inputs(teacher, profile)
    probe = cost_probe(space, copy.deepcopy(teacher.unet), t_args, t_kwargs, profile, new_bank(space))
    try:
        table = measure_cost_table(space, probe, profile, n_holdout=args.holdout)
    except CostTableInvalid as err:          # kept, as the main job keeps it; its validation is reported below
        table = err.table
    model = measure_pipeline_parts(space, table, pipeline_probe(teacher, space, new_bank(space), profile), profile,
                                   n_holdout=6).with_parts("lr", "tiny")
    encoder, decoder, _ = load_parts(run / "parts")
    # cost does not depend on the surrogates' weights (as in `tocsr costs`): a fresh bank
    meter = DeployedPipelineMeter(teacher, space, new_bank(space), profile, decoder, encoder)
    specs = sample_candidates(space, args.pipelines, seed=2026, include_extremes=False,
                              exclude={c.key for c in model.table.candidates} | {c.key for c in model.candidates})
    measured = []
    with progress("deployed pipelines", len(specs)) as bar:
        for spec in specs:
            m = meter.measure(spec)
            if m.paired is not None:
                measured.append(as_candidate(m, spec, "deployed"))
            bar.update(1)
    errors = model.errors(measured)
    summary = summarize_errors(errors, model.bar)
    # the same pipelines against the sum of the parts alone (what the model was before overheads were measured)
    summed = dataclasses.replace(model, pipeline=dataclasses.replace(model.pipeline, overheads=()))
    summary_summed = summarize_errors(summed.errors(measured), model.bar)
    rows = [{"key": c.key, "measured_ratio": c.latency.ratio, "predicted_ratio": c.latency.ratio * (1 + e),
             "relative_cv": c.latency.relative_cv, "measured_ms": c.latency.target.median_ms,
             "reference_ms": c.latency.reference_ms} for c, e in zip(measured, errors, strict=True)]
    doc = {"kind": "tocsr.evidence.deployed_pipelines", "version": 1, "environment": environment(),
           "run": str(run), "profile": PROFILE, "parts": {"encoder": "lr", "decoder": "tiny"},
           "fixed_ratio": model.pipeline.fixed_ratio, "table_reference_ms": model.reference_ms,
           "table_validation": model.table.validation_summary(),
           "costs_stage_pipelines_validation": model.validation_summary(),
           "deployed_validation": summary, "deployed_validation_sum_of_parts": summary_summed,
           "overheads": [{"encoder": o.encoder, "decoder": o.decoder, "ratio": o.ratio, "residuals": o.residuals}
                         for o in model.pipeline.overheads],
           "pipelines": rows, "how": "measured"}
    (out / "result.json").write_text(json.dumps(doc, indent=1))
    plot(rows, summary, out / "deployed_holdout.png")
    print(json.dumps({k: doc[k] for k in ("table_validation", "costs_stage_pipelines_validation", "deployed_validation",
                                          "deployed_validation_sum_of_parts", "overheads")}, indent=1))


if __name__ == "__main__":
    main()
