"""`tocsr teacher train` end to end at the smoke preset: the record it prints and writes."""

from __future__ import annotations

import pytest

from tocsr.app.cli import main
from tocsr.core.teacher.record import TeacherRecord


@pytest.mark.extended
def test_teacher_train_with_a_step_override_records_the_config_it_trained(tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        main(["teacher", "train", "--preset", "smoke", "--steps", "3", "--out", str(tmp_path / "t"), "--threads", "2"])
    assert code.value.code == 0, capsys.readouterr().err
    record = TeacherRecord.load(tmp_path / "t")
    assert record.diffusion.steps == 3 == record.preset_config["diffusion"]["steps"]
    assert record.diffusion.prediction_type == "v_prediction"
    assert record.samples.spectrum_kid_noise_vs_val[0] > 0 and record.samples.n_for_kid == 64
    printed = capsys.readouterr().out
    assert "KID of image spectra" in printed and "noise by 2x" in printed
