"""Real-ESRGAN-only SR teacher (job's base teacher, same cache half) and its chain variants on Real-ESRGAN crops."""
import dataclasses, glob, json, math, pathlib, sys
import torch
torch.set_num_threads(2)
import tocsr.sr.train as T
from tocsr.data import load_photos, split_photos
from tocsr.metrics import psnr
from tocsr.models.autoencoder import decode_latents, encode_latents
from tocsr.sr.data import upsample_lr
from tocsr.sr.evaluate import eval_pairs
from tocsr.sr.run import bicubic_sr
from tocsr.teacher.evaluate import latent_ddim
from tocsr.teacher.train import load_teacher
R = "runs/quick"; S = glob.glob(R + "/sr/*")[0]
t = load_teacher(R + "/teacher"); ae = t.autoencoder.eval()
meta = json.load(open(S + "/sr.json"))
cfg = T.SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in {f.name for f in dataclasses.fields(T.SRConfig)}})
photos, _ = load_photos(None, 128); train, val = split_photos(photos, t.preset.val_fraction, t.preset.seed)
cache = T.PairCache.build(ae, train, cfg, cfg.seed)
KIND, TRAIN, Q = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = dataclasses.replace(cfg, teacher_start_share=Q)
model = T.train_sr_teacher(t, cache.of_kind(TRAIN) if TRAIN != "both" else cache, pathlib.Path(f"/tmp/p/tk-{TRAIN}-{Q}"), cfg).eval()
sched = dict(T.sr_scheduler(t).config)

@torch.no_grad()
def chain(z_lr, steps, t_start, seed):
    ddim = latent_ddim(sched)
    total = max(steps, math.ceil(steps * ddim.config.num_train_timesteps / t_start))
    ddim.set_timesteps(total)
    ts = [x for x in ddim.timesteps if int(x) <= t_start][:steps]
    noise = torch.randn(z_lr.shape, generator=torch.Generator().manual_seed(seed))
    z = ddim.add_noise(z_lr, noise, torch.full((len(z_lr),), int(ts[0]), dtype=torch.long))
    x0s = []
    for x in ts:
        out = ddim.step(model(z, torch.full((len(z),), int(x), dtype=torch.long), z_lr), x, z)
        z = out.prev_sample; x0s.append(out.pred_original_sample)
    return x0s

res = {}
for per_image in (4, 16):
    hr, lr = eval_pairs(val, 128, 4, KIND, per_image=per_image)
    base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
    preds = {k: [] for k in ("last50", "first", "meanall50", "ens4x50", "last50_t125")}
    for i in range(0, len(lr), 8):
        with torch.no_grad():
            z_lr = encode_latents(ae, upsample_lr(lr[i:i+8], 4))
            x = chain(z_lr, 50, 250, 0)
            preds["last50"].append(x[-1]); preds["first"].append(x[0]); preds["meanall50"].append(torch.stack(x).mean(0))
            preds["ens4x50"].append(torch.stack([x[-1]] + [chain(z_lr, 50, 250, s)[-1] for s in (1, 2, 3)]).mean(0))
            preds["last50_t125"].append(chain(z_lr, 50, 125, 0)[-1])
    row = {"bicubic": round(base.mean().item(), 3)}
    for k, zs in preds.items():
        with torch.no_grad():
            p = psnr(decode_latents(ae, torch.cat(zs)).clamp(-1, 1), hr, y_channel=True)
        d = p - base
        row[k] = [round(p.mean().item(), 3), round(d.mean().item(), 3), int((d > 0).sum())]
    res[f"{KIND}_{len(hr)}"] = row
    print("eval", KIND, "train", TRAIN, "q", Q, len(hr), row, flush=True)
json.dump(res, open(f"/tmp/p/tkind_{KIND}_{TRAIN}_{Q}.json", "w"), indent=1)
