"""Image reading defects of issue #32: EXIF orientation (M7), animated images, 32-bit integer TIFFs
and very large images (L16). Truth: arrays built here, rotated with numpy, saved with an EXIF tag."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from lossnet.errors import DataError
from lossnet.imageio import decode_image, load_image


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], axis=2).astype(np.uint8)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_m7_exif_orientation_6_reads_as_displayed_png_exact(tmp_path):
    shown = _photo()  # what a viewer shows: 128 wide, 96 high
    stored = np.rot90(shown, 1)  # the camera stores it turned 90 degrees counter-clockwise ...
    path = tmp_path / "exif6.png"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=_exif(6))  # ... and tags "rotate 90 CW to display"
    got = decode_image(path)
    assert got.shape == shown.shape
    np.testing.assert_array_equal(got, shown)


@pytest.mark.parametrize(
    "orientation,turn", [(3, lambda a: np.rot90(a, 2)), (8, lambda a: np.rot90(a, -1)), (2, lambda a: a[:, ::-1])]
)
def test_m7_other_orientations(tmp_path, orientation, turn):
    shown = _photo(40, 60)
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(np.ascontiguousarray(turn(shown))).save(path, exif=_exif(orientation))
    np.testing.assert_array_equal(decode_image(path), shown)


def test_m7_jpeg_with_exif_6_matches_the_upright_jpeg(tmp_path):
    shown = _photo()
    Image.fromarray(shown).save(tmp_path / "sq.jpg", quality=95)
    Image.fromarray(np.ascontiguousarray(np.rot90(shown, 1))).save(tmp_path / "sq6.jpg", quality=95, exif=_exif(6))
    a = load_image(tmp_path / "sq.jpg")
    b = load_image(tmp_path / "sq6.jpg")
    assert a.shape == b.shape
    assert float((a - b).abs().mean()) < 0.02  # JPEG re-encoding only (rotated: about 0.3)


def test_l16_animated_gif_warns_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.warns(UserWarning, match=r"anim.gif is animated \(2 frames\); only the first frame is used"):
        arr = decode_image(path)
    assert abs(int(arr.mean()) - 10) <= 2


def test_l16_still_gif_does_not_warn(tmp_path):
    path = tmp_path / "still.gif"
    Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(path)


def test_l16_32bit_integer_tiff_is_refused_not_scaled_as_16bit(tmp_path):
    path = tmp_path / "i32.tiff"
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 4, mode="I").save(path)
    with pytest.raises(DataError, match="32-bit integer TIFF samples have no known scale"):
        decode_image(path)


def test_l16_very_large_image_warns_with_estimate_and_resize_hint(tmp_path, monkeypatch):
    import lossnet.imageio as io_mod

    monkeypatch.setattr(io_mod, "LARGE_PIXELS", 1000)  # the real bound (40 Mpx) needs a 100 Mpx file
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    with pytest.warns(UserWarning, match=r"big.png is 40x40 \(0 Mpx\): comparing it needs roughly .* pass --resize"):
        decode_image(path)
