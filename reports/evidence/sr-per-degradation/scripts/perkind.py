"""Per-degradation students (each trained only on its kind's cached pairs) vs the job's conditioned student."""
import dataclasses, glob, json, pathlib, sys
import torch
torch.set_num_threads(2)
import tocsr.sr.train as T
from tocsr.teacher.train import load_teacher
from tocsr.space import derive_search_space, ArchSpec
from tocsr.distill.train import load_surrogates
from tocsr.sr.run import OneStepSRModule, bicubic_sr
from tocsr.metrics import psnr
from tocsr.sr.evaluate import eval_pairs
from tocsr.data import load_photos, split_photos
R = "runs/quick"; S = glob.glob(R + "/sr/*")[0]
t = load_teacher(R + "/teacher"); ae = t.autoencoder.eval(); space = derive_search_space(t.unet)
meta = json.load(open(S + "/sr.json"))
spec = ArchSpec.from_dict(meta["arch"], space); bank, _ = load_surrogates(R + "/surrogates", space)
photos, _ = load_photos(None, 128); train, val = split_photos(photos, t.preset.val_fraction, t.preset.seed)
cfg = T.SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in {f.name for f in dataclasses.fields(T.SRConfig)}})
cache = T.PairCache.build(ae, train, cfg, cfg.seed)
srt, sched = T.load_sr_teacher(S, t.denoiser.condition)
W = float(sys.argv[1]); STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else cfg.student_steps
res = {}
for kind in (sys.argv[3].split(",") if len(sys.argv) > 3 else ("bicubic", "realesrgan")):
    kcfg = dataclasses.replace(cfg, w_teacher=W, student_steps=STEPS)
    st = T.train_student(t, srt, sched, T.build_student(t, space, spec, bank, kcfg), cache.of_kind(kind),
                         pathlib.Path(f"/tmp/p/run-{kind}-{W}-{STEPS}"), kcfg).eval()
    one = OneStepSRModule(ae, st, 4)
    for per_image in (4, 16):
        for ev in ("bicubic", "realesrgan"):
            hr, lr = eval_pairs(val, 128, 4, ev, per_image=per_image); b = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
            with torch.no_grad():
                o = torch.cat([one(lr[i:i+8]) for i in range(0, len(lr), 8)]).clamp(-1, 1)
            p = psnr(o, hr, y_channel=True); d = p - b
            row = {"psnr_y": round(p.mean().item(), 3), "minus_bicubic": round(d.mean().item(), 3),
                   "median": round(d.median().item(), 3), "above": int((d > 0).sum()), "worst": round(d.min().item(), 3)}
            res[f"trained_{kind}/eval_{ev}_{len(hr)}"] = row
            print(f"trained on {kind}, eval {ev} {len(hr)} crops:", row, flush=True)
json.dump(res, open(f"/tmp/p/perkind_w{W}_{STEPS}.json", "w"), indent=1)
