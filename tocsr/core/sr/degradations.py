"""Degradations for SR training and evaluation, in torch, seeded, on the fly.

* `bicubic`: MATLAB's antialiased bicubic downscale by x2/x4 (the classical benchmark degradation).
* `realesrgan`: Real-ESRGAN's second-order pipeline (Wang et al., 2021), as its reference code
  (realesrgan/models/realesrgan_model.py, basicsr's noise functions) runs it: twice [blur with a random
  kernel (isotropic/anisotropic/generalised/plateau Gaussian, or sinc) -> random resize -> Gaussian or
  Poisson noise -> JPEG (the first time)], the second resize relative to the LR size; then the final
  resize to the LR size with an optional sinc filter, in either order with the last JPEG; then rounding
  to 8 bits. Parameters live in `RealESRGANConfig` (the released x4plus training options). One
  departure: the reference degrades an unsharp-masked copy of the HR image (and trains towards it);
  here the HR image itself is degraded.
Images are (B, 3, H, W) in [0, 1]. Every random choice comes from the generator passed in, so a seed
reproduces the exact LR image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tocsr.core.resize import matlab_imresize


@dataclass(frozen=True)
class RealESRGANConfig:
    kernel_size_range: tuple[int, int] = (7, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # iso, aniso, gen-iso, gen-aniso, plateau-iso, plateau-aniso
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)               # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)                            # on the 0..255 scale
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    second_blur_prob: float = 0.8
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    noise_sigma2: tuple[float, float] = (1.0, 25.0)
    poisson_scale2: tuple[float, float] = (0.05, 2.5)
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    final_sinc_prob: float = 0.8


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical benchmark LR image: MATLAB's imresize(hr, 1/scale, 'bicubic'), as Set5/Set14/DIV2K's
    LRbicx4 folders were made."""
    return matlab_imresize(hr, 1 / scale).clamp(0, 1)


# ---------------------------------------------------------------- kernels
def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.meshgrid(ax, ax, indexing="ij")


def _cov_inv(sx: float, sy: float, theta: float) -> torch.Tensor:
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sx * sx, sy * sy], dtype=torch.float64)) @ rot.T
    return torch.linalg.inv(cov)


