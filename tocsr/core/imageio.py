"""Reading images safely: any common format and mode to 8-bit RGB, refusing what cannot be read.

Dimensions are checked from the header, before any pixel is decoded, so a decompression bomb or an
absurd size is refused without allocating. Modes are converted: grey and palette to RGB, RGBA
composited over white (alpha kept separately for the SR path), 16-bit scaled to 8-bit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tocsr.core.errors import TocsrError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000         # 100 MP: beyond this an image is refused before decoding
MAX_SIDE = 65_535


class ImageReadError(TocsrError):
    """An image file could not be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ImageInfo:
    source_mode: str             # PIL mode before conversion: L, LA, P, RGB, RGBA, I;16, ...
    bits: int                    # 8 or 16
    had_alpha: bool
    width: int
    height: int


def _to_rgb8(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(H, W, 3) uint8 RGB, optional (H, W) uint8 alpha, source bit depth."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None, 16 if peak > 255 else 8
    alpha = None
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3].astype(np.uint8)
        a = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * a + 255.0 * (1.0 - a)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), alpha, 8
    if im.mode == "RGB;16" or (im.mode == "RGB" and im.info.get("bits") == 16):
        return np.asarray(im.convert("RGB")), None, 16
    return np.asarray(im.convert("RGB")), None, 8


def upright(im: Image.Image) -> Image.Image:
    """The image the right way up: phone cameras store pixels as the sensor saw them and the rotation in
    EXIF (Orientation), which viewers apply and raw pixel access does not."""
    return ImageOps.exif_transpose(im) or im


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """Read `path` as (rgb uint8 HxWx3, alpha uint8 HxW or None, info). Raises ImageReadError."""
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size
                if width < 1 or height < 1 or width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
                    raise ImageReadError(f"{p}: {width}x{height} pixels is refused (limit {max_pixels:,} pixels, "
                                         f"{MAX_SIDE} per side); crop or downscale it first")
                mode = im.mode
                im.load()
                rgb, alpha, bits = _to_rgb8(upright(im))
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{p}: refused as a possible decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file PIL can read") from None
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file; check the path") from None
    except IsADirectoryError:
        raise ImageReadError(f"{p}: a folder, not an image file") from None
    except (OSError, SyntaxError, ValueError) as err:   # truncated or corrupt data raise these inside PIL
        raise ImageReadError(f"{p}: cannot decode ({type(err).__name__}: {err})") from None
    if not rgb.flags.c_contiguous:
        rgb = np.ascontiguousarray(rgb)
    return rgb, alpha, ImageInfo(mode, bits, alpha is not None, width, height)


def save_png(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> Path:
    """Write uint8 RGB (and optional alpha) as PNG, atomically."""
    from io import BytesIO

    from tocsr.core.artifacts import atomic_write_bytes

    img = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(alpha, "L"))
    buf = BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
