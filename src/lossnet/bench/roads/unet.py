"""U-net (Ronneberger et al.) applied iteratively to refine its own prediction (Mosinska et al.).

References:
  Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015.
  Mosinska, Marquez-Neila, Kozinski, Fua, "Beyond the Pixel-Wise Loss for Topology-Aware
  Delineation", CVPR 2018 (iterative refinement, Sec. 3.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lossnet.errors import InputError

__all__ = ["UNet", "IterativeUNet"]


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
        prior: if given, the output bias starts at ``log(prior / (1 - prior))`` so the initial
            prediction is the road prior instead of 0.5 (Lin et al., "Focal Loss", 2017, Sec. 4.1);
            with ~3 % road pixels this skips the first epochs spent learning "mostly background".

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
        self.down = nn.ModuleList([_double_conv(in_channels, chans[0])] + [_double_conv(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.merge = nn.ModuleList([_double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        if prior is not None:
            if not 0 < prior < 1:
                raise InputError(f"prior must be in (0, 1), got {prior}")
            nn.init.constant_(self.head.bias, math.log(prior / (1 - prior)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2**self.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise InputError(f"U-net input size {tuple(x.shape[-2:])} must be divisible by {m}; pad it (see IterativeUNet.predict)")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


class IterativeUNet(nn.Module):
    """A U-net on ``[image, previous prediction]``, applied ``iterations`` times with shared weights.

    The first iteration's previous prediction is zeros. ``forward`` returns the list of per-iteration
    road probabilities (sigmoid of the logits), so the training loss can be summed over them.
    """

    def __init__(self, width: int = 64, depth: int = 4, iterations: int = 3, prior: float | None = None) -> None:
        super().__init__()
        if iterations < 1:
            raise InputError(f"iterations must be >= 1, got {iterations}")
        self.unet = UNet(4, 1, width, depth, prior)
        self.iterations = iterations

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"expected an RGB batch (N, 3, H, W), got shape {tuple(image.shape)}")
        prev = image.new_zeros((image.shape[0], 1, *image.shape[2:]))
        outputs = []
        for _ in range(self.iterations):
            prev = torch.sigmoid(self.unet(torch.cat([image, prev], dim=1)))
            outputs.append(prev)
        return outputs

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Final-iteration probabilities of a whole tile of any size ``(N, 3, H, W)``.

        The tile is reflect-padded to a multiple of ``2**depth`` and the padding cropped off again.
        """
        m = 2**self.unet.depth
        h, w = image.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(image, (0, pw, 0, ph), mode="reflect") if (ph or pw) else image
        return self(x)[-1][..., :h, :w]
