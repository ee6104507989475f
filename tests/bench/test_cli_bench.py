from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tocsr.app.cli import main


def test_bench_writes_versioned_json_and_prints_table(cpu_profile_path, tmp_path, capsys):
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as code:
        main(["bench", "--profile", str(cpu_profile_path), "--model", "toy-conv-attn", "--out", str(out), "--thop"])
    assert code.value.code == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "tocsr.bench.measurement" and doc["schema_version"] == 1
    env = doc["environment"]
    assert env["packages"]["torch"] and env["cpu_model"] and "sha" in env["git"]
    m = doc["measurement"]
    assert len(m["latency"]["samples_ms"]) == 5 and m["profile_name"] == doc["profile"]["name"] == "test-cpu"
    assert m["macs"]["thop_macs"] == m["macs"]["total_macs"]
    assert m["memory"]["method"] == "torch_cpu_allocated_growth_plus_weights"
    printed = capsys.readouterr().out
    assert "toy-conv-attn" in printed and "torch_cpu_allocated_growth_plus_weights" in printed
    if env.get("cpu_allocator", {}).get("mmap_threshold_bytes"):      # glibc: the state timed in, in both places
        assert env["cpu_allocator"]["kind"] == "tocsr.bench.allocator_state" and "mmap threshold 32 MiB" in printed


@pytest.mark.extended
def test_isolated_measurement_runs_in_a_subprocess(cpu_profile_path, tmp_path):
    text = cpu_profile_path.read_text().replace("max_cv: 0.5}", "max_cv: 0.5, isolate: true}")
    cpu_profile_path.write_text(text)
    out = tmp_path / "iso.json"
    proc = subprocess.run([sys.executable, "-m", "tocsr", "bench", "-p", str(cpu_profile_path), "-m", "toy-conv-attn",
                           "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["measurement"]["status"] in ("ok", "unstable")


@pytest.mark.parametrize("argv,fragment", [
    (["bench", "--profile", "nope"], "Missing option"),
    (["bench", "-p", "no-such-profile", "-m", "unet-tiny", "-o", "x.json"], "no such profile"),
    (["frobnicate"], "No such command"),
])
def test_cli_mistakes_are_one_line_exit_1(argv, fragment, capsys):
    with pytest.raises(SystemExit) as code:
        main(argv)
    assert code.value.code == 1
    err = capsys.readouterr().err
    assert fragment in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_bench_measures_an_sr_checkpoint_spandrel_recognises(cpu_profile_path, tmp_path, capsys):
    pytest.importorskip("spandrel")
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    ckpt = tmp_path / "realesr-general-x4v3.pth"            # SRVGGNetCompact's official key layout, small
    torch.save(Compact(num_feat=16, num_conv=4, upscale=4).state_dict(), ckpt)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as code:
        main(["bench", "--profile", str(cpu_profile_path), "--model", str(ckpt), "--out", str(out)])
    assert code.value.code == 0, capsys.readouterr().err
    m = json.loads(out.read_text())["measurement"]
    assert m["status"] in ("ok", "unstable") and m["params"] == sum(
        p.numel() for p in Compact(num_feat=16, num_conv=4, upscale=4).parameters())
    assert m["latency"]["median_ms"] > 0 and m["model"] == str(ckpt)
