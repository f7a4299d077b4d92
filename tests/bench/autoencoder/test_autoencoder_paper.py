"""Benchmark 4 as the paper's code runs it: the reference autoencoder, held-out best-epoch
selection, the reference classifier protocol, and the ``paper`` preset on synthetic SVHN / STL-10
files in their real formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_autoencoder_data import _asymmetric, write_stl10, write_svhn
from torch import nn

from lossnet.bench.autoencoder import BENCHMARK, AutoencoderConfig, resolve_config, run
from lossnet.bench.autoencoder.mlp import build_mlp, evaluate_mlps, reference_patience, train_mlp
from lossnet.bench.autoencoder.model import ReferenceAutoencoder, build_autoencoder
from lossnet.bench.autoencoder.train import AutoencoderTask, split_ae_images, train_autoencoder
from lossnet.bench.trainer import load_checkpoint
from lossnet.errors import LossnetError

# -- the reference autoencoder ----------------------------------------------------------------


def _closed_form_parameters(size: int, code: int = 64, logvar: bool = False) -> int:
    """Parameters of the reference FourLayerCVAE from its layer definitions, counted by hand:
    encoder convs k4 s2 unpadded 3->32->64->128->256 each + BatchNorm (weight, bias), linear to
    the code (+ the log-variance head), linear to 1024 g^2, transposed convs 1024->128->64->32->3
    with kernels 5, 5, 6, 6 and BatchNorm after the first three."""
    n, side = 0, size
    for cin, cout in ((3, 32), (32, 64), (64, 128), (128, 256)):
        n += cin * cout * 16 + cout + 2 * cout
        side = (side - 4) // 2 + 1
    flat = 256 * side * side
    n += (flat * code + code) * (2 if logvar else 1)
    g = (size - 64) // 16 + 1
    n += code * 1024 * g * g + 1024 * g * g
    for cin, cout, k, bn in ((1024, 128, 5, True), (128, 64, 5, True), (64, 32, 6, True), (32, 3, 6, False)):
        n += cin * cout * k * k + cout + (2 * cout if bn else 0)
    return n


@pytest.mark.parametrize(
    ("size", "enc_sides", "dec_sides", "params", "with_logvar"),
    [
        (64, [31, 14, 6, 2], [5, 13, 30, 64], 4_382_723, 4_448_323),
        (96, [47, 22, 10, 4], [9, 21, 46, 96], 5_111_811, 5_374_019),
    ],
)
def test_reference_autoencoder_shapes_layout_and_parameters(size, enc_sides, dec_sides, params, with_logvar):
    model = ReferenceAutoencoder(size, embedding=64)
    sides: list[tuple[str, int]] = []
    for m in [*model.encoder, *model.decoder]:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(lambda mod, inp, out: sides.append((type(mod).__name__, out.shape[-1])))
    x = torch.rand(3, 3, size, size)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape and mu.shape == (3, 64) and logvar is None
    assert 0 <= float(recon.detach().min()) and float(recon.detach().max()) <= 1
    assert [s for n, s in sides if n == "Conv2d"] == enc_sides and [
        s for n, s in sides if n == "ConvTranspose2d"
    ] == dec_sides
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [c.kernel_size[0] for c in convs] == [4] * 4 and all(
        c.padding == (0, 0) and c.stride == (2, 2) for c in convs
    )
    assert [c.kernel_size[0] for c in deconvs] == [5, 5, 6, 6] and all(c.padding == (0, 0) for c in deconvs)
    assert [c.out_channels for c in convs] == [32, 64, 128, 256] and [c.out_channels for c in deconvs] == [
        128,
        64,
        32,
        3,
    ]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.encoder) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.decoder) == 3 and isinstance(model.decoder[-1], nn.Sigmoid)
    count = sum(p.numel() for p in model.parameters())
    assert count == params == _closed_form_parameters(size)
    # the reference module always builds a log-variance head; a VAE here has one too
    vae = ReferenceAutoencoder(size, embedding=64, variational=True)
    assert sum(p.numel() for p in vae.parameters()) == with_logvar == _closed_form_parameters(size, logvar=True)
    # downstream codes come from eval mode (BatchNorm running statistics): one image alone gets the same code
    model.eval()
    torch.testing.assert_close(model.encode(x[:1])[0], model.encode(x)[0][:1], rtol=1e-4, atol=1e-5)


def test_reference_model_sizes_and_selection():
    for bad in (32, 48, 72):
        with pytest.raises(ValueError, match="64 \\+ 16 n"):
            ReferenceAutoencoder(bad)
    assert isinstance(build_autoencoder("reference", 80), ReferenceAutoencoder)
    assert type(build_autoencoder("compact", 32)).__name__ == "ConvAutoencoder"
    with pytest.raises(LossnetError, match="64 \\+ 16 n"):
        resolve_config({"loss": "pixel", "model": "reference", "image_size": 48})
    assert resolve_config({"loss": "pixel", "model": "compact", "image_size": 48})["image_size"] == 48


def test_paper_preset_is_the_reference_setup():
    c = resolve_config({"preset": "paper", "net": "vgg16", "layer": "relu2_2", "allow_stand_in": True})
    assert (c["model"], c["epochs"], c["batch_size"], c["lr"], c["ae_val_fraction"]) == (
        "reference",
        10,
        256,
        1e-3,
        0.2,
    )
    assert (c["normalize"], c["loss_net_mode"], c["transform_input"]) == ("none", "train", False)
    assert (c["mlp_protocol"], c["mlp_epochs"], c["mlp_patience"], c["mlp_batch_size"], c["mlp_lr"]) == (
        "reference",
        100,
        10,
        256,
        1e-3,
    )
    assert c["embedding"] == 64 and c["variational"] is False and c["val_fraction"] == 0.2
    assert (
        resolve_config({"preset": "paper", "loss": "pixel", "mlp_epochs": 500, "allow_stand_in": True})["mlp_patience"]
        == 25
    )  # the code's default
    q = resolve_config({"loss": "pixel"})  # quick: lossnet's earlier setup
    assert (q["model"], q["mlp_protocol"], q["ae_val_fraction"], q["mlp_patience"]) == ("compact", "ce", 0.0, 8)
    assert (
        resolve_config(
            {
                "loss": "pixel",
                "mlp_protocol": "reference",
                "mlp_patience": None,
                "preset": "paper",
                "allow_stand_in": True,
                "mlp_epochs": 210,
            }
        )["mlp_patience"]
        == 11
    )
    with pytest.raises(LossnetError, match="ae_val_fraction"):
        resolve_config({"loss": "pixel", "ae_val_fraction": 1.0})


# -- held-out best-epoch selection ------------------------------------------------------------


def test_ae_split_is_seeded_floor_20_percent():
    cfg = AutoencoderConfig(ae_val_fraction=0.2, seed=0)
    tr, val = split_ae_images(99, cfg)
    assert len(val) == 19 and len(tr) == 80 and set(tr.tolist()).isdisjoint(val.tolist())
    assert sorted(tr.tolist() + val.tolist()) == list(range(99))
    assert torch.equal(split_ae_images(99, cfg)[1], val) and not torch.equal(
        split_ae_images(99, AutoencoderConfig(ae_val_fraction=0.2, seed=1))[1], val
    )
    tr0, val0 = split_ae_images(10, AutoencoderConfig(ae_val_fraction=0.0, seed=0))
    assert tr0.tolist() == list(range(10)) and len(val0) == 0


def _tiny_ae_config(**over):
    return BENCHMARK.config_object(
        resolve_config(
            {
                "loss": "pixel",
                "model": "reference",
                "embedding": 8,
                "epochs": 3,
                "batch_size": 8,
                "ae_val_fraction": 0.25,
                "device": "cpu",
                **over,
            }
        )
    )


def test_held_out_loss_is_the_mean_reconstruction_loss_in_eval_mode(tmp_path):
    images = torch.from_numpy(_asymmetric(32, 13, seed=5))
    cfg = _tiny_ae_config(epochs=1)
    model, outcome = train_autoencoder(cfg, images, tmp_path, progress=False)
    assert [sorted(r) for r in outcome.history] == [["epoch", "neg_val_loss", "train_loss", "val_loss"]]
    # recompute the last epoch's validation loss independently from the last checkpoint's weights
    last = build_autoencoder("reference", 64, 8)
    last.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt")["model"])
    last.eval()
    _, val = split_ae_images(len(images), cfg)
    assert len(val) == 3  # floor(0.25 * 13)
    x = torch.nn.functional.pad(images[val].float() / 255, (16, 16, 16, 16), mode="reflect")
    with torch.no_grad():
        expected = float(((last(x)[0] - x) ** 2).mean())
    assert outcome.history[-1]["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert outcome.history[-1]["neg_val_loss"] == -outcome.history[-1]["val_loss"]


def test_held_out_selection_embeds_the_best_validation_epoch(tmp_path, monkeypatch):
    """Validation losses 0.5, 0.2, 0.3: the weights after epoch 2 are returned (and again on resume)."""
    scripted = iter([0.5, 0.2, 0.3])
    monkeypatch.setattr(AutoencoderTask, "validation_loss", lambda self: next(scripted))
    after_epoch: dict[int, dict] = {}
    real_train_epoch = AutoencoderTask.train_epoch

    def train_epoch(self, epoch, epochs):
        row = real_train_epoch(self, epoch, epochs)
        after_epoch[epoch + 1] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return row

    monkeypatch.setattr(AutoencoderTask, "train_epoch", train_epoch)
    images = torch.from_numpy(_asymmetric(32, 12, seed=6))
    cfg = _tiny_ae_config(model="compact", image_size=32)  # the selection does not depend on the model
    model, outcome = train_autoencoder(cfg, images, tmp_path, progress=False)
    assert [r["val_loss"] for r in outcome.history] == [0.5, 0.2, 0.3] and outcome.best_epoch == 2
    state = model.state_dict()
    assert all(torch.equal(state[k], after_epoch[2][k]) for k in state)
    assert not all(torch.equal(state[k], after_epoch[3][k]) for k in state)
    assert not model.training
    # a finished run in the same folder is not retrained and still gives the chosen epoch's weights
    again, outcome2 = train_autoencoder(cfg, images, tmp_path, progress=False)
    assert outcome2.start_epoch == 3 and outcome2.best_epoch == 2
    assert all(torch.equal(again.state_dict()[k], after_epoch[2][k]) for k in state)


# -- the reference classifier protocol --------------------------------------------------------


def test_reference_mlp_building_blocks():
    mlp = build_mlp(8, (64, 32), activation="leaky_relu")
    acts = [m for m in mlp if not isinstance(m, nn.Linear)]
    assert len(acts) == 2 and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.01 for a in acts)
    assert isinstance(mlp[-1], nn.Linear)  # no output activation
    assert [reference_patience(e) for e in (10, 100, 200, 210, 500)] == [10, 10, 10, 11, 25]


def _xor(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    x = x + 0.15 * torch.sign(x)  # a margin around the axes: separable by one hidden layer
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()


def test_reference_protocol_on_xor_selects_the_hidden_layer():
    x, y = _xor(400, 0)
    xt, yt = _xor(200, 1)
    sel = evaluate_mlps(
        x,
        y,
        xt,
        yt,
        hidden_layers=[(), (32,)],
        epochs=300,
        patience=15,
        batch_size=32,
        lr=1e-2,
        classes=2,
        protocol="reference",
        progress=False,
    )
    linear, hidden = sel.rows
    assert linear["val_accuracy"] < 0.75 and hidden["val_accuracy"] > 0.95
    assert sel.selected == (32,) and hidden["selected"] == "*" and sel.test_accuracy > 0.95


def test_reference_linear_mlp_converges_to_least_squares_on_one_hot():
    """MSE against one-hot targets makes the linear MLP a least-squares regression: its outputs
    and loss must reach the closed-form solution (unstandardised inputs with an offset)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 3, generator=g) * 1.5

    def data(n, seed):
        gg = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 4, (n,), generator=gg)
        return centres[y] + torch.randn(n, 3, generator=gg) + 3.0, y

    x, y = data(400, 1)
    xt, _ = data(200, 2)
    # full batch, validation = training data: the monitored loss is the training objective
    model, row = train_mlp(
        (),
        x,
        y,
        x,
        y,
        epochs=1500,
        patience=reference_patience(1500),
        batch_size=len(x),
        lr=2e-2,
        classes=4,
        protocol="reference",
    )
    ones = lambda z: torch.cat([z, torch.ones(len(z), 1)], 1)  # noqa: E731
    w = torch.linalg.lstsq(ones(x), torch.eye(4)[y]).solution
    assert row["val_loss"] == pytest.approx(float(((ones(x) @ w - torch.eye(4)[y]) ** 2).mean()), rel=1e-4)
    with torch.no_grad():
        out = model(xt)
    assert float((out - ones(xt) @ w).abs().max()) < 5e-3
    assert torch.equal(out.argmax(1), (ones(xt) @ w).argmax(1))


