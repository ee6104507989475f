"""Retrain the tight device's SR student with another parts folder, same config/shared part as the run."""
import sys, time
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
