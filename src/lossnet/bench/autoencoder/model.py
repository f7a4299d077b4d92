"""The autoencoders of Benchmark 4 (``--model``).

Both map ``(N, 3, S, S)`` images in [0, 1] to a code (``embedding``-d, 64 in the paper) and back,
with a sigmoid output, and share one interface: ``encode(x) -> (mu, logvar)``, ``decode(z)``,
``forward(x) -> (reconstruction, mu, logvar)`` (``logvar`` None when deterministic). Downstream the
embedding is always the deterministic code ``mu``.

``reference`` -- :class:`ReferenceAutoencoder`, the four-layer convolutional autoencoder the
paper's code trains (its ``FourLayerCVAE``, after the World Models VAE of Ha & Schmidhuber 2018):

  encoder  4 x [Conv 4x4 stride 2, no padding -> BatchNorm -> ReLU], 32/64/128/256 channels
           (64 px: 64 -> 31 -> 14 -> 6 -> 2; 96 px: 96 -> 47 -> 22 -> 10 -> 4), flatten,
           Linear -> embedding
  decoder  Linear -> 1024 x g x g with g = (S - 64) / 16 + 1, ReLU, then transposed convs
           1024 -> 128 -> 64 -> 32 -> 3 with kernels 5, 5, 6, 6, stride 2, no padding,
           BatchNorm + ReLU after the first three and a sigmoid after the last
           (64 px: 1 -> 5 -> 13 -> 30 -> 64; 96 px: 3 -> 9 -> 21 -> 46 -> 96)

  Input sizes 64 + 16 n only (64: SVHN padded, 96: STL-10). 4,382,723 parameters at 64 px and
  5,111,811 at 96 px with a 64-d code; the reference module also builds a log-variance head that
  a deterministic run never uses (+65,600 / +262,208: 4,448,323 / 5,374,019 as it counts them).

``compact`` -- :class:`ConvAutoencoder`, lossnet's earlier model: the same channel widths with
padded 4x4 kernels in both directions (each layer exactly halves/doubles the size; any size
divisible by 16) and no BatchNorm; decoder Linear -> 256 x (S/16)^2. 1,908,483 parameters at 64 px,
2,568,963 at 96 px.

``variational=True`` adds the VAE's reparameterisation (code = mu + sigma * eps) and a KL term to
either model; the default is deterministic (the paper's gamma = 0).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MODELS", "ConvAutoencoder", "ReferenceAutoencoder", "build_autoencoder", "reference_sizes_ok"]

#: ``--model`` choices (kept in ``__init__`` too, so the CLI needs no torch)
MODELS = ("compact", "reference")

_CHANNELS = (32, 64, 128, 256)


def _kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - sigma^2)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


class _Autoencoder(nn.Module):
    """Shared code/decode plumbing: ``encoder`` (image -> flat features), ``fc_mu``/``fc_logvar``,
    ``_decode`` (code -> image) are set by the subclasses."""

    image_size: int
    embedding: int
    variational: bool

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, logvar)``; mu is the embedding used downstream."""
        h = self.encoder(x)
        return self.fc_mu(h), (self.fc_logvar(h) if self.fc_logvar is not None else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.encode(x)
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    kl_divergence = staticmethod(_kl_divergence)


class ConvAutoencoder(_Autoencoder):
    """lossnet's compact four-layer convolutional (V)AE (``--model compact``).

    Args:
        image_size: input height = width (divisible by 16).
        embedding: code size (64 in the paper).
        variational: VAE reparameterisation + KL instead of a deterministic code.
    """

    def __init__(self, image_size: int = 64, embedding: int = 64, variational: bool = False) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be divisible by 16, got {image_size}")
        self.image_size, self.embedding, self.variational = image_size, embedding, variational
        self.side = image_size // 16
        layers: list[nn.Module] = []
        cin = 3
        for c in _CHANNELS:
            layers += [nn.Conv2d(cin, c, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            cin = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = _CHANNELS[-1] * self.side * self.side
        self.fc_mu = nn.Linear(flat, embedding)
        self.fc_logvar = nn.Linear(flat, embedding) if variational else None
        self.fc_dec = nn.Linear(embedding, flat)
        dec: list[nn.Module] = []
        rev = list(reversed(_CHANNELS))
        for cin, cout in zip(rev, rev[1:]):
            dec += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        dec += [nn.ConvTranspose2d(rev[-1], 3, 4, stride=2, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc_dec(z)).view(-1, _CHANNELS[-1], self.side, self.side)
        return self.decoder(h)


#: decoder of the reference model: (out channels, kernel, BatchNorm + ReLU after it)
_REF_DECODER = ((128, 5, True), (64, 5, True), (32, 6, True), (3, 6, False))
_REF_SEED_CHANNELS = 1024


def reference_sizes_ok(image_size: int) -> bool:
    """The reference model's input sizes: 64 + 16 n (n >= 0)."""
    return image_size >= 64 and (image_size - 64) % 16 == 0


class ReferenceAutoencoder(_Autoencoder):
    """The paper code's four-layer convolutional (V)AE (``--model reference``); see the module docstring.

    Args:
        image_size: input height = width, 64 + 16 n (64 for SVHN padded, 96 for STL-10).
        embedding: code size (64 in the paper).
        variational: VAE reparameterisation + KL instead of a deterministic code.
    """

    def __init__(self, image_size: int = 64, embedding: int = 64, variational: bool = False) -> None:
        super().__init__()
        if not reference_sizes_ok(image_size):
            raise ValueError(
                f"the reference autoencoder takes image sizes 64 + 16 n (64, 80, 96, ...), got {image_size}"
            )
        self.image_size, self.embedding, self.variational = image_size, embedding, variational
        layers: list[nn.Module] = []
        cin, side = 3, image_size
        for c in _CHANNELS:
            layers += [nn.Conv2d(cin, c, 4, stride=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin, side = c, (side - 4) // 2 + 1
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = _CHANNELS[-1] * side * side
        self.fc_mu = nn.Linear(flat, embedding)
        self.fc_logvar = nn.Linear(flat, embedding) if variational else None
        self.seed_side = (image_size - 64) // 16 + 1
        self.fc_dec = nn.Linear(embedding, _REF_SEED_CHANNELS * self.seed_side**2)
        dec: list[nn.Module] = []
        cin = _REF_SEED_CHANNELS
        for cout, k, bn_relu in _REF_DECODER:
            dec.append(nn.ConvTranspose2d(cin, cout, k, stride=2))
            dec += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)] if bn_relu else [nn.Sigmoid()]
            cin = cout
        self.decoder = nn.Sequential(*dec)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc_dec(z)).view(-1, _REF_SEED_CHANNELS, self.seed_side, self.seed_side)
        return self.decoder(h)


def build_autoencoder(model: str, image_size: int, embedding: int = 64, variational: bool = False) -> _Autoencoder:
    """The ``--model`` autoencoder (``"compact"`` or ``"reference"``)."""
    if model == "reference":
        return ReferenceAutoencoder(image_size, embedding, variational)
    if model == "compact":
        return ConvAutoencoder(image_size, embedding, variational)
    raise ValueError(f"unknown autoencoder model {model!r}; choose one of {', '.join(MODELS)}")
