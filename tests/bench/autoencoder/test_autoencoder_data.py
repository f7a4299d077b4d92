"""Benchmark 4 data readers on synthetic files written in the real SVHN / STL-10 formats."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from lossnet.bench.autoencoder.datasets import (
    load_dataset,
    load_digits_split,
    load_stl10_images,
    load_stl10_labels,
    load_svhn_mat,
    to_input,
)
from lossnet.errors import DataError, LossnetError


def _asymmetric(size: int, n: int, seed: int = 0) -> np.ndarray:
    """Upright CHW uint8 images: channel 0 has its upper-left quadrant white, channel 2 a dot at
    (row 2, col 3/4 of the width); a transposed or flipped reader moves both."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 3, size, size), np.uint8)
    imgs[:, 0, : size // 2, : size // 2] = 255
    imgs[:, 2, 2, (3 * size) // 4] = 200
    imgs[:, 1] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    return imgs


def write_svhn(path, imgs: np.ndarray, labels_1_to_10: np.ndarray) -> None:
    # SVHN stores X as (H, W, C, N).
    scipy.io.savemat(str(path), {"X": imgs.transpose(2, 3, 1, 0), "y": labels_1_to_10.reshape(-1, 1).astype(np.uint8)})


def write_stl10(path_x, imgs: np.ndarray, path_y=None, labels_1_to_10=None) -> None:
    # Column-major (Fortran order) per channel, as the STL-10 binaries are distributed.
    raw = b"".join(np.ravel(img[c], order="F").tobytes() for img in imgs for c in range(3))
    path_x.write_bytes(raw)
    if path_y is not None:
        path_y.write_bytes(labels_1_to_10.astype(np.uint8).tobytes())


def test_svhn_reader_upright_and_label_10_is_zero(tmp_path):
    imgs = _asymmetric(32, 4)
    write_svhn(tmp_path / "train_32x32.mat", imgs, np.array([10, 1, 5, 10]))
    x, y = load_svhn_mat(tmp_path / "train_32x32.mat")
    assert x.dtype == torch.uint8 and tuple(x.shape) == (4, 3, 32, 32)
    assert y.tolist() == [0, 1, 5, 0]
    assert (x[:, 0, :16, :16] == 255).all() and (x[:, 0, 16:, :] == 0).all() and (x[:, 0, :, 16:] == 0).all()
    assert (x[:, 2, 2, 24] == 200).all() and int(x[:, 2].sum()) == 4 * 200
    assert torch.equal(x, torch.from_numpy(imgs))


def test_svhn_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="test_32x32.mat"):
        load_svhn_mat(tmp_path / "test_32x32.mat")
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(str(bad), {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match="bad.mat.*shape"):
        load_svhn_mat(bad)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        load_svhn_mat(junk)
    mism = tmp_path / "mism.mat"
    scipy.io.savemat(str(mism), {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match="mism.mat"):
        load_svhn_mat(mism)


def test_stl10_reader_upright_and_labels(tmp_path):
    imgs = _asymmetric(96, 3, seed=1)
    write_stl10(tmp_path / "train_X.bin", imgs, tmp_path / "train_y.bin", np.array([1, 10, 4]))
    x = load_stl10_images(tmp_path / "train_X.bin")
    assert tuple(x.shape) == (3, 3, 96, 96) and x.dtype == torch.uint8
    assert (x[:, 0, :48, :48] == 255).all() and (x[:, 0, 48:] == 0).all()
    assert (x[:, 2, 2, 72] == 200).all()
    assert torch.equal(x, torch.from_numpy(imgs))
    assert load_stl10_labels(tmp_path / "train_y.bin", 3).tolist() == [0, 9, 3]


def test_stl10_reader_errors(tmp_path):
    (tmp_path / "short_X.bin").write_bytes(bytes(3 * 96 * 96 + 5))
    with pytest.raises(DataError, match="short_X.bin"):
        load_stl10_images(tmp_path / "short_X.bin")
    with pytest.raises(DataError, match="missing_X.bin"):
        load_stl10_images(tmp_path / "missing_X.bin")
    (tmp_path / "y.bin").write_bytes(bytes([1, 2, 11]))
    with pytest.raises(DataError, match="y.bin"):
        load_stl10_labels(tmp_path / "y.bin")
    (tmp_path / "y2.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DataError, match="y2.bin"):
        load_stl10_labels(tmp_path / "y2.bin", count=3)


def test_pad_32_to_64_is_reflect_padding():
    imgs = torch.from_numpy(_asymmetric(32, 2))
    out = to_input(imgs, 64)
    ref = np.pad(imgs.numpy().astype(np.float32) / 255.0, ((0, 0), (0, 0), (16, 16), (16, 16)), mode="reflect")
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-7)
    # The original image sits unchanged in the centre.
    assert torch.equal((out[:, :, 16:48, 16:48] * 255).round().to(torch.uint8), imgs)


def test_resize_96_to_64_and_passthrough():
    imgs = torch.from_numpy(_asymmetric(96, 1))
    small = to_input(imgs, 64)
    assert small.shape == (1, 3, 64, 64) and 0 <= float(small.min()) and float(small.max()) <= 1
    assert float(small[0, 0, :30, :30].min()) > 0.99 and float(small[0, 0, 34:].max()) < 0.01
    assert torch.equal(to_input(imgs, 96), imgs.float() / 255)


def test_digits_standin():
    trx, tr_y, tex, tey = load_digits_split(seed=0)
    assert len(trx) + len(tex) == 1797 and len(tex) == 450
    assert tuple(trx.shape[1:]) == (3, 32, 32) and trx.dtype == torch.uint8
    assert torch.equal(trx[:, 0], trx[:, 1]) and torch.equal(trx[:, 0], trx[:, 2])
    assert set(tr_y.tolist()) == set(range(10)) and set(tey.tolist()) == set(range(10))
    from sklearn.datasets import load_digits

    d = load_digits()
    # Background 0 and full-ink 16 map to 0 and (close to) 255 after bilinear upsampling.
    assert int(trx.max()) >= 250 and int(trx.min()) == 0 and d.images.max() == 16
    again = load_digits_split(seed=0)
    assert torch.equal(again[0], trx) and torch.equal(again[3], tey)
    assert not torch.equal(load_digits_split(seed=1)[1], tr_y)


def test_load_dataset_svhn_folder(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", _asymmetric(32, 6), np.arange(1, 7))
    write_svhn(tmp_path / "test_32x32.mat", _asymmetric(32, 3), np.array([10, 2, 3]))
    with pytest.raises(DataError, match="extra_32x32.mat"):
        load_dataset("svhn", tmp_path)
    write_svhn(tmp_path / "extra_32x32.mat", _asymmetric(32, 8), np.full(8, 7))
    d = load_dataset("svhn", tmp_path, ae_images=5, train_images=4)
    assert (len(d.unlabeled), len(d.train_x), len(d.test_x)) == (5, 4, 3)
    assert d.test_y.tolist() == [0, 2, 3]
    with pytest.raises(LossnetError, match="unknown dataset"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="nope"):
        load_dataset("stl10", tmp_path / "nope")
