"""The BAPPS loader on synthetic folders written in the exact BAPPS layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.bench.similarity import bapps
from lossnet.bench.similarity.synthetic import write_synthetic_bapps
from lossnet.errors import DataError

BSD100 = (
    Path(os.environ.get("LOSSNET_SHARED", Path(__file__).resolve().parents[4] / "shared")) / "data" / "sr" / "bsd100"
)


@pytest.fixture()
def root(tmp_path):
    bapps.clear_cache()
    r = write_synthetic_bapps(
        tmp_path / "BAPPS", n_2afc=6, n_jnd=5, subsets_2afc=("traditional", "cnn"), source_dir=BSD100, seed=3
    )
    yield r
    bapps.clear_cache()


def test_layout_is_bapps(root):
    base = root / "2afc" / "val" / "traditional"
    assert sorted(p.name for p in base.iterdir()) == ["judge", "p0", "p1", "ref"]
    assert sorted(p.name for p in (root / "jnd" / "val" / "cnn").iterdir()) == ["p0", "p1", "same"]
    j = np.load(base / "judge" / "000000.npy")
    assert j.shape == (1,) and j.dtype.kind == "f" and 0 <= j[0] <= 1
    with Image.open(base / "ref" / "000000.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"


def test_load_2afc_counts_values_and_pixels(root):
    data = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    assert len(data) == 6 and data.n_bad == 0
    for name in ("ref", "p0", "p1"):
        assert data.images[name].shape == (6, 3, 64, 64) and data.images[name].dtype.is_floating_point is False
    base = root / "2afc" / "val" / "cnn"
    expected_h = [float(np.load(base / "judge" / f"{i:06d}.npy")[0]) for i in range(6)]
    np.testing.assert_array_equal(data.judgments, expected_h)
    with Image.open(base / "p1" / "000004.png") as im:
        np.testing.assert_array_equal(data.images["p1"][4].permute(1, 2, 0).numpy(), np.asarray(im.convert("RGB")))


def test_load_jnd(root):
    data = bapps.load_subset(root, "jnd", "val", "traditional", progress=False)
    assert len(data) == 5 and set(data.images) == {"p0", "p1"}
    expected = [float(np.load(root / "jnd/val/traditional/same" / f"{i:06d}.npy")[0]) for i in range(5)]
    np.testing.assert_array_equal(data.judgments, expected)


def test_other_sizes_are_resized_to_64(root):
    path = root / "2afc/val/cnn/ref/000002.png"
    Image.fromarray(np.full((100, 80, 3), 200, np.uint8)).save(path)
    data = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    assert data.images["ref"].shape == (6, 3, 64, 64)
    assert int(data.images["ref"][2].min()) == 200 == int(data.images["ref"][2].max())


def test_corrupt_image_names_file_and_skip_bad_counts_it(root):
    bad = root / "2afc/val/traditional/p1/000003.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=str(bad)):
        bapps.load_subset(root, "2afc", "val", "traditional", progress=False)
    data = bapps.load_subset(root, "2afc", "val", "traditional", skip_bad=True, progress=False)
    assert len(data) == 5 and data.n_bad == 1 and data.bad_files == [str(bad)]
    # the surviving judgments are those of items 0,1,2,4,5 in order
    expected = [float(np.load(root / "2afc/val/traditional/judge" / f"{i:06d}.npy")[0]) for i in (0, 1, 2, 4, 5)]
    np.testing.assert_array_equal(data.judgments, expected)


def test_corrupt_judgment_names_file(root):
    bad = root / "2afc/val/cnn/judge/000001.npy"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=str(bad)):
        bapps.load_subset(root, "2afc", "val", "cnn", progress=False)


def test_out_of_range_judgment_is_rejected(root):
    bad = root / "jnd/val/cnn/same/000000.npy"
    np.save(bad, np.array([1.5]))
    with pytest.raises(DataError, match="000000.npy"):
        bapps.load_subset(root, "jnd", "val", "cnn", progress=False)


def test_count_mismatch(root):
    (root / "2afc/val/cnn/p0/000002.png").unlink()
    with pytest.raises(DataError, match=r"mismatched file counts \(ref=6, p0=5, p1=6, judge=6\).*ref/000002.png"):
        bapps.list_items(root, "2afc", "val", "cnn")


def test_unpaired_names(root):
    d = root / "jnd/val/cnn/p1"
    (d / "000004.png").rename(d / "000009.png")
    with pytest.raises(DataError, match="not paired by name"):
        bapps.list_items(root, "jnd", "val", "cnn")


def test_missing_folders(root, tmp_path):
    with pytest.raises(DataError, match="subset folder not found.*superres"):
        bapps.list_items(root, "2afc", "val", "superres")
    import shutil

    shutil.rmtree(root / "2afc/val/cnn/judge")
    with pytest.raises(DataError, match="folder not found.*judge"):
        bapps.list_items(root, "2afc", "val", "cnn")


def test_max_items_is_seeded_subset_and_cache(root):
    a = bapps.load_subset(root, "2afc", "val", "cnn", max_items=3, seed=1, progress=False)
    b = bapps.load_subset(root, "2afc", "val", "cnn", max_items=3, seed=1, progress=False)
    assert a is b  # decoded once per process
    full = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    assert len(a) == 3
    # each kept item is one of the full set's items, in sorted order
    idx = [int(np.flatnonzero(full.judgments == v)[0]) for v in a.judgments]
    assert idx == sorted(idx)
    for k, i in enumerate(idx):
        assert (a.images["ref"][k] == full.images["ref"][i]).all()


def test_decoding_threads_give_same_result(root):
    a = bapps.load_subset(root, "2afc", "val", "traditional", progress=False)
    bapps.clear_cache()
    b = bapps.load_subset(root, "2afc", "val", "traditional", num_workers=2, progress=False)
    np.testing.assert_array_equal(a.judgments, b.judgments)
    assert (a.images["p0"] == b.images["p0"]).all()


def test_synthetic_is_deterministic(tmp_path):
    a = write_synthetic_bapps(tmp_path / "a", n_2afc=2, n_jnd=1, subsets_2afc=("cnn",), subsets_jnd=("cnn",), seed=7)
    b = write_synthetic_bapps(tmp_path / "b", n_2afc=2, n_jnd=1, subsets_2afc=("cnn",), subsets_jnd=("cnn",), seed=7)
    for p in a.rglob("*.*"):
        assert p.read_bytes() == (b / p.relative_to(a)).read_bytes()


def test_corrupt_file_with_workers_gives_clean_message(root):
    bad = root / "2afc/val/cnn/ref/000002.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError) as info:
        bapps.load_subset(root, "2afc", "val", "cnn", num_workers=1, progress=False)
    assert str(info.value).startswith(f"cannot decode BAPPS image {bad}") and "\n" not in str(info.value)


def test_decompression_bomb_header_is_a_data_error(tmp_path):
    """A PNG whose header claims 20000x20000 pixels is a bad file (skippable with --skip-bad), not a crash."""
    import struct
    import zlib

    from lossnet.bench.similarity.bapps import load_patch
    from lossnet.errors import DataError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(DataError, match="bomb.png.*decompression bomb"):
        load_patch(bomb, 64)


def test_decoded_patches_equal_per_file_decode_and_are_channels_last(root):
    """The preallocated NHWC decode gives exactly the pixels of decoding each file on its own."""
    bapps.clear_cache()
    data = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    items = bapps.list_items(root, "2afc", "val", "cnn")
    assert data.images["ref"].shape == (len(items), 3, 64, 64)
    assert data.images["ref"].is_contiguous(memory_format=torch.channels_last)
    for name in ("ref", "p0", "p1"):
        for i, path in enumerate(items.files[name]):
            assert torch.equal(data.images[name][i], bapps.load_patch(path, 64))
    judged = [float(np.load(p).reshape(-1)[0]) for p in items.files["judge"]]
    np.testing.assert_array_equal(data.judgments, judged)


def test_load_subsets_prefetches_in_order_and_raises_at_the_bad_subset(root):
    bapps.clear_cache()
    requests = [("2afc", "val", "cnn"), ("jnd", "val", "traditional"), ("2afc", "val", "traditional")]
    got = list(bapps.load_subsets(root, requests, progress=False))
    assert [(d.kind, d.subset) for d in got] == [("2afc", "cnn"), ("jnd", "traditional"), ("2afc", "traditional")]
    for d, (kind, split, subset) in zip(got, requests):
        assert d is bapps.load_subset(root, kind, split, subset, progress=False)  # same cache entries
    bapps.clear_cache()
    (root / "2afc/val/traditional/p1/000001.png").write_bytes(b"not a png")
    seen = []
    with pytest.raises(DataError, match="cannot decode BAPPS image .*traditional/p1/000001.png"):
        for d in bapps.load_subsets(root, requests, progress=False):
            seen.append(d.subset)
    assert seen == ["cnn", "traditional"]  # the first two subsets were delivered before the error


# ---- fast paths: libpng through imagecodecs, and .npy headers parsed once --------------------


def _pillow_rgb(path: Path, size: int = 64) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im)


@pytest.fixture()
def pillow_only(monkeypatch):
    monkeypatch.setenv("LOSSNET_PNG_DECODER", "pillow")
    bapps.png_codec.cache_clear()
    yield
    bapps.png_codec.cache_clear()


def test_png_codec_gives_pillows_pixels_on_real_patches(root, tmp_path):
    pytest.importorskip("imagecodecs")
    bapps.png_codec.cache_clear()
    assert bapps.png_codec() is not None
    paths = [p for name in ("ref", "p0", "p1") for p in bapps.list_items(root, "2afc", "val", "cnn").files[name]]
    if BSD100.is_dir():  # real photographs, cropped to patches (the synthetic ones come from them too)
        for k, src in enumerate(sorted(BSD100.iterdir())[:4]):
            with Image.open(src) as im:
                p = tmp_path / f"real{k}.png"
                im.convert("RGB").crop((k * 7, k * 5, k * 7 + 64, k * 5 + 64)).save(p)
                paths.append(p)
    for p in paths:
        fast = bapps._read_png_rgb8(p, 64)
        assert fast is not None, p
        np.testing.assert_array_equal(fast, _pillow_rgb(p))
        np.testing.assert_array_equal(bapps.read_patch(p, 64), fast)


@pytest.mark.parametrize("kind", ["rgb16", "palette", "grey", "rgba", "other-size", "corrupt-body", "not-png"])
def test_unusual_pngs_go_to_pillow(tmp_path, kind):
    """Anything but an 8-bit RGB patch of the right size is left to Pillow (same pixels, same errors)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    p = tmp_path / f"{kind}.png"
    if kind == "rgb16":
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(p)  # 16-bit grey
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(p)
    elif kind == "grey":
        Image.fromarray(rgb[..., 0]).save(p)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(p)
    elif kind == "other-size":
        Image.fromarray(np.zeros((70, 64, 3), np.uint8)).save(p)
    elif kind == "corrupt-body":  # a valid 64x64 RGB header, then garbage
        Image.fromarray(rgb).save(p)
        data = bytearray(p.read_bytes())
        data[60:400] = bytes(340)
        p.write_bytes(bytes(data))
    else:
        p.write_bytes(b"JFIF" + bytes(100))
    assert bapps._read_png_rgb8(p, 64) is None
    if kind in ("corrupt-body", "not-png"):
        with pytest.raises(DataError, match=f"cannot decode BAPPS image {p}"):
            bapps.read_patch(p, 64)
    else:
        np.testing.assert_array_equal(bapps.read_patch(p, 64), _pillow_rgb(p))


