"""`tocsr sr`'s options reach the SR stage's config: --train-parts trains the deployed parts as the quick preset does."""

from __future__ import annotations

import pytest

from tocsr.app.cli import main
from tocsr.core.sr.config import TRAINED_PARTS


@pytest.mark.parametrize("flag, trained", [([], False), (["--train-parts"], True)])
def test_train_parts_gives_the_stage_the_settings_that_train_the_deployed_parts(tmp_path, monkeypatch, capsys, flag,
                                                                                trained):
    import tocsr.app.stages as stages

    seen = {}

    class Done(Exception):
        pass

    def fake_stage_sr(teacher, surrogates, search, out, cfg, *args, **kwargs):
        seen["cfg"] = cfg
        raise Done

    monkeypatch.setattr(stages, "stage_sr", fake_stage_sr)
    with pytest.raises(Done):
        main(["sr", "--search", str(tmp_path), "--out", str(tmp_path / "sr"), "--student-steps", "7", *flag])
    cfg = seen["cfg"]
    assert cfg.student_steps == 7
    # every one of those settings differs from SRConfig's default: each is set by the flag and only by it
    assert all((getattr(cfg, k) == v) is trained for k, v in TRAINED_PARTS)
