"""Training and evaluation images: a user's folder, or the photographs that ship inside packages.

The embedded default needs no download: the photographs bundled with scikit-image (and, where
installed, scikit-learn's and matplotlib's samples, and the natural photographs pyiqa's wheel ships: its
Kodak reference images and its test frames, `PYIQA_PHOTO_FOLDERS`; read where they are installed, never copied
here). A user's folder (`--data DIR`: DIV2K, LSDIR, FFHQ...) is scanned recursively; images that cannot be
used are skipped, counted and logged, so a run never dies on one bad file. The train / validation / test split
(DataSplit) is by name, decided before any image is read.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
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


# Folders of pyiqa's wheel that hold natural photographs (its reference images and test frames; not its
# distorted copies, dist_dir/). Read where the installed distribution put them, without importing pyiqa.
PYIQA_PHOTO_FOLDERS = ("ResultsCalibra/ref_dir/", "tests/test_efficiency_img_dir/")


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


def _embedded_readers() -> dict[str, Callable[[], np.ndarray]]:
    """Name -> reader of every embedded photograph; nothing is read until a reader is called."""
    import skimage.data

    readers: dict[str, Callable[[], np.ndarray]] = {n: getattr(skimage.data, n) for n in SKIMAGE_PHOTOS}
    readers["motorcycle_left"] = lambda: skimage.data.stereo_motorcycle()[0]
    readers["motorcycle_right"] = lambda: skimage.data.stereo_motorcycle()[1]
    try:
        from sklearn.datasets import load_sample_image

        readers["china"] = lambda: load_sample_image("china.jpg")
        readers["flower"] = lambda: load_sample_image("flower.jpg")
    except ImportError:
        pass

    def grace_hopper() -> np.ndarray:
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh, Image.open(fh) as im:
            return np.asarray(im.convert("RGB"))

    readers["grace_hopper"] = grace_hopper
    for name, path in pyiqa_photo_files().items():
        readers[name] = lambda path=path: read_image(path)[0]
    return readers


def pyiqa_photo_files(files: list | None = None) -> dict[str, Path]:
    """{"pyiqa_<stem>": file} for the photographs of `PYIQA_PHOTO_FOLDERS` among `files` (an installed
    distribution's file list, importlib.metadata; None: the installed pyiqa's), {} when pyiqa is not installed.
    The main job and the tests install pyiqa, so their embedded default holds these (data_fingerprint records
    the names)."""
    if files is None:
        from importlib import metadata

        try:
            files = list(metadata.distribution("pyiqa").files or [])
        except metadata.PackageNotFoundError:
            return {}
    out = {}
    for f in files:
        rel = str(f).replace("\\", "/")
        if rel.startswith(PYIQA_PHOTO_FOLDERS) and Path(rel).suffix.lower() in IMAGE_SUFFIXES:
            path = Path(f.locate()) if hasattr(f, "locate") else Path(f)
            out[f"pyiqa_{Path(rel).stem}"] = path
    return dict(sorted(out.items()))


def list_photos(data: str | Path | None) -> list[str]:
    """The names of the photographs in `data` (relative paths; None: the embedded default), unread."""
    if data is None:
        return sorted(_embedded_readers())
    root = Path(data)
    if not root.is_dir():
        raise ConfigError(f"--data {root}: no such folder")
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise ConfigError(f"--data {root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)")
    return names


def open_photo(data: str | Path | None, name: str) -> tuple[Photo, str]:
    """Read one photograph as RGB uint8: (photo, the mode it was converted from, "" when none).

    The only place a photograph's pixels are read, so a test can watch which ones each stage opens."""
    if data is None:
        arr = _embedded_readers()[name]()
        mode = "L" if arr.ndim == 2 or arr.dtype == bool else ""
        return Photo(name, _rgb(arr)), mode
    rgb, _, info = read_image(Path(data) / name)
    mode = "" if info.source_mode == "RGB" and info.bits == 8 else f"{info.source_mode}/{info.bits}bit"
    return Photo(name, rgb), mode


PARTS = ("train", "val", "test")
# Subfolder names that declare a photograph's part in a user's folder (DIV2K ships train/ and valid/).
_DECLARED = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
             "test": "test", "testing": "test"}


