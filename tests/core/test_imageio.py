"""Image reading: EXIF orientation is applied, so phone photographs come out the right way up."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tocsr.core.imageio import ImageReadError, read_image


def _phone_photo(path, orientation: int | None) -> None:
    """A 40x20 landscape sensor image: red on the left half, blue on the right."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20, 0], a[:, 20:, 2] = 255, 255
    im = Image.fromarray(a)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation           # the EXIF Orientation tag
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_when_reading(tmp_path):
    _phone_photo(tmp_path / "plain.jpg", None)
    _phone_photo(tmp_path / "rotated.jpg", 6)      # 6: the viewer rotates 90 degrees clockwise
    plain, _, _ = read_image(tmp_path / "plain.jpg")
    rotated, _, info = read_image(tmp_path / "rotated.jpg")
    assert plain.shape == (20, 40, 3) and rotated.shape == (40, 20, 3)
    # after a clockwise quarter turn the sensor's left (red) half is on top
    assert rotated[5, 10, 0] > 200 and rotated[5, 10, 2] < 60
    assert rotated[35, 10, 2] > 200 and rotated[35, 10, 0] < 60


def test_a_path_that_is_not_a_file_is_named_for_what_it_is(tmp_path):
    with pytest.raises(ImageReadError, match=r"missing\.png: no such file; check the path$"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match=r": a folder, not an image file$"):
        read_image(tmp_path)
