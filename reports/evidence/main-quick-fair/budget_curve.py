"""Does the fair main job's verdict depend on the budget? Baselines trained for multiples of the SR stage's
seconds, scored on the run's test photographs beside the run's own student and its 1x baseline.

    python reports/evidence/main-quick-fair/budget_curve.py RUN_DIR OUT_DIR espcn=1,srvgg=3

Same training photographs (the run's split), same pairs, same training code as the main job
(tocsr.core.baselines.train_baseline); same evaluation (reports.protocol.evaluate_folder on RUN_DIR/test/HR,
fixed degradation seeds, so every method sees the same LR images as in the run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reports.comparison import SRMethod, eval_method, load_sr_methods
from reports.protocol import evaluate_folder, find_images
from tocsr.core.baselines import Interpolate, load_baseline, save_baseline, train_baseline
from tocsr.core.data import load_train_val
from tocsr.core.provenance import environment
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.teacher.train import load_teacher


def main(run: Path, out: Path, plan: str) -> None:
    teacher = load_teacher(run / "teacher")
    (sr_dir,) = [p for p in (run / "sr").iterdir() if (p / SRModelInfo.FILE_NAME).is_file()]
    info = SRModelInfo.load(sr_dir)
    budget = info.training_s
    train, _, _ = load_train_val(None, teacher.preset.split, min_side=info.config.patch_px)
    methods = [SRMethod("bicubic", "interpolation", Interpolate(info.scale), True)]
    methods += load_sr_methods(teacher, sr_dir, "cpu-2core", with_teacher=False)[0]
    for folder in sorted((run / "baselines").iterdir()):
        model, meta = load_baseline(folder)
        methods.append(SRMethod(f"{folder.name} (1x, {meta['steps']} steps)", "classical", model, True))
    for item in plan.split(","):
        name, mult = item.split("=")
        model, t = train_baseline(name, train, info.scale, budget_s=float(mult) * budget, patch_px=info.config.patch_px)
        save_baseline(model, t, out / "baselines" / f"{name}-{mult}x")
        methods.append(SRMethod(f"{name} ({mult}x, {t.steps} steps)", "classical", model, True))
    images = find_images(run / "test" / "HR", None, info.scale)
    print(f"SR stage training seconds (1x): {budget:.0f}")
    for kind in ("bicubic", "realesrgan"):
        res = evaluate_folder(images, [eval_method(m, kind, info.scale) for m in methods], info.scale, kind, seed=0,
                              hr_dir=str(run / "test" / "HR"))
        res.save(out / f"test-{kind}", environment())
        print("\n".join(res.describe()))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