@dataclass(frozen=True)
class DataSplit:
    """Which photographs train, which validate (every setting, early stop and selection) and which are only
    ever scored (the reported table). Decided from names before any pixel is read, so no training or
    selection code path opens a test photograph: they ask `load_split` for "train" and "val" only.

    A folder whose top-level subfolders are train/, val/ (or valid/, validation/) and test/ keeps its own
    split. Otherwise photographs are ranked by a hash of (seed, name), which does not depend on what else is
    in the folder (adding one moves at most one other across each boundary); the first `test_fraction` of
    them are test, the next `val_fraction` validation.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(f"DataSplit: val_fraction {self.val_fraction} and test_fraction {self.test_fraction} "
                              "must be in (0, 1) and [0, 1) and leave photographs to train on (sum < 1)")

    def ranked(self, names: list[str]) -> list[str]:
        """`names` in this split's order: by a hash of (seed, name), so one name's place does not depend on the
        others. The split takes its parts from it; a study taking the first N of a part gets nested subsets."""
        return sorted(names, key=lambda n: hashlib.sha256(f"{self.seed}:{n}".encode()).hexdigest())

    def assign(self, names: list[str]) -> dict[str, str]:
        """name -> "train" | "val" | "test"."""
        declared = {n: _DECLARED.get(Path(n).parts[0].lower()) if len(Path(n).parts) > 1 else None for n in names}
        if any(declared.values()):
            loose = [n for n, part in declared.items() if part is None]
            if loose:
                raise ConfigError(f"--data: {len(loose)} images (first: {loose[0]!r}) are outside the train/, val/ "
                                  "and test/ subfolders the other images are in; move them into one")
            return {n: part for n, part in declared.items() if part is not None}
        if len(names) < 3:
            raise ConfigError(f"need at least 3 images to split into train, validation and test, found {len(names)}")
        ranked = self.ranked(names)
        n = len(ranked)
        n_test = max(1, round(n * self.test_fraction)) if self.test_fraction > 0 else 0
        n_val = max(1, round(n * self.val_fraction))
        n_test = min(n_test, n - n_val - 1)
        parts = {name: "test" for name in ranked[:n_test]}
        parts |= {name: "val" for name in ranked[n_test:n_test + n_val]}
        return parts | {name: "train" for name in ranked[n_test + n_val:]}


def _read_named(data: str | Path | None, names: list[str], min_side: int) -> tuple[list[Photo], LoadReport]:
    """Read `names` (in order); images that cannot be used are skipped, counted and logged, so a run never
    dies on one bad file."""
    photos, skipped, converted = [], [], Counter()
    for name in names:
        try:
            photo, mode = open_photo(data, name)
        except (ImageReadError, ImportError, OSError, ValueError) as err:
            skipped.append((name, str(err).split(": ", 1)[-1]))
            log.warning("skipping %s: %s", name, err)
            continue
        if min(photo.rgb.shape[:2]) < min_side:
            skipped.append((name, f"{photo.rgb.shape[1]}x{photo.rgb.shape[0]} is smaller than {min_side} px"))
            continue
        if mode:
            converted[mode] += 1
        photos.append(photo)
    source = "embedded default (scikit-image, scikit-learn, matplotlib, pyiqa)" if data is None else str(data)
    return photos, LoadReport(source, len(photos), dict(converted), tuple(skipped))


def load_split(data: str | Path | None, parts: tuple[str, ...], split: DataSplit = DataSplit(),
               min_side: int = 32) -> tuple[dict[str, list[Photo]], LoadReport]:
    """The photographs of `parts` only ({part: photos}); the others are never read."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"data parts {unknown}: not one of {', '.join(PARTS)}")
    assigned = split.assign(list_photos(data))
    photos, report = _read_named(data, sorted(n for n, part in assigned.items() if part in parts), min_side)
    out: dict[str, list[Photo]] = {p: [ph for ph in photos if assigned[ph.name] == p] for p in parts}
    log.info("%s (%s)", report.summary(), ", ".join(f"{p}: {len(v)}" for p, v in out.items()))
    empty = [p for p in parts if not out[p]]
    if empty:
        first = f"; first problem: {report.skipped[0][0]}: {report.skipped[0][1]}" if report.skipped else ""
        raise ConfigError(f"--data {report.source}: no usable {empty[0]} images (of {len(assigned)} found, at least "
                          f"{min_side} px on the shorter side){first}")
    return out, report


def load_train_val(data: str | Path | None, split: DataSplit = DataSplit(), min_side: int = 32,
                   train_first: int = 0) -> tuple[list[Photo], list[Photo], LoadReport]:
    """What training and selection may read: (train, validation, report). Never the test part. `train_first` N > 0
    keeps the first N training photographs in the split's order (DataSplit.ranked), so that N are among any larger
    N's: a study of what more photographs buy (SRConfig / PartsConfig.train_photographs)."""
    got, report = load_split(data, ("train", "val"), split, min_side)
    train = got["train"]
    if train_first:
        if not 0 < train_first <= len(train):
            raise ConfigError(f"train_photographs = {train_first}: the split has {len(train)} training photographs "
                              f"of at least {min_side} px; give 1 to {len(train)}, or 0 for all of them")
        keep = set(split.ranked([p.name for p in train])[:train_first])
        train = [p for p in train if p.name in keep]
    return train, got["val"], report


def load_photos(data: str | Path | None, min_side: int = 32) -> tuple[list[Photo], LoadReport]:
    """Every photograph, whatever its part: for writing evaluation folders and tests, never for training."""
    photos, report = _read_named(data, list_photos(data), min_side)
    if not photos:
        raise ConfigError(f"--data {report.source}: none of the images is usable; first problem: "
                          f"{report.skipped[0][0]}: {report.skipped[0][1]}")
    return photos, report


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
