"""The two U-nets of the roads benchmark, applied iteratively to refine their own prediction.

* :class:`ReferenceUNet` -- the small pix2pix-style U-net of the authors' code (``--model
  reference``, the ``paper`` model). Every block is *pre-activation*: activation, then a 4x4
  stride-2 (transposed) convolution without bias, then BatchNorm. Four down blocks with
  ``base * (1, 2, 4, 4)`` channels (base 8 for the 4-channel input: 8/16/32/32), four transposed
  up blocks whose inputs are concatenated with the matching down output (no skip from the input
  itself), and a BatchNorm on the single output channel before the sigmoid. 64,546 parameters.

  The authors' block builder chooses the activation with an inverted condition: a non-zero
  LeakyReLU slope gives a plain ReLU, and slope 0 gives LeakyReLU(0), which is also a ReLU. So the
  network that their code builds uses ReLU everywhere, although the down path asks for
  LeakyReLU(0.2). ``down_activation="relu"`` (the default) reproduces the network that the code
  builds; ``"leaky_relu"`` is the intended LeakyReLU(0.2) down path.
* :class:`UNet` -- Ronneberger et al.'s U-net (``--model ronneberger``): 3x3 double convolutions
  with BatchNorm, max-pooling, 2x2 transposed convolutions and a 1x1 head. With width 64 and
  depth 4 it has 31.0 M parameters (481 times the reference net).

:class:`IterativeUNet` wraps either of them. It feeds ``[RGB, previous prediction]`` back in K
times, as Mosinska et al. do.

References:
  Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial Networks"
  (pix2pix), CVPR 2017 (the encoder-decoder block pattern).
  Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015.
  Mosinska, Marquez-Neila, Kozinski, Fua, "Beyond the Pixel-Wise Loss for Topology-Aware
  Delineation", CVPR 2018 (iterative refinement, Sec. 3.2).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lossnet.errors import InputError

if TYPE_CHECKING:  # the package imports this module
    from lossnet.bench.roads import RoadsConfig


__all__ = ["UNet", "ReferenceUNet", "IterativeUNet", "build_model", "count_parameters", "MODELS", "DOWN_ACTIVATIONS"]

#: ``model`` choices.
MODELS = ("reference", "ronneberger")
#: ``down_activation`` choices of :class:`ReferenceUNet`.
DOWN_ACTIVATIONS = ("relu", "leaky_relu")
#: The LeakyReLU slope that the authors' down path asks for.
LEAKY_SLOPE = 0.2


def _prior_logit(prior: float) -> float:
    if not 0 < prior < 1:
        raise InputError(f"prior must be in (0, 1), got {prior}")
    return math.log(prior / (1 - prior))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights, biases, BatchNorm affine terms)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-net with ``depth`` 2x down-samplings; channels ``width * 2**level``.

    Args:
        in_channels: input channels (4 = RGB + previous prediction).
        out_channels: output logit channels.
        width: channels of the first level (64 in Ronneberger et al.).
        depth: number of poolings; input H and W must be divisible by ``2**depth``.
        prior: if given, the output bias starts at ``log(prior / (1 - prior))``, so the initial
            prediction is the road prior instead of 0.5 (Lin et al., "Focal Loss", 2017, Sec. 4.1).
            With about 3 % road pixels this skips the first epochs spent learning "mostly background".

    Returns (forward): logits ``(N, out_channels, H, W)``.
    """

    def __init__(
        self, in_channels: int = 4, out_channels: int = 1, width: int = 64, depth: int = 4, prior: float | None = None
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise InputError(f"U-net width and depth must be >= 1, got width={width}, depth={depth}")
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_double_conv(in_channels, chans[0])] + [_double_conv(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))]
        )
        self.merge = nn.ModuleList([_double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        if prior is not None:
            nn.init.constant_(self.head.bias, _prior_logit(prior))

    @property
    def multiple(self) -> int:
        """Input H and W must be divisible by this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise InputError(
                f"U-net input size {tuple(x.shape[-2:])} must be divisible by {m}; pad it (see IterativeUNet.predict)"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def _block(cin: int, cout: int, act: nn.Module, transposed: bool) -> nn.Sequential:
    """Pre-activation block: activation -> 4x4 stride-2 (transposed) conv without bias -> BatchNorm."""
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, 4, stride=2, padding=1, bias=False)
    return nn.Sequential(act, conv, nn.BatchNorm2d(cout))


class ReferenceUNet(nn.Module):
    """The authors' pix2pix-style U-net (see the module docstring).

    Args:
        in_channels: input channels (4 = RGB + previous prediction).
        base: channels of the first down block. The authors use ``2 * in_channels`` = 8, and the
            levels have ``base * (1, 2, 4, 4)`` channels.
        down_activation: ``"relu"`` (what the authors' code builds, because of its inverted
            condition) or ``"leaky_relu"`` (LeakyReLU(0.2), what it asks for). The up path always
            uses ReLU.
        prior: if given, the bias of the output BatchNorm starts at the logit of the road prior
            (see :class:`UNet`).

    Returns (forward): logits ``(N, 1, H, W)`` (the output of the last BatchNorm); H and W must be
    divisible by 16.
    """

    def __init__(
        self, in_channels: int = 4, base: int | None = None, down_activation: str = "relu", prior: float | None = None
    ) -> None:
        super().__init__()
        if down_activation not in DOWN_ACTIVATIONS:
            raise InputError(f"down_activation must be one of {', '.join(DOWN_ACTIVATIONS)}, got {down_activation!r}")
        b = 2 * in_channels if base is None else int(base)
        if b < 1:
            raise InputError(f"base channels must be >= 1, got {b}")
        self.down_activation = down_activation

        def down_act() -> nn.Module:
            return nn.LeakyReLU(LEAKY_SLOPE) if down_activation == "leaky_relu" else nn.ReLU()

        self.down = nn.ModuleList(
            [
                _block(in_channels, b, down_act(), False),
                _block(b, 2 * b, down_act(), False),
                _block(2 * b, 4 * b, down_act(), False),
                _block(4 * b, 4 * b, down_act(), False),
            ]
        )
        # up blocks take the previous up output concatenated with the matching down output
        self.up = nn.ModuleList(
            [
                _block(4 * b, 4 * b, nn.ReLU(), True),
                _block(8 * b, 2 * b, nn.ReLU(), True),
                _block(4 * b, b, nn.ReLU(), True),
                _block(2 * b, 1, nn.ReLU(), True),
            ]
        )
        if prior is not None:
            nn.init.constant_(self.up[-1][-1].bias, _prior_logit(prior))

    multiple = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise InputError(
                f"U-net input size {tuple(x.shape[-2:])} must be divisible by 16; pad it (see IterativeUNet.predict)"
            )
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the first up block directly
        for i, block in enumerate(self.up):
            x = block(x if i == 0 else torch.cat([x, skips.pop()], dim=1))
        return x


class IterativeUNet(nn.Module):
    """A U-net on ``[image, previous prediction]``, applied ``iterations`` times with shared weights.

    The first iteration's previous prediction is zeros. ``forward`` returns the list of road
    probabilities (sigmoid of the logits) of every iteration, so that the training loss can weight them.

    Args:
        unet: a 4-channel-in, 1-channel-out logit network with a ``multiple`` attribute.
        iterations: default K of :meth:`forward` and :meth:`predict`.
    """

    def __init__(self, unet: nn.Module, iterations: int = 3) -> None:
        super().__init__()
        if iterations < 1:
            raise InputError(f"iterations must be >= 1, got {iterations}")
        self.unet = unet
        self.iterations = iterations

    @property
    def multiple(self) -> int:
        return int(self.unet.multiple)

    def forward(self, image: torch.Tensor, iterations: int | None = None) -> list[torch.Tensor]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"expected an RGB batch (N, 3, H, W), got shape {tuple(image.shape)}")
        k = self.iterations if iterations is None else int(iterations)
        if k < 1:
            raise InputError(f"iterations must be >= 1, got {k}")
        prev = image.new_zeros((image.shape[0], 1, *image.shape[2:]))
        outputs = []
        for _ in range(k):
            prev = torch.sigmoid(self.unet(torch.cat([image, prev], dim=1)))
            outputs.append(prev)
        return outputs

    @torch.no_grad()
    def predict(self, image: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
        """Final-iteration probabilities of a whole tile of any size ``(N, 3, H, W)``.

        The tile is reflect-padded to a multiple of :attr:`multiple`, and the padding is cropped
        off again.
        """
        m = self.multiple
        h, w = image.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(image, (0, pw, 0, ph), mode="reflect") if (ph or pw) else image
        return self(x, iterations)[-1][..., :h, :w]


def build_model(config: RoadsConfig) -> IterativeUNet:
    """The iterative U-net of a roads config (``model``, ``width``/``depth`` or
    ``down_activation``, ``init_prior``, ``iterations``)."""
    model = config.model
    prior = config.init_prior
    if model == "reference":
        unet: nn.Module = ReferenceUNet(4, down_activation=config.down_activation or "relu", prior=prior)
    elif model == "ronneberger":
        unet = UNet(4, 1, int(config.width or 64), int(config.depth or 4), prior)
    else:
        raise InputError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return IterativeUNet(unet, int(config.iterations))
