"""Measurement on a Ray node that advertises a device resource (bench.remote), on a local cluster the test
starts with `ray start` (`nox -s scaleout` / `nox -s slow`; skipped where Ray is absent)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CPU_PROFILE_YAML

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
ray = pytest.importorskip("ray")

RESOURCE = "device:test-node"


def _ray_cli() -> str:
    return shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


@pytest.fixture(scope="module")
def cluster():
    """A head node advertising RESOURCE, as a device's node would be started; the driver connects by address."""
    if ray.is_initialized():
        ray.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([_ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=2",
                    f"--resources={json.dumps({RESOURCE: 1})}", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=180)
    yield f"127.0.0.1:{port}"
    ray.shutdown()
    subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """The smoke teacher, trained for 3 steps (cost does not depend on how well it denoises)."""
    from tocsr.core.teacher import presets as P
    from tocsr.core.teacher.train import train_teacher

    base = P.TEACHER_PRESETS["smoke"]
    P.TEACHER_PRESETS["smoke"] = dataclasses.replace(base, diffusion=dataclasses.replace(base.diffusion, steps=3))
    try:
        folder = tmp_path_factory.mktemp("ray") / "teacher"
        train_teacher("smoke", folder, threads=2)
    finally:
        P.TEACHER_PRESETS["smoke"] = base
    return folder


def _profile(tmp_path: Path, resource: str, scope: str = "backbone") -> Path:
    path = tmp_path / "test-remote.yaml"
    path.write_text(CPU_PROFILE_YAML.replace("name: test-cpu", "name: test-remote").replace(
        "device: {kind: cpu, threads: 2}", f"device: {{kind: cpu, threads: 2, ray_resource: '{resource}'}}").replace(
        "scope: backbone", f"scope: {scope}"))
    return path


def _node_with(resource: str, address: str) -> dict:
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    [node] = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get(resource)]
    return node


def test_a_cost_table_is_measured_on_the_node_with_the_resource(cluster, teacher_dir, tmp_path):
    from bench.costtable import CostTable
    from bench.pipeline import PipelineParts, pipeline_parts_path
    from tocsr.app.stages import stage_costs
    from tocsr.core.artifacts import read_artifact

    out = tmp_path / "costs.json"
    model = stage_costs(teacher_dir, _profile(tmp_path, RESOURCE), out, n_calibration=4, n_holdout=4, n_pipelines=2,
                        ray_address=cluster, n_overhead=1)
    node = _node_with(RESOURCE, cluster)
    where = model.table.extra["measured_on"]
    assert where["ray_node_id"] == node["NodeID"] and where["hostname"] == socket.gethostname()
    assert where["pid"] != os.getpid() and where["packages"]["torch"]
    # every entry and candidate was measured by the node's worker, none here
    by = model.table.extra["measured_by_pid"]
    assert len(model.table.entries) == sum(1 for k in by if ":" in k) and set(by.values()) == {where["pid"]}
    saved = read_artifact(out, "tocsr.bench.cost_table", 3)
    assert saved["environment"]["measured_on"]["ray_node_id"] == node["NodeID"]
    assert CostTable.load(out).measured and len(CostTable.load(out).holdout()) == 4
    parts = PipelineParts.load(pipeline_parts_path(out))
    assert [p.name for p in parts.parts] == ["bicubic + encoder", "lr encoder", "decoder", "tiny decoder"]
    # the node's search may choose any pair
    assert parts.decoders == ("kl", "tiny") and parts.encoders == ("kl", "lr")
    # each pair's overhead from its teacher-shaped pipeline, measured there with that pair; two held out
    assert [(o.encoder, o.decoder) for o in parts.overheads] == [("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")]
    assert [c.role for c in parts.candidates] == ["teacher", "overhead kl+tiny", "overhead lr+kl", "overhead lr+tiny",
                                                  "holdout", "holdout kl+tiny"]


def test_the_choice_is_checked_on_the_node_with_the_parts_it_deploys(cluster, teacher_dir, tmp_path):
    from bench.profile import load_profile
    from bench.remote import RayCandidateMeter, RemoteDevice
    from tocsr.core.errors import ConfigError
    from tocsr.core.space import derive_search_space
    from tocsr.core.teacher.train import load_teacher

    profile = load_profile(_profile(tmp_path, RESOURCE, scope="pipeline"))
    device = RemoteDevice(profile, teacher_dir, cluster)
    try:
        spec = derive_search_space(load_teacher(teacher_dir).unet).all_teacher()
        kl, tiny = RayCandidateMeter(device).measure(spec), RayCandidateMeter(device, "tiny").measure(spec)
        both = RayCandidateMeter(device, "tiny", "lr").measure(spec)
        shipped = RayCandidateMeter(device, "tiny", "lr").measure_teacher_as_shipped()
    finally:
        device.shutdown()
    for m in (kl, tiny, both, shipped):
        assert m.status in ("ok", "unstable") and m.paired is not None and m.latency.median_ms > 0
        assert m.device_name == device.device_name
    # the tiny decoder's pipeline is the one measured for it; "as shipped" keeps the autoencoder's own parts
    assert tiny.extra["pipeline_params"] < kl.extra["pipeline_params"] == shipped.params
    # with the LR encoder the call runs it in place of the autoencoder's encoder side
    from bench.probe import lr_encoder_for_cost

    ae = load_teacher(teacher_dir).autoencoder
    kl_side = sum(p.numel() for n in ("encoder", "quant_conv", "shortcut_in") if getattr(ae, n, None) is not None
                  for p in getattr(ae, n).parameters())
    lr_side = sum(p.numel() for p in lr_encoder_for_cost(profile.resolution.scale).parameters())
    assert both.extra["pipeline_params"] == tiny.extra["pipeline_params"] - kl_side + lr_side
    assert kl.params == tiny.params == both.params         # the backbone's, what a params budget bounds
    with pytest.raises(ConfigError, match="decoder 'vq'"):
        RayCandidateMeter(device, "vq")
    with pytest.raises(ConfigError, match="encoder 'vq'"):
        RayCandidateMeter(device, "kl", "vq")


