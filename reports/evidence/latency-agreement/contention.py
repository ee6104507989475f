"""Do the pipeline parts' and whole pipelines' ratios to the teacher UNet move with the kind of load beside them?

Times, paired with the teacher UNet as the costs stage does (bench.pipeline.PipelineProbeMeter), each part alone
and the teacher-shaped pipeline with every (encoder, decoder) pair, in rounds; each round under each of `--loads` in turn:
idle; beside a busy-loop process (it takes a core); beside a process that copies 64 MiB arrays (it takes a core and
memory bandwidth); or idle with torch on one thread ("one thread": what a workload runs at when a core is taken
from it). Each reading is appended to the JSON as it is taken, with the cores probe (bench.cores) taken just
before and after it (`effective_cores_before_after`, out of torch's usual thread count).

    python reports/evidence/latency-agreement/contention.py --teacher runs/quick/teacher [--rounds 2] \
        [--loads idle "busy loop" "memory copy" "one thread"] --out F.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.cores import effective_cores  # noqa: E402
from bench.pipeline import PipelineProbeMeter  # noqa: E402
from bench.probe import TorchPipelineProbe  # noqa: E402
from bench.profile import load_profile  # noqa: E402
from tocsr.core.provenance import environment  # noqa: E402
from tocsr.core.space import derive_search_space  # noqa: E402
from tocsr.core.teacher.train import load_teacher  # noqa: E402

PAIRS = (("kl", "kl"), ("lr", "kl"), ("kl", "tiny"), ("lr", "tiny"))
LOADS = ("idle", "busy loop", "memory copy", "one thread")


def busy_loop(stop) -> None:
    x = 1
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def memory_copy(stop) -> None:
    a = np.ones(64 * 2**20 // 8)     # 64 MiB each: far past any cache
    b = np.empty_like(a)
    while not stop.is_set():
        np.copyto(b, a)
        np.copyto(a, b)


def reading(meter: PipelineProbeMeter, space) -> dict:
    parts = {p.name: p.ratio for p in meter.parts()}
    pipelines = {}
    for pair in PAIRS:
        m = meter if pair == ("kl", "kl") else meter.deploying(*pair)
        [c] = m.candidates([space.all_teacher()], "teacher-shaped")
        pipelines["+".join(pair)] = {"ratio": c.latency.ratio, "reference_ms": c.latency.reference_ms}
    return {"parts": parts, "pipelines": pipelines}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--profile", default="cpu-2core")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--loads", nargs="+", choices=LOADS, default=list(LOADS[:3]))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    profile = load_profile(args.profile)
    teacher = load_teacher(args.teacher)
    space = derive_search_space(teacher.unet)
    meter = PipelineProbeMeter(TorchPipelineProbe(teacher, space, {}, profile), profile)
    out = {"profile": profile.name, "teacher": str(args.teacher), "readings": [], "environment": environment()}
    threads = torch.get_num_threads()
    loads = args.loads
    for r in range(args.rounds):
        for load in loads[r % len(loads):] + loads[:r % len(loads)]:
            stop, proc = mp.Event(), None
            torch.set_num_threads(1 if load == "one thread" else threads)
            if load in ("busy loop", "memory copy"):
                proc = mp.Process(target=busy_loop if load == "busy loop" else memory_copy, args=(stop,))
                proc.start()
                time.sleep(1)
            t0 = time.time()
            try:
                # the probe the suite now takes beside each deciding reading (bench.cores), on the process's threads
                before = effective_cores(threads)
                row = {"round": r, "load": load, "torch_threads": torch.get_num_threads(), **reading(meter, space)}
                row["effective_cores_before_after"] = [before, effective_cores(threads)]
            finally:
                if proc is not None:
                    stop.set()
                    proc.join()
                torch.set_num_threads(threads)
            kl = row["parts"]
            row["kl+kl whole / its parts and the UNet"] = row["pipelines"]["kl+kl"]["ratio"] / (
                kl["bicubic + encoder"] + kl["decoder"] + 1.0)
            row["seconds"] = time.time() - t0
            out["readings"].append(row)
            args.out.write_text(json.dumps(out, indent=1, default=str))
            print(f"round {r} {load:11s} parts " + ", ".join(f"{k} {v:.3f}" for k, v in row["parts"].items())
                  + "; whole " + ", ".join(f"{k} {v['ratio']:.3f}" for k, v in row["pipelines"].items())
                  + f"; kl+kl whole/(parts+UNet) {row['kl+kl whole / its parts and the UNet']:.2f}"
                  + "; cores " + "/".join(f"{c:.2f}" for c in row["effective_cores_before_after"]), flush=True)


if __name__ == "__main__":
    main()