def gaussian_kernel(size: int, sx: float, sy: float, theta: float, beta: float = 2.0, plateau: bool = False) -> torch.Tensor:
    """Anisotropic (generalised / plateau-shaped) Gaussian kernel, normalised to sum 1."""
    yy, xx = _grid(size)
    inv = _cov_inv(sx, sy, theta)
    q = inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    k = 1.0 / (q.pow(beta / 2) + 1) if plateau else torch.exp(-0.5 * q.pow(beta / 2))
    return (k / k.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (jinc-like sinc) kernel, as Real-ESRGAN uses against ringing/overshoot."""
    yy, xx = _grid(size)
    r = torch.sqrt(xx * xx + yy * yy)
    r[r == 0] = 1e-9
    from scipy.special import j1

    k = torch.from_numpy(cutoff * j1((cutoff * r).numpy()) / (2 * np.pi * r.numpy()))
    c = (size - 1) // 2
    k[c, c] = cutoff ** 2 / (4 * np.pi)
    return (k / k.sum()).float()


def random_kernel(gen: torch.Generator, cfg: RealESRGANConfig, sigma: tuple[float, float], sinc_prob: float) -> torch.Tensor:
    size = 2 * int(torch.randint(cfg.kernel_size_range[0] // 2, cfg.kernel_size_range[1] // 2 + 1, (), generator=gen)) + 1
    if float(torch.rand((), generator=gen)) < sinc_prob:
        cutoff = _u(gen, np.pi / 3, np.pi) if size < 13 else _u(gen, np.pi / 5, np.pi)
        return sinc_kernel(size, cutoff)
    kind = int(torch.multinomial(torch.tensor(cfg.kernel_probs), 1, generator=gen))
    sx = _u(gen, *sigma)
    iso = kind in (0, 2, 4)
    sy = sx if iso else _u(gen, *sigma)
    theta = 0.0 if iso else _u(gen, -math.pi, math.pi)
    if kind in (0, 1):
        return gaussian_kernel(size, sx, sy, theta)
    if kind in (2, 3):
        return gaussian_kernel(size, sx, sy, theta, beta=_u(gen, *cfg.betag_range))
    return gaussian_kernel(size, sx, sy, theta, beta=_u(gen, *cfg.betap_range), plateau=True)


def filter2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    pad = k.shape[-1] // 2
    w = k.to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    # Reflection needs the image wider than the kernel's radius; the second blur runs after the random resize,
    # which takes a small crop (64 px HR) below a 21-tap kernel's radius: the edge pixels repeat there instead.
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode=mode), w, groups=x.shape[1])


# ---------------------------------------------------------------- noise
def add_gaussian_noise(x: torch.Tensor, sigma255: float, gray: bool, gen: torch.Generator) -> torch.Tensor:
    shape = (x.shape[0], 1, *x.shape[2:]) if gray else x.shape
    noise = torch.randn(shape, generator=gen).to(x) * sigma255 / 255.0
    return x + noise


def add_poisson_noise(x: torch.Tensor, scale: float, gray: bool, gen: torch.Generator) -> torch.Tensor:
    """basicsr's generate_poisson_noise_pt: the source rounded to 8 bits (its luma when grey), photon
    counts scaled by 2^ceil(log2(distinct levels)) per image, the noise relative to that source."""
    src = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if gray else x
    src = (src.clamp(0, 1) * 255).round() / 255
    vals = torch.tensor([2 ** math.ceil(math.log2(len(torch.unique(img)))) for img in src],
                        dtype=src.dtype).view(-1, 1, 1, 1)
    noisy = torch.poisson((src * vals).cpu(), generator=gen).to(x) / vals.to(x)
    return x + (noisy - src) * scale


# ---------------------------------------------------------------- JPEG in torch
_Y_TABLE = torch.tensor([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                         92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32).view(8, 8)
_C_TABLE = torch.full((8, 8), 99.0)
_C_TABLE[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=torch.float32)


def _dct_matrix() -> torch.Tensor:
    m = torch.zeros(8, 8, dtype=torch.float64)
    for k in range(8):
        for n in range(8):
            m[k, n] = math.cos(math.pi * (2 * n + 1) * k / 16) * (math.sqrt(1 / 8) if k == 0 else math.sqrt(2 / 8))
    return m.float()


_DCT = _dct_matrix()


def _blockwise(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Quantise one (B, H, W) plane, H and W multiples of 8, in 8x8 DCT blocks."""
    b, h, w = plane.shape
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    d = _DCT.to(plane)
    coef = d @ blocks @ d.T
    q = table.to(plane)
    coef = torch.round(coef / q) * q
    return (d.T @ coef @ d).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """Baseline JPEG (YCbCr, 4:2:0 chroma, standard tables scaled by quality) round trip."""
    quality = float(min(100.0, max(1.0, quality)))
    s = 5000.0 / quality if quality < 50 else 200.0 - 2 * quality
    ty = torch.clamp(torch.floor((_Y_TABLE * s + 50) / 100), 1, 255)
    tc = torch.clamp(torch.floor((_C_TABLE * s + 50) / 100), 1, 255)
    b, _, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    xp = F.pad(x.clamp(0, 1) * 255, (0, pw, 0, ph), mode="replicate")
    r, g, bl = xp[:, 0], xp[:, 1], xp[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * bl - 128
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
    y = _blockwise(y, ty)
    sub = lambda c: F.avg_pool2d(c[:, None], 2)[:, 0]  # noqa: E731
    cb = F.interpolate(_blockwise(F.pad(sub(cb), (0, (-(w + pw) // 2) % 8, 0, (-(h + ph) // 2) % 8)), tc)[:, None],
                       scale_factor=2, mode="nearest")[:, 0][..., :h + ph, :w + pw]
    cr = F.interpolate(_blockwise(F.pad(sub(cr), (0, (-(w + pw) // 2) % 8, 0, (-(h + ph) // 2) % 8)), tc)[:, None],
                       scale_factor=2, mode="nearest")[:, 0][..., :h + ph, :w + pw]
    y = y + 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return (rgb[..., :h, :w] / 255.0).clamp(0, 1)


# ---------------------------------------------------------------- pipelines
def _resize(x: torch.Tensor, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    mode = ["area", "bilinear", "bicubic"][int(torch.randint(0, 3, (), generator=gen))]
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(max(1, size[0]), max(1, size[1])), mode=mode, **kw)


def _degrade_once(x: torch.Tensor, gen: torch.Generator, cfg: RealESRGANConfig, first: bool,
                  lr_size: tuple[int, int]) -> torch.Tensor:
    if first or float(torch.rand((), generator=gen)) < cfg.second_blur_prob:
        x = filter2d(x, random_kernel(gen, cfg, cfg.blur_sigma if first else cfg.blur_sigma2, cfg.sinc_prob))
    up, down, _ = cfg.resize_probs if first else cfg.resize_probs2
    r = float(torch.rand((), generator=gen))
    rng = cfg.resize_range if first else cfg.resize_range2
    factor = _u(gen, 1.0, rng[1]) if r < up else (_u(gen, rng[0], 1.0) if r < up + down else 1.0)
    # The first resize scales the current image (F.interpolate's scale_factor floors); the second is
    # relative to the LR size the pipeline ends at (int(ori / scale * factor) in the reference).
    base = x.shape[-2:] if first else lr_size
    x = _resize(x, (int(base[0] * factor), int(base[1] * factor)), gen)
    gray = float(torch.rand((), generator=gen)) < cfg.gray_noise_prob
    if float(torch.rand((), generator=gen)) < cfg.gaussian_noise_prob:
        x = add_gaussian_noise(x, _u(gen, *(cfg.noise_sigma if first else cfg.noise_sigma2)), gray, gen)
    else:
        x = add_poisson_noise(x, _u(gen, *(cfg.poisson_scale if first else cfg.poisson_scale2)), gray, gen)
    x = x.clamp(0, 1)
    return jpeg(x, _u(gen, *(cfg.jpeg_range if first else cfg.jpeg_range2))) if first else x


def realesrgan_degrade(hr: torch.Tensor, scale: int, gen: torch.Generator,
                       cfg: RealESRGANConfig = RealESRGANConfig()) -> torch.Tensor:
    """Second-order Real-ESRGAN degradation of `hr` to exactly (H/scale, W/scale)."""
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    x = _degrade_once(hr, gen, cfg, first=True, lr_size=(h, w))
    x = _degrade_once(x, gen, cfg, first=False, lr_size=(h, w))
    final_sinc = float(torch.rand((), generator=gen)) < cfg.final_sinc_prob
    size = 2 * int(torch.randint(cfg.kernel_size_range[0] // 2, cfg.kernel_size_range[1] // 2 + 1, (), generator=gen)) + 1
    sinc = sinc_kernel(size, _u(gen, np.pi / 3, np.pi)) if final_sinc else None
    q = _u(gen, *cfg.jpeg_range2)
    mode = ["area", "bilinear", "bicubic"][int(torch.randint(0, 3, (), generator=gen))]
    kw = {} if mode == "area" else {"align_corners": False}
    if float(torch.rand((), generator=gen)) < 0.5:     # resize + sinc, then JPEG
        x = F.interpolate(x, size=(h, w), mode=mode, **kw)
        x = filter2d(x, sinc) if sinc is not None else x
        x = jpeg(x.clamp(0, 1), q)
    else:                                              # JPEG, then resize + sinc
        x = jpeg(x.clamp(0, 1), q)
        x = F.interpolate(x, size=(h, w), mode=mode, **kw)
        x = filter2d(x, sinc) if sinc is not None else x
    return (x.clamp(0, 1) * 255).round() / 255          # the LR image as saved: 8 bits


# The degradations with random parameters: another draw of one of these gives another LR image of the same crop.
DRAWN = ("realesrgan",)


def degrade(hr: torch.Tensor, scale: int, kind: str, gen: torch.Generator) -> torch.Tensor:
    """The front door: kind is 'bicubic' or 'realesrgan'."""
    if kind == "bicubic":
        return bicubic_down(hr, scale)
    if kind == "realesrgan":
        return realesrgan_degrade(hr, scale, gen)
    from tocsr.core.errors import ConfigError

    raise ConfigError(f"degradation {kind!r} does not exist; available: bicubic, realesrgan")
