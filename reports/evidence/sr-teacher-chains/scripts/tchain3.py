"""Per-degradation SR teacher trained with share Q of samples on the start state; read-outs:
first call, uniform DDIM 50, power-p spaced DDIM 50 (p=2,3), mean of N chains. args: KIND Q STEPS [FLOOR]"""
import dataclasses, glob, json, math, sys, time
import torch
torch.set_num_threads(2)
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
KIND, Q, STEPS, PRE = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[5] == "pre"
FLOOR = float(sys.argv[4])
TS = cfg.t_start
c = torch.load(f"/tmp/p/cache_{KIND}.pt", weights_only=False) if __import__("os").path.exists(f"/tmp/p/cache_{KIND}.pt") else None
if c is None:
    c = T.PairCache.build(ae, train, cfg, cfg.seed).of_kind(KIND); torch.save(c, f"/tmp/p/cache_{KIND}.pt")
sched = T.sr_scheduler(t)
ab = sched.alphas_cumprod
base = T.SRDenoiser(widen_conv_in(t.unet, 16), t.denoiser.condition)
sd2 = ((c.z_hr.float() - c.z_lr.float()).std(dim=(0, 2, 3)) ** 2)[None, :, None, None]
print("sigma_d", sd2.sqrt().flatten())
class Pre(torch.nn.Module):
    def __init__(s, b):
        super().__init__(); s.b = b; s.unet = b.unet; s.condition = b.condition
    def forward(s, zt, tt, z_lr):
        a = ab.to(zt)[tt][:, None, None, None]
        sig2 = (1 - a) / a
        y = zt / a.sqrt()
        c_skip = sd2 / (sd2 + sig2); c_out = (sig2 * sd2 / (sd2 + sig2)).sqrt()
        f = s.b(zt, tt, z_lr) - z_lr
        return z_lr + c_skip * (y - z_lr) + c_out * f
model = Pre(base) if PRE else base
with torch.no_grad():
    model.unet.conv_out.weight.zero_(); model.unet.conv_out.bias.zero_()
for p in model.condition.parameters(): p.requires_grad_(False)
for p in ae.parameters(): p.requires_grad_(False)
params = list(model.unet.parameters())
opt = torch.optim.AdamW(params, lr=cfg.teacher_lr, weight_decay=1e-2); ema = EMAModel(params, decay=0.999, foreach=True)
model.train(); t0 = time.time()
for step in range(STEPS):
    for g in opt.param_groups: g["lr"] = cfg.teacher_lr * min(1.0, (step + 1) / 100)
    gen = torch.Generator().manual_seed(cfg.seed * 999_983 + step)
    idx, z_hr, z_lr = c.sample(gen, cfg.batch)
    noise = torch.randn(z_hr.shape, generator=gen)
    tt = torch.randint(0, TS + 1, (len(z_hr),), generator=gen)
    first = torch.rand(len(z_hr), generator=gen) < Q
    tt = torch.where(first, torch.full_like(tt, TS), tt)
    z_t = torch.where(first[:, None, None, None], sched.add_noise(z_lr, noise, tt), sched.add_noise(z_hr, noise, tt))
    loss = T.log_latent_mse(ae, model(z_t, tt, z_lr).float(), z_hr, FLOOR)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); ema.step(params)
    if step % 200 == 0: print(step, round(loss.item(), 4), round(time.time() - t0), flush=True)
ema.copy_to(params); model.eval()
torch.save(model.unet.state_dict(), f"/tmp/p/tunet_{KIND}_{Q}_{STEPS}_{FLOOR}_{PRE}.pt")

def spaced(p, n=50):
    ts = sorted({round(TS * ((n - k) / n) ** p) for k in range(n)}, reverse=True)
    return ts

@torch.no_grad()
def chain(z_lr, ts, seed):
    noise = torch.randn(z_lr.shape, generator=torch.Generator().manual_seed(seed))
    z = sched.add_noise(z_lr, noise, torch.full((len(z_lr),), ts[0], dtype=torch.long))
    x0s = []
    for i, s in enumerate(ts):
        x0 = model(z, torch.full((len(z),), s, dtype=torch.long), z_lr)
        x0s.append(x0)
        if i + 1 < len(ts):
            a, a_prev = ab[s], ab[ts[i + 1]]
            eps = (z - a.sqrt() * x0) / (1 - a).sqrt()
            z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x0s

uniform = [int(x) for x in torch.linspace(TS, 0, 51)[:50].round()]  # stride 5, ends at t=5
def restart(tr, n=50):
    return [TS] + [int(x) for x in torch.linspace(tr, 0, n)[: n - 1].round()]
reads = {"uniform50": (uniform, 1), "restart50_100": (restart(100), 1), "restart50_50": (restart(50), 1), "restart50_25": (restart(25), 1), "uniform50_x4": (uniform, 4)}
print({k: (len(v[0]), v[0][:4], v[0][-4:]) for k, v in reads.items()}, flush=True)
for per_image in (4, 16):
    hr, lr = eval_pairs(val, 128, 4, KIND, per_image=per_image)
    base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
    row = {"bicubic": round(base.mean().item(), 3)}
    outs = {k: [] for k in ["first"] + list(reads)}
    for j in range(0, len(lr), 16):
        z_lr = encode_latents(ae, upsample_lr(lr[j:j+16], 4))
        for k, (ts, n) in reads.items():
            xs = [chain(z_lr, ts, seed) for seed in range(n)]
            outs[k].append(torch.stack([x[-1] for x in xs]).mean(0))
            if k == "uniform50": outs["first"].append(xs[0][0])
    for k, zs in outs.items():
        with torch.no_grad():
            p = psnr(decode_latents(ae, torch.cat(zs)).clamp(-1, 1), hr, y_channel=True)
        d = p - base
        row[k] = [round(p.mean().item(), 3), round(d.mean().item(), 3), int((d > 0).sum())]
    print("eval", sys.argv[1:], len(hr), row, flush=True)
