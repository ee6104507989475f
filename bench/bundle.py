"""A measurement bundle for a device with no torch: ONNX files of everything a cost table needs, and the way back.

`export_bundle` writes, for one profile (its batch and sizes):
  * `models/*.onnx`: the reference (the teacher UNet), every (slot, choice) block on the inputs it sees
    inside the teacher, whole candidates (calibration and held-out, as `tocsr costs` samples them), the
    one-step SR pipeline's fixed parts (each encoder and decoder a device may deploy), whole pipelines with each
    pair of parts that measure its overhead (what a call costs beyond its parts), and held-out whole pipelines;
  * `manifest.json`: every workload with its inputs, parameters and MACs, the search space, the profile;
  * `run_bundle.py` (bench.bundle_runner, numpy + onnxruntime only) and a README with the trtexec route.

On the device, `python run_bundle.py BUNDLE` times every file beside the reference, in rounds, and writes
`results.json`. `import_results` checks that file against the manifest (same bundle, every workload, no
other) and fits the same table `tocsr costs` fits (bench.costtable.fit_correction), judged on the held-out
candidates, with the device's provenance; the pipeline parts and overheads beside it (bench.pipeline: the same plan
of pipelines as a measurement in process). ONNX files are fp32: a runtime
that lowers precision (trtexec --fp16) does so on the device, and the results say which runtime timed them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from bench import bundle_runner
from bench.costtable import (
    CandidateMeasurement,
    ChoiceCost,
    ValidationBar,
    assemble_table,
    fit_correction,
    sample_candidates,
)
from bench.pipeline import (
    DECODER_PARTS,
    ENCODER_PARTS,
    PartCost,
    PipelineCostModel,
    PipelineParts,
    parts_overhead,
    parts_role,
    pipeline_backbones,
    pipeline_pairs,
    role_parts,
)
from bench.probe import TorchPipelineProbe, TorchProbe, teacher_inputs
from bench.profile import DeviceProfile, parse_profile, replace
from bench.stats import LatencyStats, PairedLatency
from tocsr.core.artifacts import read_artifact, write_artifact
from tocsr.core.errors import ConfigError
from tocsr.core.space import TEACHER, SearchSpace, derive_search_space

BUNDLE_KIND = "tocsr.bench.cost_bundle"
BUNDLE_VERSION = 2      # 2: whole pipelines name their parts and purpose; overhead pipelines per pair of parts
OPSET = 17


class _TensorsIn(nn.Module):
    """`module(*args, **kwargs)` with every tensor of args/kwargs as a positional input and every tensor of the
    output as an output: the form an ONNX graph has. Non-tensor arguments are fixed into the graph."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict):
        super().__init__()
        self.module = module
        flat, self.spec = tree_flatten((tuple(args), dict(kwargs)))
        self.where = [i for i, x in enumerate(flat) if isinstance(x, torch.Tensor)]
        self.example = tuple(flat[i] for i in self.where)
        self.fixed = [None if isinstance(x, torch.Tensor) else x for x in flat]

    def forward(self, *tensors: torch.Tensor):
        flat = list(self.fixed)
        for i, t in zip(self.where, tensors, strict=True):
            flat[i] = t
        args, kwargs = tree_unflatten(flat, self.spec)
        return tuple(t for t in tree_flatten(self.module(*args, **kwargs))[0] if isinstance(t, torch.Tensor))


def export_onnx(module: nn.Module, args: tuple, kwargs: dict, path: Path) -> list[dict[str, Any]]:
    """Write `module(*args, **kwargs)` as ONNX at `path`; the inputs as the runner feeds them."""
    graph = _TensorsIn(module, args, kwargs).eval()
    names = [f"in{i}" for i in range(len(graph.example))]
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter (as tocsr.core.sr.export uses) warns about every Python-level shape check in
    # diffusers' blocks, and about itself being legacy: hundreds of lines per bundle, none actionable here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, graph.example, str(path), dynamo=False, opset_version=OPSET, input_names=names)
    return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for n, t in zip(names, graph.example, strict=True)]


def export_profile(profile: DeviceProfile) -> DeviceProfile:
    """Where the bundle's modules are built and traced: this machine's CPU, fp32, eager."""
    return replace(profile, device={"kind": "cpu"}, precision="fp32", execution_mode="eager", predicted=None)