def test_reference_stopping_rule_and_kept_weights():
    """Random labels: the kept epoch is the first lowest validation loss, training stops exactly
    ``patience`` epochs after it, and the reported accuracy is that epoch's."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 6, generator=g), torch.randint(0, 10, (300,), generator=g)
    xv, yv = torch.randn(100, 6, generator=g), torch.randint(0, 10, (100,), generator=g)
    hist: list[dict] = []
    model, row = train_mlp(
        (32,), x, y, xv, yv, epochs=400, patience=12, batch_size=32, lr=1e-2, protocol="reference", history=hist
    )
    losses = [h["val_loss"] for h in hist]
    best = int(np.argmin(losses)) + 1
    assert row["best_epoch"] == best and row["epochs"] == len(hist) == best + 12 < 400
    assert row["val_loss"] == losses[best - 1] and row["val_accuracy"] == hist[best - 1]["val_accuracy"]
    with torch.no_grad():
        assert float(nn.functional.mse_loss(model(xv), torch.eye(10)[yv])) == pytest.approx(row["val_loss"], rel=1e-6)


def test_reference_protocol_uses_raw_embeddings_ce_standardises():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(120, 4, generator=g), torch.randint(0, 3, (120,), generator=g)
    kw = dict(hidden_layers=[(8,)], epochs=5, patience=5, batch_size=32, classes=3, progress=False)
    for protocol, same in (("ce", True), ("reference", False)):
        a = evaluate_mlps(x, y, x[:30], y[:30], protocol=protocol, **kw).rows[0]
        b = evaluate_mlps(50 * x + 7, y, 50 * x[:30] + 7, y[:30], protocol=protocol, **kw).rows[0]
        assert (abs(a["val_loss"] - b["val_loss"]) < 1e-4) is same, protocol


# -- the paper preset on synthetic SVHN / STL-10 files ----------------------------------------


def test_paper_preset_on_synthetic_svhn_mat(tmp_path, capsys):
    from lossnet.cli.main import main

    d = tmp_path / "svhn"
    d.mkdir()
    write_svhn(d / "extra_32x32.mat", _asymmetric(32, 20, seed=1), np.full(20, 3))
    write_svhn(d / "train_32x32.mat", _asymmetric(32, 30, seed=2), np.arange(30) % 10 + 1)
    write_svhn(d / "test_32x32.mat", _asymmetric(32, 10, seed=3), np.arange(10) + 1)
    js, out = tmp_path / "r.json", tmp_path / "run"
    assert (
        main(
            [
                "bench",
                "autoencoder",
                "--preset",
                "paper",
                "--dataset",
                "svhn",
                "--data",
                str(d),
                "--loss",
                "pixel",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--json",
                str(js),
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads(js.read_text())
    c = res["config"]
    assert (c["preset"], c["model"], c["image_size"], c["batch_size"], c["ae_val_fraction"], c["mlp_protocol"]) == (
        "paper",
        "reference",
        64,
        256,
        0.2,
        "reference",
    )
    m = res["metrics"]
    assert m["svhn/ae_best_epoch"] == 1 and m["svhn/ae_val_loss"] > 0 and 0 <= m["svhn/accuracy"] <= 1
    mlps = json.loads((out / "mlps.json").read_text())
    assert (
        mlps["protocol"] == "reference"
        and len(mlps["mlps"]) == 7
        and sum(r["selected"] == "*" for r in mlps["mlps"]) == 1
    )
    assert all({"hidden", "val_accuracy", "val_loss", "best_epoch", "epochs"} <= set(r) for r in mlps["mlps"])
    assert (out / "best.pt").is_file() and "val_loss" in capsys.readouterr().out


def test_paper_preset_on_synthetic_stl10_bin_with_a_train_mode_loss_network(tmp_path):
    d = tmp_path / "stl"
    d.mkdir()
    write_stl10(d / "unlabeled_X.bin", _asymmetric(96, 10, seed=4))
    write_stl10(d / "train_X.bin", _asymmetric(96, 20, seed=5), d / "train_y.bin", np.arange(20) % 10 + 1)
    write_stl10(d / "test_X.bin", _asymmetric(96, 10, seed=6), d / "test_y.bin", np.arange(10) + 1)
    cfg = resolve_config(
        {
            "preset": "paper",
            "dataset": "stl10",
            "data": str(d),
            "net": "alexnet",
            "layer": "relu1",
            "weights": "none",
            "epochs": 1,
            "device": "cpu",
        }
    )
    assert (cfg["image_size"], cfg["normalize"], cfg["loss_net_mode"]) == (96, "none", "train")
    res = run(cfg, tmp_path / "w", progress=False)
    assert res.status == "done" and 0 <= res.metrics["stl10/accuracy"] <= 1 and res.metrics["stl10/ae_best_epoch"] == 1
    assert len(res.details) == 7
    ckpt = load_checkpoint(tmp_path / "w" / "checkpoint.pt")
    assert ckpt["model"]["fc_dec.weight"].shape == (1024 * 9, 64)  # the reference decoder at 96 px: 3 x 3 seed


def test_train_mode_loss_network_statistics_are_run_state_and_validation_leaves_them(tmp_path):
    """A BatchNorm loss network in train mode updates its running statistics while the AE trains
    (as in the reference); validation runs it in eval mode without touching them, and a resumed run
    gets them back from the checkpoint."""
    images = torch.from_numpy(_asymmetric(32, 10, seed=7))
    cfg = _tiny_ae_config(
        net="vgg16_bn",
        layer="E",
        weights="none",
        loss="perceptual",
        normalize="none",
        loss_net_mode="train",
        epochs=1,
        model="compact",
        image_size=32,
    )
    tr, val = split_ae_images(len(images), cfg)
    task = AutoencoderTask(cfg, images[tr], images[val], torch.device("cpu"), progress=False)
    task.begin(0)
    task.model.train()
    stats0 = task.state()["loss_net_stats"]
    assert stats0 and any(k.endswith("running_mean") for k in stats0)
    real_validation = task.validation_loss
    seen = {}

    def validation_loss():
        before = task.state()["loss_net_stats"]
        loss = real_validation()
        seen["unchanged"] = all(torch.equal(before[k], v) for k, v in task.state()["loss_net_stats"].items())
        seen["restored_mode"] = task.model.training
        return loss

    task.validation_loss = validation_loss
    row = task.train_epoch(0, 1)
    assert row["val_loss"] > 0 and seen == {"unchanged": True, "restored_mode": True}
    stats1 = task.state()["loss_net_stats"]
    assert not all(torch.equal(stats0[k], stats1[k]) for k in stats0)  # training moved them
    fresh = AutoencoderTask(cfg, images[tr], images[val], torch.device("cpu"), progress=False)
    fresh.load_state(task.state(), 1)
    assert all(torch.equal(fresh.state()["loss_net_stats"][k], v) for k, v in stats1.items())
