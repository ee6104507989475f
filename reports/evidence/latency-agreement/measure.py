"""Why the report's latency of the chosen pipeline disagrees with the search's re-measurement of it.

Both time the same call shape (the profile's LR input, the LR encoder, one backbone call, the tiny decoder),
paired with the teacher UNet. They differ in (a) the weights: the search times the student built from the
surrogate bank with the parts as the parts stage trained them, the report the SR stage's student and parts
(trained further with the student, `SRConfig.TRAINED_PARTS`), and (b) when, and so at which speed of the machine,
each is put in milliseconds. This script times the four weight combinations in one process, alternating their
order over rounds, all paired with the same reference and put at one speed, and counts the subnormal floats in
each module's weights and activations (a subnormal operand makes x86 float arithmetic many times slower).

    python reports/evidence/latency-agreement/measure.py --run runs/quick [--rounds 3] [--flush-denormal]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.measure import Workload, measure_workload  # noqa: E402
from bench.probe import pipeline_builder, teacher_reference  # noqa: E402
from bench.profile import load_profile  # noqa: E402
from reports.comparison import load_sr_methods  # noqa: E402
from search.result import SearchResult  # noqa: E402
from tocsr.core.distill.train import load_surrogates  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.sr.onestep import OneStepSR  # noqa: E402
from tocsr.core.sr.parts import load_parts  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402


def subnormals(module: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Subnormal floats in `module`'s weights and in every leaf module's output on `x`."""
    tiny = torch.finfo(torch.float32).tiny

    def count(t: torch.Tensor) -> int:
        return int(((t != 0) & (t.abs() < tiny)).sum()) if t.is_floating_point() else 0

    weights = sum(count(p) for p in module.parameters())
    seen = {"activations": 0}
    hooks = [m.register_forward_hook(lambda _m, _a, out: seen.__setitem__(
        "activations", seen["activations"] + (count(out) if isinstance(out, torch.Tensor) else 0)))
        for m in module.modules() if not list(m.children())]
    with torch.inference_mode():
        module(x)
    for h in hooks:
        h.remove()
    return {"weights": weights, "activations": seen["activations"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--profile", default="cpu-2core")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flush-denormal", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    run = args.run
    profile = load_profile(args.profile)
    teacher = load_teacher(run / "teacher")
    result = SearchResult.load(run / f"search-{profile.name}")
    space = derive_search_space(teacher.unet)
    bank, _ = load_surrogates(run / "surrogates", space)
    part_encoder, part_decoder, _ = load_parts(run / "parts")
    searched = pipeline_builder(teacher, space, bank, profile.resolution.scale,
                                part_decoder if result.decoder == "tiny" else None,
                                part_encoder if result.encoder == "lr" else None)(result.chosen.spec)
    methods, _ = load_sr_methods(teacher, run / "sr" / result.sr_folder_name, profile.name, False)
    reported = methods[0].cost_module
    scale = profile.resolution.scale
    variants = {
        "search: bank student, parts-stage parts": searched,
        "report: SR student, SR-trained parts": reported,
        "SR student, parts-stage parts": OneStepSR(teacher.autoencoder, reported.student, scale,
                                                   searched.part_decoder, searched.part_encoder).eval(),
        "bank student, SR-trained parts": OneStepSR(teacher.autoencoder, searched.student, scale,
                                                    reported.part_decoder, reported.part_encoder).eval(),
    }
    side = profile.resolution.input_px
    x = torch.rand(profile.batch, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = teacher_reference(teacher, profile)
    q = profile.timing.percentile
    names = list(variants)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            m = measure_workload(Workload(name, variants[name], (x,), {}), profile, reference=ref)
            rows[name].append({"ratio_median": m.paired.ratio, "ratio_p90": m.paired.ratio_at(q),
                               "reference_ms": m.paired.reference_ms, "raw_median_ms": m.latency.median_ms,
                               "raw_p90_ms": m.latency.p90_ms, "relative_cv": m.paired.relative_cv})
            print(f"round {r} {name:42s} ratio p{q:g} {m.paired.ratio_at(q):.3f}  raw median {m.latency.median_ms:.2f} ms"
                  f"  reference {m.paired.reference_ms:.2f} ms", flush=True)
    speed = float(np.median([row["reference_ms"] for rs in rows.values() for row in rs]))
    out = {"run": str(run), "profile": profile.name, "chosen": result.chosen.key, "flush_denormal": args.flush_denormal,
           "search_result_p90_ms": result.chosen.measured_latency_ms, "speed_reference_ms": speed,
           "variants": {n: {"p90_ms_at_one_speed": [row["ratio_p90"] * speed for row in rs], "rounds": rs,
                            "subnormals": subnormals(variants[n], x)} for n, rs in rows.items()},
           "environment": environment()}
    print(f"\nat one speed (teacher UNet {speed:.2f} ms); the search's own figure: p{q:g} "
          f"{result.chosen.measured_latency_ms:.2f} ms")
    for n, v in out["variants"].items():
        ms = v["p90_ms_at_one_speed"]
        print(f"{n:42s} p{q:g} {np.median(ms):.2f} ms (rounds {min(ms):.2f}-{max(ms):.2f}); subnormals {v['subnormals']}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
