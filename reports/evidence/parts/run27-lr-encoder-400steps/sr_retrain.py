"""Retrain cpu-2core-tight's SR student of a main-job run with another parts folder (its LR encoder), with the
run's SR config and shared part, and print its validation PSNR-Y beside the run's own student's.

    python sr_retrain.py RUN PARTS_DIR OUT_DIR      (RUN: runs/quick of a two-profile main job)
"""

import sys
import time
from pathlib import Path

from tocsr.app.stages import stage_sr
from tocsr.core.sr.info import SRModelInfo

run, parts, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
name = "86325d291f56643a-lr-encoder-tiny-decoder"
info = SRModelInfo.load(run / "sr" / name)
t0 = time.perf_counter()
new = stage_sr(run / "teacher", run / "surrogates", run / "search-cpu-2core-tight", out, info.config, None, False,
               None, run / "sr-shared", parts)
print("seconds", round(time.perf_counter() - t0, 1))
for k, q in new.quality.items():
    old = info.quality[k]
    print(k, {m: round(v["psnr_y"], 3) for m, v in q.items()}, "run's:", {m: round(v["psnr_y"], 3) for m, v in old.items()})
