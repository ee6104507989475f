"""The schedules users copy (deploy/): each one parses, runs the nightly session, and keeps its promises."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _cron_fields_ok(expr: str) -> bool:
    fields = expr.split()
    return len(fields) == 5 and all(f == "*" or all(c in "0123456789*/,-" for c in f) for f in fields)


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str          # systemd keys are case-sensitive
    unit.read_string((DEPLOY / "systemd" / name).read_text())
    return unit


def test_the_ci_workflow_runs_the_nightly_session_on_a_schedule_and_uploads_the_page():
    doc = yaml.safe_load((DEPLOY / "ci" / "nightly.yml").read_text())
    triggers = doc.get("on", doc.get(True))          # YAML 1.1 reads a bare `on` key as True
    assert _cron_fields_ok(triggers["schedule"][0]["cron"]) and "workflow_dispatch" in triggers
    (job,) = doc["jobs"].values()
    runs = " ".join(step.get("run", "") for step in job["steps"])
    assert "nox -s nightly" in runs and job["timeout-minutes"] > 0
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "runs/nightly/index.html" in upload["with"]["path"]
    assert "runs/nightly/regressions.json" in upload["with"]["path"]


def test_the_cron_line_runs_the_nightly_session_nightly():
    lines = [x for x in (DEPLOY / "cron.txt").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert _cron_fields_ok(" ".join(fields[:5])) and "nox -s nightly" in fields[5]


def test_the_systemd_units_have_what_a_oneshot_timer_needs():
    service, timer = _unit("tocsr-nightly.service"), _unit("tocsr-nightly.timer")
    assert service["Service"]["Type"] == "oneshot" and service["Service"]["ExecStart"].startswith("/")
    assert "nox -s nightly" in service["Service"]["ExecStart"] and service["Service"]["WorkingDirectory"]
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_analyze_verifies_the_units(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    for unit in ("tocsr-nightly.service", "tocsr-nightly.timer"):
        shutil.copy(DEPLOY / "systemd" / unit, tmp_path / unit)
    r = subprocess.run([tool, "verify", str(tmp_path / "tocsr-nightly.service"), str(tmp_path / "tocsr-nightly.timer")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and "Failed to" in r.stderr and "bus" in r.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
