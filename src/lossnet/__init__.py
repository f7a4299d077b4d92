"""lossnet: deep perceptual loss networks, distances and benchmarks."""

from lossnet import _torchvision_compat  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"
