"""Does the process's memory allocator state move a part's latency? Each reading in a fresh process.

The suite's processes time the autoencoder's parts after other work (the search's fidelity proxy decodes a batch
of 16 latents first); a standalone script, or a user's server, times them from a fresh start. glibc's malloc
serves large blocks with mmap and returns them on free, and trims the heap's top above a threshold that it
adapts to what was freed before, so whether a call's activations are page-faulted in again on every call depends
on what the process did earlier. This times, in a fresh process per reading and in turn:
- "fresh": the part as a fresh process meets it;
- "after a batch of 16": one decode of 16 latents first (what the proxy does);
- "mallopt": glibc's mmap and trim thresholds fixed high first (`mallopt`), so freed blocks stay in the heap;
- "suite state": what every timing process does since the sixty-sixth session (bench.allocator.settle_cpu_allocator:
  the thresholds at glibc's own cap);
the teacher's KL decoder and encoder at batch 1 and the teacher UNet, 150 calls each after 10 of warm-up, with the
minor page faults per call (getrusage), and each part's peak memory read both ways on its first call in the
process: resident growth (bench.memory's fallback, the CPU method until the sixty-sixth session) and then torch's
allocator growth (its method since); with `--parts` (a run's parts/ folder), the whole one-step SR call too
(bench.probe.pipeline_builder, the teacher's backbone) with the deployed LR encoder and tiny decoder, and as shipped.

    python reports/evidence/latency-agreement/allocator.py --teacher runs/quick/teacher [--parts runs/quick/parts] \
        [--rounds 3] --out F.json
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = ("fresh", "after a batch of 16", "mallopt", "suite state")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # glibc's malloc.h


def child(teacher_dir: str, mode: str, parts_dir: str | None) -> dict:
    if mode == "mallopt":
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        if libc.mallopt(M_MMAP_THRESHOLD, 256 << 20) != 1 or libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) != 1:
            raise SystemExit("mallopt refused the thresholds: not glibc?")
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    import torch

    from bench.memory import _resident_growth, allocated_growth_mib
    from tocsr.core.teacher.train import load_teacher

    if mode == "suite state":
        from bench.allocator import settle_cpu_allocator

        settle_cpu_allocator()

    torch.set_num_threads(2)
    teacher = load_teacher(teacher_dir)
    ae, unet = teacher.autoencoder, teacher.denoiser.unet
    z = torch.randn(1, unet.config.in_channels, 16, 16)
    image = torch.randn(1, 3, 128, 128)
    t = torch.tensor([500])
    cond = torch.zeros(1, 1, unet.config.cross_attention_dim) if unet.config.cross_attention_dim else None
    calls = {"kl decoder": lambda: ae.decode(z), "kl encoder": lambda: ae.encode(image),
             "teacher unet": lambda: unet(z, t, encoder_hidden_states=cond)}
    if parts_dir:
        from bench.probe import pipeline_builder
        from tocsr.core.space import derive_search_space
        from tocsr.core.sr.parts import load_parts

        space = derive_search_space(unet)
        lr_encoder, tiny_decoder, _ = load_parts(parts_dir)
        lr = torch.rand(1, 3, 32, 32)
        deployed = pipeline_builder(teacher, space, {}, 4, tiny_decoder, lr_encoder)(space.all_teacher())
        shipped = pipeline_builder(teacher, space, {}, 4)(space.all_teacher())
        calls["pipeline lr+tiny"] = lambda: deployed(lr)
        calls["pipeline as shipped"] = lambda: shipped(lr)
    out = {}
    with torch.inference_mode():
        if mode == "after a batch of 16":
            ae.decode(torch.randn(16, *z.shape[1:]))
        for name, call in calls.items():
            resident = _resident_growth(call, 0.0).transient_peak_mib
            allocated = allocated_growth_mib(call)
            for _ in range(10):
                call()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            ts = []
            for _ in range(150):
                a = time.perf_counter()
                call()
                ts.append(time.perf_counter() - a)
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / len(ts)
            out[name] = {"median_ms": 1e3 * float(np.median(ts)), "p90_ms": 1e3 * float(np.percentile(ts, 90)),
                         "minor_faults_per_call": faults, "resident_growth_first_call_mib": resident,
                         "torch_allocated_growth_mib": allocated}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--parts", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(str(args.teacher), args.child, str(args.parts) if args.parts else None)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from tocsr.core.provenance import environment

    result = {"teacher": str(args.teacher), "parts": str(args.parts), "readings": [], "environment": environment()}
    for r in range(args.rounds):
        modes = tuple(args.modes)
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            cmd = [sys.executable, __file__, "--teacher", str(args.teacher), "--child", mode]
            proc = subprocess.run(cmd + (["--parts", str(args.parts)] if args.parts else []),
                                  capture_output=True, text=True, check=True)
            row = {"round": r, "mode": mode, **json.loads(proc.stdout.strip().splitlines()[-1])}
            result["readings"].append(row)
            print(f"round {r} {mode:20s} " + "; ".join(
                f"{k} {v['median_ms']:.2f} ms ({v['minor_faults_per_call']:.0f} faults/call, "
                f"{v['resident_growth_first_call_mib']:.1f} / {v['torch_allocated_growth_mib']:.1f} MiB)"
                for k, v in row.items() if isinstance(v, dict)), flush=True)
            if args.out:
                args.out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
