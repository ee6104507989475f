"""What the pixel branch adds to one deployed call: the run's student retrained without it ("base") and with it (b32,
b48c6), each loaded as `tocsr upscale` loads it (TOCSRPipeline.from_pretrained(...).model), on the cpu-2core
profile's input (one 32 px LR image, fp32, 2 threads). The three are called in turn, round after round, so a machine
that drifts drifts for all of them; median and interquartile range over the rounds.

    python reports/evidence/sr-ablation/run54-branch-lr-objective/time_branch.py RUNS/pd-branch > time_branch.txt
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.sr.pipeline import TOCSRPipeline  # noqa: E402

VARIANTS = ("base", "b32", "b48c6")
ROUNDS, WARMUP = 400, 50


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def main(folder: Path) -> None:
    torch.set_num_threads(2)
    models = {v: TOCSRPipeline.from_pretrained(folder / v).model.eval() for v in VARIANTS}
    lr = torch.rand(1, 3, 32, 32) * 2 - 1
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with torch.inference_mode():
        for r in range(WARMUP + ROUNDS):
            for v, m in models.items():
                t = time.perf_counter()
                m(lr)
                if r >= WARMUP:
                    times[v].append((time.perf_counter() - t) * 1e3)
    env = environment()
    print(f"measured on {env['cpu_model']} ({env['platform']}), {torch.get_num_threads()} threads; torch "
          f"{torch.__version__}; commit {env['git']['sha'][:7]}{' (uncommitted changes)' if env['git']['dirty'] else ''}")
    base = times["base"]
    for v in VARIANTS:
        q1, med, q3 = quartiles(times[v])
        extra = "" if v == "base" else (
            f"; minus base, per round: median {statistics.median([a - b for a, b in zip(times[v], base, strict=True)]):+.2f} ms")
        params = sum(p.numel() for p in models[v].branch.parameters()) if models[v].branch is not None else 0
        print(f"{v}: median {med:.2f} ms [IQR {q1:.2f}, {q3:.2f}] over {ROUNDS} rounds; branch parameters {params}{extra}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
