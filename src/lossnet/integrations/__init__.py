"""Adapters to other libraries' APIs. Each submodule imports its library only when imported itself:

- :mod:`lossnet.integrations.torchmetrics` -- :class:`~lossnet.integrations.torchmetrics.PerceptualSimilarity`,
  a ``torchmetrics.Metric`` (accumulates across batches and DDP ranks).
"""
