"""Transform ensembles (``PerceptualMetric(..., ensemble=N)``, ``PerceptualLoss(..., ensemble=N)``).

E-LPIPS-style averaging (Kettunen, Härkönen, Lehtinen, "E-LPIPS: Robust Perceptual Image Similarity
via Random Transformation Ensembles", 2019): a fixed, seeded set of N random image transforms is
applied *identically* to both images, the metric is evaluated on every transformed pair, and the
mean over the N values is the distance (:func:`ensemble_stats` also gives the standard deviation).
A change that the metric only notices at one pixel alignment, orientation or colour order
(adversarial perturbations, trivial shifts) then moves the ensemble much less.

Each transform draws (:class:`Transform`), in this order of application:

- a scale factor, log-uniform in ``scale`` (bilinear, antialiased when shrinking);
- horizontal and vertical flips (``flips``) and a transposition of height and width (``swap``);
- an integer shift of up to ``max_shift`` pixels in each direction (edge pixels replicated);
- a colour change (``colour``): a permutation of the RGB channels and per-channel gains in
  ``[min_gain, 1]`` (values stay inside the input range: gains only move toward 0).

Geometric parts are applied to a ``mask`` too. Every step is differentiable, so
``PerceptualLoss(ensemble=...)`` trains through it.

This is E-LPIPS-*style*: the transform families follow the paper's idea, but the distributions, the
network (no dropout ensemble) and the number of samples are lossnet's own, so the values are not
E-LPIPS's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lossnet.errors import InputError

__all__ = ["Transform", "Ensemble", "make_ensemble", "ensemble_stats"]


@dataclass(frozen=True)
class Transform:
    """One drawn transform (identity with the defaults)."""

    scale: float = 1.0
    flip_h: bool = False
    flip_v: bool = False
    swap: bool = False
    shift: tuple[int, int] = (0, 0)
    perm: tuple[int, int, int] = (0, 1, 2)
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_shift: int = field(default=0, repr=False)

    def geometric(self, x: torch.Tensor, *, image: bool = True) -> torch.Tensor:
        if self.scale != 1.0:
            h, w = x.shape[-2:]
            size = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.scale < 1)
        if self.flip_h:
            x = x.flip(-1)
        if self.flip_v:
            x = x.flip(-2)
        if self.swap:
            x = x.transpose(-1, -2)
        dy, dx = self.shift
        if dy or dx:
            p = self.max_shift
            h, w = x.shape[-2:]
            x = F.pad(x, (p, p, p, p), mode="replicate")[..., p + dy : p + dy + h, p + dx : p + dx + w]
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x[None]
        if x.ndim == 4 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.geometric(x)
        if self.perm != (0, 1, 2):
            x = x[:, list(self.perm)]
        if self.gain != (1.0, 1.0, 1.0):
            x = x * torch.tensor(self.gain, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x

    def mask(self, m: torch.Tensor) -> torch.Tensor:
        if m.ndim == 2:
            m = m[None, None]
        elif m.ndim == 3:
            m = m[:, None]
        return self.geometric(m.float() if not m.is_floating_point() else m)


class Ensemble(nn.Module):
    """A seeded set of ``n`` random transforms; ``ensemble(score, a, b)`` averages
    ``score(t(a), t(b), t(mask), per_layer)`` over them.

    Args:
        n: number of transforms (>= 1).
        seed: seed of the draw (the same seed gives the same transforms, hence the same value).
        max_shift: largest shift in pixels (0: none).
        flips: draw horizontal/vertical flips.
        swap: draw transpositions of height and width.
        scale: ``(low, high)`` range of scale factors, or None for none.
        colour: draw channel permutations and gains.
        min_gain: smallest per-channel gain.
    """

    def __init__(
        self,
        n: int = 8,
        seed: int = 0,
        *,
        max_shift: int = 8,
        flips: bool = True,
        swap: bool = True,
        scale: tuple[float, float] | None = (0.8, 1.25),
        colour: bool = True,
        min_gain: float = 0.8,
    ) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"ensemble size must be an integer >= 1, got {n!r}")
        if not isinstance(max_shift, int) or max_shift < 0:
            raise InputError(f"max_shift must be an integer >= 0, got {max_shift!r}")
        if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise InputError(f"scale must be None or (low, high) with 0 < low <= high, got {scale!r}")
        if not 0 < min_gain <= 1:
            raise InputError(f"min_gain must be in (0, 1], got {min_gain!r}")
        self.n, self.seed = n, seed
        self.config = dict(max_shift=max_shift, flips=flips, swap=swap, scale=scale, colour=colour, min_gain=min_gain)
        g = torch.Generator().manual_seed(int(seed))

        def u() -> float:
            return float(torch.rand((), generator=g, dtype=torch.float64))

        self.transforms: list[Transform] = []
        for _ in range(n):
            # every draw is made whatever is enabled, so switching one family off keeps the others' values
            r = u()
            s = math.exp(math.log(scale[0]) + r * (math.log(scale[1]) - math.log(scale[0]))) if scale else 1.0
            fh, fv, sw = u() < 0.5, u() < 0.5, u() < 0.5
            dy = int(torch.randint(-max_shift, max_shift + 1, (), generator=g))
            dx = int(torch.randint(-max_shift, max_shift + 1, (), generator=g))
            perm = tuple(int(i) for i in torch.randperm(3, generator=g))
            gain = tuple(min_gain + (1 - min_gain) * u() for _ in range(3))
            self.transforms.append(
                Transform(
                    scale=s,
                    flip_h=flips and fh,
                    flip_v=flips and fv,
                    swap=swap and sw,
                    shift=(dy, dx),
                    max_shift=max_shift,
                    perm=perm if colour else (0, 1, 2),
                    gain=gain if colour else (1.0, 1.0, 1.0),
                )
            )

    def extra_repr(self) -> str:
        return f"n={self.n}, seed={self.seed}, " + ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    def values(
        self,
        score: Callable,
        a: torch.Tensor,
        b: torch.Tensor,
        mask: torch.Tensor | None = None,
        per_layer: bool = False,
    ) -> torch.Tensor:
        """The per-transform values ``(n, N)`` (``(n, N, L)`` per layer)."""
        return torch.stack(
            [score(t(a), t(b), None if mask is None else t.mask(mask), per_layer) for t in self.transforms]
        )

    def forward(
        self,
        score: Callable,
        a: torch.Tensor,
        b: torch.Tensor,
        mask: torch.Tensor | None = None,
        per_layer: bool = False,
    ) -> torch.Tensor:
        return self.values(score, a, b, mask, per_layer).mean(0)


def make_ensemble(spec) -> Ensemble | None:
    """``ensemble=`` as given to a metric or loss: None, an int N (``Ensemble(N)``), a dict of
    :class:`Ensemble` arguments, or an :class:`Ensemble`."""
    if spec is None:
        return None
    if isinstance(spec, Ensemble):
        return spec
    if isinstance(spec, dict):
        return Ensemble(**spec)
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Ensemble(spec)
    raise InputError(
        f"ensemble must be None, an int (number of transforms), a dict of Ensemble arguments or an Ensemble, "
        f"got {type(spec).__name__}"
    )


def ensemble_stats(
    metric, a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None, per_layer: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (over the transforms; 0 for one transform) of the ensemble
    value of ``metric`` (a :class:`~lossnet.loss.PerceptualMetric` or
    :class:`~lossnet.loss.PerceptualLoss` built with ``ensemble=``) per sample: two ``(N,)`` tensors."""
    ens = getattr(metric, "ensemble", None)
    if ens is None:
        raise InputError("this metric has no ensemble (build it with ensemble=N)")
    v = ens.values(metric._single, a, b, mask, per_layer)
    return v.mean(0), (v.std(0) if v.shape[0] > 1 else torch.zeros_like(v[0]))
