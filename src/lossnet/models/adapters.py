"""Model surgery and feature-layout adapters for loss networks that are not plain NCHW CNNs.

- :class:`L2Pool`: the Hanning-window L2 pooling of DISTS (Ding et al. 2020), which replaces
  VGG's max pooling (``LossNetwork(..., pooling="l2")``).
- :class:`BlurPool`, :class:`MaxBlurPool`, :class:`ConvBlur` and :func:`make_shift_tolerant`: the
  anti-aliased ("blur pool", Zhang 2019) AlexNet/VGG16 of ST-LPIPS (Ghildyal & Liu 2022), as the
  ``stlpips-pytorch`` wheel builds them (``LossNetwork(..., pooling="blur")``).
- :func:`make_flexible_vit`: torchvision's ``VisionTransformer`` accepting any input whose sides
  are multiples of the patch size (the position embeddings are resized bicubically, as timm and
  DINO do); at the training size the graph computes exactly what torchvision computes.
- :func:`feature_layout` / :func:`to_nchw`: ViT encoder outputs are token sequences
  ``(N, 1 + h*w, C)`` (class token first) and Swin stages are NHWC; every distance expects
  ``(N, C, H, W)``, so they are converted (class token dropped, tokens laid out on the patch grid;
  NHWC permuted). Normalising NHWC features "over channels" without this would normalise over
  the image height.

References:
    Ding, Ma, Wang, Simoncelli. "Image Quality Assessment: Unifying Structure and Texture
    Similarity", TPAMI 2020 (DISTS, L2 pooling).
    Zhang. "Making Convolutional Networks Shift-Invariant Again", ICML 2019 (BlurPool).
    Ghildyal, Liu. "Shift-tolerant Perceptual Similarity Metric", ECCV 2022 (ST-LPIPS).
    Dosovitskiy et al. "An Image is Worth 16x16 Words", ICLR 2021 (ViT).
    Liu et al. "Swin Transformer", ICCV 2021.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

__all__ = [
    "L2Pool",
    "replace_max_pooling",
    "BlurPool",
    "MaxBlurPool",
    "ConvBlur",
    "make_shift_tolerant",
    "make_flexible_vit",
    "FlexibleVisionTransformer",
    "feature_layout",
    "to_nchw",
    "token_grid",
    "LAYOUTS",
]

#: Layouts of a node's output: plain feature map, channels-last map, ViT tokens with prefix (class/register)
#: tokens, or decided by the output's shape (a user's module, timm).
LAYOUTS = ("nchw", "nhwc", "tokens", "auto")


class L2Pool(nn.Module):
    """DISTS's L2 pooling: ``sqrt(conv(x**2, g) + 1e-12)``, stride 2, with ``g`` the normalised
    outer product of ``hanning(5)[1:-1] = (0.5, 1, 0.5)`` (a 3x3 window, padding 1).

    Computed exactly as ``DISTS_pytorch.L2pooling`` (same filter values, same op order); the
    channel count is taken from the input, so one module serves every stage.
    """

    def __init__(self, filter_size: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.padding = (filter_size - 2) // 2
        self.stride = stride
        a = np.hanning(filter_size)[1:-1]
        g = torch.Tensor(a[:, None] * a[None, :])
        g = g / torch.sum(g)
        # not persistent: weight files of the plain VGG must load without it
        self.register_buffer("filter", g[None, None, :, :], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x**2
        w = self.filter.to(x.dtype).expand(x.shape[1], -1, -1, -1)
        out = F.conv2d(x, w, stride=self.stride, padding=self.padding, groups=x.shape[1])
        return (out + 1e-12).sqrt()

    def extra_repr(self) -> str:
        return f"stride={self.stride}, padding={self.padding}"


def replace_max_pooling(model: nn.Module) -> int:
    """Replace every ``nn.MaxPool2d`` inside ``model`` by :class:`L2Pool` (in place); returns the count."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MaxPool2d):
            setattr(model, name, L2Pool())
            count += 1
        else:
            count += replace_max_pooling(child)
    return count


