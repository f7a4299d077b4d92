"""One-line, truthful errors of the benchmarks and file readers (found by a new-user audit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.bench import get_benchmark
from lossnet.errors import DataError, LossnetError, WeightsError


def test_corrupt_pth_error_is_one_line_and_does_not_advise_unpickling(tmp_path):
    from lossnet.weights import load_state_dict_file as load_state_dict

    junk = tmp_path / "bad.pth"
    junk.write_bytes(b"xx")
    with pytest.raises(WeightsError) as info:
        load_state_dict(junk)
    msg = str(info.value)
    assert str(junk) in msg and "\n" not in msg and "weights_only set to False" not in msg and "re-save" in msg

    class Evil:  # a pickle that is more than tensors: refused by weights_only=True
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, evil)
    with pytest.raises(WeightsError) as info:
        load_state_dict(evil)
    assert "\n" not in str(info.value) and "never unpickles" in str(info.value) and "False" not in str(info.value)


def test_junk_judgment_file_is_not_a_npy_file(tmp_path):
    from lossnet.bench.similarity.bapps import _load_scalar

    junk = tmp_path / "000000.npy"
    junk.write_bytes(b"garbage that is not numpy")
    with pytest.raises(DataError, match="000000.npy: not a .npy file$") as info:
        _load_scalar(junk)
    assert "allow_pickle" not in str(info.value)


def test_option_errors_name_the_cli_flag():
    roads = get_benchmark("roads")
    with pytest.raises(LossnetError, match=r"lam \(--lambda\) must be >= 0"):
        roads.resolve_config({"lam": -1.0, "data": None})
    with pytest.raises(LossnetError, match="choose bce, or perceptual"):
        roads.resolve_config({"loss": "mse"})


@pytest.mark.parametrize("net", ["alexnet", "resnet18"])
def test_default_vgg_layer_on_another_network_says_so(net):
    superres = get_benchmark("superres")
    with pytest.raises(LossnetError) as info:
        superres.resolve_config({"net": net})
    msg = str(info.value)
    assert f"{net} has no layer 'relu2_2'" in msg and "default layer is vgg16's" in msg and "--layer" in msg
    assert superres.resolve_config({"net": net, "layer": "S"})["layer"] == "S"  # an extraction point works
    with pytest.raises(LossnetError, match="unknown layer 'relu9'"):  # a layer the user gave: the plain error
        superres.resolve_config({"net": net, "layer": "relu9"})


def test_corrupt_test_image_is_refused_before_training(tmp_path, monkeypatch):
    from lossnet.bench.superres import train as train_mod

    rng = np.random.default_rng(0)
    for folder, n, size in (("train", 3, 40), ("test", 2, 28)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                tmp_path / folder / f"im{i}.png"
            )
    bad = tmp_path / "test" / "im1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    superres = get_benchmark("superres")
    config = superres.resolve_config(
        {
            "loss": "pixel",
            "train": [str(tmp_path / "train")],
            "test": {"t": str(tmp_path / "test")},
            "crop": 32,
            "batch_size": 2,
            "iters_per_epoch": 1,
            "epochs": 1,
            "num_blocks": 1,
            "channels": 8,
            "val_images": 1,
            "val_crop": 32,
        }
    )

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the test images")

    monkeypatch.setattr(train_mod, "train", no_training)
    with pytest.raises(DataError, match="im1.png"):
        superres.run(config, tmp_path / "w", progress=False)


def test_superres_default_data_folder_is_the_real_path(tmp_path, monkeypatch):
    """The default ../shared folder goes into the run key: reached through a symlink it is the same key."""
    from lossnet.runs.identity import run_key

    for name in ("t91", "bsd200", "set5", "set14", "bsd100"):
        (tmp_path / "real" / "data" / "sr" / name).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    superres = get_benchmark("superres")
    keys = []
    for shared in (tmp_path / "real", tmp_path / "link"):
        monkeypatch.setenv("LOSSNET_SHARED", str(shared))
        config = superres.resolve_config({"loss": "pixel"})
        assert config["train"][0] == str((tmp_path / "real" / "data" / "sr" / "t91").resolve())
        keys.append(run_key(config))
    assert keys[0] == keys[1]
