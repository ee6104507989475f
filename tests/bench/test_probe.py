"""The torch meters the choice of a candidate is measured through (bench.probe), on the tiny teacher."""

from __future__ import annotations

import pytest

from bench.counting import count_params
from bench.probe import SHIPPED_REFERENCE, DeployedPipelineMeter
from bench.profile import parse_profile, replace
from tests.conftest import CPU_PROFILE_YAML
from tests.tiny import tiny_teacher
from tocsr.core.assembly import build_module_bank
from tocsr.core.space import derive_search_space


@pytest.fixture(scope="module")
def meter(tmp_path_factory):
    teacher = tiny_teacher(tmp_path_factory.mktemp("probe") / "teacher")
    space = derive_search_space(teacher.unet)
    profile = replace(parse_profile(CPU_PROFILE_YAML, "cpu.yaml"),
                      budgets={"latency_vs_teacher": 0.5, "peak_memory_mib": 1024, "scope": "pipeline"},
                      timing={"warmup_min_iters": 2, "warmup_max_iters": 6, "repeats": 12, "percentile": 90,
                              "max_cv": 0.5, "max_retries": 0, "paired_rounds": 4})
    return DeployedPipelineMeter(teacher, space, build_module_bank(space), profile), space


def test_a_candidate_timed_beside_the_teacher_as_shipped_is_paired_with_it_and_counts_its_backbone(meter):
    m, space = meter
    cheap = space.uniform({"resnet": "res_skip"})
    beside = m.measure_against_shipped(cheap)
    assert beside.extra["reference"] == SHIPPED_REFERENCE
    # the reference's calls are the teacher-shaped pipeline's: as slow as the teacher as shipped timed on its own
    shipped = m.measure_teacher_as_shipped()
    assert beside.paired.reference_ms == pytest.approx(shipped.latency.median_ms, rel=0.5)
    assert beside.paired.reference_ms > 1.5 * shipped.paired.reference_ms      # ... and slower than the teacher UNet
    # the pipeline with a cheaper backbone is a share of the teacher as shipped under 1
    assert 0 < beside.paired.ratio < 1
    backbone = m.build(cheap).student.backbone
    assert beside.params == count_params(backbone)["params"] < shipped.params


def test_the_teacher_as_shipped_timed_beside_itself_is_a_share_of_about_one(meter):
    m, space = meter
    itself = m.measure_against_shipped(space.all_teacher())
    assert itself.paired.ratio == pytest.approx(1.0, rel=0.25)
