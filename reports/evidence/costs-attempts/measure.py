"""What the costs stage's minutes buy: its cost model measured with fewer timing attempts, judged on pipelines it
never saw (issue 24: the README job's 30 minutes on slow hours).

Every measurement of the costs stage on the 2-core machine makes all of its attempts (`timing.max_retries` + 1), because
a call's spread there never falls under the profile's `max_cv`. This script measures what the costs stage measures
(`tocsr costs`: the backbone table with its held-out candidates, the four parts, each pair's overhead pipelines, the
held-out pipelines), once per `--retries` value and repetition, in alternating order, and times each. Then it measures
`--pipelines` whole deployed pipelines (the LR encoder and the tiny decoder, what the search's selection measures) at
the profile's own timing, and judges every model on them: issue 24's bar, >= 90% within +-10%, in units of the teacher
UNet timed beside each call. Writes `result.json` (wall seconds, attempts made, each model's validations and its errors
on the deployed pipelines, provenance) and `attempts.png`.

    python reports/evidence/costs-attempts/measure.py --run RUN --out DIR [--retries 2 1] [--reps 2] [--pipelines 30]

RUN is a folder with `teacher/` and `parts/` (a main job's, or `tocsr teacher train` and `python -m tocsr.app.parts`
at a step or two: costs do not depend on weights).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.costtable import CostTableInvalid, measure_cost_table, sample_candidates, summarize_errors  # noqa: E402
from bench.pipeline import measure_pipeline_parts  # noqa: E402
from bench.probe import DeployedPipelineMeter, cost_probe, pipeline_probe, teacher_inputs  # noqa: E402
from bench.profile import load_profile, replace  # noqa: E402
from search.selection import as_candidate  # noqa: E402
from tocsr.core.distill.bank import new_bank  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.sr.parts import load_parts  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402
from tocsr.core.training import progress  # noqa: E402

PROFILE = "hw_profiles/cpu-2core.yaml"


def attempts_made(cands) -> list[int]:
    return [max(1, len(c.latency.attempts)) for c in cands if c.latency is not None]


def measure_model(teacher, space, profile, holdout: int, pipelines: int) -> tuple[object, dict]:
    """The costs stage's measurement (tocsr.app.stages._measure_costs, through the same bench functions: this script
    sits below the app layer), with its wall seconds."""
    t_args, t_kwargs = teacher_inputs(teacher, profile)
    probe = cost_probe(space, copy.deepcopy(teacher.unet), t_args, t_kwargs, profile, new_bank(space))
    t0 = time.perf_counter()
    try:
        table = measure_cost_table(space, probe, profile, n_holdout=holdout)
    except CostTableInvalid as err:          # kept, as the main job keeps it
        table = err.table
    t_table = time.perf_counter() - t0
    model = measure_pipeline_parts(space, table, pipeline_probe(teacher, space, new_bank(space), profile), profile,
                                   n_holdout=pipelines)
    t_all = time.perf_counter() - t0
    whole = list(table.candidates)
    record = {"max_retries": profile.timing.max_retries, "table_s": t_table, "pipelines_s": t_all - t_table,
              "total_s": t_all, "table_fits": len(table.rounds),
              "attempts_table": attempts_made(whole), "attempts_pipelines": attempts_made(model.pipeline.candidates),
              "table_validation": table.validation_summary(), "pipeline_validation": model.validation_summary(),
              "reference_ms": model.reference_ms,
              "overheads": {f"{o.encoder}+{o.decoder}": o.ratio for o in model.pipeline.overheads}}
    return model.with_parts("lr", "tiny"), record


def plot(doc: dict, path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in doc["models"]:
        label = f"{r['max_retries'] + 1} attempts"
        c = "C0" if r["max_retries"] == max(m["max_retries"] for m in doc["models"]) else "C1"
        ax1.bar(len(ax1.patches), r["total_s"], color=c, label=label)
        ax2.hist(np.abs(r["deployed_errors"]) * 100, bins=np.arange(0, 21, 1), histtype="step", color=c, label=label)
    h, lab = ax1.get_legend_handles_labels()
    ax1.legend(dict(zip(lab, h, strict=True)).values(), dict(zip(lab, h, strict=True)).keys())
    ax1.set_xlabel("measurement (in the order run)")
    ax1.set_ylabel("costs stage wall seconds")
    ax2.axvline(10, color="k", lw=0.8)
    ax2.set_xlabel("|predicted / measured - 1| on the deployed pipelines (%)")
    ax2.set_ylabel("pipelines")
    h, lab = ax2.get_legend_handles_labels()
    ax2.legend(dict(zip(lab, h, strict=True)).values(), dict(zip(lab, h, strict=True)).keys())
    fig.suptitle("cpu-2core (measured): the costs stage at fewer timing attempts", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a folder with teacher/ and parts/")
    ap.add_argument("--out", required=True)
    ap.add_argument("--retries", type=int, nargs="+", default=[2, 1], help="timing.max_retries values to compare")
    ap.add_argument("--reps", type=int, default=2, help="repetitions; each runs every value, in alternating order")
    ap.add_argument("--pipelines", type=int, default=30, help="deployed pipelines every model is judged on")
    ap.add_argument("--holdout", type=int, default=20, help="held-out backbones of each table (the quick preset's)")
    ap.add_argument("--holdout-pipelines", type=int, default=6, help="held-out pipelines of each model (quick's)")
    args = ap.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(run / "teacher")
    space = derive_search_space(teacher.unet)
    base = load_profile(PROFILE)
    models, records = [], []
    for rep in range(args.reps):
        order = args.retries if rep % 2 == 0 else args.retries[::-1]
        for r in order:
            profile = replace(base, timing={**base.to_dict()["timing"], "max_retries": r})
            model, record = measure_model(teacher, space, profile, args.holdout, args.holdout_pipelines)
            record["rep"] = rep
            print(json.dumps({k: record[k] for k in ("rep", "max_retries", "total_s", "table_fits")}), flush=True)
            models.append(model)
            records.append(record)
    # the pipelines every model is judged on, measured at the profile's own timing after all the models
    encoder, decoder, _ = load_parts(run / "parts")
    meter = DeployedPipelineMeter(teacher, space, new_bank(space), base, decoder, encoder)
    seen = set().union(*({c.key for c in m.table.candidates} | {c.key for c in m.candidates} for m in models))
    measured = []
    with progress("deployed pipelines", args.pipelines) as bar:
        for spec in sample_candidates(space, args.pipelines, seed=2026, include_extremes=False, exclude=seen):
            m = meter.measure(spec)
            if m.paired is not None:
                measured.append(as_candidate(m, spec, "deployed"))
            bar.update(1)
    for model, record in zip(models, records, strict=True):
        errors = model.errors(measured)
        record["deployed_errors"] = errors.tolist()
        record["deployed_validation"] = summarize_errors(errors, model.bar)
    doc = {"kind": "tocsr.evidence.costs_attempts", "version": 1, "environment": environment(), "run": str(run),
           "profile": PROFILE, "timing": base.to_dict()["timing"], "models": records,
           "deployed_reference_ms": [c.latency.reference_ms for c in measured], "how": "measured"}
    (out / "result.json").write_text(json.dumps(doc, indent=1))
    plot(doc, out / "attempts.png")
    for r in records:
        print(f"rep {r['rep']} attempts {r['max_retries'] + 1}: {r['total_s']:.0f} s (table {r['table_s']:.0f} s, "
              f"{r['table_fits']} fit(s)); table {r['table_validation']}; pipelines {r['pipeline_validation']}; "
              f"deployed {r['deployed_validation']}")


if __name__ == "__main__":
    main()
