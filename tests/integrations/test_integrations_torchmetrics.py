"""lossnet.integrations.torchmetrics.PerceptualSimilarity: values equal lossnet's own metric, the
states sum across DDP ranks (two gloo processes on this CPU), gradients reach preds."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum  # after lossnet (torchvision shim)

import lossnet
from lossnet.errors import InputError
from lossnet.integrations.torchmetrics import PerceptualSimilarity

N_PAIRS = 10  # split 6 / 4 over two ranks: unequal counts, so a mean of rank means would be wrong
SPLIT = (6, 4)


def _data():
    g = torch.Generator().manual_seed(1234)
    a = torch.rand(N_PAIRS, 3, 48, 48, generator=g)
    b = (a + 0.3 * torch.rand(N_PAIRS, 3, 48, 48, generator=g)).clamp(0, 1)
    return a, b


def _build(config):
    torch.manual_seed(0)  # weights=None: the same random init in every process
    return PerceptualSimilarity(**config)


def _update_in_batches(metric, a, b, batch=3):
    for i in range(0, a.shape[0], batch):
        metric.update(a[i : i + batch], b[i : i + batch])


def _ddp_worker(rank, world, port, config, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        a, b = _data()
        start = sum(SPLIT[:rank])
        shard = slice(start, start + SPLIT[rank])
        metric = _build(config)
        _update_in_batches(metric, a[shard], b[shard])
        local = (metric.sum_distance / metric.count).item()  # this rank's states before the sync
        synced = metric.compute().item()
        count_after = int(metric.count)
        metric.sync()  # the summed float64 states themselves, for the record
        synced64 = (metric.sum_distance / metric.count).item()
        count_synced = int(metric.count)
        metric.unsync()
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "local": local,
                    "synced": synced,
                    "synced64": synced64,
                    "count_after": count_after,
                    "count_synced": count_synced,
                }
            )
        )
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _configs(shared_weights):
    out = [
        pytest.param(
            {"net": "alexnet", "layers": ("S", "L"), "distance": "spatial", "weights": None}, id="alexnet-random-init"
        )
    ]
    if shared_weights.is_dir():
        out.append(
            pytest.param({"preset": "lpips-alex", "weights_dir": str(shared_weights)}, id="lpips-alex-real-weights")
        )
    return out


_SHARED_WEIGHTS = Path(os.environ.get("LOSSNET_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "weights"


@pytest.mark.slow
@pytest.mark.parametrize("config", _configs(_SHARED_WEIGHTS))
def test_ddp_two_processes_equal_single_process(config, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    a, b = _data()
    single = _build(config)
    _update_in_batches(single, a, b)
    expect = single.compute().item()
    expect64 = (single.sum_distance / single.count).item()
    per_image = lossnet.PerceptualMetric(**{k: v for k, v in config.items()})(a, b) if "preset" in config else None
    print(
        f"\n{config}: single process {expect:.9f}; rank0 synced {ranks[0]['synced']:.9f}, rank1 synced "
        f"{ranks[1]['synced']:.9f}; local rank0 {ranks[0]['local']:.9f} rank1 {ranks[1]['local']:.9f}; "
        f"max |synced - single| {max(abs(r['synced'] - expect) for r in ranks):.2e} (float32 result), "
        f"{max(abs(r['synced64'] - expect64) for r in ranks):.2e} (float64 states: {expect64!r})"
    )
    for r in ranks:
        assert abs(r["synced"] - expect) <= 1e-6
        assert abs(r["synced64"] - expect64) <= 1e-12
        assert r["count_synced"] == N_PAIRS  # summed over ranks (a "mean" reduction would give 5)
        assert r["count_after"] == SPLIT[ranks.index(r)]  # states are unsynced again after compute
    # the sync matters: each rank alone gives its own shard's mean, and the mean of the two rank means
    # (unequal counts) is not the synced value
    assert abs(ranks[0]["local"] - ranks[1]["local"]) > 1e-4
    assert abs((ranks[0]["local"] + ranks[1]["local"]) / 2 - expect) > 1e-5
    if per_image is not None:
        assert abs(per_image.double().mean().item() - expect) <= 1e-6


def test_value_equals_perceptual_metric(shared_weights_dir):
    a, b = _data()
    m = PerceptualSimilarity(preset="lpips-alex", weights_dir=shared_weights_dir)
    _update_in_batches(m, a, b, batch=4)
    ref = lossnet.PerceptualMetric(preset="lpips-alex", weights_dir=shared_weights_dir)(a, b)
    assert m.compute().item() == pytest.approx(ref.double().mean().item(), abs=1e-6)
    assert m.compute().dtype == torch.float32
    # a ready PerceptualMetric gives the same value (without gradients)
    m2 = PerceptualSimilarity(metric=lossnet.PerceptualMetric(preset="lpips-alex", weights_dir=shared_weights_dir))
    m2.update(a, b)
    assert m2.compute().item() == pytest.approx(ref.double().mean().item(), abs=1e-6)


def test_forward_is_the_batch_value_and_differentiable():
    a, b = _data()
    m = _build({"net": "vgg16", "layers": ("relu1_2",), "distance": "mse", "weights": None})
    ref = lossnet.PerceptualLoss(net="vgg16", layers=("relu1_2",), distance="mse", weights=None, reduction="none")
    ref.load_state_dict(m.metric.state_dict())
    x = a[:4].clone().requires_grad_()
    batch = m(x, b[:4])
    batch.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert batch.item() == pytest.approx(ref(a[:4], b[:4]).double().mean().item(), abs=1e-6)
    m(a[4:], b[4:])
    assert m.compute().item() == pytest.approx(ref(a, b).double().mean().item(), abs=1e-6)
    assert int(m.count) == N_PAIRS
    m.reset()
    assert int(m.count) == 0 and float(m.sum_distance) == 0.0


def test_metric_attributes_and_states():
    m = _build({"net": "alexnet", "layers": ("E",), "weights": None})
    assert (m.is_differentiable, m.higher_is_better, m.full_state_update) == (True, False, False)
    assert m._reductions["sum_distance"] is dim_zero_sum and m._reductions["count"] is dim_zero_sum
    assert m.sum_distance.dtype == torch.float64
    m.train()
    assert not m.metric.network.body.training  # the loss network stays in eval mode


def test_refusals():
    with pytest.raises(InputError, match="configure it there, not with net"):
        PerceptualSimilarity(metric=lambda x, y: x.mean((1, 2, 3)), net="vgg16")
    with pytest.raises(InputError, match="reduction='mean'"):
        PerceptualSimilarity(metric=lossnet.PerceptualLoss(net="alexnet", layers=("E",), weights=None))
    m = PerceptualSimilarity(metric=lambda x, y: (x - y).abs().mean())
    with pytest.raises(InputError, match=r"one distance per image, shape \(2,\); got \(\)"):
        m.update(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    m = _build({"net": "alexnet", "layers": ("E",), "weights": None})
    with pytest.raises(InputError, match="input_range"):
        m.update(torch.rand(2, 3, 32, 32) * 3, torch.rand(2, 3, 32, 32))