def export_bundle(teacher, profile: DeviceProfile, bank: dict, out: str | Path, n_calibration: int = 16,
                  n_holdout: int = 50, n_pipelines: int = 10, seed: int = 0, space: SearchSpace | None = None,
                  progress: Callable[[str], None] | None = None, n_overhead: int = 3) -> Path:
    """Write the bundle for `teacher`'s search space (or `space`, one of its sub-spaces) at `profile`'s batch
    and sizes to `out` (see module doc). `bank`: surrogate modules (cost does not depend on their weights).
    `n_overhead` whole pipelines per pair of parts measure its overhead (0: none; the model is the sum of the
    parts), `n_pipelines` held-out ones are spread over the pairs, as bench.pipeline.measure_pipeline_parts."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: the folder is not empty; give a new folder for the bundle")
    space = space or derive_search_space(teacher.unet)
    local = export_profile(profile)
    args, kwargs = teacher_inputs(teacher, profile)
    probe = TorchProbe(space, copy.deepcopy(teacher.unet), args, kwargs, local, bank)
    workloads: list[dict[str, Any]] = []

    def add(wid: str, role: str, module: nn.Module, a: tuple, k: dict, **info: Any) -> None:
        file = f"models/{len(workloads):04d}-{role}.onnx"
        workloads.append({"id": wid, "role": role, "file": file, "inputs": export_onnx(module, a, k, out / file), **info})
        if progress:
            progress(wid)

    add("reference", "reference", probe.teacher, probe.args, probe.kwargs)
    teacher_params, teacher_macs = probe.whole_counts()
    for slot in space.slots:
        for choice in slot.choices:
            params, macs = probe.block_counts(slot.name, choice)
            a, k = probe.slot_inputs[slot.name]
            add(f"block:{slot.name}:{choice}", "block", probe.swapper.module_for(slot.name, choice), a, k,
                slot=slot.name, choice=choice, params=params, macs=macs)
    calibration = sample_candidates(space, n_calibration, seed, include_extremes=True)
    holdout = sample_candidates(space, n_holdout, seed + 1, False, {s.key for s in calibration})
    for role, specs in (("calibration", calibration), ("holdout", holdout)):
        for spec in specs:
            add(f"candidate:{spec.key}", role, probe.swapper.apply(spec), probe.args, probe.kwargs, key=spec.key,
                choices=dict(spec.items()), params=probe.candidate_params(spec))
    pipes = TorchPipelineProbe(teacher, space, bank, local)
    # every encoder and decoder a device may deploy (search.parts): timed so the device's search can choose them
    for name, (module, inputs, params) in pipes.part_modules().items():
        add(f"part:{name}", "part", module, inputs, {}, name=name, params=params)
    teacher_spec = space.all_teacher()
    pairs = pipeline_pairs(pipes.part_modules(), n_overhead)
    shared, held = pipeline_backbones(space, {s.key for s in calibration + holdout} | {teacher_spec.key}, n_overhead,
                                      n_pipelines, seed)
    for i, (enc, dec) in enumerate(pairs):
        # The autoencoder's pair's teacher-shaped pipeline is the teacher (what a budget is a multiple of), and the
        # first of its overhead runs; every other pair times its own.
        first = "teacher" if (enc, dec) == ("kl", "kl") else "overhead"
        runs = ([(first, teacher_spec)] if first == "teacher" or n_overhead > 0 else []) + \
            [("overhead", s) for s in shared] + [("holdout", s) for s in held[i::len(pairs)]]
        deployed = pipes if (enc, dec) == ("kl", "kl") else pipes.deploying(enc, dec)
        for purpose, spec in runs:
            add(f"pipeline:{enc}+{dec}:{spec.key}", "pipeline", deployed.model(spec), pipes.lr, {}, key=spec.key,
                choices=dict(spec.items()), params=deployed.candidate_params(spec), encoder=enc, decoder=dec,
                purpose=purpose)
    res = profile.resolution
    manifest = {"profile_name": profile.name, "profile": profile.to_dict(), "profile_sha256": profile.sha256,
                "space": space.to_dict(), "space_id": space.space_id, "latent_px": res.latent_px,
                "input_px": res.input_px, "output_px": res.output_px, "batch": profile.batch,
                "teacher_params": teacher_params, "teacher_macs": teacher_macs,
                "bytes_per_param": probe.bytes_per_param, "onnx_precision": "fp32", "opset": OPSET,
                "timing": dataclasses.asdict(profile.timing), "seed": seed, "overhead_pipelines": n_overhead,
                "workloads": workloads}
    return write_bundle(out, BUNDLE_KIND, BUNDLE_VERSION, manifest, _readme(profile, len(workloads)))


def write_bundle(out: Path, kind: str, version: int, manifest: dict[str, Any], readme: str) -> Path:
    """The manifest, the runner (run_bundle.py) and the README beside the ONNX files already in `out`."""
    write_artifact(out / "manifest.json", kind, version, manifest)
    shutil.copyfile(bundle_runner.__file__, out / "run_bundle.py")
    (out / "README.md").write_text(readme, encoding="utf-8")
    return out


def _readme(profile: DeviceProfile, n: int) -> str:
    return f"""# Cost-table measurement bundle: {profile.name}

