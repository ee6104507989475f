"""tocsr.app.sr_pd's command line: variants of the student as a label and typed SRConfig fields, the adversarial
weight sweep as one such list, and the errors that say what to type instead. (Training and scoring the variants
runs on the main job's output: tests/app/test_main_job.py.)"""

from __future__ import annotations

import pytest

from tocsr.app.sr_pd import main, parse_variant, variant_backbone, weight_variants
from tocsr.core.errors import ConfigError
from tocsr.core.models.unet import build_unet_from_preset
from tocsr.core.space import TEACHER, derive_search_space


def test_a_variant_is_a_label_and_typed_srconfig_fields():
    assert parse_variant(["run"]) == ("run", {})
    label, fields = parse_variant(["no-teachers", "w_teacher=0", "student_steps=700", "pixel_decoder=deployed",
                                   "student_per_degradation=true"])
    assert label == "no-teachers"
    assert fields == {"w_teacher": 0.0, "student_steps": 700, "pixel_decoder": "deployed",
                      "student_per_degradation": True}
    assert type(fields["w_teacher"]) is float and type(fields["student_steps"]) is int
    # another parts folder in place of the run's: not an SRConfig field, kept as the folder's path
    assert parse_variant(["hr-encoder", "parts=runs/parts-hr", "w_adv=0"]) == \
        ("hr-encoder", {"parts": "runs/parts-hr", "w_adv": 0.0})
    # another backbone: kept as written, resolved against the run's space when the sweep trains it
    assert parse_variant(["wide", "backbone=teacher"]) == ("wide", {"backbone": "teacher"})


def test_a_variants_backbone_is_the_runs_the_teacher_shaped_one_or_the_one_a_file_names(tmp_path):
    space = derive_search_space(build_unet_from_preset("tiny", "meta"))
    first = space.slots[0]
    cheap = space.spec({first.name: next(c for c in first.choices if c != TEACHER)})
    assert variant_backbone(space, cheap, None, "--variant x backbone") is cheap
    wide = variant_backbone(space, cheap, "teacher", "--variant x backbone")
    assert wide == space.all_teacher() and not wide.replaced() and wide.key != cheap.key
    (tmp_path / "arch.json").write_text(cheap.to_json())
    assert variant_backbone(space, space.all_teacher(), str(tmp_path / "arch.json"), "--variant x backbone") == cheap
    with pytest.raises(ConfigError, match="--variant x backbone=widest: neither 'teacher' nor a JSON file"):
        variant_backbone(space, cheap, "widest", "--variant x backbone")
    (tmp_path / "bad.json").write_text('{"choices": {"no_such_slot": "x"}}')
    with pytest.raises(ConfigError, match="unknown slot"):
        variant_backbone(space, cheap, str(tmp_path / "bad.json"), "--variant x backbone")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ConfigError, match="not an architecture"):
        variant_backbone(space, cheap, str(tmp_path / "empty.json"), "--variant x backbone")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match="not an architecture"):
        variant_backbone(space, cheap, str(tmp_path / "list.json"), "--variant x backbone")


@pytest.mark.parametrize("words, message", [
    (["w_teacher=0"], "start with a label"),
    (["x", "w_techer=0"], "not KEY=VALUE with KEY an SRConfig field"),
    (["x", "w_teacher"], "not KEY=VALUE"),
    (["x", "student_steps=many"], "student_steps='many' is not a int"),
    (["x", "kinds=bicubic"], "kinds is a tuple, which cannot be set"),
])
def test_a_variant_that_cannot_be_read_is_refused_with_what_was_wrong(words, message):
    with pytest.raises(ConfigError, match=message):
        parse_variant(words)


def test_the_adversarial_sweep_is_one_variant_per_weight():
    assert weight_variants([0.0, 0.02]) == {"w_adv=0": {"w_adv": 0.0}, "w_adv=0.02": {"w_adv": 0.02}}
    with pytest.raises(ConfigError, match="distinct and >= 0"):
        weight_variants([0.0, 0.0])


def test_the_command_line_refuses_both_kinds_at_once_and_a_label_given_twice(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        main(["--run", str(tmp_path), "--out", str(tmp_path / "o"), "--w-adv", "0", "--variant", "a"])
    with pytest.raises(ConfigError, match="share a label"):
        main(["--run", str(tmp_path), "--out", str(tmp_path / "o"), "--variant", "a", "--variant", "a", "w_adv=0"])
