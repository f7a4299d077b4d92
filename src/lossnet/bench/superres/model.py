"""Image transformation network for super-resolution (Johnson et al. 2016, as in Pihlgren et al.)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .degrade import bicubic_upsample

__all__ = ["ResidualBlock", "TransformNet", "SKIPS"]

#: Output paths of :class:`TransformNet`: Johnson et al.'s plain network, or a residual over bicubic.
SKIPS = ("none", "bicubic")


class ResidualBlock(nn.Module):
    """``x + BN(conv3x3(ReLU(BN(conv3x3(x)))))`` with ``channels`` feature maps."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformNet(nn.Module):
    """Fully convolutional x``scale`` super-resolution network.

    Layout (Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    ECCV 2016, supplementary Table 2, with 64 channels throughout as in Pihlgren et al.'s code):
    9x9 conv -> ``num_blocks`` residual blocks (conv-BN-ReLU-conv-BN) -> log2(scale) upsampling
    blocks (nearest-neighbour x2, 3x3 conv, BN, ReLU) -> 9x9 conv -> ``(tanh(z) + 1) / 2``.

    The output map ``(tanh + 1) / 2`` puts the image in [0, 1] (Johnson's code used a scaled tanh
    onto [0, 255]); nearest-neighbour upsampling + conv avoids the checkerboard artefacts of
    transposed convolutions.

    ``skip="bicubic"`` is *not* Johnson et al.'s network: the output becomes
    ``sigmoid(logit(bicubic(x)) + tail(...))`` with the 9x9 output conv initialised to zero, i.e. the
    network learns a residual over bicubic upsampling (global residual learning, Kim et al., VDSR,
    CVPR 2016) and starts as the bicubic baseline. Johnson's plain network needs tens of thousands
    of GPU iterations before it even reaches bicubic quality; the skip makes a CPU-minutes
    (``quick`` preset) run meaningful. The ``paper`` preset uses ``skip="none"``.

    Args:
        scale: upscaling factor, a power of two (4 -> 2 upsampling blocks, 8 -> 3).
        num_blocks: residual blocks (4 in Johnson et al.'s super-resolution network).
        channels: feature maps per layer.
        skip: ``"none"`` (Johnson et al.) or ``"bicubic"`` (residual over bicubic upsampling).
        output_bn: BatchNorm before the final tanh, as in Pihlgren et al.'s reference network.

    Input ``(N, 3, h, w)`` in [0, 1]; output ``(N, 3, h * scale, w * scale)`` in [0, 1].
    """

    def __init__(
        self, scale: int = 4, num_blocks: int = 4, channels: int = 64, skip: str = "none", output_bn: bool = False
    ) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two >= 2, got {scale}")
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {', '.join(SKIPS)}, got {skip!r}")
        self.scale, self.skip = scale, skip
        ups = []
        for _ in range(int(math.log2(scale))):
            ups += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.head = nn.Sequential(
            nn.Conv2d(3, channels, 9, padding=4, padding_mode="reflect"),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.up = nn.Sequential(*ups)
        self.tail = nn.Conv2d(channels, 3, 9, padding=4, padding_mode="reflect")
        # the reference network has a BatchNorm between the last conv and the tanh
        self.tail_bn = nn.BatchNorm2d(3) if output_bn else None
        if skip == "bicubic":
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) input, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 5:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} too small: the 9x9 reflect-padded conv needs at least 5x5 pixels"
            )
        z = self.tail(self.up(self.blocks(self.head(x))))
        if self.tail_bn is not None:
            z = self.tail_bn(z)
        if self.skip == "bicubic":
            # The residual acts in logit space: a clamp would zero the gradient of every pixel the
            # residual pushes out of [0, 1], and those pixels would never come back.
            return torch.sigmoid(torch.logit(bicubic_upsample(x, self.scale), eps=1e-3) + z)
        return (torch.tanh(z) + 1.0) / 2.0
