from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.profile import PROFILES_DIR, load_profile, parse_profile, replace
from tests.conftest import CPU_PROFILE_YAML
from tocsr.core.errors import ConfigError


def test_shipped_profiles_load_and_cover_the_required_devices():
    names = {load_profile(p).name for p in PROFILES_DIR.glob("*.yaml")}
    assert {"cpu-2core", "h100-bf16", "h200-bf16", "a100-fp16"} <= names
    kinds = {load_profile(p).device.kind for p in PROFILES_DIR.glob("*.yaml")}
    assert kinds == {"cpu", "cuda", "predicted"}


def test_profile_name_resolves_from_hw_profiles():
    assert load_profile("cpu-2core").name == "cpu-2core"


def test_derived_sizes():
    p = parse_profile(CPU_PROFILE_YAML)
    assert (p.resolution.latent_px, p.resolution.input_px) == (8, 16)


def test_hash_ignores_formatting_but_not_content():
    p = parse_profile(CPU_PROFILE_YAML)
    same = parse_profile("# comment\n" + CPU_PROFILE_YAML.replace("batch: 1", "batch:   1"))
    other = replace(p, batch=2)
    assert p.sha256 == same.sha256 != other.sha256


def test_a_schema_1_profile_keeps_its_meaning_a_backbone_budget_and_says_so(caplog):
    old = _mutate(schema_version=1, budgets__scope=_DELETE)
    with caplog.at_level("WARNING"):
        p = parse_profile(old, "old.yaml")
    assert p.schema_version == 2 and p.budgets.scope == "backbone"
    assert "old.yaml: schema_version 1" in caplog.text and "budgets.scope: pipeline" in caplog.text
    # a schema-2 profile without a scope bounds what users deploy: the whole one-step SR call
    assert parse_profile(_mutate(budgets__scope=_DELETE)).budgets.scope == "pipeline"
    assert "one-step SR pipeline" in parse_profile(_mutate(budgets__scope=_DELETE)).budgets.describe_latency(90)


def test_the_default_device_profile_bounds_the_deployed_pipeline():
    assert load_profile("cpu-2core").budgets.scope == "pipeline"


def test_a_chosen_model_must_meet_the_budget_less_the_profiles_guard():
    plain = parse_profile(_mutate(budgets__latency_ms=_DELETE, budgets__latency_vs_teacher=0.4))
    assert plain.timing.latency_guard == 0.0 and plain.latency_target_ms(50.0) == pytest.approx(20.0)
    guarded = parse_profile(_mutate(budgets__latency_ms=_DELETE, budgets__latency_vs_teacher=0.4,
                                    timing__latency_guard=0.1))
    assert guarded.budgets.latency_budget_ms(50.0) == pytest.approx(20.0)      # the budget stays the budget
    assert guarded.latency_target_ms(50.0) == pytest.approx(18.0)
    assert guarded.sha256 != plain.sha256
    # the shipped CPU profile carries the guard its record asks for (reports/evidence/latency-agreement/guard.json)
    assert load_profile("cpu-2core").timing.latency_guard > 0


def _mutate(**changes):
    data = yaml.safe_load(CPU_PROFILE_YAML)
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return yaml.safe_dump(data)


_DELETE = object()

# (yaml text, fragment that the one-line error must contain)
MALFORMED = {
    "unknown key": (_mutate(colour="red"), "colour"),
    "unknown nested key": (_mutate(budgets__latency="5"), "budgets.latency"),
    "wrong type": (_mutate(batch="one"), "batch = 'one': expected an integer"),
    "bool for int": (_mutate(batch=True), "batch = True"),
    "negative budget": (_mutate(budgets__latency_ms=-5), "budgets.latency_ms = -5"),
    "zero memory budget": (_mutate(budgets__peak_memory_mib=0), "budgets.peak_memory_mib = 0"),
    "missing budget": (_mutate(budgets__latency_ms=_DELETE), "budgets has neither latency_ms nor latency_vs_teacher"),
    "missing budgets": (_mutate(budgets=_DELETE), "budgets = <missing>"),
    "unknown device kind": (_mutate(device__kind="tpu"), "device.kind = 'tpu': expected one of 'cpu', 'cuda', 'predicted'"),
    "unknown precision": (_mutate(precision="int8"), "precision = 'int8'"),
    "unknown execution mode": (_mutate(execution_mode="jit"), "execution_mode = 'jit'"),
    "not yaml": ("name: [unclosed\n  - x: {", "not valid YAML"),
    "empty file": ("", "the file is empty"),
    "not a mapping": ("- a\n- b\n", "expected a mapping"),
    "percentile out of range": (_mutate(timing__percentile=100), "timing.percentile = 100"),
    "warm-up bounds swapped": (_mutate(timing__warmup_min_iters=10, timing__warmup_max_iters=3), "warmup_max_iters"),
    "indivisible resolution": (_mutate(resolution__output_px=100), "not divisible"),
    "unknown scale": (_mutate(resolution__scale=3), "resolution.scale = 3"),
    "path in name": (_mutate(name="../../etc"), "name = '../../etc'"),
    "predicted without constants": (_mutate(device__kind="predicted"), "needs a 'predicted:' section"),
    "cuda graphs on cpu": (_mutate(execution_mode="cuda_graphs"), "cuda_graphs"),
    "nan budget": (_mutate(budgets__latency_ms=float("nan")), "budgets.latency_ms"),
    "future schema": (_mutate(schema_version=99), "schema_version = 99"),
    "unknown budget scope": (_mutate(budgets__scope="unet"), "budgets.scope = 'unet': expected one of 'pipeline', 'backbone'"),
    "guard of half the budget": (_mutate(timing__latency_guard=0.5), "timing.latency_guard = 0.5: expected a number < 0.5"),
    "negative guard": (_mutate(timing__latency_guard=-0.1), "timing.latency_guard = -0.1"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_profile_gives_one_line_naming_file_key_and_value(tmp_path: Path, case: str):
    text, fragment = MALFORMED[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert fragment in message, message


def test_cli_reports_malformed_profile_in_one_line_with_exit_1(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(MALFORMED["negative budget"][0])
    proc = subprocess.run([sys.executable, "-m", "tocsr", "profiles", "check", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "budgets.latency_ms = -5" in proc.stderr and "Traceback" not in proc.stderr
