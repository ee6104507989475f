"""A/B on the job's models: blind student (condition_on_degradation=False) retrained on the same cache vs the
job's degradation-conditioned student; per crop vs bicubic on 16 and 64 held-out crops."""
import dataclasses, glob, json, pathlib
import torch
torch.set_num_threads(2)
import tocsr.sr.train as T
from tocsr.teacher.train import load_teacher
from tocsr.space import derive_search_space, ArchSpec
from tocsr.distill.train import load_surrogates
from tocsr.sr.run import OneStepSRModule, bicubic_sr
from tocsr.sr.models import OneStepStudent
from tocsr.metrics import psnr
from tocsr.sr.evaluate import eval_pairs
from tocsr.data import load_photos, split_photos
R = "runs/quick"; S = glob.glob(R + "/sr/*")[0]
t = load_teacher(R + "/teacher"); ae = t.autoencoder.eval(); space = derive_search_space(t.unet)
meta = json.load(open(S + "/sr.json"))
spec = ArchSpec.from_dict(meta["arch"], space); bank, _ = load_surrogates(R + "/surrogates", space)
photos, _ = load_photos(None, 128); train, val = split_photos(photos, t.preset.val_fraction, t.preset.seed)
cfg = T.SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
cond = OneStepStudent.from_pretrained(S + "/student").eval()
assert cond.degradations, "the job's student should be conditioned"
cache = T.PairCache.build(ae, train, cfg, cfg.seed)
srt, sched = T.load_sr_teacher(S, t.denoiser.condition)
import sys
W = float(sys.argv[1])
bcfg = dataclasses.replace(cfg, condition_on_degradation=False, w_teacher=W)
blind = T.train_student(t, srt, sched, T.build_student(t, space, spec, bank, bcfg), cache, pathlib.Path(f"/tmp/p/run-blind{W}"), bcfg).eval()
ccfg = dataclasses.replace(cfg, w_teacher=W)
cond = T.train_student(t, srt, sched, T.build_student(t, space, spec, bank, ccfg), cache, pathlib.Path(f"/tmp/p/run-cond{W}"), ccfg).eval()
res = {}
for per_image in (4, 16):
    for kind in ("bicubic", "realesrgan"):
        hr, lr = eval_pairs(val, 128, 4, kind, per_image=per_image); b = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
        row = {"bicubic": round(b.mean().item(), 3)}
        for name, st, told in (("blind", blind, None), ("conditioned", cond, kind), ("conditioned_wrong", cond, "bicubic" if kind == "realesrgan" else "realesrgan")):
            one = OneStepSRModule(ae, st, 4)
            with torch.no_grad():
                o = torch.cat([one(lr[i:i+8], told) for i in range(0, len(lr), 8)]).clamp(-1, 1)
            p = psnr(o, hr, y_channel=True); d = p - b
            row[name] = {"psnr_y": round(p.mean().item(), 3), "minus_bicubic": round(d.mean().item(), 3),
                         "median_minus_bicubic": round(d.median().item(), 3), "crops_above": int((d > 0).sum()), "worst": round(d.min().item(), 3)}
        res[f"{kind}_{len(hr)}crops"] = row
        print(kind, len(hr), json.dumps(row), flush=True)
json.dump(res, open(f"/tmp/p/ab_w{W}.json", "w"), indent=1)
