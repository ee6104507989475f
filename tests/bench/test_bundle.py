"""The measurement bundle round trip: export ONNX files, time them with the runner alone (no torch), import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.bundle import bundle_space, export_bundle, import_results
from bench.pipeline import load_cost_model
from bench.profile import parse_profile
from tests.conftest import CPU_PROFILE_YAML
from tests.tiny import tiny_teacher
from tocsr.app.stages import stage_costs_import
from tocsr.core.distill.bank import new_bank
from tocsr.core.errors import ConfigError
from tocsr.core.space import TEACHER, derive_search_space

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.extended      # the round trip takes over a minute (nox -s extended; CI runs it)

# Runs the bundle's runner with torch made unimportable: it must need numpy and onnxruntime only.
WITHOUT_TORCH = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    teacher = tiny_teacher(folder / "teacher")
    unet = teacher.unet
    # one surrogate family per kind keeps the bundle small; the code path is the full space's
    space = derive_search_space(unet, {"resnet": ("res_bneck4",), "attention": ("attn_linear",)})
    profile = parse_profile(CPU_PROFILE_YAML, "test-cpu.yaml")
    bundle = export_bundle(teacher, profile, new_bank(space), folder / "b", n_calibration=5, n_holdout=4,
                           n_pipelines=2, space=space, n_overhead=2)
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(bundle / "run_bundle.py"), str(bundle)],
                         cwd=bundle, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert run.returncode == 0, run.stderr[-2000:]
    return bundle, space, run


def test_the_bundle_holds_every_workload_and_its_runner(measured):
    bundle, space, run = measured
    manifest = json.loads((bundle / "manifest.json").read_text())
    blocks = {(w["slot"], w["choice"]) for w in manifest["workloads"] if w["role"] == "block"}
    assert blocks == {(s.name, c) for s in space.slots for c in s.choices}
    roles = [w["role"] for w in manifest["workloads"]]
    assert roles.count("reference") == 1 and roles.count("calibration") == 5 and roles.count("holdout") == 4
    assert roles.count("part") == 4
    # two whole pipelines per pair of parts for its overhead (the autoencoder's pair's first is the teacher-shaped
    # one, the teacher), the same second backbone for every pair; the two held out on different pairs
    pipes = [w for w in manifest["workloads"] if w["role"] == "pipeline"]
    assert len(pipes) == 4 * 2 + 2
    assert {(w["encoder"], w["decoder"]) for w in pipes} == {("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")}
    purposes = [w["purpose"] for w in pipes]
    assert purposes.count("teacher") == 1 and purposes.count("overhead") == 7 and purposes.count("holdout") == 2
    assert len({w["key"] for w in pipes if w["purpose"] == "overhead"}) == 2
    assert len({(w["encoder"], w["decoder"]) for w in pipes if w["purpose"] == "holdout"}) == 2
    assert manifest["overhead_pipelines"] == 2
    assert {w["name"] for w in manifest["workloads"] if w["role"] == "part"} == {
        "bicubic + encoder", "lr encoder", "decoder", "tiny decoder"}
    assert all((bundle / w["file"]).is_file() for w in manifest["workloads"])
    assert bundle_space(bundle).space_id == space.space_id
    assert (bundle / "README.md").is_file() and "trtexec" in (bundle / "README.md").read_text()
    assert "wrote" in run.stdout and "tocsr costs import" in run.stdout


def test_imported_results_make_a_measured_table_with_the_devices_provenance(measured, tmp_path):
    bundle, space, _ = measured
    model = stage_costs_import(bundle / "results.json", tmp_path / "costs.json")
    table = model.table
    assert table.measured and "onnxruntime" in table.device_name and "CPUExecutionProvider" in table.execution_mode
    assert table.extra["device"]["host"] and table.extra["manifest_sha256"]
    assert len(table.entries) == sum(len(s.choices) for s in space.slots)
    assert all(e.ratio > 0 for e in table.entries.values())
    assert table.entries[(space.slots[0].name, TEACHER)].median_ms > 0
    v = table.validation_summary()
    assert v["n"] == 4 and v["median_abs_err"] is not None
    assert [p.name for p in model.pipeline.parts] == ["bicubic + encoder", "lr encoder", "decoder", "tiny decoder"]
    # the device offers the cheaper parts as choices of its search (search.parts), smaller than the autoencoder's
    assert model.pipeline.decoders == ("kl", "tiny") and model.pipeline.encoders == ("kl", "lr")
    assert model.pipeline.part("tiny decoder").params < model.pipeline.part("decoder").params
    assert model.pipeline.part("lr encoder").params < model.pipeline.part("bicubic + encoder").params
    assert model.validation_summary()["n"] == 2
    parts = model.pipeline
    # each pair's overhead from its own two pipelines, as a measurement in process makes it (bench.pipeline)
    assert {(o.encoder, o.decoder) for o in model.pipeline.overheads} == {
        ("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")}
    assert all(len(o.residuals) == 2 for o in model.pipeline.overheads)
    o = model.pipeline.overhead("lr", "tiny")
    assert model.pipeline.ratio_with("lr", "tiny") == pytest.approx(
        parts.part("lr encoder").ratio + parts.part("tiny decoder").ratio + o.ratio)
    # the runner reads no memory: the pipeline's is weights alone, the backbone's and the deployed parts'
    spec, parts = space.all_teacher(), model.pipeline
    weights = (table.params(spec) + parts.part("bicubic + encoder").params + parts.part("decoder").params)
    assert model.predict_memory_mib(spec) == pytest.approx(weights * table.bytes_per_param / 2**20)
    lr_tiny = model.with_parts("lr", "tiny")
    assert lr_tiny.predict_memory_mib(spec) == pytest.approx((table.params(spec) + parts.part("lr encoder").params
                                                              + parts.part("tiny decoder").params)
                                                             * table.bytes_per_param / 2**20)
    assert all(c.latency.target.timer.startswith("onnxruntime") for c in table.candidates)
    again = load_cost_model(tmp_path / "costs.json", "pipeline")
    assert again.table.entries == table.entries and again.pipeline.parts == model.pipeline.parts


def test_results_of_another_bundle_or_with_workloads_missing_are_refused(measured, tmp_path):
    bundle, _, _ = measured
    doc = json.loads((bundle / "results.json").read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "manifest_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="was measured for another bundle"):
        import_results(other, bundle)
    first = next(iter(doc["results"]))
    other.write_text(json.dumps({**doc, "results": {k: v for k, v in doc["results"].items() if k != first}}))
    with pytest.raises(ConfigError, match="1 workload\\(s\\) missing"):
        import_results(other, bundle)


def test_a_bundle_is_never_written_over_another(measured):
    bundle, space, _ = measured
    with pytest.raises(ConfigError, match="not empty"):
        export_bundle(None, parse_profile(CPU_PROFILE_YAML, "x"), {}, bundle, space=space)


def test_a_bundle_of_the_first_version_imports_without_overheads(measured, tmp_path):
    """Bundles measured before whole pipelines named their parts: the autoencoder's parts, no overheads."""
    bundle, _, _ = measured
    manifest = json.loads((bundle / "manifest.json").read_text())
    results = json.loads((bundle / "results.json").read_text())
    old = [w for w in manifest["workloads"] if w["role"] != "pipeline" or (w["encoder"], w["decoder"]) == ("kl", "kl")
           and w["purpose"] != "overhead"]
    for w in old:
        for k in ("encoder", "decoder", "purpose"):
            w.pop(k, None)
    v1 = {**{k: v for k, v in manifest.items() if k != "overhead_pipelines"}, "schema_version": 1, "workloads": old}
    (tmp_path / "manifest.json").write_text(json.dumps(v1))
    import hashlib

    sha = hashlib.sha256((tmp_path / "manifest.json").read_bytes()).hexdigest()
    (tmp_path / "results.json").write_text(json.dumps({**results, "manifest_sha256": sha, "results": {
        w["id"]: results["results"][w["id"]] for w in old if w["role"] != "reference"}}))
    model = import_results(tmp_path / "results.json")
    assert model.pipeline.overheads == ()
    assert [c.role for c in model.pipeline.candidates] == ["teacher", "holdout"]
    assert model.validation_summary()["n"] == 1