class BlurPool(nn.Module):
    """Anti-aliased downsampling: reflect padding, a normalised binomial filter, stride 2.

    Computed as ``stlpips_pytorch.models_lpf.downsample.Downsample(filt_size=3, stride=2,
    pad_more=True)`` (filter ``[1, 2, 1]`` outer itself / 16, reflect padding ``filt_size - 1 = 2`` on
    every side, a depthwise ``conv2d``); the channel count is taken from the input. ``pad_more=False``
    pads ``(filt_size - 1) // 2`` instead (the wheel's other option).
    """

    _TAPS = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0], 5: [1.0, 4.0, 6.0, 4.0, 1.0]}

    def __init__(self, filt_size: int = 3, stride: int = 2, pad_more: bool = True) -> None:
        super().__init__()
        if filt_size not in self._TAPS:
            raise ValueError(f"filt_size must be one of {sorted(self._TAPS)}, got {filt_size}")
        a = np.array(self._TAPS[filt_size])
        filt = torch.Tensor(a[:, None] * a[None, :])
        filt = filt / torch.sum(filt)
        # not persistent: plain AlexNet/VGG weight files load without it
        self.register_buffer("filter", filt[None, None, :, :], persistent=False)
        self.stride = stride
        self.pad = (filt_size - 1) if pad_more else (filt_size - 1) // 2
        self.pad_after = (filt_size - 1) if pad_more else filt_size // 2

    @property
    def tile_window(self) -> tuple[int, int, int, int]:
        """(kernel, stride, padding before, reflected border) for exact tiling (:mod:`lossnet.loss.tiled`)."""
        return int(self.filter.shape[-1]), self.stride, self.pad, max(self.pad, self.pad_after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad, self.pad_after, self.pad, self.pad_after), mode="reflect")
        w = self.filter.to(x.dtype).expand(x.shape[1], -1, -1, -1)
        return F.conv2d(x, w, stride=self.stride, groups=x.shape[1])

    def extra_repr(self) -> str:
        return f"filt_size={self.filter.shape[-1]}, stride={self.stride}, pad=({self.pad}, {self.pad_after})"


class MaxBlurPool(nn.Module):
    """``MaxPool2d(kernel, stride=1)`` followed by :class:`BlurPool` (the anti-aliased max pooling of
    Zhang 2019; what ST-LPIPS puts in place of every strided max pooling)."""

    def __init__(self, kernel_size: int, filt_size: int = 3, pad_more: bool = True) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.blur = BlurPool(filt_size, 2, pad_more)

    @property
    def tile_window(self) -> tuple[int, int, int, int]:
        k, s, p, r = self.blur.tile_window
        return self.kernel_size + k - 1, s, p, r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(F.max_pool2d(x, self.kernel_size, stride=1))


class ConvBlur(nn.Conv2d):
    """A stride-1 convolution followed by :class:`BlurPool` (ST-LPIPS's AlexNet conv1, in place of
    the stride-4 one). A ``Conv2d`` subclass: its parameters keep the names of the convolution it
    replaces, so torchvision AlexNet weight files load."""

    def __init__(self, conv: nn.Conv2d, filt_size: int = 3, pad_more: bool = True) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=1,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
        )
        self.blur = BlurPool(filt_size, 2, pad_more)

    @property
    def tile_window(self) -> tuple[int, int, int, int]:
        k, s, p, r = self.blur.tile_window
        return self.kernel_size[0] + k - 1, s, self.padding[0] + p, r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(super().forward(x))


def make_shift_tolerant(model: nn.Module, arch: str, filt_size: int = 3) -> nn.Module:
    """ST-LPIPS's anti-aliased ``alexnet`` or ``vgg16`` (in place; returns ``model``).

    As ``stlpips_pytorch.invariant_networks`` builds them with ``variant="shift_tolerant"``:
    AlexNet's stride-4 conv1 becomes stride 1 + :class:`BlurPool` (before the ReLU) and each
    ``MaxPool2d(k, stride=2)`` becomes :class:`MaxBlurPool` (``MaxPool2d(k, stride=1)`` + BlurPool);
    VGG16's max poolings likewise. Module indices (hence FX node names such as ``features.4``
    and weight keys) stay torchvision's.
    """
    if arch not in ("alexnet", "vgg16"):
        raise ValueError(f"pooling='blur' (ST-LPIPS's anti-aliased backbone) exists for alexnet and vgg16, not {arch}")
    feats = model.features
    for i, m in enumerate(list(feats)):
        if isinstance(m, nn.MaxPool2d):
            feats[i] = MaxBlurPool(int(np.atleast_1d(m.kernel_size)[0]), filt_size)
    if arch == "alexnet":
        feats[0] = ConvBlur(feats[0], filt_size)
    return model


def _vit_position_embedding(pos: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """``pos`` ``(1, 1 + g*g, C)`` (class token first) resized to a ``grid_h x grid_w`` patch grid.

    Unchanged (the same tensor) at the training grid; otherwise the grid part is resized bicubically
    (``align_corners=False``, as timm's ``resample_abs_pos_embed``). Called as one opaque FX node.
    """
    g = int(math.isqrt(pos.shape[1] - 1))
    if grid_h == g and grid_w == g:
        return pos
    cls_pos, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(int(grid_h), int(grid_w)), mode="bicubic", align_corners=False).to(
        pos.dtype
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, int(grid_h) * int(grid_w), -1)
    return torch.cat([cls_pos, grid], dim=1)


torch.fx.wrap("_vit_position_embedding")


