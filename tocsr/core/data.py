"""Training and evaluation images: a user's folder, or the photographs that ship inside packages.

The embedded default needs no download: the photographs bundled with scikit-image (and, where
installed, scikit-learn's and matplotlib's samples). A user's folder (`--data DIR`: DIV2K, LSDIR,
FFHQ...) is scanned recursively; images that cannot be used are skipped, counted and logged, so a
run never dies on one bad file. The train/validation split is by image and deterministic in the seed.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tocsr.core.errors import ConfigError
from tocsr.core.imageio import IMAGE_SUFFIXES, ImageReadError, read_image

log = logging.getLogger(__name__)

# Photographs and natural textures bundled inside scikit-image (no pooch download needed).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry", "camera", "brick", "grass", "gravel", "moon", "coins", "cell")


@dataclass
class Photo:
    name: str
    rgb: np.ndarray                  # (H, W, 3) uint8


@dataclass(frozen=True)
class LoadReport:
    source: str
    loaded: int
    converted: dict[str, int] = field(default_factory=dict)     # source mode -> count converted to RGB
    skipped: tuple[tuple[str, str], ...] = ()                     # (file, reason)

    def summary(self) -> str:
        conv = ", ".join(f"{k}: {v}" for k, v in sorted(self.converted.items())) or "none"
        return (f"{self.source}: {self.loaded} images loaded, converted to RGB ({conv}), "
                f"{len(self.skipped)} skipped")

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": self.loaded, "converted": self.converted,
                "skipped": [list(s) for s in self.skipped]}


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))


def load_default_photos() -> tuple[list[Photo], LoadReport]:
    """The embedded default data set: real photographs shipped inside installed packages."""
    import skimage.data

    photos = [Photo(n, _rgb(getattr(skimage.data, n)())) for n in SKIMAGE_PHOTOS]
    left, right, _ = skimage.data.stereo_motorcycle()
    photos += [Photo("motorcycle_left", _rgb(left)), Photo("motorcycle_right", _rgb(right))]
    skipped = []
    try:
        from sklearn.datasets import load_sample_images

        for name, img in zip(("china", "flower"), load_sample_images().images, strict=True):
            photos.append(Photo(name, _rgb(img)))
    except ImportError:
        skipped.append(("sklearn sample images", "scikit-learn not installed"))
    try:
        import matplotlib.cbook as cbook

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            from PIL import Image

            photos.append(Photo("grace_hopper", _rgb(np.asarray(Image.open(fh).convert("RGB")))))
    except (ImportError, OSError, ValueError) as err:
        skipped.append(("matplotlib grace_hopper.jpg", str(err)))
    grey = sum(1 for n in SKIMAGE_PHOTOS if n in ("camera", "brick", "grass", "gravel", "moon", "coins", "cell"))
    return photos, LoadReport("embedded default (scikit-image, scikit-learn, matplotlib)", len(photos),
                              {"L": grey}, tuple(skipped))


def load_image_folder(folder: str | Path, min_side: int = 32) -> tuple[list[Photo], LoadReport]:
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--data {root}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"--data {root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)")
    photos, skipped, converted = [], [], Counter()
    for path in files:
        try:
            rgb, _, info = read_image(path)
        except ImageReadError as err:
            skipped.append((str(path), str(err).split(": ", 1)[-1]))
            log.warning("skipping %s", err)
            continue
        if min(rgb.shape[:2]) < min_side:
            skipped.append((str(path), f"{rgb.shape[1]}x{rgb.shape[0]} is smaller than {min_side} px"))
            continue
        if info.source_mode != "RGB" or info.bits != 8:
            converted[f"{info.source_mode}/{info.bits}bit"] += 1
        photos.append(Photo(str(path.relative_to(root)), rgb))
    report = LoadReport(str(root), len(photos), dict(converted), tuple(skipped))
    log.info(report.summary())
    if not photos:
        raise ConfigError(f"--data {root}: none of the {len(files)} image files is usable; first problem: "
                          f"{skipped[0][0]}: {skipped[0][1]}")
    return photos, report


def load_photos(data: str | Path | None, min_side: int = 32) -> tuple[list[Photo], LoadReport]:
    return load_default_photos() if data is None else load_image_folder(data, min_side)


def split_photos(photos: list[Photo], val_fraction: float, seed: int) -> tuple[list[Photo], list[Photo]]:
    """Deterministic split by image (never by crop: the same photo must not be in both)."""
    if len(photos) < 2:
        raise ConfigError(f"need at least 2 images to hold one out for validation, found {len(photos)}")
    order = sorted(photos, key=lambda p: p.name)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
    return order[n_val:], order[:n_val]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float CxHxW in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(127.5).sub(1.0)


class RandomPatches(Dataset):
    """Random crops with random horizontal flips; item i is the same for a given seed, so a resumed run
    sees the same data. Images smaller than the patch are skipped at construction."""

    def __init__(self, photos: list[Photo], patch_px: int, length: int, seed: int):
        self.photos = [p for p in photos if min(p.rgb.shape[:2]) >= patch_px]
        if not self.photos:
            raise ConfigError(f"no image is at least {patch_px} px on its shorter side")
        self.patch_px, self.length, self.seed = patch_px, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, i])
        photo = self.photos[int(rng.integers(len(self.photos)))]
        h, w = photo.rgb.shape[:2]
        y, x = int(rng.integers(h - self.patch_px + 1)), int(rng.integers(w - self.patch_px + 1))
        crop = photo.rgb[y:y + self.patch_px, x:x + self.patch_px]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return to_tensor(crop)


def grid_patches(photos: list[Photo], patch_px: int, per_image: int) -> torch.Tensor:
    """Fixed, evenly spaced crops of every image: a deterministic validation set."""
    out = []
    for p in photos:
        h, w = p.rgb.shape[:2]
        if min(h, w) < patch_px:
            continue
        side = max(1, int(np.ceil(np.sqrt(per_image))))
        ys = np.linspace(0, h - patch_px, side).astype(int)
        xs = np.linspace(0, w - patch_px, side).astype(int)
        coords = [(y, x) for y in ys for x in xs][:per_image]
        out += [to_tensor(p.rgb[y:y + patch_px, x:x + patch_px]) for y, x in coords]
    if not out:
        raise ConfigError(f"no validation image is at least {patch_px} px on its shorter side")
    return torch.stack(out)
