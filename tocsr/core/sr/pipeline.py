"""The production inference path: `TOCSRPipeline(image).images[0]`, diffusers-style.

What it guarantees, and how:
* exact output size (H*scale, W*scale) for any input size: tiles are padded to the backbone's
  alignment (reflect, or replicate where the tile is smaller than the pad) and cropped back;
* bounded memory on large images: the LR image is processed in tiles with feathered overlaps,
  accumulated in row bands; only the uint8 output and one band of float buffers are ever whole;
* no seams: every tile is computed with real neighbouring pixels around it (cropped off after),
  overlapping tiles are blended with linear ramps (no hard tile borders), and colour
  correction runs after tiling with global statistics (AdaIN) or in bands with a margin (wavelet);
* half precision with a NaN guard: a tile whose output is not finite in fp16/bf16 is recomputed in
  fp32 (counted in the result's info);
* grey, RGBA and 16-bit inputs: grey comes back grey, alpha is upscaled bicubically and re-attached,
  16-bit is processed at 8 bits (noted). Inputs smaller than 2 px are refused with a clear message.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tocsr.core.errors import ConfigError, TocsrError
from tocsr.core.models.autoencoder import AUTOENCODER_CLASSES
from tocsr.core.resize import bicubic_upscale
from tocsr.core.sr import colorfix
from tocsr.core.sr.info import SRModelInfo
from tocsr.core.sr.models import OneStepStudent, PerDegradationStudent, default_degradation, load_student
from tocsr.core.sr.onestep import OneStepSR
from tocsr.core.sr.parts import deployed_branch, deployed_decoder, deployed_encoder
from tocsr.core.sr.router import ROUTER_DIR, DegradationRouter, RouteThenRun

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_SIDE = 2


@dataclass
class UpscaleOutput:
    images: list[Image.Image]
    info: list[dict[str, Any]] = field(default_factory=list)


class TOCSRPipeline:
    def __init__(self, autoencoder, student: OneStepStudent | PerDegradationStudent, scale: int, device: str | torch.device = "cpu",
                 dtype: str = "fp32", tile_lr: int = 128, overlap_lr: int = 8, color_fix: str = "wavelet",
                 context_lr: int = 16, degradation: str | None = None,
                 decoder: torch.nn.Module | dict[str, torch.nn.Module] | None = None,
                 encoder: torch.nn.Module | dict[str, torch.nn.Module] | None = None,
                 router: DegradationRouter | None = None, branch: torch.nn.Module | None = None):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        if color_fix not in ("wavelet", "adain", "none"):
            raise ConfigError(f"color_fix {color_fix!r}: expected wavelet, adain or none")
        self.device, self.dtype_name, self.dtype = torch.device(device), dtype, DTYPES[dtype]
        # A per-degradation model runs only the student for what made the input (checked here, not at the
        # first tile). Unnamed: the router's answer for each whole image where the model has a router (blind), else
        # the model's default (Real-ESRGAN-like, real photographs). A blind student takes none.
        self.router = None if degradation is not None or router is None else router.eval()
        names = self.router.kinds if self.router is not None else (degradation,)
        self.degradation = "routed" if self.router is not None else degradation or student.default_degradation
        # each degradation's whole model: its student, and that student's own parts where each has its own
        whole = OneStepSR(autoencoder.eval(), student.eval(), scale, decoder, encoder, branch)
        self.models = {name: torch.nn.Module.to(whole.for_degradation(name), self.device, self.dtype)
                       for name in names}
        self._fp32: dict[str | None, torch.nn.Module] = {}
        student = student.for_degradation(names[0])
        self.scale, self.color_fix = scale, color_fix
        levels = len(student.backbone.unet.config.block_out_channels)
        # LR pixels per latent-grid step the backbone needs: 8 (autoencoder) * 2^(levels-1) / scale
        self.align = max(1, 8 * 2 ** (levels - 1) // scale)
        self.tile = max(self.align, tile_lr // self.align * self.align)
        self.overlap = min(overlap_lr, self.tile // 2)
        # Real neighbouring pixels read around each tile and cropped off after: the upsampler and
        # the networks see true context at tile borders instead of padding (a seam source otherwise).
        # A multiple of the alignment, so the context window starts on the grid too (see _spans).
        self.context = -(-context_lr // self.align) * self.align

    @property
    def model(self) -> torch.nn.Module:
        """What one call runs on a tile (the one model; routed: the router, then the default degradation's model), at
        the pipeline's device and precision: what is timed and exported."""
        first = self.models[next(iter(self.models))]
        if self.router is None:
            return first
        default = self.models[default_degradation(tuple(self.models))]
        # a copy of the router: the pipeline's own stays in fp32 on the CPU, where it reads whole images
        return RouteThenRun(torch.nn.Module.to(copy.deepcopy(self.router), self.device, self.dtype), default)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> TOCSRPipeline:
        root = Path(folder)
        info = SRModelInfo.load(root)
        ae_cfg = json.loads((root / "autoencoder" / "config.json").read_text())
        ae = AUTOENCODER_CLASSES[ae_cfg["_class_name"]].from_pretrained(root / "autoencoder")
        student = load_student(root / "student")
        router = DegradationRouter.from_pretrained(root / ROUTER_DIR) if info.config.routes else None
        return cls(ae, student, info.scale, decoder=deployed_decoder(root, info.decoder, info.degradations),
                   encoder=deployed_encoder(root, info.encoder, info.degradations), router=router,
                   branch=deployed_branch(root, info.config.pixel_branch_width), **kwargs)

    # ------------------------------------------------------------------ one tile
    def _run(self, lr01: torch.Tensor, model: OneStepSR, dtype: torch.dtype) -> torch.Tensor:
        with torch.inference_mode():
            return (model(lr01.to(self.device, dtype) * 2 - 1).float() + 1) / 2

    def _tile(self, lr01: torch.Tensor, stats: dict[str, int], name: str | None) -> torch.Tensor:
        out = self._run(lr01, self.models[name], self.dtype)
        if not torch.isfinite(out).all():
            if name not in self._fp32:
                self._fp32[name] = torch.nn.Module.to(copy.deepcopy(self.models[name]), dtype=torch.float32)
            out = self._run(lr01, self._fp32[name], torch.float32)
            stats["fp32_fallbacks"] += 1
        stats["tiles"] += 1
        return out.cpu()

    def _padded(self, lr: np.ndarray, y0: int, x0: int, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        t = torch.from_numpy(np.ascontiguousarray(lr[y0:y0 + h, x0:x0 + w])).permute(2, 0, 1)[None].float() / 255
        ph, pw = (-h) % self.align, (-w) % self.align
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            t = F.pad(t, (0, pw, 0, ph), mode=mode)
        return t, h, w

    def _spans(self, size: int) -> list[tuple[int, int]]:
        """(start, length) of the tiles along one side of the LR image.

        Every start is a multiple of `align`, the LR pixels per step of the backbone's coarsest latent
        grid, so each tile sees the same pixel-to-latent phase an untiled run sees. A tile off that grid
        computes a visibly different image (shifting the input by 3 px changed the output by 2.7/255 on
        average, max 31; by 8 px, 0.03). The last tile is widened (by < align) to end at the border.
        """
        if size <= self.tile:
            return [(0, size)]
        stride = max(self.align, (self.tile - self.overlap) // self.align * self.align)
        starts = list(range(0, size - self.tile, stride))
        last = (size - self.tile) // self.align * self.align
        if starts[-1] < last:
            starts.append(last)
        return [(p, self.tile) for p in starts[:-1]] + [(starts[-1], size - starts[-1])]

    def _ramp(self, n: int, left: bool, right: bool) -> np.ndarray:
        ov = self.overlap * self.scale
        w = np.ones(n, dtype=np.float32)
        if ov > 0:
            ramp = (np.arange(ov, dtype=np.float32) + 0.5) / ov
            if left:
                w[:ov] = np.minimum(w[:ov], ramp)
            if right:
                w[n - ov:] = np.minimum(w[n - ov:], ramp[::-1])
        return w

    # ------------------------------------------------------------------ whole image
    def upscale_array(self, lr: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """uint8 (h, w, 3) -> uint8 (h*s, w*s, 3)."""
        h, w = lr.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise TocsrError(f"input is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
        s = self.scale
        H, W = h * s, w * s
        # one decision for the whole image, before tiling: tiles routed apart would meet at seams
        name = next(iter(self.models)) if self.router is None else self.router.route(
            torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float() / 255 * 2 - 1)[0]
        out = np.empty((H, W, 3), dtype=np.uint8)
        stats = {"tiles": 0, "fp32_fallbacks": 0}
        ys, xs = self._spans(h), self._spans(w)
        band_top, acc, wsum = 0, None, None
        for r, (y0, th) in enumerate(ys):
            y1 = y0 + th
            if acc is None:
                acc = np.zeros((H - band_top if len(ys) == 1 else (y1 * s - band_top), W, 3), np.float32)
                wsum = np.zeros((acc.shape[0], W, 1), np.float32)
            need = y1 * s - band_top
            if acc.shape[0] < need:
                acc = np.concatenate([acc, np.zeros((need - acc.shape[0], W, 3), np.float32)])
                wsum = np.concatenate([wsum, np.zeros((need - wsum.shape[0], W, 1), np.float32)])
            wy = self._ramp(th * s, r > 0, r < len(ys) - 1)
            for c, (x0, tw) in enumerate(xs):
                cy0, cx0 = max(0, y0 - self.context), max(0, x0 - self.context)
                cy1, cx1 = min(h, y0 + th + self.context), min(w, x0 + tw + self.context)
                tile, _, _ = self._padded(lr, cy0, cx0, cy1 - cy0, cx1 - cx0)
                oy, ox = (y0 - cy0) * s, (x0 - cx0) * s
                hr = self._tile(tile, stats, name)[0, :, oy:oy + th * s, ox:ox + tw * s].permute(1, 2, 0).numpy()
                wgt = (wy[:, None] * self._ramp(tw * s, c > 0, c < len(xs) - 1)[None, :])[..., None]
                a = y0 * s - band_top
                acc[a:a + th * s, x0 * s:(x0 + tw) * s] += hr * wgt
                wsum[a:a + th * s, x0 * s:(x0 + tw) * s] += wgt
            done_to = ys[r + 1][0] * s if r + 1 < len(ys) else H
            rows = done_to - band_top
            out[band_top:done_to] = np.clip(acc[:rows] / np.maximum(wsum[:rows], 1e-8) * 255 + 0.5, 0, 255).astype(np.uint8)
            acc, wsum, band_top = acc[rows:], wsum[rows:], done_to
        info = {"input_size": [w, h], "output_size": [W, H], "dtype": self.dtype_name, "tile_lr": self.tile,
                "overlap_lr": self.overlap, "color_fix": self.color_fix,
                "degradation": name if self.router is not None else self.degradation,
                "routed": self.router is not None, **stats}
        if self.color_fix != "none":
            self._color_fix(out, lr)
        return out, info

    def _color_fix(self, out: np.ndarray, lr: np.ndarray) -> None:
        """In place, in bands of rows; the wavelet swap reads REACH rows of margin on each side."""
        s, H = self.scale, out.shape[0]
        if self.color_fix == "adain":
            ref_mean, ref_std = colorfix.channel_stats(lr)
            sums, sq, n = np.zeros(3), np.zeros(3), 0
            for a in range(0, H, 512):
                block = out[a:a + 512].reshape(-1, 3).astype(np.float64) / 255
                sums += block.sum(0)
                sq += (block ** 2).sum(0)
                n += len(block)
            mean = sums / n
            std = np.sqrt(np.maximum(sq / n - mean ** 2, 1e-8))
            om, osd = torch.tensor(mean).float().view(1, 3, 1, 1), torch.tensor(std).float().view(1, 3, 1, 1)
            for a in range(0, H, 512):
                x = torch.from_numpy(out[a:a + 512]).permute(2, 0, 1)[None].float() / 255
                y = colorfix.adain_fix(x, om, osd, ref_mean, ref_std)
                out[a:a + 512] = (y[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            return
        reach = colorfix.REACH
        band = max(256, 4 * reach)
        original_tail = None    # the rows just above the band, as they were before correction
        for a in range(0, H, band):
            b = min(H, a + band)
            lo, hi = max(0, a - reach), min(H, b + reach)
            src = out[lo:hi].copy()
            if original_tail is not None and a > 0:
                src[: a - lo] = original_tail[-(a - lo):]
            original_tail = out[max(0, b - reach):b].copy()
            x = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 255
            lr_lo, lr_hi = lo // s, math.ceil(hi / s)
            ref_lr = torch.from_numpy(np.ascontiguousarray(lr[lr_lo:lr_hi])).permute(2, 0, 1)[None].float() / 255
            ref = bicubic_upscale(ref_lr, s, 0, 1)
            ref = ref[:, :, lo - lr_lo * s: lo - lr_lo * s + (hi - lo)]
            fixed = colorfix.wavelet_fix(x, ref)[0, :, a - lo: a - lo + (b - a)]
            out[a:b] = (fixed.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)

    # ------------------------------------------------------------------ public API
    def __call__(self, image: Image.Image | np.ndarray | list) -> UpscaleOutput:
        images = image if isinstance(image, list) else [image]
        results, infos = [], []
        for img in images:
            pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
            rgb, alpha, mode_note = _split_modes(pil)
            out, info = self.upscale_array(rgb)
            result = Image.fromarray(out, "RGB")
            if mode_note == "grey":
                result = result.convert("L")
            if alpha is not None:
                result = result.convert("RGBA")
                result.putalpha(Image.fromarray(alpha).resize(result.size, Image.BICUBIC))
            info["source_mode"] = pil.mode
            results.append(result)
            infos.append(info)
        return UpscaleOutput(results, infos)


def _split_modes(pil: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(RGB uint8, alpha or None, note) for any PIL mode."""
    alpha = None
    if pil.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(pil, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None, "grey"
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3].copy()
        return np.asarray(rgba.convert("RGB")).copy(), alpha, "alpha"
    if pil.mode in ("L", "1"):
        return np.repeat(np.asarray(pil.convert("L"))[..., None], 3, axis=2), None, "grey"
    return np.asarray(pil.convert("RGB")).copy(), None, "rgb"
