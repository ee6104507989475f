"""Would judging the chosen pipeline against the teacher as shipped directly steady the decision?

The search judges a candidate pipeline D by two ratios to the teacher UNet U taken a minute apart: D/U against
0.37 x S/U, where S is the teacher as shipped (search.selection). Both D and S have parts at the HR resolution, which
gain from the second vCPU where U, at the latent size, does not; so a change in the share of that core moves D/U
and S/U together, and the architecture chosen with them (README, "Four searches on identical inputs"). This times,
in rounds with the order rotated, D paired with U, S paired with U, and D paired with S (bench.measure's paired
measurement, the profile's timing), and compares across rounds the spread of the statistic the search decides on
(p90 D/U over p90 S/U, from consecutive readings) with that of the direct pairing (p90 of D relative to S). Before
each round it reads the machine's memory copy bandwidth (a 128 MiB tensor copied on torch's threads, median of 5),
and the summary gives each ratio's correlation with it: the cores probe did not see what moves S/U.

    python reports/evidence/latency-agreement/reference_pairing.py --run runs/quick [--rounds 12] --out F.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.measure import Workload, measure_workload  # noqa: E402
from bench.probe import pipeline_builder, teacher_reference  # noqa: E402
from bench.profile import load_profile  # noqa: E402
from search.result import SearchResult  # noqa: E402
from tocsr.core.distill.train import load_surrogates  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.sr.parts import load_parts  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402


def copy_bandwidth_gbps(mib: int = 128, repeats: int = 5) -> float:
    """Memory copy bandwidth now: bytes read plus written per second over one copy of a `mib` MiB tensor."""
    a = torch.ones(mib * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        b.copy_(a)
        times.append(time.perf_counter() - t)
    return 2 * a.numel() * 4 / float(np.median(times)) / 1e9


def spread(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "range_pct": float(100 * (v.max() - v.min()) / np.median(v)), "cv_pct": float(100 * v.std(ddof=1) / v.mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--profile", type=Path, help="default: the run's own copy of cpu-2core")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    run = args.run
    profile = load_profile(str(args.profile or run / "profiles" / "cpu-2core.yaml"))
    teacher = load_teacher(run / "teacher")
    result = SearchResult.load(run / f"search-{profile.name}")
    space = derive_search_space(teacher.unet)
    bank, _ = load_surrogates(run / "surrogates", space)
    part_encoder, part_decoder, _ = load_parts(run / "parts")
    scale = profile.resolution.scale
    deployed = pipeline_builder(teacher, space, bank, scale, part_decoder if result.decoder == "tiny" else None,
                                part_encoder if result.encoder == "lr" else None)(result.chosen.spec)
    shipped = pipeline_builder(teacher, space, {}, scale)(space.all_teacher())
    side = profile.resolution.input_px
    x = torch.rand(profile.batch, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    unet = teacher_reference(teacher, profile)
    d, s = Workload("deployed", deployed, (x,), {}), Workload("as shipped", shipped, (x,), {})
    q = profile.timing.percentile
    pairs = {"D/U": (d, unet), "S/U": (s, unet), "D/S": (d, s)}
    names = list(pairs)
    rounds = []
    for r in range(args.rounds):
        row = {"round": r, "utc": time.strftime("%H:%M:%S", time.gmtime()), "copy_gbps": copy_bandwidth_gbps()}
        for name in names[r % 3:] + names[:r % 3]:
            target, reference = pairs[name]
            m = measure_workload(target, profile, reference=reference)
            row[name] = {"ratio_p90": m.paired.ratio_at(q), "ratio_median": m.paired.ratio,
                         "reference_ms": m.paired.reference_ms, "relative_cv": m.paired.relative_cv,
                         "effective_cores": m.extra.get("effective_cores")}
        row["search statistic (D/U over S/U)"] = row["D/U"]["ratio_p90"] / row["S/U"]["ratio_p90"]
        rounds.append(row)
        print(f"round {r} {row['utc']} copy {row['copy_gbps']:.1f} GB/s: D/U {row['D/U']['ratio_p90']:.3f}  S/U {row['S/U']['ratio_p90']:.3f}  "
              f"D/U over S/U {row['search statistic (D/U over S/U)']:.4f}  D/S direct {row['D/S']['ratio_p90']:.4f}",
              flush=True)
    summary = {k: spread([row[k]["ratio_p90"] for row in rounds]) for k in names}
    summary["search statistic (D/U over S/U)"] = spread([row["search statistic (D/U over S/U)"] for row in rounds])
    gbps = [row["copy_gbps"] for row in rounds]
    summary["copy_gbps"] = spread(gbps)
    for k in names:
        summary[k]["correlation_with_copy_gbps"] = float(np.corrcoef([row[k]["ratio_p90"] for row in rounds], gbps)[0, 1])
    out = {"run": str(run), "profile": profile.name, "chosen": result.chosen.key, "percentile": q, "rounds": rounds,
           "summary": summary, "environment": environment()}
    for k, v in summary.items():
        corr = f"  corr. with copy bandwidth {v['correlation_with_copy_gbps']:+.2f}" if "correlation_with_copy_gbps" in v else ""
        print(f"{k:32s} median {v['median']:.4f}  [{v['min']:.4f}, {v['max']:.4f}]  range {v['range_pct']:.1f}%  "
              f"cv {v['cv_pct']:.1f}%{corr}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
