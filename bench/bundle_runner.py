"""Time a measurement bundle's ONNX files on this device with onnxruntime: no torch, no suite needed.

Copied into every bundle as `run_bundle.py` by `tocsr costs export` (bench.bundle); it needs Python 3.9+,
numpy and onnxruntime only. Each workload is timed in rounds, each beside a short burst of the bundle's
reference workload (the teacher UNet), as the suite times a device it is attached to
(bench.timing.measure_paired): the ratio to the reference cancels a device that speeds up or slows down
while the bundle runs. Every sample is written to the results file; `tocsr costs import` fits the table.

    python run_bundle.py BUNDLE_DIR [--provider CUDAExecutionProvider] [-o BUNDLE_DIR/results.json]

Timing with TensorRT instead: see the bundle's README.md (trtexec per file, then the same results format).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import socket
import sys
import time
from pathlib import Path

RESULTS_KIND = "tocsr.bench.bundle_results"
RESULTS_VERSION = 1
REFERENCE_ITERS = 3          # reference calls per round; their median is that round's yardstick
WINDOW = 5                   # iterations per warm-up window


def _session(path: Path, provider: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=[provider])


def _call(session, inputs: list[dict]):
    import numpy as np

    rng = np.random.default_rng(0)
    feed = {}
    used = {i.name for i in session.get_inputs()}       # the exporter drops inputs a graph does not read
    for spec in (s for s in inputs if s["name"] in used):
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            feed[spec["name"]] = rng.standard_normal(spec["shape"]).astype(dtype)
        else:
            feed[spec["name"]] = np.zeros(spec["shape"], dtype=dtype)
    return lambda: session.run(None, feed)


def _timed(fn, iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def warm_up(fn, timing: dict) -> int:
    """Until two consecutive windows agree within timing['warmup_stable_rel'] (as bench.timing.warm_up)."""
    done = timing["warmup_min_iters"]
    previous = _median(_timed(fn, done)[-WINDOW:])
    while done < timing["warmup_max_iters"]:
        window = _timed(fn, min(WINDOW, timing["warmup_max_iters"] - done))
        done += len(window)
        current = _median(window)
        if previous > 0 and abs(current - previous) / previous <= timing["warmup_stable_rel"]:
            break
        previous = current
    return done


def paired(target, reference, timing: dict) -> dict:
    """Target samples in rounds beside reference bursts, order alternating; each relative to its round."""
    warm = warm_up(target, timing)
    rounds = timing["paired_rounds"]
    per_round = max(2, -(-timing["repeats"] // rounds))
    tgt, ref, rel = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            ref_r, tgt_r = _timed(reference, REFERENCE_ITERS), _timed(target, per_round)
        else:
            tgt_r, ref_r = _timed(target, per_round), _timed(reference, REFERENCE_ITERS)
        yardstick = _median(ref_r)
        tgt += tgt_r
        ref += ref_r
        rel += [t / yardstick for t in tgt_r]
    return {"target_ms": tgt, "reference_ms": ref, "relative": rel, "rounds": rounds, "warmup_iters": warm}


def cpu_name() -> str:
    """The CPU's model name where Linux says it (platform.processor() is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator_name(provider: str) -> str | None:
    """The GPU's name (nvidia-smi) when a GPU execution provider times the bundle; None on the CPU."""
    if provider == "CPUExecutionProvider":
        return None
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def manifest_sha256(bundle: Path) -> str:
    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def run(bundle: Path, provider: str, out: Path, log=print) -> Path:
    manifest = json.loads((bundle / "manifest.json").read_text())
    timing = manifest["timing"]
    workloads = manifest["workloads"]
    ref_spec = next(w for w in workloads if w["role"] == "reference")
    reference = _call(_session(bundle / ref_spec["file"], provider), ref_spec["inputs"])
    warm_up(reference, timing)
    results = {}
    for i, w in enumerate(workloads):
        if w["role"] == "reference":
            continue
        session = _session(bundle / w["file"], provider)
        results[w["id"]] = paired(_call(session, w["inputs"]), reference, timing)
        log(f"[{i + 1}/{len(workloads)}] {w['id']}: median {_median(results[w['id']]['target_ms']):.3f} ms")
    import onnxruntime as ort

    doc = {"kind": RESULTS_KIND, "schema_version": RESULTS_VERSION, "manifest_sha256": manifest_sha256(bundle),
           "device": {"host": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
                      "processor": cpu_name(), "accelerator": accelerator_name(provider), "python": platform.python_version(),
                      "runtime": f"onnxruntime {ort.__version__}", "provider": provider,
                      "timer": "perf_counter around InferenceSession.run (host to host)"},
           "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--provider", default="CPUExecutionProvider", help="an onnxruntime execution provider")
    ap.add_argument("-o", "--out", type=Path, default=None, help="results file (default: BUNDLE/results.json)")
    args = ap.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        print(f"error: {args.bundle}: no manifest.json (not a bundle written by `tocsr costs export`)", file=sys.stderr)
        return 2
    out = run(args.bundle, args.provider, args.out or args.bundle / "results.json")
    # a bundle says what its results are for: a cost table (`tocsr costs import`) or a verdict (`tocsr costs confirm`)
    then = json.loads((args.bundle / "manifest.json").read_text()).get("then", "tocsr costs import {results} -o costs.json")
    print(f"wrote {out}; then, where the suite is installed: `{then.format(results=out)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
