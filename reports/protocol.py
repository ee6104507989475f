"""`tocsr eval`: the SR field's evaluation protocol on any folder of photographs.

    HR/                  ground truth (Set5, Set14, Urban100, DIV2K-val, RealSR, or your own photographs)
    LR/ (optional)       the paired low-resolution inputs; without it each HR image is degraded here
                         (MATLAB bicubic, or the Real-ESRGAN pipeline with a per-image seed)

Whole images, as the field scores them: HR is cropped to a multiple of the scale ("modcrop"),
every method upscales the same 8-bit LR image, PSNR-Y and SSIM-Y are computed on 8-bit luma with a
`scale`-pixel border removed (equal to pyiqa's `psnry`/`ssim` with `color_space="ycbcr"`, BasicSR's
convention); learned metrics whose weights are in pyiqa's cache are added, the others reported
unavailable with the file they expected. Every mean carries a bootstrap interval over images, and
every method's paired difference to bicubic and to the best baseline carries its own.

Example:
    >>> images = find_images("Set5/HR", "Set5/LRbicx4", 4)
    >>> result = evaluate_folder(images, [interpolation("bicubic", 4)], 4, "given")
    >>> print("\\n".join(result.describe()))
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from reports.intervals import Interval, bootstrap_mean, paired_difference
from tocsr.core.artifacts import FolderRecord, atomic_write_text
from tocsr.core.errors import ConfigError
from tocsr.core.imageio import IMAGE_SUFFIXES, read_image
from tocsr.core.metrics import psnr, ssim_y
from tocsr.core.training import progress

# How benchmark folders name the LR twin of HR image `stem` (DIV2K: 0801x4; Set5/Set14 LRbicx4
# folders: the same name; RealSR: Canon_001_HR / Canon_001_LR4; others: _x4).
LR_NAME_PATTERNS = ("{stem}", "{stem}x{s}", "{stem}_x{s}", "{stem}_LR{s}", "{base}_LR{s}", "{base}_LR")
HIGHER_IS_BETTER = {"psnr_y": True, "ssim_y": True, "lpips": False, "dists": False, "niqe": False,
                    "musiq": True, "maniqa-pipal": True, "clipiqa": True}
TILE_LR_PX = 192          # module methods run on LR tiles this size (plus context) to bound memory
TILE_CONTEXT_PX = 16      # real neighbouring pixels around each tile, cropped off after


@dataclass(frozen=True)
class EvalImage:
    name: str
    hr_path: Path
    lr_path: Path | None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def lr_names(stem: str, scale: int) -> list[str]:
    """The LR stems this suite recognises for HR image `stem`, in the order they are tried."""
    base = stem[:-3] if stem.endswith("_HR") else stem
    return list(dict.fromkeys(p.format(stem=stem, base=base, s=scale) for p in LR_NAME_PATTERNS))


def find_images(hr_dir: str | Path, lr_dir: str | Path | None, scale: int) -> list[EvalImage]:
    """HR images and their LR twins; every HR image must have one when an LR folder is given."""
    hr_root = Path(hr_dir)
    if not hr_root.is_dir():
        raise ConfigError(f"--hr {hr_root}: not a folder; give the folder of ground-truth images")
    hrs = _images_in(hr_root)
    if not hrs:
        raise ConfigError(f"--hr {hr_root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if lr_dir is None:
        return [EvalImage(p.stem, p, None) for p in hrs]
    lr_root = Path(lr_dir)
    if not lr_root.is_dir():
        raise ConfigError(f"--lr {lr_root}: not a folder; give the folder of LR inputs, or leave --lr out to "
                          "degrade the HR images here")
    by_stem = {p.stem: p for p in _images_in(lr_root) if p.parent == lr_root}
    images, missing = [], []
    for p in hrs:
        match = next((by_stem[n] for n in lr_names(p.stem, scale) if n in by_stem), None)
        (images.append(EvalImage(p.stem, p, match)) if match else missing.append(p.stem))
    if missing:
        expected = ", ".join(lr_names(missing[0], scale))
        raise ConfigError(f"--lr {lr_root}: no LR image for {len(missing)} of {len(hrs)} HR images "
                          f"(first: {missing[0]!r}; looked for {expected} with any of {', '.join(IMAGE_SUFFIXES)})")
    return images


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255      # a copy: PIL arrays are read-only


def _to_u8(x01: torch.Tensor) -> np.ndarray:
    return (x01[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def load_pair(image: EvalImage, scale: int, degradation: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of `scale`, LR) as uint8; LR read, or made here by `degradation`."""
    from tocsr.core.sr.degradations import degrade

    hr, _, _ = read_image(image.hr_path)
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    if h == 0 or w == 0:
        raise ConfigError(f"{image.hr_path}: {hr.shape[1]}x{hr.shape[0]} px is smaller than the scale x{scale}")
    hr = hr[:h, :w]
    if image.lr_path is not None:
        lr, _, _ = read_image(image.lr_path)
        if lr.shape[:2] != (h // scale, w // scale):
            raise ConfigError(f"{image.lr_path}: {lr.shape[1]}x{lr.shape[0]} px, but HR {image.hr_path.name} "
                              f"cropped to a multiple of {scale} is {w}x{h}: expected {w // scale}x{h // scale} "
                              f"(is --scale right?)")
        return hr, lr
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(image.name.encode()))
    return hr, _to_u8(degrade(_to_tensor(hr), scale, degradation, gen))


