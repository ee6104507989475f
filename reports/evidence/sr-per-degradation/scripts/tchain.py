"""Teacher chain variants closer to the posterior mean, scored per crop vs bicubic (16 and 64 crops)."""
import glob, json, math, sys
import torch
torch.set_num_threads(2)
from tocsr.data import load_photos, split_photos
from tocsr.metrics import psnr
from tocsr.models.autoencoder import decode_latents, encode_latents
from tocsr.sr.data import upsample_lr
from tocsr.sr.evaluate import eval_pairs
from tocsr.sr.run import bicubic_sr
from tocsr.sr.train import load_sr_teacher
from tocsr.teacher.evaluate import latent_ddim
from tocsr.teacher.train import load_teacher

RUN = sys.argv[1] if len(sys.argv) > 1 else "runs/quick"
SR = glob.glob(RUN + "/sr/*")[0]
teacher = load_teacher(RUN + "/teacher"); ae = teacher.autoencoder.eval()
model, sched = load_sr_teacher(SR, teacher.denoiser.condition)
photos, _ = load_photos(None, 128); _, val = split_photos(photos, teacher.preset.val_fraction, teacher.preset.seed)

@torch.no_grad()
def chain(z_lr, steps, t_start, seed):
    ddim = latent_ddim(sched)
    total = max(steps, math.ceil(steps * ddim.config.num_train_timesteps / t_start))
    ddim.set_timesteps(total)
    ts = [t for t in ddim.timesteps if int(t) <= t_start][:steps]
    noise = torch.randn(z_lr.shape, generator=torch.Generator().manual_seed(seed))
    z = ddim.add_noise(z_lr, noise, torch.full((len(z_lr),), int(ts[0]), dtype=torch.long))
    x0s = []
    for t in ts:
        out = ddim.step(model(z, torch.full((len(z),), int(t), dtype=torch.long), z_lr), t, z)
        z = out.prev_sample; x0s.append(out.pred_original_sample)
    return x0s

res = {}
for per_image in (4, 16):
    for kind in ("bicubic", "realesrgan"):
        hr, lr = eval_pairs(val, 128, 4, kind, per_image=per_image)
        base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
        preds = {k: [] for k in ("last50", "meanhalf50", "meanall50", "first", "ens2x25", "ens4x50")}
        for i in range(0, len(lr), 8):
            with torch.no_grad():
                z_lr = encode_latents(ae, upsample_lr(lr[i:i+8], 4))
                x = chain(z_lr, 50, 250, 0)
                preds["last50"].append(x[-1]); preds["meanhalf50"].append(torch.stack(x[25:]).mean(0))
                preds["meanall50"].append(torch.stack(x).mean(0)); preds["first"].append(x[0])
                preds["ens2x25"].append(torch.stack([chain(z_lr, 25, 250, s)[-1] for s in (0, 1)]).mean(0))
                preds["ens4x50"].append(torch.stack([x[-1]] + [chain(z_lr, 50, 250, s)[-1] for s in (1, 2, 3)]).mean(0))
        row = {"bicubic": base.mean().item()}
        for k, zs in preds.items():
            with torch.no_grad():
                p = psnr(decode_latents(ae, torch.cat(zs)).clamp(-1, 1), hr, y_channel=True)
            d = p - base
            row[k] = [round(p.mean().item(), 3), round(d.mean().item(), 3), int((d > 0).sum())]
        res[f"{kind}_{len(hr)}"] = row
        print(kind, len(hr), row, flush=True)
json.dump(res, open("/tmp/p/tchain.json", "w"), indent=1)
