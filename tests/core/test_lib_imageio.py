"""Image decoding: bit depth (16-bit PNG/TIFF), float TIFF, decompression bombs, symlink loops and
broken symlinks as per-file DataErrors (CLI folder mode records them per pair)."""

from __future__ import annotations

import csv
import importlib.util
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.cli import main as cli_main
from lossnet.errors import DataError
from lossnet.imageio import (
    decode_image,
    image_decode_errors,
    list_images,
    load_image,
    load_image_array,
    load_image_float,
)


@pytest.fixture(autouse=True)
def _available_subcommands(monkeypatch):
    present = tuple(m for m in cli_main.SUBCOMMAND_MODULES if importlib.util.find_spec(m) is not None)
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", present)


def _png(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand (filter type 0 on every row) so any bit depth / header can be made."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _png16(array: np.ndarray) -> bytes:
    h, w = array.shape[:2]
    colour = {2: 0, 3: 2}[array.ndim]
    rows = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))
    return _png(w, h, 16, colour, rows)


@pytest.fixture(scope="module")
def photo():
    """A real photograph (scikit-image's astronaut, shipped in its wheel), 64x64 crop, uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:228:2, 180:308:2])


# ---- bit depth ------------------------------------------------------------------------------------


def test_16bit_grey_png_scaled_by_bit_depth(tmp_path, photo):
    grey8 = np.asarray(Image.fromarray(photo).convert("L"))
    grey16 = grey8.astype(np.uint16) * 257  # the 8-bit image at 16 bits: v16 / 65535 == v8 / 255
    (tmp_path / "g16.png").write_bytes(_png16(grey16))
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    t16, t8 = load_image(tmp_path / "g16.png"), load_image(tmp_path / "g8.png")
    assert t16.shape == t8.shape == (3, 64, 64)
    torch.testing.assert_close(t16, t8, rtol=0, atol=1e-6)
    # full 16-bit precision is kept
    fine = (np.arange(64 * 64).reshape(64, 64) * 16 + 5).astype(np.uint16)
    (tmp_path / "fine.png").write_bytes(_png16(fine))
    torch.testing.assert_close(load_image(tmp_path / "fine.png", mode="L")[0], torch.from_numpy(fine / 65535.0).float())
    assert load_image_array(tmp_path / "fine.png", mode="L").dtype == np.uint8
    np.testing.assert_array_equal(
        load_image_array(tmp_path / "fine.png", mode="L"), np.round(fine / 65535 * 255).astype(np.uint8)
    )


def test_16bit_lpips_distance_to_8bit_copy_is_zero(tmp_path, photo, shared_weights_dir):
    """The issue's case: a 16-bit PNG and its 8-bit copy are the same picture (LPIPS ~ 0, not 0.48)."""
    from lossnet.loss import PerceptualMetric

    grey8 = np.asarray(Image.fromarray(photo).convert("L"))
    (tmp_path / "g16.png").write_bytes(_png16(grey8.astype(np.uint16) * 257))
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    rgb16 = photo.astype(np.uint16) * 257  # RGB 16-bit: Pillow keeps the high byte, == the 8-bit value
    (tmp_path / "c16.png").write_bytes(_png16(rgb16))
    Image.fromarray(photo).save(tmp_path / "c8.png")
    metric = PerceptualMetric(
        preset="lpips-alex", weights=shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors"
    )
    for a, b in (("g16.png", "g8.png"), ("c16.png", "c8.png")):
        d = float(metric(load_image(tmp_path / a)[None], load_image(tmp_path / b)[None]))
        assert d < 1e-4, (a, d)
    # clipping the 16-bit values to 8 bits (the old decoding) is far from the picture
    clipped = np.minimum(grey8.astype(np.uint16) * 257, 255).astype(np.float32) / 255
    d_clip = float(metric(torch.from_numpy(clipped)[None, None], load_image(tmp_path / "g8.png")[None]))
    assert d_clip > 0.2


