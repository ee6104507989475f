"""tocsr.app.sr_pd's command line: variants of the student as a label and typed SRConfig fields, the adversarial
weight sweep as one such list, and the errors that say what to type instead. (Training and scoring the variants
runs on the main job's output: tests/app/test_main_job.py.)"""

from __future__ import annotations

import pytest

from tocsr.app.sr_pd import main, parse_variant, weight_variants
from tocsr.core.errors import ConfigError


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
