"""The main job's stage log: finished stages are skipped, killed ones resume, changed inputs start over."""

from __future__ import annotations

import pytest
from rich.console import Console

from tocsr.app.mainjob import StageLog


class Killed(Exception):
    pass


def _stage(out, calls, *, die: bool):
    def fn(resume: bool) -> None:
        calls.append(resume)
        if die:
            raise Killed     # stands in for SIGKILL part-way (the reliability suite kills for real)
        out.write_text("done")
    return fn


def test_a_stage_killed_part_way_resumes_and_a_finished_one_is_skipped(tmp_path):
    log, out, calls = StageLog(tmp_path, Console(quiet=True)), tmp_path / "result.txt", []
    with pytest.raises(Killed):
        log.run("sr-x", {"steps": 800}, _stage(out, calls, die=True), out)
    log.run("sr-x", {"steps": 800}, _stage(out, calls, die=False), out)
    log.run("sr-x", {"steps": 800}, _stage(out, calls, die=False), out)
    assert calls == [False, True]                  # first start fresh, then resume, then skipped
    assert log.ran == ["sr-x"] and log.skipped == ["sr-x"]
    assert not (tmp_path / "stages" / "sr-x.started.json").exists()


def test_changed_inputs_never_resume_from_the_old_checkpoints(tmp_path):
    log, out, calls = StageLog(tmp_path, Console(quiet=True)), tmp_path / "result.txt", []
    with pytest.raises(Killed):
        log.run("sr-x", {"steps": 800}, _stage(out, calls, die=True), out)
    log.run("sr-x", {"steps": 500}, _stage(out, calls, die=False), out)
    log.run("sr-x", {"steps": 800}, _stage(out, calls, die=False), out)   # finished with other inputs: rerun
    assert calls == [False, False, False]


def test_a_broken_marker_means_not_finished(tmp_path):
    log, out, calls = StageLog(tmp_path, Console(quiet=True)), tmp_path / "result.txt", []
    log.run("s", {"a": 1}, _stage(out, calls, die=False), out)
    (tmp_path / "stages" / "s.json").write_text("{not json")
    log.run("s", {"a": 1}, _stage(out, calls, die=False), out)
    assert calls == [False, False]
