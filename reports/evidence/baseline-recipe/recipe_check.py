"""Why does SRVGGNetCompact trained by the main job's recipe score below bicubic, and worse with more seconds?

    python reports/evidence/baseline-recipe/recipe_check.py OUT_DIR srvgg:5e-4:mixed:150:pytorch-default srvgg:5e-4:mixed:150:he ...

Each variant NAME:LR:KINDS:SECONDS[:INIT] (INIT he or pytorch-default; KINDS: mixed = bicubic + Real-ESRGAN pairs, or one kind) is trained by
tocsr.core.baselines.train_baseline on the embedded training photographs and scored on the *validation*
photographs (centre 384 px; never the test part) with reports.protocol, beside bicubic. Besides the score it
records the training fit: the model's L1 on fresh training pairs against bicubic interpolation's L1 on the
same pairs, which says whether the optimisation beats interpolation at all on the data it trains on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reports.comparison import SRMethod, eval_method
from reports.protocol import evaluate_folder, find_images
from tocsr.core.baselines import Interpolate, train_baseline
from tocsr.core.data import DataSplit, load_split
from tocsr.core.imageio import save_png
from tocsr.core.provenance import environment
from tocsr.core.sr.data import SRPairs

SCALE, PATCH = 4, 128


def val_folder(out: Path) -> Path:
    got, _ = load_split(None, ("train", "val"), DataSplit(), min_side=PATCH)
    folder = out / "val" / "HR"
    for photo in got["val"]:
        h, w = photo.rgb.shape[:2]
        c = (min(h, w, 384) // SCALE) * SCALE
        y, x = (h - c) // 2, (w - c) // 2
        save_png(folder / f"{photo.name.rsplit('.', 1)[0]}.png", np.ascontiguousarray(photo.rgb[y:y + c, x:x + c]))
    return folder


@torch.no_grad()
def training_fit(model, photos, kinds, n: int = 256) -> dict:
    pairs = SRPairs(photos, PATCH, SCALE, 2**62, 12345, kinds)
    items = [pairs[i] for i in range(n)]
    hr = (torch.stack([h for h, _ in items]) + 1) / 2
    lr = (torch.stack([x for _, x in items]) + 1) / 2
    out = torch.cat([model(lr[i:i + 32]) for i in range(0, n, 32)])
    bic = Interpolate(SCALE, "bicubic-torch")(lr)
    return {"model_l1": F.l1_loss(out.clamp(0, 1), hr).item(), "bicubic_l1": F.l1_loss(bic, hr).item()}


def main(out: Path, variants: list[str]) -> None:
    got, _ = load_split(None, ("train", "val"), DataSplit(), min_side=PATCH)
    train = got["train"]
    hr_dir = val_folder(out)
    methods = [SRMethod("bicubic", "interpolation", Interpolate(SCALE), True)]
    records = {}
    for spec in variants:
        name, lr, kinds, seconds, init = (spec.split(":") + ["he"])[:5]
        kinds_t = ("bicubic", "realesrgan") if kinds == "mixed" else (kinds,)
        model, t = train_baseline(name, train, SCALE, budget_s=float(seconds), patch_px=PATCH, lr=float(lr),
                                  kinds=kinds_t, init=init)
        fit = {k: training_fit(model, train, (k,)) for k in ("bicubic", "realesrgan")}
        records[spec] = {"steps": t.steps, "seconds": t.seconds, "fit": fit}
        print(spec, json.dumps(records[spec]), flush=True)
        methods.append(SRMethod(spec, "classical", model, True))
    images = find_images(hr_dir, None, SCALE)
    for kind in ("bicubic", "realesrgan"):
        res = evaluate_folder(images, [eval_method(m, kind, SCALE) for m in methods], SCALE, kind, seed=0,
                              hr_dir=str(hr_dir))
        res.save(out / f"val-{kind}", environment())
        print("\n".join(res.describe()))
    (out / "variants.json").write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
