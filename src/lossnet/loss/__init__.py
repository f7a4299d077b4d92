"""Deep perceptual loss and metric: a frozen :class:`~lossnet.network.LossNetwork` + a distance.

.. math:: \\mathcal{L}(\\hat y, y) = \\sum_l \\lambda_l \\, d_l(\\phi_l(\\hat y), \\phi_l(y))

:class:`PerceptualLoss` is the training loss (gradients to ``pred`` only; the target path runs
without autograd and its features can be precomputed once); :class:`PerceptualMetric` is the
evaluation form (``torch.inference_mode``; ``features`` / ``compare`` let a caller reuse reference
features); :func:`perceptual_distance` is the functional form with cached networks.

Both give per-layer values (``per_layer=True``), masked values (``mask=``: spatial weights
``(N, 1, H, W)``), spatial distance maps (:meth:`~PerceptualMetric.spatial_map`, ``(N, 1, H, W)``
at the input size, equal to lpips's ``spatial=True``) and a reproducibility :attr:`signature`.

Input range checking (``range_check``):

- ``"error"``: values outside (beyond a 0.1 % tolerance) raise :class:`InputError` naming the
  range they fit; one host sync per image.
- ``"warn"``: one :class:`RangeWarning`, values used as they are; one host sync per image until it
  has warned, none afterwards.
- ``"clamp"``: values clamped into ``input_range``; the first batch of ``pred`` and of ``target``
  is inspected once and a warning says when it overshoots by more than 5 % (a wrong
  ``input_range``?); no host sync after that.
- ``"off"``: values used as they are; no host sync.

NaN/Inf raise in every mode ("contains NaN/Inf"): an :class:`InputError` (CPU, eager), or, where a
check would need a host sync (accelerators, ``torch.compile``), an asynchronous device assertion
(``torch._assert_async``) that fails the step when it reaches the host. Inside ``torch.compile``
the ``"error"`` mode's range test is such an assertion too (a ``RuntimeError`` without the value
range in its message), so ``error``, ``clamp`` and ``off`` compile without graph breaks; ``warn``
needs the host (one clean break per image until it has warned). Defaults:
:class:`PerceptualMetric` / :func:`perceptual_distance` ``"error"`` (a metric checks strictly);
:class:`PerceptualLoss` ``"clamp"`` (a training loss must not kill a run over a 1 % overshoot of an
unclamped generator output, costs no sync per step and compiles without graph breaks; clamping
gives overshooting pixels no gradient from this loss, exactly as clamping the output would).

References:
    Johnson, Alahi, Fei-Fei. "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    ECCV 2016.
    Pihlgren et al. "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
    Zhang et al. "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.
"""

from lossnet.loss.functional import perceptual_distance
from lossnet.loss.modules import REDUCTIONS, PerceptualLoss, PerceptualMetric
from lossnet.loss.ranges import RANGE_CHECKS, RangeWarning, check_range

__all__ = [
    "PerceptualLoss",
    "PerceptualMetric",
    "perceptual_distance",
    "check_range",
    "REDUCTIONS",
    "RANGE_CHECKS",
    "RangeWarning",
]