def test_a_missing_resource_is_one_line_naming_it(cluster, teacher_dir, tmp_path):
    from tocsr.app.stages import stage_costs
    from tocsr.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        stage_costs(teacher_dir, _profile(tmp_path, "device:absent"), tmp_path / "c.json", ray_address=cluster)
    msg = str(err.value)
    assert "'device:absent'" in msg and "ray start" in msg and "\n" not in msg


def test_an_unreachable_cluster_is_one_line(teacher_dir, tmp_path, monkeypatch):
    from bench.profile import load_profile
    from bench.remote import RemoteDevice
    from tocsr.core.errors import ConfigError

    def refuse(*a, **k):
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ConfigError) as err:
        RemoteDevice(load_profile(_profile(tmp_path, RESOURCE)), teacher_dir, "10.0.0.1:6379")
    msg = str(err.value)
    assert "'10.0.0.1:6379'" in msg and "Could not find any running Ray instance" in msg and "\n" not in msg


def test_a_worker_killed_mid_table_loses_no_finished_entry(cluster, teacher_dir, tmp_path):
    from bench.costtable import entry_keys
    from bench.profile import load_profile
    from bench.remote import WINDOW, RayTableMeter, RemoteDevice
    from tocsr.core.space import derive_search_space
    from tocsr.core.teacher.train import load_teacher

    profile = load_profile(_profile(tmp_path, RESOURCE))
    keys = entry_keys(derive_search_space(load_teacher(teacher_dir).unet))
    device = RemoteDevice(profile, teacher_dir, cluster)
    meter = RayTableMeter(device)
    first_pid, done, kill_after = device.pid(), [], 10

    def progress(label: str) -> None:
        done.append(label)
        if len(done) == kill_after:
            os.kill(first_pid, signal.SIGKILL)

    try:
        entries = meter.entries(keys, progress)
        second_pid = device.pid()
    finally:
        device.shutdown()
    assert second_pid != first_pid, "the worker was not restarted: the kill proved nothing"
    assert list(entries) == keys and len(done) == len(keys)          # every entry, each reported once
    by_first = [k for k, pid in meter.measured_by.items() if pid == first_pid]
    # what had finished before the kill kept its measurement (never measured again by the new worker)
    assert kill_after <= len(by_first) <= kill_after + WINDOW
    assert by_first == [f"{s}:{c}" for s, c in keys[:len(by_first)]]
    assert all(pid == second_pid for k, pid in meter.measured_by.items() if k not in by_first)


def test_a_device_the_node_lacks_is_one_line_from_the_node(cluster, teacher_dir, tmp_path):
    from tocsr.app.stages import stage_costs
    from tocsr.core.errors import TocsrError

    cuda = (Path(__file__).resolve().parents[2] / "hw_profiles" / "h100-bf16.yaml").read_text()
    path = tmp_path / "h100-remote.yaml"
    path.write_text(cuda.replace("device:\n", f"device:\n  ray_resource: {RESOURCE}\n", 1))
    with pytest.raises(TocsrError) as err:
        stage_costs(teacher_dir, path, tmp_path / "c.json", ray_address=cluster)
    msg = str(err.value)
    assert RESOURCE in msg and "cuda" in msg.lower() and "\n" not in msg


def test_the_main_job_measures_a_profile_on_its_node(cluster, tmp_path):
    from tests.app.test_main_job import tocsr

    profile = tmp_path / "cpu-2core.yaml"
    text = (Path(__file__).resolve().parents[2] / "hw_profiles" / "cpu-2core.yaml").read_text()
    profile.write_text(text.replace("device:\n", f"device:\n  ray_resource: {RESOURCE}\n", 1))
    r = tocsr("run", "-p", str(profile), "--preset", "smoke", "--out", "runs/smoke", "--report-dir", "report",
              "--ray-address", cluster, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-12000:]
    run = tmp_path / "runs" / "smoke"
    node = _node_with(RESOURCE, cluster)["NodeID"]
    [costs] = sorted((run / "costs").glob("*.pipeline.json"))
    table = json.loads(costs.with_name(costs.name.replace(".pipeline", "")).read_text())
    assert table["extra"]["measured_on"]["ray_node_id"] == node
    search_env = json.loads((run / "search-cpu-2core" / "cost_table.json").read_text())["environment"]
    assert search_env["measured_on"]["ray_node_id"] == node
    # the node's parts let its search weigh both decoders, and the chosen pipeline was re-measured there with
    # the decoder it deploys (the budget is tighter than any pipeline with the autoencoder's decoder)
    from search.result import SearchResult
    from tests.app.test_main_job import _sr_model
    from tocsr.core.sr.info import SRModelInfo

    result = SearchResult.load(run / "search-cpu-2core")
    assert {(o["encoder"], o["decoder"]) for o in result.parts_choice["options"]} == {
        ("kl", "kl"), ("kl", "tiny"), ("lr", "kl"), ("lr", "tiny")}
    assert (result.encoder, result.decoder) != ("kl", "kl")
    assert result.chosen.measured_latency_ms <= result.latency_budget_ms
    info = SRModelInfo.load(_sr_model(run))
    assert (info.encoder, info.decoder) == (result.encoder, result.decoder)
    rows = json.loads((run / "eval" / "rows.json").read_text())["rows"]
    assert rows and all(r["provenance"]["ray_node_id"] == node for r in rows if r["device_profile"] == "cpu-2core")