def test_16bit_rgb_tiff_full_precision(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = (np.random.default_rng(0).random((16, 16, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", rgb16)
    torch.testing.assert_close(
        load_image(tmp_path / "c16.tif"), torch.from_numpy(rgb16.transpose(2, 0, 1) / 65535.0).float()
    )


def test_float_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    g = np.random.default_rng(1)
    grey = g.random((16, 16), dtype=np.float32)
    rgb = g.random((16, 16, 3), dtype=np.float32)
    Image.fromarray(grey, mode="F").save(tmp_path / "grey.tif")  # Pillow's 'F' mode
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)  # Pillow cannot open this one; tifffile can
    out = load_image(tmp_path / "grey.tif")
    assert out.shape == (3, 16, 16) and float(out.mean()) > 0.3  # not black
    torch.testing.assert_close(out[0], torch.from_numpy(grey))
    torch.testing.assert_close(load_image(tmp_path / "rgb.tif"), torch.from_numpy(rgb.transpose(2, 0, 1)))
    assert load_image_float(tmp_path / "rgb.tif").dtype == np.float32
    tifffile.imwrite(tmp_path / "hdr.tif", rgb * 4)
    with pytest.raises(DataError, match=r"hdr.tif has values in \[.*\]; lossnet reads float images as \[0, 1\]"):
        load_image(tmp_path / "hdr.tif")


def test_8bit_decoding_unchanged(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert decode_image(tmp_path / "a.png").dtype == np.uint8
    assert torch.equal(
        load_image(tmp_path / "a.png"), torch.from_numpy(photo.transpose(2, 0, 1).copy()).float().div_(255.0)
    )


# ---- bombs and links ----------------------------------------------------------------------------


def _bomb(path):
    # a valid 20000 x 20000 header (400 M pixels > 2 x MAX_IMAGE_PIXELS) with a few bytes of data
    path.write_bytes(_png(20000, 20000, 8, 2, b"\x00" * 16))
    return path


def test_decompression_bomb_is_a_data_error_naming_the_file(tmp_path):
    bomb = _bomb(tmp_path / "bomb.png")
    with pytest.raises(DataError, match=r"bomb.png is too large to decode safely.*MAX_IMAGE_PIXELS"):
        load_image(bomb)
    assert issubclass(Image.DecompressionBombError, image_decode_errors())


def test_symlink_loop_and_broken_link(tmp_path):
    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    with pytest.raises(DataError, match=r"symlink loop: .*loop.png"):
        load_image(loop)
    broken = tmp_path / "broken.png"
    os.symlink(tmp_path / "gone.png", broken)
    with pytest.raises(DataError, match=r"broken symlink: .*broken.png -> .*gone.png"):
        load_image(broken)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.png")
    assert list_images(tmp_path) == []
    assert [p.name for p in list_images(tmp_path, include_unreadable=True)] == ["broken.png", "loop.png"]


def test_cli_folder_mode_records_bombs_and_loops_per_pair(tmp_path, capsys, photo):
    d0, d1 = tmp_path / "d0", tmp_path / "d1"
    d0.mkdir(), d1.mkdir()
    for name in ("good", "bomb", "loop"):
        Image.fromarray(photo).save(d0 / f"{name}.png")
    Image.fromarray(photo[::-1].copy()).save(d1 / "good.png")
    _bomb(d1 / "bomb.png")
    os.symlink(d1 / "loop.png", d1 / "loop.png")
    out = tmp_path / "out.csv"
    code = cli_main.main(
        [
            "similarity",
            "--dir0",
            str(d0),
            "--dir1",
            str(d1),
            "-o",
            str(out),
            "--no-progress",
            "--net",
            "alexnet",
            "--layer",
            "relu1",
            "--weights",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    rows = {r["name"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"good", "bomb", "loop"}
    assert float(rows["good"]["distance"]) > 0 and rows["good"]["signature"].startswith("lossnet ")
    assert "bomb.png is too large" in rows["bomb"]["error"] and rows["bomb"]["distance"] == ""
    assert "symlink loop" in rows["loop"]["error"] and "loop.png" in rows["loop"]["error"]
    assert "1 of 3 pairs compared" in err and "failed bomb" in err and "failed loop" in err
