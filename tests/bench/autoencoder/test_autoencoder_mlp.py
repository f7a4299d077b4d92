"""Benchmark 4: the autoencoder model and the downstream MLP selection protocol."""

from __future__ import annotations

import pytest
import torch

from lossnet.bench.autoencoder.mlp import HIDDEN_LAYERS, build_mlp, evaluate_mlps, select_best, split_indices
from lossnet.bench.autoencoder.model import ConvAutoencoder


def test_hidden_layers_are_the_papers_seven():
    assert HIDDEN_LAYERS == ((), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128))
    assert [m.out_features for m in build_mlp(64, (64, 32)) if isinstance(m, torch.nn.Linear)] == [64, 32, 10]
    assert len(build_mlp(64, ())) == 1


def test_select_best_takes_max_and_first_on_ties():
    assert select_best([0.5, 0.7, 0.6]) == 1
    assert select_best([0.8, 0.9, 0.9, 0.1]) == 1
    with pytest.raises(ValueError):
        select_best([])


def test_split_is_seeded_80_20_and_disjoint():
    tr, val = split_indices(100, 0.2, seed=3)
    assert len(tr) == 80 and len(val) == 20 and set(tr.tolist()).isdisjoint(val.tolist())
    assert sorted(tr.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(split_indices(100, 0.2, seed=3)[1], val) and not torch.equal(
        split_indices(100, 0.2, seed=4)[1], val
    )


def _xor(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels = XOR of the signs of two coordinates: no linear classifier beats ~50 %, a hidden layer gets ~100 %."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    x = x + 0.15 * torch.sign(x)  # keep a margin around the axes
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    return x, y


def test_mlp_selection_on_a_case_with_a_known_answer():
    x, y = _xor(600, 0)
    xt, yt = _xor(300, 1)
    sel = evaluate_mlps(
        x,
        y,
        xt,
        yt,
        hidden_layers=[(), (32,)],
        epochs=200,
        patience=30,
        batch_size=32,
        lr=1e-2,
        classes=2,
        progress=False,
    )
    linear, hidden = sel.rows
    assert linear["val_accuracy"] < 0.75 and hidden["val_accuracy"] > 0.95
    assert sel.selected == (32,) and hidden["selected"] == "*" and linear["selected"] == ""
    assert sel.test_accuracy > 0.95
    assert set(sel.rows[0]) == {"hidden", "val_accuracy", "val_loss", "best_epoch", "epochs", "selected"}


def test_early_stopping_stops_before_max_epochs():
    # Random labels: validation accuracy cannot keep improving, so patience ends training early.
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 4, generator=g), torch.randint(0, 10, (200,), generator=g)
    sel = evaluate_mlps(x, y, x[:50], y[:50], hidden_layers=[()], epochs=500, patience=3, progress=False)
    assert sel.rows[0]["epochs"] < 500


@pytest.mark.parametrize("size", [64, 96])
def test_autoencoder_shapes(size):
    model = ConvAutoencoder(size, embedding=64)
    x = torch.rand(2, 3, size, size)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape and mu.shape == (2, 64) and logvar is None
    assert 0 <= float(recon.detach().min()) and float(recon.detach().max()) <= 1
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.stride == (2, 2) for c in convs)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder) == 4


def test_vae_kl_matches_torch_distributions():
    model = ConvAutoencoder(64, embedding=8, variational=True)
    x = torch.rand(3, 3, 64, 64)
    _, mu, logvar = model(x)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(1).mean()
    torch.testing.assert_close(ConvAutoencoder.kl_divergence(mu, logvar), ref)
    model.eval()  # evaluation uses the mean code: deterministic
    assert torch.equal(model(x)[0], model(x)[0])