{n} ONNX files (fp32, opset {OPSET}) at batch {profile.batch}, {profile.resolution.output_px} px output: the
reference workload (the teacher UNet), every (slot, choice) block, whole candidates, the one-step SR
pipeline's fixed parts and whole pipelines. `manifest.json` lists them with their inputs.

## With onnxruntime (Python 3.9+, numpy, onnxruntime)

    python run_bundle.py .                                   # CPU
    python run_bundle.py . --provider CUDAExecutionProvider  # or TensorrtExecutionProvider, ...

Then, where the suite is installed: `tocsr costs import results.json -o costs.json` (this folder beside it).

## With TensorRT's trtexec

Time each file with the profile's precision, e.g. `trtexec --onnx=models/0001-block.onnx --fp16
--iterations=200 --exportTimes=times.json`, interleaving the reference file (`models/0000-reference.onnx`)
between workloads, and write results.json in run_bundle.py's format (per workload id: target_ms,
reference_ms, relative = each target sample / the median of the reference samples of its round, rounds,
warmup_iters; top level: kind, schema_version, manifest_sha256 = sha256 of manifest.json, device).
"""


def _manifest_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """A version-1 bundle's manifest as version 2: its whole pipelines ran the autoencoder's parts, the
    teacher-shaped one first, the rest held out; it measured no overheads."""
    teacher = SearchSpace.from_dict(doc["space"]).all_teacher().key
    workloads = [{**w, "encoder": "kl", "decoder": "kl", "purpose": "teacher" if w["key"] == teacher else "holdout"}
                 if w["role"] == "pipeline" else w for w in doc["workloads"]]
    return {**doc, "workloads": workloads, "overhead_pipelines": 0}


def read_manifest(bundle: str | Path, kind: str = BUNDLE_KIND, version: int = BUNDLE_VERSION) -> dict[str, Any]:
    return read_artifact(Path(bundle) / "manifest.json", kind, version,
                         rebuild="export the bundle again with `tocsr costs export`",
                         migrations={1: _manifest_v1} if kind == BUNDLE_KIND else None)


def bundle_space(bundle: str | Path) -> SearchSpace:
    """The search space a bundle was exported for."""
    return SearchSpace.from_dict(read_manifest(bundle)["space"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def paired_latency(r: dict[str, Any], timer: str) -> PairedLatency:
    return PairedLatency(LatencyStats.from_samples(r["target_ms"], timer, int(r["warmup_iters"])),
                         LatencyStats.from_samples(r["reference_ms"], timer, 0),
                         tuple(float(x) for x in r["relative"]), int(r["rounds"]))


def read_results(results_path: str | Path, bundle: str | Path, kind: str = BUNDLE_KIND,
                 version: int = BUNDLE_VERSION) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, results) of a bundle run on a device: refuses results of another bundle, and missing or unknown
    workloads."""
    results_path, bundle = Path(results_path), Path(bundle)
    # the results first: a mistyped results path must be named, not the manifest its folder lacks
    results = read_artifact(results_path, bundle_runner.RESULTS_KIND, bundle_runner.RESULTS_VERSION,
                            rebuild="run the bundle again with its run_bundle.py")
    manifest = read_manifest(bundle, kind, version)
    if results["manifest_sha256"] != _sha256(bundle / "manifest.json"):
        raise ConfigError(f"{results_path} was measured for another bundle (manifest sha256 "
                          f"{results['manifest_sha256'][:12]}, {bundle / 'manifest.json'} is "
                          f"{_sha256(bundle / 'manifest.json')[:12]}); use it with the bundle it was run from")
    wanted = {w["id"] for w in manifest["workloads"] if w["role"] != "reference"}
    got = set(results["results"])
    if wanted - got or got - wanted:
        raise ConfigError(f"{results_path} does not match its manifest: {len(wanted - got)} workload(s) missing "
                          f"(e.g. {sorted(wanted - got)[:2]}), {len(got - wanted)} unknown (e.g. {sorted(got - wanted)[:2]}); "
                          "run the whole bundle again with run_bundle.py")
    return manifest, results


def device_name(device: dict[str, Any]) -> str:
    """The name a results file's device goes by in tables and verdicts."""
    return (f"{device.get('accelerator') or device.get('processor') or device.get('machine')} on "
            f"{device['host']} ({device['runtime']}, {device['provider']})")


def import_results(results_path: str | Path, bundle: str | Path | None = None,
                   bar: ValidationBar = ValidationBar()) -> PipelineCostModel:
    """The cost table (and pipeline parts) measured on the device by the bundle's runner. The bundle is the
    results file's folder unless given. Refuses results of another bundle, and missing or unknown workloads."""
    bundle = Path(bundle) if bundle is not None else Path(results_path).parent
    manifest, results = read_results(results_path, bundle)
    profile = parse_profile(json.dumps(manifest["profile"]), f"{bundle}/manifest.json")
    space = SearchSpace.from_dict(manifest["space"])
    device = results["device"]
    name = device_name(device)
    timer = f"{device['runtime']} {device['provider']}"
    bpp = int(manifest["bytes_per_param"])
    entries: dict[tuple[str, str], ChoiceCost] = {}
    cands: dict[str, list[CandidateMeasurement]] = {"calibration": [], "holdout": [], "pipeline": []}
    parts = []
    for w in manifest["workloads"]:
        if w["role"] == "reference":
            continue
        r = results["results"][w["id"]]
        p = paired_latency(r, timer)
        if w["role"] == "block":
            entries[(w["slot"], w["choice"])] = ChoiceCost(w["slot"], w["choice"], p.ratio, p.target.median_ms,
                                                          p.target.iqr_ms, p.reference_ms, w["params"], w["macs"])
        elif w["role"] == "part":
            parts.append(PartCost(w["name"], p.ratio, p.target.median_ms, p.target.iqr_ms, p.reference_ms,
                                  w["params"]))
        else:
            group = role = w["role"]
            if group == "pipeline":        # as bench.pipeline records them: its purpose and its parts
                role = parts_role(w["purpose"], w["encoder"], w["decoder"])
            # The runner times, it does not read memory: weights only, and the table says so (extra).
            cands[group].append(CandidateMeasurement(w["key"], dict(w["choices"]), p, w["params"] * bpp / 2**20,
                                                     w["params"], role))
    if len(entries) != sum(len(s.choices) for s in space.slots) or any((s.name, TEACHER) not in entries
                                                                        for s in space.slots):
        raise ConfigError(f"{bundle}/manifest.json does not cover every (slot, choice) of its space; export it again")
    correction = fit_correction(space, entries, cands["calibration"])
    table = assemble_table(profile, name, bpp, space, entries, correction, cands["calibration"],
                           cands["holdout"], int(manifest["teacher_params"]), int(manifest["teacher_macs"]), bar, [],
                           measured=True)
    v = table.validation_summary()
    table = dataclasses.replace(
        table, execution_mode=timer, rounds=({"round": 0, "correction": correction.kind,
                                               "calibration": len(cands["calibration"]), **v},),
        extra={"bundle": str(bundle), "manifest_sha256": results["manifest_sha256"], "device": device,
               "measured_utc": results.get("created_utc"),
               "memory": "weights only: the bundle runner times, it does not read memory"})
    q = profile.timing.percentile
    pipelines = cands["pipeline"]
    # The runner reads no memory (extra["memory"]): the autoencoder's parts' weights alone, as for the backbone.
    own_parts_mib = sum(p.params for p in parts if p.name in (ENCODER_PARTS["kl"], DECODER_PARTS["kl"])) * bpp / 2**20
    skeleton = PipelineParts(
        profile_name=profile.name, profile_sha256=profile.sha256, device_name=name,
        input_px=int(manifest["input_px"]), output_px=int(manifest["output_px"]), batch=int(manifest["batch"]),
        parts=tuple(parts), percentile=q,
        percentile_ratio=float(np.mean([c.latency.ratio_at(q) / c.latency.ratio for c in pipelines])) if pipelines
        else 1.0,
        fixed_memory_mib=own_parts_mib, candidates=tuple(pipelines), bar=bar)
    overheads = []
    if manifest["overhead_pipelines"] > 0:
        for pair in pipeline_pairs([p.name for p in parts], manifest["overhead_pipelines"]):
            runs = [c for c in pipelines if role_parts(c.role) == pair and c.role.partition(" ")[0] != "holdout"]
            overheads.append(parts_overhead(skeleton, table, *pair, runs))
    return PipelineCostModel(table, dataclasses.replace(skeleton, overheads=tuple(overheads)))
