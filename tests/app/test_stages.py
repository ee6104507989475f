"""tocsr.app.stages: what the costs stage does with a table that misses its validation bar."""

from __future__ import annotations

import pytest

from bench.costtable import CostTable, CostTableInvalid, ValidationBar, measure_cost_table
from bench.profile import parse_profile
from tests.conftest import CPU_PROFILE_YAML
from tests.tiny import tiny_teacher
from tocsr.app import stages
from tocsr.core.errors import TocsrError
from tocsr.core.space import derive_search_space


def test_a_table_that_misses_its_bar_is_refused_alone_and_kept_for_the_main_job(tmp_path, monkeypatch):
    """`tocsr costs` asked for a table: one that misses its bar stops it, written beside as .rejected.json. The
    main job passes keep_invalid (a noisy stretch must not stop the run; the search re-validates such a table):
    it is saved where the search reads it, its failed validation on record."""
    teacher = tiny_teacher(tmp_path / "teacher")
    # one surrogate family per kind keeps the table small; the code path is the full space's
    space = derive_search_space(teacher.unet, {"resnet": ("res_bneck4",), "attention": ("attn_linear",)})
    profile = parse_profile(CPU_PROFILE_YAML, "test-cpu.yaml")
    impossible = ValidationBar(tolerance=0.0, share=1.0)          # no prediction is exact: every fit misses it
    refusals: list[CostTableInvalid] = []

    def measure_once(*a, **k):
        # What is under test is what the stage does with a refusal, not the measurement: the table is measured
        # once and its refusal answers both calls (measuring twice is what timed this test out on a loaded machine).
        if not refusals:
            with pytest.raises(CostTableInvalid) as caught:
                measure_cost_table(*a, **{**k, "bar": impossible, "refit_rounds": 0})
            refusals.append(caught.value)
        raise refusals[0]

    monkeypatch.setattr(stages, "measure_cost_table", measure_once)
    out = tmp_path / "costs.json"
    with pytest.raises(TocsrError, match="misses its validation after 1 fits.*the rejected table is .*rejected.json"):
        stages._measure_costs(teacher, space, profile, out, 3, 3, 0, 2, None, n_overhead=1)
    assert (tmp_path / "costs.rejected.json").is_file() and not out.exists()
    (tmp_path / "costs.rejected.json").unlink()
    model = stages._measure_costs(teacher, space, profile, out, 3, 3, 0, 2, None, keep_invalid=True, n_overhead=1)
    # kept: saved once, where the search reads it (a second copy beside it is what a reader would glob twice)
    assert sorted(p.name for p in tmp_path.glob("costs*.json")) == ["costs.json", "costs.pipeline.json"]
    assert model.table.validation_summary()["passes"] is False
    saved = CostTable.load(out)
    assert saved.validation_summary()["passes"] is False and saved.bar == impossible
