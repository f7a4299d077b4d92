"""The four-layer convolutional autoencoder of Benchmark 4.

Adapted from the World Models VAE (Ha & Schmidhuber 2018) as used by Pihlgren et al. ("Pretraining
Image Encoders without Reconstruction via Feature Prediction Loss", 2020): four stride-2 convolutions
(32, 64, 128, 256 channels, ReLU) -> linear -> ``embedding``-d code -> linear -> four stride-2
transposed convolutions (ReLU, sigmoid output).

Departure: kernels 4 with padding 1 (each layer exactly halves/doubles the size) instead of the
World Models' unpadded 4/5/6 kernels, so the same network handles 64x64 and 96x96 inputs (any size
divisible by 16).

``variational=True`` adds the VAE's reparameterisation (code = mu + sigma * eps) and a KL term;
the default is deterministic (see the package docstring for why). Downstream, the embedding is
always the deterministic code (mu).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvAutoencoder"]

_CHANNELS = (32, 64, 128, 256)


class ConvAutoencoder(nn.Module):
    """Four-layer convolutional (V)AE.

    Args:
        image_size: input height = width (divisible by 16).
        embedding: code size (64 in the paper).
        variational: VAE reparameterisation + KL instead of a deterministic code.

    Shape:
        input ``(N, 3, image_size, image_size)`` in [0, 1]; ``forward`` returns
        ``(reconstruction, mu, logvar)`` (``logvar`` is None when deterministic).
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

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, logvar)``; mu is the embedding used downstream."""
        h = self.encoder(x)
        return self.fc_mu(h), (self.fc_logvar(h) if self.fc_logvar is not None else None)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc_dec(z)).view(-1, _CHANNELS[-1], self.side, self.side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.encode(x)
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - sigma^2)."""
        return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
