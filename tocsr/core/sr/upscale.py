"""Files in, files out, with the same safety as every other reader (tocsr.core.imageio)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image

from tocsr.core.artifacts import atomic_write_bytes
from tocsr.core.imageio import read_image, upright
from tocsr.core.sr.pipeline import TOCSRPipeline


def upscale_file(pipe: TOCSRPipeline, src: Path, dst: Path) -> dict[str, Any]:
    read_image(src)              # size, decodability and bombs are checked before any pixel is decoded
    with Image.open(src) as im:
        im.load()
        result = pipe(upright(im))
    buf = BytesIO()
    result.images[0].save(buf, format="PNG")
    atomic_write_bytes(dst, buf.getvalue())   # never a half-written output file
    return result.info[0]
