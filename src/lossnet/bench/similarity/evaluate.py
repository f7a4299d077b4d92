"""The batched BAPPS evaluation loop: distances for every triplet / pair of a decoded subset.

The reference patch's features are computed once per triplet and compared with both distorted
patches: 3 backbone passes per triplet, where the LPIPS authors' loop (``score_2afc_dataset``
calling the model on (ref, p0) and (ref, p1)) runs 4. The three patches of a batch go through the
backbone in one call (``[ref; p0; p1]``), so ``batch_size`` triplets are ``3 * batch_size`` images.
Networks in eval mode have no cross-sample interaction (BatchNorm uses running statistics), so
this gives the same distances as separate calls.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from lossnet.bench.similarity.bapps import DecodedSubset
from lossnet.weights import WeightsSpec

__all__ = ["build_metric", "config_metric", "feature_nodes", "LayerwiseDistance", "distances_2afc", "distances_jnd"]

#: ``features(x) -> list[Tensor]`` and ``compare(fa, fb) -> Tensor(N,)`` or ``(N, L)``.
Features = Callable[[torch.Tensor], list]
Compare = Callable[[list, list], torch.Tensor]


def build_metric(
    net: str,
    layers: Sequence[str],
    distance: str,
    *,
    preset: str | None = None,
    weights: str | WeightsSpec | None = "imagenet",
    weights_dir: str | None = None,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
    **knobs,
):
    """A :class:`lossnet.loss.PerceptualMetric` on ``device`` in eval mode.

    ``knobs``: loss-network options passed through when given (``normalize``, ``transform_input``,
    ``loss_net_mode``; see :class:`lossnet.network.LossNetwork`).

    ``channels_last`` (NHWC) is what cuDNN's tensor-core kernels want under AMP; on CPU (oneDNN,
    torch 2.13) AlexNet, VGG16 and ResNet-50 at 64x64 run at the same speed either way (0.98-0.99x,
    measured). Distances change only at float rounding level.
    """
    from lossnet.loss import PerceptualMetric

    w = WeightsSpec.parse(weights)
    metric = PerceptualMetric(
        net=net, layers=tuple(layers), distance=distance, preset=preset, weights=w, weights_dir=weights_dir, **knobs
    )
    metric = metric.to(device).eval()
    if channels_last:
        metric = metric.to(memory_format=torch.channels_last)
    return metric


def config_metric(config, device: str | torch.device = "cpu"):
    """``(layers, metric)`` a similarity run of ``config`` (its ``SimilarityConfig``) scores with:
    ``layer = "all"`` is every feature node, else the comma list; a ``heads`` file must still have the
    digest recorded when the run was configured; weights ``none`` are drawn from the config's seed
    (one run key, one set of numbers). The run and its step timing build it here.

    Raises:
        LossnetError: the heads file changed since the run was configured.
    """
    from lossnet.bench.base import loss_network_knobs
    from lossnet.errors import LossnetError

    if config.layer == "all":
        layers = feature_nodes(config.net, config.size)
    else:
        layers = [n.strip() for n in str(config.layer).split(",") if n.strip()]
    knobs = loss_network_knobs(config)
    if config.heads:
        from lossnet.heads.file import heads_digest

        if heads_digest(config.heads) != config.heads_sha256:
            raise LossnetError(
                f"similarity: heads file {config.heads} changed since the run was configured (sha256 differs)"
            )
        knobs["heads"] = config.heads
    torch.manual_seed(config.seed)
    metric = build_metric(
        config.net,
        layers,
        config.distance,
        preset=config.metric_preset,
        weights=config.weights,
        weights_dir=config.weights_dir,
        device=device,
        **knobs,
    )
    return layers, metric


def feature_nodes(arch: str, size: int = 64) -> list[str]:
    """Every FX node of ``arch`` whose output at a ``size`` x ``size`` input is a 4-D feature map.

    This is the x-axis of Kumar et al.'s layer-wise curve: scalar/shape nodes and the flattened
    classifier part are left out (they are not feature maps, and the ../shared weights hold only
    the convolutional part).
    """
    from lossnet.models.builder import build_feature_extractor
    from lossnet.models.layers import list_nodes

    nodes = list(list_nodes(arch))
    body = build_feature_extractor(arch, nodes)
    with torch.inference_mode():
        out = body(torch.zeros(1, 3, size, size))
    return [n for n in nodes if isinstance(out.get(n), torch.Tensor) and out[n].ndim == 4]


class LayerwiseDistance:
    """Per-layer distances of one metric's feature lists: ``(N, L)`` instead of the summed ``(N,)``.

    Args:
        distance: a name in :data:`lossnet.distances.DISTANCES` (unweighted).
    """

    def __init__(self, distance: str) -> None:
        self.distance = distance

    def __call__(self, fa: list, fb: list) -> torch.Tensor:
        from lossnet.distances import compute_distance

        return torch.stack([compute_distance(self.distance, [a], [b]) for a, b in zip(fa, fb)], dim=1)


def _to_float(x: torch.Tensor, device) -> torch.Tensor:
    # NCHW float: the metric standardises it there (a per-channel broadcast that is ~2x slower
    # over NHWC) and then converts it to its own memory format.
    # (The decoded batches are NHWC views; .contiguous() makes the uint8 copy NCHW.)
    return x.contiguous().to(device, non_blocking=True).float().div_(255.0)


def _iterate(n: int, batch_size: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, total=len(starts), disable=not progress, leave=False, unit="batch")


def distances_2afc(
    data: DecodedSubset,
    features: Features,
    compare: Compare,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(d0, d1)`` for every triplet of a decoded 2AFC subset, float64, shape (N,) or (N, L)."""
    d0s, d1s = [], []
    ref, p0, p1 = data.images["ref"], data.images["p0"], data.images["p1"]
    with torch.inference_mode():
        for s in _iterate(len(data), batch_size, f"2afc/{data.subset}", progress):
            sl = slice(s, s + batch_size)
            n = ref[sl].shape[0]
            # One backbone call on [ref; p0; p1]: 3 passes per triplet, and fewer, larger calls.
            f = features(_to_float(torch.cat([ref[sl], p0[sl], p1[sl]]), device))
            fr, f0, f1 = [x[:n] for x in f], [x[n : 2 * n] for x in f], [x[2 * n :] for x in f]
            d0s.append(compare(fr, f0).double().cpu())
            d1s.append(compare(fr, f1).double().cpu())
    return torch.cat(d0s).numpy(), torch.cat(d1s).numpy()


def distances_jnd(
    data: DecodedSubset,
    features: Features,
    compare: Compare,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Distance between the two patches of every pair of a decoded JND subset, float64."""
    ds = []
    p0, p1 = data.images["p0"], data.images["p1"]
    with torch.inference_mode():
        for s in _iterate(len(data), batch_size, f"jnd/{data.subset}", progress):
            sl = slice(s, s + batch_size)
            n = p0[sl].shape[0]
            f = features(_to_float(torch.cat([p0[sl], p1[sl]]), device))
            ds.append(compare([x[:n] for x in f], [x[n:] for x in f]).double().cpu())
    return torch.cat(ds).numpy()
