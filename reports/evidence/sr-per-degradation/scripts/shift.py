"""ResShift-style SR teacher: x_t = x0 + eta_t (y - x0) + kappa sqrt(eta_t) eps; model predicts x0; T-step posterior chain."""
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
from tocsr.sr.models import widen_conv_in
from tocsr.teacher.train import load_teacher
from diffusers.training_utils import EMAModel
R = "runs/quick"; S = glob.glob(R + "/sr/*")[0]
t = load_teacher(R + "/teacher"); ae = t.autoencoder.eval()
meta = json.load(open(S + "/sr.json"))
cfg = T.SRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in {f.name for f in dataclasses.fields(T.SRConfig)}})
photos, _ = load_photos(None, 128); train, val = split_photos(photos, t.preset.val_fraction, t.preset.seed)
cache = T.PairCache.build(ae, train, cfg, cfg.seed)
TRAIN, KAPPA, STEPS = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 50
TT = 50; P = 0.3
eta1, etaT = min((0.04 / KAPPA) ** 2, 0.001), 0.999
b = math.exp(math.log(etaT / eta1) / (2 * (TT - 1)))
eta = torch.tensor([eta1 * b ** (2 * ((i / (TT - 1)) ** P) * (TT - 1)) for i in range(TT)])   # eta[0]=eta1, eta[-1]=etaT
tsteps = torch.round(torch.linspace(0, 999, TT)).long()
print("eta", eta[:3].tolist(), eta[-3:].tolist())
c = cache.of_kind(TRAIN) if TRAIN != "both" else cache
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
    i = torch.randint(0, TT, (len(z_hr),), generator=gen)
    e = eta[i].view(-1, 1, 1, 1)
    z_t = z_hr + e * (z_lr - z_hr) + KAPPA * e.sqrt() * noise
    pred = model(z_t, tsteps[i], z_lr).float()
    loss = T.log_latent_mse(ae, pred, z_hr, cfg.teacher_loss_floor)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); ema.step(params)
    if step % 200 == 0: print(step, loss.item(), flush=True)
ema.copy_to(params); model.eval()

@torch.no_grad()
def first(z_lr, seed):
    gen = torch.Generator().manual_seed(seed)
    z = z_lr + KAPPA * eta[-1].sqrt() * torch.randn(z_lr.shape, generator=gen)
    return model(z, tsteps[-1].expand(len(z)), z_lr)

@torch.no_grad()
def chain(z_lr, seed):
    gen = torch.Generator().manual_seed(seed)
    z = z_lr + KAPPA * eta[-1].sqrt() * torch.randn(z_lr.shape, generator=gen)
    for i in range(TT - 1, -1, -1):
        x0 = model(z, tsteps[i].expand(len(z)), z_lr)
        if i == 0:
            return x0
        a = eta[i] - eta[i - 1]
        mean = eta[i - 1] / eta[i] * z + a / eta[i] * x0
        z = mean + KAPPA * (eta[i - 1] / eta[i] * a).sqrt() * torch.randn(z.shape, generator=gen)

res = {}
for per_image in (4, 16):
    for kind in ("bicubic", "realesrgan"):
        if TRAIN != "both" and kind != TRAIN: continue
        hr, lr = eval_pairs(val, 128, 4, kind, per_image=per_image)
        base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
        zs, fs = [], []
        for j in range(0, len(lr), 8):
            with torch.no_grad():
                zl = encode_latents(ae, upsample_lr(lr[j:j+8], 4))
                zs.append(chain(zl, 0)); fs.append(first(zl, 0))
        with torch.no_grad():
            pf = psnr(decode_latents(ae, torch.cat(fs)).clamp(-1, 1), hr, y_channel=True)
        print("first-call x0", round(pf.mean().item(), 3), flush=True)
        with torch.no_grad():
            p = psnr(decode_latents(ae, torch.cat(zs)).clamp(-1, 1), hr, y_channel=True)
        d = p - base
        print("eval", kind, "train", TRAIN, "kappa", KAPPA, len(hr), round(p.mean().item(), 3), "vs bic", round(base.mean().item(), 3), "d", round(d.mean().item(), 3), "above", int((d > 0).sum()), flush=True)