def test_pillow_only_decoding_gives_the_same_subset(root, pillow_only):
    assert bapps.png_codec() is None
    data = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    items = bapps.list_items(root, "2afc", "val", "cnn")
    for name in ("ref", "p0", "p1"):
        for i, path in enumerate(items.files[name]):
            np.testing.assert_array_equal(data.images[name][i].permute(1, 2, 0).numpy(), _pillow_rgb(path))


@pytest.mark.parametrize(
    "value",
    [
        np.array([0.25]),
        np.array([0.75], dtype=np.float32),
        np.array(0.5),
        np.array([[1.0]], dtype=">f8"),
        np.array([1], dtype=np.int64),
    ],
)
def test_judgment_files_read_twice_equal_np_load(tmp_path, value):
    """The second file with a header already parsed takes the frombuffer path: same value as np.load."""
    bapps._NPY_HEADERS.clear()
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, value)
    np.save(second, value * 0 + (value.dtype.type(1) if value.dtype.kind == "i" else value.dtype.type(0.125)))
    assert bapps._load_scalar(first) == float(np.load(first).reshape(-1)[0])
    assert len(bapps._NPY_HEADERS) == 1
    assert bapps._load_scalar(second) == float(np.load(second).reshape(-1)[0])


def test_judgment_with_known_header_but_wrong_length_or_pickle_is_refused(tmp_path):
    bapps._NPY_HEADERS.clear()
    good = tmp_path / "good.npy"
    np.save(good, np.array([0.5]))
    bapps._load_scalar(good)
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:-3])  # known header, 5 of 8 value bytes
    with pytest.raises(DataError, match="truncated.npy"):
        bapps._load_scalar(truncated)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled.npy"):
        bapps._load_scalar(pickled)
