"""A torchmetrics ``Metric`` around any lossnet perceptual metric or preset.

:class:`PerceptualSimilarity` accumulates the mean perceptual distance over batches as two states,
the sum of the per-image distances and their count, both reduced with ``dist_reduce_fx="sum"``.
Under DDP, ``compute()`` therefore returns the mean over every image of every rank: the same number
one process gets over the same images (in float64 up to summation order). The states are float64
so that a long evaluation loses no precision to accumulation.

Examples::

    from lossnet.integrations.torchmetrics import PerceptualSimilarity

    metric = PerceptualSimilarity(preset="lpips-alex")               # LPIPS, lossnet's exact preset
    metric = PerceptualSimilarity(net="vgg16", layers=("L",), distance="mse")
    metric = PerceptualSimilarity(metric=lossnet.PerceptualMetric(preset="dists"))
    for pred, target in loader:
        metric.update(pred, target)    # images in input_range, (N, 3, H, W)
    value = metric.compute()           # mean distance, lower is better

Built from ``preset`` / ``net`` (not from ``metric=``) the distance runs through
:class:`lossnet.PerceptualLoss` with ``reduction="none"``: ``forward`` is differentiable with
respect to ``preds`` (``is_differentiable``) and gives the same values as
:class:`lossnet.PerceptualMetric` of that configuration. A :class:`lossnet.PerceptualMetric`
passed as ``metric=`` runs in ``torch.inference_mode`` and gives values without gradients.
The loss network stays in eval mode when the metric is put in train mode (lossnet's
``loss_net_mode="eval"``), so batch-norm statistics never move.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

import lossnet  # noqa: F401  (before torchmetrics: installs the torchvision shim torchmetrics' import needs)

try:
    from torchmetrics import Metric
except ImportError as exc:  # torchmetrics may become an optional extra (issue #27): say what to install
    raise ImportError(
        f"lossnet.integrations.torchmetrics needs the torchmetrics package (pip install torchmetrics): {exc}"
    ) from exc

from lossnet.errors import InputError

__all__ = ["PerceptualSimilarity"]


class PerceptualSimilarity(Metric):
    """Mean perceptual distance between ``preds`` and ``target`` over everything updated.

    Args:
        preset: a lossnet preset (``"lpips-alex"``, ``"lpips-vgg"``, ``"lpips-squeeze"``,
            ``"dists"``).
        metric: a ready lossnet metric (:class:`lossnet.PerceptualMetric`, or a
            :class:`lossnet.PerceptualLoss` with ``reduction="none"``), or any module/callable
            mapping ``(preds, target)`` to per-image distances ``(N,)``. Not with the other
            configuration arguments.
        net, layers, distance, weights, weights_dir, input_range, heads: as
            :class:`lossnet.PerceptualMetric` (``weights=None`` is random init).
        **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``,
            ``dist_sync_on_step``, ...).

    ``update(preds, target)`` takes ``(N, 3, H, W)`` batches; ``compute()`` returns the mean
    distance as a 0-d tensor of the distances' dtype (lower is more similar).
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0

    sum_distance: torch.Tensor
    count: torch.Tensor

    def __init__(
        self,
        preset: str | None = None,
        *,
        metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        net: str | None = None,
        layers: Sequence[str] | str | None = None,
        distance: str | None = None,
        weights: Any = "imagenet",
        weights_dir: str | os.PathLike | None = None,
        input_range: Sequence[float] = (0, 1),
        heads: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if metric is not None:
            given = {
                k: v
                for k, v in dict(
                    preset=preset, net=net, layers=layers, distance=distance, heads=heads, weights_dir=weights_dir
                ).items()
                if v is not None
            }
            if given or weights != "imagenet" or tuple(input_range) != (0, 1):
                names = ", ".join(
                    sorted(given)
                    + (["weights"] if weights != "imagenet" else [])
                    + (["input_range"] if tuple(input_range) != (0, 1) else [])
                )
                raise InputError(
                    f"PerceptualSimilarity: metric= is a ready metric; configure it there, not with {names}"
                )
            if getattr(metric, "reduction", "none") != "none":
                raise InputError(
                    f"PerceptualSimilarity: metric= needs per-image distances; this PerceptualLoss has "
                    f"reduction={metric.reduction!r} (use reduction='none')"
                )
            if not callable(metric):
                raise InputError(f"PerceptualSimilarity: metric= must be callable, got {type(metric).__name__}")
            self.metric = metric
        else:
            # PerceptualLoss: gradients reach preds; range_check="error" as PerceptualMetric (no silent clamp)
            self.metric = lossnet.PerceptualLoss(
                net=net,
                layers=layers,
                distance=distance,
                preset=preset,
                heads=heads,
                weights=weights,
                weights_dir=weights_dir,
                input_range=input_range,
                reduction="none",
                range_check="error",
            )
        self._out_dtype = torch.get_default_dtype()
        self.add_state("sum_distance", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add the distances of one batch of image pairs."""
        d = self.metric(preds, target)
        if not isinstance(d, torch.Tensor) or d.ndim != 1 or d.shape[0] != preds.shape[0]:
            got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise InputError(
                f"PerceptualSimilarity: the metric must return one distance per image, shape "
                f"({preds.shape[0]},); got {got}"
            )
        self._out_dtype = d.dtype
        if d.is_inference():  # a PerceptualMetric's output: a plain copy may enter the states
            d = d.clone()
        self.sum_distance = self.sum_distance + d.to(torch.float64).sum()
        self.count = self.count + d.shape[0]

    def compute(self) -> torch.Tensor:
        """Mean distance over every pair updated (on every rank, after sync)."""
        return (self.sum_distance / self.count).to(self._out_dtype)
