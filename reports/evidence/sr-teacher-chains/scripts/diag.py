"""Diagnostic: can the SR teacher network regress like the student at the chain's start state?
Real-ESRGAN-only SR teacher, trained with a share Q of samples on the start state (LR latent noised to TS).
args: KIND Q FLOOR SCHED(const|cos) STEPS W_PIXEL [TS]"""
import dataclasses, glob, json, math, sys, time
import torch
torch.set_num_threads(2)
import torch.nn.functional as F
import tocsr.sr.train as T
from tocsr.data import load_photos, split_photos
from tocsr.metrics import psnr
from tocsr.models.autoencoder import decode_latents, encode_latents
from tocsr.sr.data import upsample_lr
from tocsr.sr.evaluate import eval_pairs
from tocsr.sr.models import widen_conv_in
from tocsr.sr.run import bicubic_sr
from tocsr.teacher.train import load_teacher
from diffusers.training_utils import EMAModel
R = "runs/quick"; S = glob.glob(R + "/sr/*")[0]
t = load_teacher(R + "/teacher"); ae = t.autoencoder.eval()
meta = json.load(open(S + "/sr.json"))
cfg = T.SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in {f.name for f in dataclasses.fields(T.SRConfig)}})
photos, _ = load_photos(None, 128); train, val = split_photos(photos, t.preset.val_fraction, t.preset.seed)
KIND, Q, FLOOR, SCHED, STEPS, WPIX = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
TS = int(sys.argv[7]) if len(sys.argv) > 7 else cfg.t_start
cpath = f"/tmp/p/cache_{KIND}.pt"
try:
    c = torch.load(cpath, weights_only=False)
except FileNotFoundError:
    c = T.PairCache.build(ae, train, cfg, cfg.seed).of_kind(KIND); torch.save(c, cpath)
sched = T.sr_scheduler(t)
model = T.SRDenoiser(widen_conv_in(t.unet, 16), t.denoiser.condition)
with torch.no_grad():
    model.unet.conv_out.weight.zero_(); model.unet.conv_out.bias.zero_()
for p in model.condition.parameters(): p.requires_grad_(False)
for p in ae.parameters(): p.requires_grad_(False)
params = list(model.unet.parameters())
print("params", sum(p.numel() for p in params), flush=True)
opt = torch.optim.AdamW(params, lr=cfg.teacher_lr, weight_decay=1e-2); ema = EMAModel(params, decay=0.999, foreach=True)
model.train(); t0 = time.time()
for step in range(STEPS):
    frac = step / STEPS
    base_lr = cfg.teacher_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)) if SCHED == "cos" else 1.0)
    for g in opt.param_groups: g["lr"] = base_lr * min(1.0, (step + 1) / 100)
    gen = torch.Generator().manual_seed(cfg.seed * 999_983 + step)
    idx, z_hr, z_lr = c.sample(gen, cfg.batch)
    noise = torch.randn(z_hr.shape, generator=gen)
    tt = torch.randint(0, TS + 1, (len(z_hr),), generator=gen)
    first = torch.rand(len(z_hr), generator=gen) < Q
    tt = torch.where(first, torch.full_like(tt, TS), tt)
    z_t = torch.where(first[:, None, None, None], sched.add_noise(z_lr, noise, tt), sched.add_noise(z_hr, noise, tt))
    pred = model(z_t, tt, z_lr).float()
    loss = T.log_latent_mse(ae, pred, z_hr, FLOOR)
    if WPIX > 0:
        k = cfg.pixel_share
        loss = loss + WPIX * F.l1_loss(decode_latents(ae, pred[:k]), c.hr_pixels(idx[:k]))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); ema.step(params)
    if step % 100 == 0: print(step, round(loss.item(), 4), round(time.time() - t0), flush=True)
ema.copy_to(params); model.eval()
for per_image in (4, 16):
    hr, lr = eval_pairs(val, 128, 4, KIND, per_image=per_image)
    base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
    outs = []
    with torch.no_grad():
        for j in range(0, len(lr), 8):
            z_lr = encode_latents(ae, upsample_lr(lr[j:j+8], 4))
            noise = torch.randn(z_lr.shape, generator=torch.Generator().manual_seed(0))
            tt = torch.full((len(z_lr),), TS, dtype=torch.long)
            outs.append(model(sched.add_noise(z_lr, noise, tt), tt, z_lr))
        p = psnr(decode_latents(ae, torch.cat(outs)).clamp(-1, 1), hr, y_channel=True)
    d = p - base
    print("eval", sys.argv[1:], len(hr), "first", round(p.mean().item(), 3), round(d.mean().item(), 3), int((d > 0).sum()), flush=True)
torch.save(model.unet.state_dict(), f"/tmp/p/unet_{'_'.join(sys.argv[1:])}.pt")
