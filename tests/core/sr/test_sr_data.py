"""tocsr.core.sr.data.sr_photographs: the photographs the SR stage (and its baselines) learn from, and the study of
fewer of them (SRConfig.train_photographs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tocsr.core.data import DataSplit
from tocsr.core.errors import ConfigError
from tocsr.core.sr.config import SRConfig
from tocsr.core.sr.data import sr_photographs
from tocsr.core.sr.shared import SharedSRRecord, shared_config


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for part, names in (("train", [f"t{i}" for i in range(6)]), ("val", ["v0"]), ("test", ["x0"])):
        (tmp_path / part).mkdir()
        for name in names:
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / part / f"{name}.png")
    Image.fromarray(np.zeros((20, 48, 3), np.uint8)).save(tmp_path / "train" / "small.png")   # under patch_px
    return tmp_path


def test_the_first_n_training_photographs_in_the_splits_order_nested_and_the_rest_left_alone(folder):
    split = DataSplit()
    train, val = sr_photographs(folder, split, SRConfig(patch_px=32))
    names = sorted(p.name for p in train)
    assert names == [f"train/t{i}.png" for i in range(6)] and [p.name for p in val] == ["val/v0.png"]
    ranked = split.ranked(names)
    assert ranked != names                  # the split's order, not the names'
    kept = {}
    for n in (1, 3, 6):
        sub, sub_val = sr_photographs(folder, split, SRConfig(patch_px=32, train_photographs=n))
        kept[n] = {p.name for p in sub}
        assert kept[n] == set(ranked[:n]) and [p.name for p in sub_val] == ["val/v0.png"]
    assert kept[1] < kept[3] < kept[6]      # a learning curve over data adds photographs, never swaps them
    with pytest.raises(ConfigError, match="train_photographs = 7: the split has 6 training photographs of at least "
                                          "32 px; give 1 to 6"):
        sr_photographs(folder, split, SRConfig(patch_px=32, train_photographs=7))
    with pytest.raises(ConfigError, match="train_photographs = -1: give a number >= 0 \\(0: every training photograph"):
        SRConfig(train_photographs=-1)


def test_a_shared_part_records_how_many_photographs_trained_it_and_an_old_one_reads_as_all(tmp_path):
    assert shared_config(SRConfig(train_photographs=3))["train_photographs"] == 3
    old = {"kind": SharedSRRecord.KIND, "schema_version": 1, "config": {"pair_cache": 8}, "timings_s": {"pair_cache_s": 1},
           "teacher_folder": "t", "teacher_identity": "x", "device": "cpu"}
    (tmp_path / SharedSRRecord.FILE_NAME).write_text(json.dumps(old))
    assert SharedSRRecord.load(tmp_path).config == {"pair_cache": 8, "train_photographs": 0}