@dataclass
class EvalMethod:
    """One row of the table: a name, what it is, and how it turns an 8-bit LR image into an 8-bit SR image."""

    name: str
    kind: str                                   # interpolation | baseline | external | tocsr
    source: str                                 # where it came from: a folder, a checkpoint, a built-in
    run: Callable[[np.ndarray], np.ndarray]


def run_module_tiled(module: nn.Module, lr: np.ndarray, scale: int, tile: int = TILE_LR_PX,
                     context: int = TILE_CONTEXT_PX, device: torch.device | str = "cpu") -> np.ndarray:
    """A [0, 1] -> [0, 1] module on a whole 8-bit image, in tiles with real context cropped off after
    (exact for receptive fields within `context` LR pixels, and memory bounded by the tile). Each tile goes to
    `device` (where the module's weights are) and its output comes back to the CPU."""
    x = _to_tensor(lr)
    h, w = lr.shape[:2]
    out = torch.zeros(1, 3, h * scale, w * scale)
    with torch.no_grad():
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
                ya, xa = max(0, y0 - context), max(0, x0 - context)
                yb, xb = min(h, y1 + context), min(w, x1 + context)
                sr = module(x[..., ya:yb, xa:xb].to(device)).float().clamp(0, 1).cpu()
                oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
                out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                    sr[..., oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return _to_u8(out)


def module_method(name: str, kind: str, source: str, module: nn.Module, scale: int) -> EvalMethod:
    module = module.eval()
    return EvalMethod(name, kind, source, lambda lr: run_module_tiled(module, lr, scale))


INTERPOLATIONS = ("bicubic", "bicubic-torch", "bilinear", "nearest", "lanczos")


def interpolation(name: str, scale: int) -> EvalMethod:
    """bicubic is MATLAB's imresize (the field's baseline); bicubic-torch torch's kernel; lanczos PIL's."""
    from reports.evaluate import LanczosSR
    from tocsr.core.baselines import Interpolate

    if name not in INTERPOLATIONS:
        raise ConfigError(f"--baseline {name!r}: not an interpolation ({', '.join(INTERPOLATIONS)}); give a trained "
                          "baseline or a checkpoint as NAME=PATH")
    module = LanczosSR(scale) if name == "lanczos" else Interpolate(scale, name)
    return module_method(name, "interpolation", "built-in", module, scale)


def baseline_method(spec: str, scale: int) -> EvalMethod:
    """`--baseline NAME` (an interpolation) or `--baseline NAME=PATH`: PATH a folder a run trained
    (<run>/baselines/<name>) or a checkpoint spandrel recognises (.pth, .safetensors)."""
    from tocsr.core.baselines import load_baseline, load_external_checkpoint

    if "=" not in spec:
        return interpolation(spec, scale)
    name, _, path_text = spec.partition("=")
    path = Path(path_text)
    if not name:
        raise ConfigError(f"--baseline {spec!r}: the name before '=' is empty; write NAME=PATH")
    if path.is_dir():
        if not (path / "baseline.json").is_file():
            raise ConfigError(f"--baseline {spec!r}: {path} has no baseline.json; give a folder a run trained "
                              "(<run>/baselines/<name>) or a checkpoint file")
        model, meta = load_baseline(path)
        got, kind = int(meta["scale"]), "baseline"
    else:
        model, got = load_external_checkpoint(path)
        kind = "external"
    if got != scale:
        raise ConfigError(f"--baseline {spec!r}: the model upscales x{got}; this evaluation is x{scale}")
    return module_method(name, kind, str(path), model, scale)


def tocsr_method(folder: str | Path, scale: int, name: str | None = None, **pipeline_kwargs: Any) -> EvalMethod:
    """A TOC-SR model folder (`tocsr sr --out DIR`) through the deployed path, TOCSRPipeline."""
    from tocsr.core.sr.pipeline import TOCSRPipeline

    pipe = TOCSRPipeline.from_pretrained(folder, **pipeline_kwargs)
    if pipe.scale != scale:
        raise ConfigError(f"--method {folder}: the model upscales x{pipe.scale}; this evaluation is x{scale}")
    label = name or f"tocsr:{Path(folder).name}"
    return EvalMethod(label, "tocsr", str(folder), lambda lr: pipe.upscale_array(lr)[0])


def require_method(name: str, names: list[str]) -> None:
    """Refuse, in one line, a method name (`tocsr eval --against`) that is not among those scored."""
    if name not in names:
        raise ConfigError(f"--against {name!r}: no method of that name is scored (methods: {', '.join(names)}; a "
                          "model folder's method is named tocsr:<folder name>)")


@dataclass(frozen=True)
class EvalResult(FolderRecord):
    FILE_NAME: ClassVar[str] = "eval.json"
    KIND: ClassVar[str] = "tocsr.eval"
    SCHEMA_VERSION: ClassVar[int] = 1
    REBUILD: ClassVar[str] = "score the folder again with `tocsr eval --out {folder}`"

    scale: int
    lr_source: str                               # "given" (an LR folder) or the degradation applied here
    seed: int
    hr_dir: str
    lr_dir: str | None
    images: tuple[str, ...]
    methods: tuple[dict[str, str], ...]          # name, kind, source; in table order
    per_image: dict[str, dict[str, list[float]]]  # method -> metric -> one value per image (order of `images`)
    unavailable: dict[str, str] = field(default_factory=dict)    # metric -> why it has no figure
    environment: dict[str, Any] = field(default_factory=dict, compare=False)

    def metrics(self) -> list[str]:
        return list(next(iter(self.per_image.values())))

    def interval(self, method: str, metric: str) -> Interval:
        return bootstrap_mean(self.per_image[method][metric])

    def _best(self, kinds: tuple[str, ...], metric: str) -> str | None:
        names = [m["name"] for m in self.methods if m["kind"] in kinds]
        if not names:
            return None
        sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
        return max(names, key=lambda n: sign * float(np.mean(self.per_image[n][metric])))

    def best_baseline(self, metric: str = "psnr_y") -> str | None:
        """The trained or external baseline with the best mean `metric` (None when there is none)."""
        return self._best(("baseline", "external"), metric)

    def best_interpolation(self, metric: str = "psnr_y") -> str | None:
        """The interpolation with the best mean `metric`: it costs nothing to train, so the best one (often Lanczos,
        not bicubic) is the floor a trained method has to beat."""
        return self._best(("interpolation",), metric)

    def paired(self, method: str, reference: str, metric: str) -> Interval:
        return paired_difference(self.per_image[method][metric], self.per_image[reference][metric])

    def verdicts(self) -> list[str]:
        """What these images support on PSNR-Y, in words (reports.verdicts.verdict): each TOC-SR model against the
        best baseline and the best interpolation, paired by image; with no TOC-SR model, the best baseline against
        the best interpolation. Only a difference whose interval excludes 0 is called a lead."""
        from reports.verdicts import verdict

        best, interp = self.best_baseline(), self.best_interpolation()
        ours = [m["name"] for m in self.methods if m["kind"] == "tocsr"]
        pairs = [(n, ref) for n in ours for ref in (best, interp) if ref is not None]
        if not ours and best is not None and interp is not None:
            pairs = [(best, interp)]
        lines = []
        for n, ref in pairs:
            diff = self.paired(n, ref, "psnr_y")
            lines.append(f"{verdict(diff.to_dict(), n, ref)}: {n} minus {ref} {diff.text(3)} dB")
        return lines

    def against(self, reference: str) -> list[str]:
        """Every other method minus `reference`, paired by image, for each metric (`tocsr eval --against`): how each
        variant compares with the one it changes, where separate intervals over images overlap."""
        names = [m["name"] for m in self.methods]
        require_method(reference, names)
        lines = [f"minus {reference}, paired by image [95% bootstrap interval over images]:"]
        for k in self.metrics():
            better = "higher" if HIGHER_IS_BETTER.get(k, True) else "lower"
            lines.append(f"  {k} ({better} is better): " + ", ".join(
                f"{n} {self.paired(n, reference, k).text(3)}" for n in names if n != reference))
        return lines

    def summary(self) -> dict[str, Any]:
        """Means with intervals, and paired differences vs bicubic and vs the best baseline."""
        best = self.best_baseline()
        out: dict[str, Any] = {"best_baseline": best, "methods": {}}
        for m in self.methods:
            name = m["name"]
            entry: dict[str, Any] = {k: self.interval(name, k).to_dict() for k in self.metrics()}
            for ref in ("bicubic", best):
                if ref is not None and ref != name and ref in self.per_image:
                    entry[f"minus_{ref}"] = {k: self.paired(name, ref, k).to_dict() for k in self.metrics()}
            out["methods"][name] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "lr_source": self.lr_source, "seed": self.seed, "hr_dir": self.hr_dir,
                "lr_dir": self.lr_dir, "images": list(self.images), "methods": [dict(m) for m in self.methods],
                "per_image": self.per_image, "unavailable": self.unavailable, "summary": self.summary()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        return cls(scale=int(d["scale"]), lr_source=d["lr_source"], seed=int(d["seed"]), hr_dir=d["hr_dir"],
                   lr_dir=d["lr_dir"], images=tuple(d["images"]), methods=tuple(d["methods"]),
                   per_image=d["per_image"], unavailable=d.get("unavailable", {}), environment=d.get("environment", {}))

    def save(self, folder: str | Path, environment: dict[str, Any]) -> Path:
        atomic_write_text(Path(folder) / "per_image.csv", self.per_image_csv())
        return super().save(folder, environment)

    def per_image_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        metrics = self.metrics()
        writer.writerow(["image", "method", *metrics])
        for m in self.methods:
            for i, image in enumerate(self.images):
                writer.writerow([image, m["name"], *(f"{self.per_image[m['name']][k][i]:.6f}" for k in metrics)])
        return buf.getvalue()

    def describe(self) -> list[str]:
        """The table `tocsr eval` prints: means [95% bootstrap interval over images], paired differences."""
        best = self.best_baseline()
        lines = [f"x{self.scale}, {len(self.images)} images of {self.hr_dir}, LR {self.lr_source}; "
                 "PSNR-Y / SSIM-Y on 8-bit luma, border crop = scale; [95% bootstrap interval over images]",
                 f"{'method':<28} {'PSNR-Y dB':>26} {'SSIM-Y':>26} {'PSNR-Y minus bicubic':>26}"
                 + (f" {'minus ' + best:>26}" if best else "")]
        for m in self.methods:
            name = m["name"]
            row = f"{name:<28} {self.interval(name, 'psnr_y').text(2):>26} {self.interval(name, 'ssim_y').text(4):>26}"
            row += f" {self.paired(name, 'bicubic', 'psnr_y').text(3) if name != 'bicubic' and 'bicubic' in self.per_image else '':>26}"
            if best:
                row += f" {self.paired(name, best, 'psnr_y').text(3) if name != best else '':>26}"
            lines.append(row)
        for k in self.metrics():
            if k not in ("psnr_y", "ssim_y"):
                lines.append(f"{k} ({'higher' if HIGHER_IS_BETTER.get(k, True) else 'lower'} is better): " + ", ".join(
                    f"{m['name']} {self.interval(m['name'], k).text(3)}" for m in self.methods))
        lines += [f"{k}: n/a ({why})" for k, why in sorted(self.unavailable.items())]
        said = self.verdicts()
        if said:
            lines += ["what these images support (PSNR-Y, paired by image; higher is better):",
                      *(f"  {line}" for line in said)]
        return lines


def _extra_metrics(names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """pyiqa metrics beyond PSNR/SSIM: those that load offline, and why the others do not."""
    if not names:
        return {}, {}
    from reports.metrics import MetricSuite

    suite = MetricSuite.load(names)
    return suite.metrics, dict(suite.unavailable)


def evaluate_folder(images: list[EvalImage], methods: list[EvalMethod], scale: int, degradation: str = "bicubic",
                    seed: int = 0, extra_metrics: tuple[str, ...] = (), hr_dir: str = "", lr_dir: str | None = None
                    ) -> EvalResult:
    """Every method on every image (the same LR for all), scored per image."""
    from reports.metrics import FULL_REFERENCE

    if not methods:
        raise ConfigError("nothing to evaluate: give at least one --method or --baseline")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"method names must be unique, got {names}; name checkpoints with NAME=PATH")
    extra, unavailable = _extra_metrics(extra_metrics)
    per_image: dict[str, dict[str, list[float]]] = {m.name: {"psnr_y": [], "ssim_y": [], **{k: [] for k in extra}}
                                                    for m in methods}
    with progress("eval/images", len(images) * len(methods)) as bar:
        for image in images:
            hr, lr = load_pair(image, scale, degradation, seed)
            hr_t = _to_tensor(hr) * 2 - 1
            for m in methods:
                sr = m.run(lr)
                if sr.shape != hr.shape:
                    raise ConfigError(f"{m.name} returned {sr.shape[1]}x{sr.shape[0]} px for {image.name}; "
                                      f"expected {hr.shape[1]}x{hr.shape[0]} (x{scale} of the LR image)")
                sr_t = _to_tensor(sr) * 2 - 1
                scores = per_image[m.name]
                scores["psnr_y"].append(psnr(sr_t, hr_t, y_channel=True, crop=scale).item())
                scores["ssim_y"].append(ssim_y(sr_t, hr_t, crop=scale).item())
                for k, metric in list(extra.items()):
                    try:
                        with torch.no_grad():
                            value = metric((sr_t + 1) / 2, (hr_t + 1) / 2) if k in FULL_REFERENCE \
                                else metric((sr_t + 1) / 2)
                    except (RuntimeError, ValueError) as err:     # e.g. an image too small for this metric
                        unavailable[k] = f"failed on {image.name} ({m.name}): {str(err).splitlines()[0][:120]}"
                        del extra[k]
                        for per_method in per_image.values():
                            per_method.pop(k, None)
                        continue
                    scores[k].append(float(torch.as_tensor(value).float().mean()))
                bar.update(1)
    return EvalResult(scale=scale, lr_source="given" if lr_dir else degradation, seed=seed, hr_dir=hr_dir,
                      lr_dir=lr_dir, images=tuple(i.name for i in images),
                      methods=tuple({"name": m.name, "kind": m.kind, "source": m.source} for m in methods),
                      per_image=per_image, unavailable=unavailable)
