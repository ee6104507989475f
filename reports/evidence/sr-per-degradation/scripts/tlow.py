"""Per-degradation SR teacher trained on t <= TS with a share Q of samples on the chain's real start state
(LR latent noised to TS); 50-call DDIM chain from TS; Real-ESRGAN crops."""
import dataclasses, glob, json, math, sys
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
from tocsr.teacher.evaluate import latent_ddim
from tocsr.teacher.train import load_teacher
from diffusers.training_utils import EMAModel
R = "runs/quick"; S = glob.glob(R + "/sr/*")[0]
t = load_teacher(R + "/teacher"); ae = t.autoencoder.eval()
meta = json.load(open(S + "/sr.json"))
cfg = T.SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in {f.name for f in dataclasses.fields(T.SRConfig)}})
photos, _ = load_photos(None, 128); train, val = split_photos(photos, t.preset.val_fraction, t.preset.seed)
KIND, TS, Q = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = T.PairCache.build(ae, train, cfg, cfg.seed).of_kind(KIND)
sched = T.sr_scheduler(t)
model = T.SRDenoiser(widen_conv_in(t.unet, 16), t.denoiser.condition)
with torch.no_grad():
    model.unet.conv_out.weight.zero_(); model.unet.conv_out.bias.zero_()
for p in model.condition.parameters(): p.requires_grad_(False)
params = list(model.unet.parameters())
opt = torch.optim.AdamW(params, lr=cfg.teacher_lr, weight_decay=1e-2); ema = EMAModel(params, decay=0.999, foreach=True)
model.train()
for step in range(cfg.teacher_steps):
    for g in opt.param_groups: g["lr"] = cfg.teacher_lr * min(1.0, (step + 1) / 100)
    gen = torch.Generator().manual_seed(cfg.seed * 999_983 + step)
    _, z_hr, z_lr = c.sample(gen, cfg.batch)
    noise = torch.randn(z_hr.shape, generator=gen)
    tt = torch.randint(0, TS + 1, (len(z_hr),), generator=gen)
    first = torch.rand(len(z_hr), generator=gen) < Q
    tt = torch.where(first, torch.full_like(tt, TS), tt)
    z_t = torch.where(first[:, None, None, None], sched.add_noise(z_lr, noise, tt), sched.add_noise(z_hr, noise, tt))
    loss = T.log_latent_mse(ae, model(z_t, tt, z_lr).float(), z_hr, cfg.teacher_loss_floor)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); ema.step(params)
ema.copy_to(params); model.eval()
cfgd = dict(sched.config)

@torch.no_grad()
def chain(z_lr, steps, t_start, seed):
    ddim = latent_ddim(cfgd)
    total = max(steps, math.ceil(steps * ddim.config.num_train_timesteps / t_start))
    ddim.set_timesteps(total)
    ts = [x for x in ddim.timesteps if int(x) <= t_start][:steps]
    noise = torch.randn(z_lr.shape, generator=torch.Generator().manual_seed(seed))
    z = ddim.add_noise(z_lr, noise, torch.full((len(z_lr),), int(ts[0]), dtype=torch.long))
    x0s = []
    for x in ts:
        out = ddim.step(model(z, torch.full((len(z),), int(x), dtype=torch.long), z_lr), x, z)
        z = out.prev_sample; x0s.append(out.pred_original_sample)
    return x0s, [int(x) for x in ts]

for per_image in (4, 16):
    hr, lr = eval_pairs(val, 128, 4, KIND, per_image=per_image)
    base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
    last, firsts = [], []
    for j in range(0, len(lr), 8):
        x, ts = chain(encode_latents(ae, upsample_lr(lr[j:j+8], 4)), 50, TS, 0)
        last.append(x[-1]); firsts.append(x[0])
    row = {"bicubic": round(base.mean().item(), 3), "chain_calls": len(ts), "first_t": ts[0]}
    for k, zs in (("last", last), ("first", firsts)):
        with torch.no_grad():
            p = psnr(decode_latents(ae, torch.cat(zs)).clamp(-1, 1), hr, y_channel=True)
        d = p - base
        row[k] = [round(p.mean().item(), 3), round(d.mean().item(), 3), int((d > 0).sum())]
    print("eval", KIND, "TS", TS, "Q", Q, len(hr), row, flush=True)
