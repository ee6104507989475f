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
model.unet.load_state_dict(torch.load(f"/tmp/p/tunet_{KIND}_{Q}_{STEPS}_{FLOOR}_{PRE}.pt")); model.eval()




hr, lr = eval_pairs(val, 128, 4, KIND, per_image=4)
base = psnr(bicubic_sr(4)(lr), hr, y_channel=True)
with torch.no_grad():
    z_hr = encode_latents(ae, hr); z_lr = encode_latents(ae, upsample_lr(lr, 4))
    ae_ceiling = psnr(decode_latents(ae, z_hr).clamp(-1, 1), hr, y_channel=True).mean().item()
    print("bicubic", base.mean().item(), "decode(encode(hr))", ae_ceiling)
    for tv in (2, 10, 25, 50, 100, 175, 250):
        tt = torch.full((len(z_hr),), tv, dtype=torch.long)
        noise = torch.randn(z_hr.shape, generator=torch.Generator().manual_seed(1))
        zt = sched.add_noise(z_hr, noise, tt)
        d = model(zt, tt, z_lr)
        y = zt / ab[tv].sqrt()
        p_d = psnr(decode_latents(ae, d).clamp(-1, 1), hr, y_channel=True).mean().item()
        p_y = psnr(decode_latents(ae, y).clamp(-1, 1), hr, y_channel=True).mean().item()
        lat = ((d - z_hr) ** 2).mean().item(), ((y - z_hr) ** 2).mean().item()
        print("t", tv, "D(z_hr noised)", round(p_d, 3), "y itself", round(p_y, 3), "latent mse D / y", [round(x, 5) for x in lat], flush=True)
