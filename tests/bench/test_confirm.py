"""The verdict of a confirmation bundle (bench.confirm) on timings whose truth is known: a manifest as
`export_confirmation` writes it and a results file as the runner writes it, with chosen latencies."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from bench.bundle_runner import RESULTS_KIND, RESULTS_VERSION, manifest_sha256
from bench.confirm import (
    CONFIRM_BUNDLE_KIND,
    CONFIRM_BUNDLE_VERSION,
    Confirmation,
    ConfirmTarget,
    confirm_results,
)
from bench.profile import parse_profile
from tests.conftest import CPU_PROFILE_YAML
from tocsr.core.artifacts import write_artifact
from tocsr.core.errors import ConfigError

# a relative pipeline budget: 0.5 x the teacher as shipped, at p90
PROFILE = parse_profile(CPU_PROFILE_YAML.replace("budgets: {latency_ms: 100, peak_memory_mib: 1024, scope: backbone}",
                                                 "budgets: {latency_vs_teacher: 0.5, peak_memory_mib: 1024}"),
                        "test-cpu.yaml")
TEACHER_MS = 200.0


def write_bundle(folder, pipelines: dict[str, tuple[str, float, float | None]], jitter=0.01, speed=1.0, seed=0):
    """pipelines: id -> (role, true ms at speed 1, what the search predicted vs the teacher). The device runs at
    `speed` (its reference takes 40 ms x speed); each sample is off by up to `jitter` (relative)."""
    rng = np.random.default_rng(seed)
    workloads = [{"id": "reference", "role": "reference", "file": "models/0000-reference.onnx", "inputs": []}]
    results = {}
    for wid, (role, ms, predicted) in pipelines.items():
        workloads.append({"id": wid, "role": role, "file": f"models/{wid}.onnx", "inputs": [], "key": wid,
                          "choices": {}, "decoder": "tiny", "params": 1_000_000, "search_vs_teacher": predicted})
        ref = list(40.0 * speed * (1 + jitter * rng.uniform(-1, 1, 6)))
        tgt = list(ms * speed * (1 + jitter * rng.uniform(-1, 1, 6)))
        rel = [t / np.median(ref[3 * (i // 3):3 * (i // 3) + 3]) for i, t in enumerate(tgt)]
        results[wid] = {"target_ms": tgt, "reference_ms": ref, "relative": rel, "rounds": 2, "warmup_iters": 3}
    folder.mkdir(parents=True, exist_ok=True)
    write_artifact(folder / "manifest.json", CONFIRM_BUNDLE_KIND, CONFIRM_BUNDLE_VERSION, {
        "profile_name": PROFILE.name, "profile": PROFILE.to_dict(), "timing": dataclasses.asdict(PROFILE.timing),
        "search": {"folder": "runs/x/search-test-cpu", "status": "predicted", "basis": "a table",
                   "budget_in_words": PROFILE.budgets.describe_latency(90)}, "workloads": workloads})
    device = {"host": "board", "platform": "linux", "machine": "aarch64", "processor": "Cortex-A78AE",
              "accelerator": None, "python": "3.10", "runtime": "onnxruntime 1.20", "provider": "CPUExecutionProvider"}
    write_artifact(folder / "results.json", RESULTS_KIND, RESULTS_VERSION,
                   {"manifest_sha256": manifest_sha256(folder), "device": device, "results": results})
    return folder / "results.json"


def test_a_choice_that_meets_its_budget_on_the_device_is_shipped(tmp_path):
    results = write_bundle(tmp_path / "b", {"t": ("teacher", TEACHER_MS, None), "c": ("chosen", 80.0, 0.42),
                                            "r": ("runner-up", 70.0, None)}, speed=1.5)
    conf = confirm_results(results)
    # every figure at the run's speed: the budget is half the teacher's p90 there
    teacher = next(p for p in conf.pipelines if p.role == "teacher")
    assert conf.budget_ms == pytest.approx(0.5 * teacher.p_ms) and teacher.p_ms == pytest.approx(1.5 * TEACHER_MS,
                                                                                                   rel=0.03)
    c = conf.chosen
    assert c.meets_budget and c.clear and c.vs_budget == pytest.approx(0.8, rel=0.03)
    assert c.measured_vs_teacher == pytest.approx(0.4, rel=0.03)
    assert c.error_vs_search == pytest.approx(0.4 / 0.42 - 1, abs=0.03)
    assert conf.recommendation.startswith("ship c:") and "noise" not in conf.recommendation
    assert conf.device_name == "Cortex-A78AE on board (onnxruntime 1.20, CPUExecutionProvider)"
    text = "\n".join(conf.lines())
    assert "meets the budget" in text and "memory: not confirmed" in text and "(measured;" in text


def test_a_choice_that_misses_names_the_first_runner_up_that_meets(tmp_path):
    results = write_bundle(tmp_path / "b", {"t": ("teacher", TEACHER_MS, None), "c": ("chosen", 130.0, 0.45),
                                            "r1": ("runner-up", 125.0, None), "r2": ("runner-up", 90.0, None),
                                            "r3": ("runner-up", 60.0, None)})
    conf = confirm_results(results)
    assert conf.chosen.meets_budget is False and conf.chosen.clear
    assert "c misses the budget on the device; ship r2," in conf.recommendation      # r2 before r3: the search's order
    assert "MISSES the budget" in "\n".join(conf.lines())
    none_meet = write_bundle(tmp_path / "n", {"t": ("teacher", TEACHER_MS, None), "c": ("chosen", 130.0, 0.45),
                                              "r1": ("runner-up", 125.0, None)})
    assert "no runner-up meets it" in confirm_results(none_meet).recommendation


def test_a_choice_at_the_budget_is_called_within_the_noise(tmp_path):
    results = write_bundle(tmp_path / "b", {"t": ("teacher", TEACHER_MS, None), "c": ("chosen", 100.0, 0.5)},
                           jitter=0.2, seed=3)
    c = confirm_results(results).chosen
    assert c.vs_budget_low < 1 < c.vs_budget_high and c.clear is False
    assert "within the noise" in "\n".join(confirm_results(results).lines())


def test_the_budget_binds_the_profiles_percentile_not_the_median(tmp_path):
    results = write_bundle(tmp_path / "b", {"t": ("teacher", TEACHER_MS, None), "c": ("chosen", 90.0, None)})
    doc = json.loads(results.read_text())
    r = doc["results"]["c"]
    for i in (4, 5):            # a slow tail: 2 of 6 calls 1.6x slower, the median untouched
        r["target_ms"][i] *= 1.6
        r["relative"][i] *= 1.6
    results.write_text(json.dumps(doc))
    c = confirm_results(results).chosen
    assert c.meets_budget is False and c.vs_budget == pytest.approx(0.9 * 1.6, rel=0.05)


def test_the_verdict_round_trips_and_results_of_another_bundle_are_refused(tmp_path):
    results = write_bundle(tmp_path / "b", {"t": ("teacher", TEACHER_MS, None), "c": ("chosen", 80.0, None)})
    conf = confirm_results(results)
    assert Confirmation.load(conf.save(tmp_path / "v.json")) == conf
    assert json.loads((tmp_path / "v.json").read_text())["pipelines"][1]["error_vs_search"] is None
    other = write_bundle(tmp_path / "o", {"t": ("teacher", TEACHER_MS, None), "c2": ("chosen", 80.0, None)})
    with pytest.raises(ConfigError, match="measured for another bundle"):
        confirm_results(other, tmp_path / "b")


def test_a_target_must_say_what_it_is():
    from tocsr.core.space import ArchSpec

    spec = ArchSpec("s", (), ())
    with pytest.raises(ValueError, match="role must be"):
        ConfirmTarget("teacher", spec)
    with pytest.raises(ValueError, match="decoder must be one of"):
        ConfirmTarget("chosen", spec, "vae")


@pytest.mark.extended
def test_a_backbone_scoped_choice_is_confirmed_on_backbone_calls(tmp_path):
    """Export (tiny teacher, a profile whose budgets bound the backbone), the runner with onnxruntime, the verdict."""
    pytest.importorskip("onnxruntime")
    import os
    import subprocess
    import sys

    from bench.confirm import export_confirmation, targets_from
    from tests.bench.test_bundle import WITHOUT_TORCH
    from tests.tiny import tiny_teacher
    from tocsr.core.distill.bank import new_bank
    from tocsr.core.space import derive_search_space

    teacher = tiny_teacher(tmp_path / "teacher")
    space = derive_search_space(teacher.unet)
    profile = parse_profile(CPU_PROFILE_YAML, "test-cpu.yaml")           # budgets: 100 ms on the backbone
    cheap = {s.name: s.choices[-1] for s in space.slots}
    targets = targets_from(space, cheap, "kl", 0.3, [{space.slots[0].name: space.slots[0].choices[-1]}])
    bundle = export_confirmation(teacher, profile, new_bank(space), tmp_path / "c", targets,
                                 {"folder": "s", "status": "predicted", "budget_in_words": "backbone <= 100 ms"})
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["scope"] == "backbone" and [w["role"] for w in manifest["workloads"]] == [
        "reference", "teacher", "chosen", "runner-up"]
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(bundle / "run_bundle.py"), str(bundle)],
                         cwd=bundle, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "tocsr costs confirm" in run.stdout
    conf = confirm_results(bundle / "results.json")
    teacher_row, chosen = conf.pipelines[0], conf.chosen
    assert conf.scope == "backbone" and conf.budget_ms == 100.0          # a millisecond budget, as given
    assert teacher_row.measured_vs_teacher == 1.0 and chosen.measured_vs_teacher < 1.0   # fewer blocks, less time
    assert chosen.params < teacher_row.params and chosen.meets_budget
    assert "one backbone call each" in "\n".join(conf.lines())
