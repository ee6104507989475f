"""How often does the SR stage's DegradationRouter pick the right student on whole validation photographs, and
how many training steps does it need? Routers trained as the SR stage trains them (tocsr.core.sr.router.train_router
on the run's training photographs) at several step counts, each scored on the validation photographs (centre of at
most 384 px, as tocsr.app.sr_pd scores them), each degraded by both degradations with several seeds (the
Real-ESRGAN pipeline draws its blur, noise and JPEG quality per seed), and on 32 px LR crops of them (the SR stage's
own validation crops), with 95% Wilson intervals.

    python reports/evidence/sr-ablation/run39-routed/router_accuracy.py runs/quick OUT.json
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reports.comparison import write_split_folder
from reports.protocol import _to_tensor, find_images, load_pair
from tocsr.core.data import load_train_val
from tocsr.core.provenance import environment
from tocsr.core.sr.evaluate import eval_pairs
from tocsr.core.sr.router import train_router
from tocsr.core.teacher.train import load_teacher

KINDS = ("bicubic", "realesrgan")


def wilson(k: int, n: int) -> list[float]:
    z, p = 1.96, k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [centre - half, centre + half]


def main(run: Path, out: Path, steps=(50, 150, 300), seeds=8) -> None:
    teacher = load_teacher(run / "teacher")
    split = teacher.preset.split
    train, val, _ = load_train_val(None, split, min_side=128)
    folder = out.parent / "val-HR"
    write_split_folder(None, split, folder, 384, 4, part="val")
    images = find_images(folder, None, 4)
    whole = [(kind, torch.from_numpy(np.ascontiguousarray(load_pair(im, 4, kind, seed)[1]))) for im in images
             for kind in KINDS for seed in range(seeds if kind == "realesrgan" else 1)]
    crops = {kind: eval_pairs(val, 128, 4, kind)[1] for kind in KINDS}
    doc = {"run": str(run), "train_photos": len(train), "val_photos": [im.name for im in images], "seeds": seeds,
           "routers": {}}
    for n in steps:
        router, seconds = train_router(train, KINDS, 4, steps=n, seed=0)
        row = {"train_s": seconds}
        for kind in KINDS:
            got = [router.route(_to_tensor(lr.numpy()) * 2 - 1)[0] for k, lr in whole if k == kind]
            right = sum(g == kind for g in got)
            row[f"whole_{kind}"] = {"right": right, "n": len(got), "wilson95": wilson(right, len(got))}
            c = router.route(crops[kind])
            right = sum(g == kind for g in c)
            row[f"crop32_{kind}"] = {"right": right, "n": len(c), "wilson95": wilson(right, len(c))}
        doc["routers"][str(n)] = row
        print(n, json.dumps(row), flush=True)
    doc["environment"] = environment()
    out.write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    t0 = time.time()
    main(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"done in {time.time() - t0:.0f} s")