def _flexible_vit_forward(self, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    torch._assert(x.shape[2] % self.patch_size == 0, "ViT input height must be a multiple of the patch size")
    torch._assert(x.shape[3] % self.patch_size == 0, "ViT input width must be a multiple of the patch size")
    x = self.conv_proj(x)  # (n, hidden, h/p, w/p)
    grid_h, grid_w = x.shape[2], x.shape[3]
    x = x.reshape(n, self.hidden_dim, grid_h * grid_w).permute(0, 2, 1)
    x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
    enc = self.encoder
    x = x + _vit_position_embedding(enc.pos_embedding, grid_h, grid_w)
    x = enc.ln(enc.layers(enc.dropout(x)))
    return self.heads(x[:, 0])


class FlexibleVisionTransformer(VisionTransformer):
    """torchvision's ``VisionTransformer`` for any input size divisible by the patch size (see
    :func:`make_flexible_vit`)."""

    forward = _flexible_vit_forward


def make_flexible_vit(model: nn.Module) -> nn.Module:
    """Let a torchvision ``VisionTransformer`` take any input size divisible by its patch size.

    The instance's class is swapped for :class:`FlexibleVisionTransformer`, whose ``forward`` is
    torchvision's with the fixed-size assertions dropped and the position embedding resized to the
    patch grid. Module names (``conv_proj``, ``encoder.layers.encoder_layer_<i>``, ``encoder.ln``)
    and the state dict are unchanged.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"expected a torchvision VisionTransformer, got {type(model).__name__}")
    model.__class__ = FlexibleVisionTransformer
    return model


def feature_layout(arch: str, node: str) -> str:
    """Layout of the output of FX node ``node`` of ``arch``: ``"nchw"``, ``"nhwc"`` or ``"tokens"``.

    - Swin (``swin_*``, ``swin_v2_*``): everything under ``features`` and the final ``norm`` is NHWC.
    - ViT (``vit_*``): everything under ``encoder`` is a token sequence with the class token first;
      ``conv_proj`` (the patch embedding) is NCHW.
    - Everything else (CNNs, ConvNeXt, MaxViT, ...) is NCHW.
    """
    if arch.startswith("swin") and (node == "norm" or node.startswith(("features.", "norm."))):
        return "nhwc"
    if arch.startswith("vit_") and (node == "encoder" or node.startswith("encoder.")):
        return "tokens"
    return "nchw"


def to_nchw(
    x: torch.Tensor, layout: str, grid: tuple[int, int] | None = None, prefix: int | None = None
) -> torch.Tensor:
    """Convert a feature of ``layout`` to ``(N, C, H, W)`` (a view; no copy).

    Args:
        layout: ``"nchw"`` (returned as is), ``"nhwc"`` (permuted), ``"tokens"`` (``(N, k+h*w, C)``:
            the ``k`` prefix tokens -- class and register tokens -- dropped, the rest laid out on the
            ``grid = (h, w)`` patch grid) or ``"auto"`` (4-D: NCHW; 3-D: tokens, see :func:`token_grid`).
        prefix: the number ``k`` of prefix tokens; None: 1 for ``"tokens"`` (torchvision's ViT, a
            class token), inferred from the count for ``"auto"``.
    """
    if layout == "auto":
        if x.ndim == 4:
            return x
        if x.ndim == 3 and grid is not None:
            h, w = grid
            k = x.shape[1] - h * w if prefix is None else prefix
            return to_nchw(x, "tokens", (h, w), k)
        return x  # the caller reports a feature that is not a map
    if layout == "nchw":
        return x
    if layout == "nhwc":
        return x.permute(0, 3, 1, 2)
    if layout == "tokens":
        n, t, c = x.shape
        h, w = grid
        k = 1 if prefix is None else int(prefix)
        torch._assert(t == h * w + k, "ViT token count does not match the patch grid")
        return x[:, k:].reshape(n, h, w, c).permute(0, 3, 1, 2)
    raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")


def token_grid(tokens: int, height: int, width: int, patch: int = 0, max_prefix: int = 16) -> tuple[int, int] | None:
    """The patch grid ``(h, w)`` of ``tokens`` tokens for an ``height x width`` input, or None.

    With ``patch`` known: ``(ceil(H/p), ceil(W/p))`` (timm's padded patch embedding). Otherwise the
    grid with the input's aspect ratio (``h * W == w * H``, ``H`` divisible by ``h``) that leaves the
    fewest prefix tokens (0 to ``max_prefix``: none, a class token, class + register tokens).
    """
    if patch:
        h, w = -(-height // patch), -(-width // patch)
        return (h, w) if 0 <= tokens - h * w <= max_prefix else None
    for k in range(0, min(max_prefix, tokens - 1) + 1):
        n = tokens - k
        h = math.isqrt(n * height // width) if width else 0
        for hh in (h - 1, h, h + 1):
            if hh > 0 and n % hh == 0:
                ww = n // hh
                if hh * width == ww * height and height % hh == 0:
                    return hh, ww
    return None
