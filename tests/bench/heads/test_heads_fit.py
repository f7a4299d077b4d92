"""Heads fitting (issue #20) against independent truth: the lpips package's own trainer, and
planted heads recovered from judgments they generated."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from lossnet.bench.heads.fit import HeadsModel, epoch_order, fit_heads, lr_at

LPIPS_LAYERS = {
    "alexnet": ("alex", "features.1,features.4,features.7,features.9,features.11"),
    "vgg16": ("vgg", "features.3,features.8,features.15,features.22,features.29"),
}


def _synthetic_train(root, shared_dir, n=12):
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps

    return write_synthetic_bapps(
        root,
        n_2afc=n,
        subsets_2afc=("traditional",),
        split="train",
        source_dir=shared_dir / "data" / "sr" / "bsd100",
        seed=1,
    )


def _lpips_trainer(lpips_net: str, weights_file, init: HeadsModel):
    """lpips's own Trainer (CPU, random trunk so nothing downloads), given the ../shared backbone
    weights and our initial heads and ranking network."""
    import lpips  # noqa: F401
    from lpips.trainer import Trainer

    from lossnet.weights import load_state_dict_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer()
        tr.initialize(model="lpips", net=lpips_net, use_gpu=False, is_train=True, pnet_rand=True, lr=1e-4, beta1=0.5)
    state = load_state_dict_file(weights_file)
    trunk = tr.net.net  # slices of torchvision's `features`: sliceK.<index> is features.<index>
    trunk.load_state_dict({k: state["features." + k.split(".", 1)[1]] for k in trunk.state_dict()})
    with torch.no_grad():
        for k, h in enumerate(init.heads):
            tr.net.lins[k].model[1].weight.copy_(h.view(1, -1, 1, 1))
        for i in (0, 2, 4):  # Dist2LogitLayer's 1x1 convs <- our linear layers
            conv, lin = tr.rankLoss.net.model[i], init.rank.model[i]
            conv.weight.copy_(lin.weight.view_as(conv.weight))
            conv.bias.copy_(lin.bias)
    return tr


@pytest.mark.parametrize("net", ["alexnet", pytest.param("vgg16", marks=pytest.mark.slow)])
def test_one_epoch_equals_lpips_trainer(net, tmp_path, shared_dir, shared_weights_dir):
    from lossnet.bench.heads.data import bapps_2afc

    lpips_net, layers = LPIPS_LAYERS[net]
    root = _synthetic_train(tmp_path / "bapps", shared_dir)
    wfile = shared_weights_dir / f"{net}-imagenet1k-v1-features.safetensors"
    seed, bs = 3, 4
    res = fit_heads(
        dict(
            net=net,
            layers=layers,
            weights=str(wfile),
            data=str(root),
            epochs=1,
            decay_epochs=0,
            batch_size=bs,
            seed=seed,
            val="none",
        ),
        tmp_path / "heads.safetensors",
        progress=False,
    )
    channels = [h.numel() for h in res.heads]
    torch.manual_seed(seed)  # fit seeds, then builds the task: HeadsModel is the first to draw
    init = HeadsModel(channels)
    tr = _lpips_trainer(lpips_net, wfile, init)
    ds = bapps_2afc(root, "train")
    order = epoch_order(len(ds), seed, 0)
    torch.manual_seed(seed)  # lpips's dropout draws from the global generator; ours from one seeded alike
    theirs = []
    for s in range(0, len(order), bs):
        items = [ds[i] for i in order[s : s + bs]]
        data = {k: torch.stack([it[k] for it in items]).float() / 255 * 2 - 1 for k in ("ref", "p0", "p1")}
        data["judge"] = torch.tensor([it["judge"] for it in items], dtype=torch.float32).view(-1, 1, 1, 1)
        tr.set_input(data)
        tr.optimize_parameters()
        theirs.append(float(tr.loss_total.detach()))
    ours = res.task.losses
    assert len(ours) == len(theirs) == 3
    assert np.max(np.abs(np.array(ours) - np.array(theirs))) <= 1e-5
    moved = max(float((h - i.detach().clamp(min=0)).abs().max()) for h, i in zip(res.heads, init.heads))
    assert moved > 1e-4  # the comparison is not between two untouched inits
    for k, h in enumerate(res.heads):
        assert float((h - tr.net.lins[k].model[1].weight.detach().view(-1)).abs().max()) <= 1e-5
        assert bool((h >= 0).all())
    for i in (0, 2, 4):
        conv, lin = tr.rankLoss.net.model[i], res.task.model.rank.model[i]
        assert float((lin.weight.detach() - conv.weight.detach().view_as(lin.weight)).abs().max()) <= 1e-5


def test_lr_schedule_is_lpips_update_learning_rate():
    # lpips: after each epoch past nepoch, lr -= lr0 / nepoch_decay (train.py: epochs 1..nepoch+nepoch_decay)
    lr0, old, expect = 1e-4, 1e-4, []
    for epoch in range(1, 5 + 5 + 1):
        expect.append(old)
        if epoch > 5:
            old = old - lr0 / 5
    assert [lr_at(e, lr0, 5, 5) for e in range(10)] == expect
    assert expect[-1] == pytest.approx(lr0 / 5)


def test_rerun_resumes_and_other_config_is_refused(tmp_path, shared_dir, shared_weights_dir):
    from lossnet.errors import CheckpointError

    root = _synthetic_train(tmp_path / "bapps", shared_dir, n=8)
    wfile = str(shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors")
    cfg = dict(
        net="alexnet",
        layers="E,S",
        weights=wfile,
        data=str(root),
        epochs=1,
        decay_epochs=1,
        batch_size=4,
        seed=0,
        val="holdout",
        val_fraction=0.25,
        lr=1e-2,
    )
    first = fit_heads(cfg, tmp_path / "h.safetensors", progress=False)
    hist = json.loads((tmp_path / "h.safetensors.run" / "history.json").read_text())
    assert [r["epoch"] for r in hist["history"]] == [1, 2] and all(0 <= r["val_2afc"] <= 1 for r in hist["history"])
    again = fit_heads(cfg, tmp_path / "h.safetensors", progress=False)
    assert again.outcome.start_epoch == 2  # nothing left to train; the best epoch's heads are reloaded
    assert all(torch.equal(a, b) for a, b in zip(first.heads, again.heads))
    with pytest.raises(CheckpointError, match="lr"):
        fit_heads(dict(cfg, lr=1e-3), tmp_path / "h.safetensors", progress=False)


def test_resume_after_kill_matches_uninterrupted(tmp_path, shared_dir, shared_weights_dir, monkeypatch):
    from lossnet.bench.heads import fit as fitmod

    root = _synthetic_train(tmp_path / "bapps", shared_dir, n=8)
    wfile = str(shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors")
    cfg = dict(
        net="alexnet",
        layers="E,S",
        weights=wfile,
        data=str(root),
        epochs=1,
        decay_epochs=1,
        batch_size=4,
        seed=0,
        val="none",
        lr=1e-2,
    )
    full = fit_heads(cfg, None, workdir=tmp_path / "full", progress=False)
    calls = {"n": 0}
    real = fitmod.HeadsTask.train_epoch

    def killed(self, epoch, epochs):
        calls["n"] += 1
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch, epochs)

    monkeypatch.setattr(fitmod.HeadsTask, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        fit_heads(cfg, None, workdir=tmp_path / "killed", progress=False)
    monkeypatch.setattr(fitmod.HeadsTask, "train_epoch", real)
    resumed = fit_heads(cfg, None, workdir=tmp_path / "killed", progress=False)
    assert resumed.outcome.start_epoch == 1
    for a, b in zip(full.heads, resumed.heads):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_planted_heads_are_recovered(tmp_path, shared_dir, shared_weights_dir):
    """Judgments generated from a known non-negative head on real patches (bsd100 crops, our own
    random distortions) are recovered: the fitted heads correlate >= 0.95 with the planted ones.

    The weights are identifiable only when the judgments carry more than the ordering: with
    near-deterministic judgments (h ~ 0 or 1) any head that orders the pairs alike fits them, so
    the judgments here are soft (1/T = 2 / median |d0 - d1|), as BAPPS's (fractions of 5 humans).
    One layer (alexnet relu1, 64 channels), 1600 training triplets, lr 1e-2, 10 + 10 epochs and no
    dropout: ~1300 steps. (Measured: 0.996 with 20 + 20 epochs and batch 50.)
    """
    from _helpers.planted import planted_heads, write_planted_bapps

    from lossnet.loss import PerceptualMetric

    wfile = str(shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors")
    true = planted_heads([64], seed=1)
    truth = PerceptualMetric(net="alexnet", layers=["relu1"], channel_weights=true, weights=wfile)
    info = write_planted_bapps(
        tmp_path / "planted",
        truth,
        image_dir=shared_dir / "data" / "sr" / "bsd100",
        n_train=1600,
        n_val=400,
        seed=2,
        sharpness=2.0,
    )
    res = fit_heads(
        dict(
            net="alexnet",
            layers="relu1",
            weights=wfile,
            data=str(info["root"]),
            epochs=10,
            decay_epochs=10,
            lr=1e-2,
            batch_size=25,
            dropout=0.0,
            val="split",
        ),
        tmp_path / "fitted.safetensors",
        progress=False,
    )
    corr = float(np.corrcoef(res.heads[0].numpy(), true[0].numpy())[0, 1])
    assert corr >= 0.95, corr
    # an unrelated non-negative head of the same distribution is far from it (the test can fail)
    assert float(np.corrcoef(planted_heads([64], seed=7)[0].numpy(), true[0].numpy())[0, 1]) < 0.5
    assert res.val_2afc >= info["ceiling_val"] - 0.01
