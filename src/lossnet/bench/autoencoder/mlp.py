"""Downstream evaluation: seven MLPs on frozen embeddings, selected by validation accuracy.

Protocol (Pihlgren et al., Benchmark 4): the labelled train set's embeddings are split 80/20
(seeded) into MLP-train and validation; each MLP (hidden layers ``[]`` (linear), ``[32]``, ``[64]``,
``[32, 32]``, ``[64, 32]``, ``[64, 64]``, ``[128, 128]``; ReLU) is trained with Adam and
cross-entropy, keeping the weights of the epoch with the best validation accuracy and stopping after
``patience`` epochs without improvement; the MLP with the best validation accuracy (ties: the first
in the list, i.e. the smaller) is evaluated once on the test set, which gives the score.

Embeddings are standardised with the MLP-train part's mean and standard deviation (our choice:
codes of different loss networks differ in scale by orders of magnitude, and plain Adam on raw
codes would make the comparison partly about optimisation).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["HIDDEN_LAYERS", "MLPSelection", "build_mlp", "train_mlp", "select_best", "evaluate_mlps", "split_indices"]

HIDDEN_LAYERS: tuple[tuple[int, ...], ...] = ((), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128))


def build_mlp(in_features: int, hidden: Sequence[int], classes: int = 10) -> nn.Sequential:
    """Linear layers with ReLU between them; ``hidden=()`` is a linear classifier."""
    layers: list[nn.Module] = []
    n = in_features
    for h in hidden:
        layers += [nn.Linear(n, h), nn.ReLU()]
        n = h
    layers.append(nn.Linear(n, classes))
    return nn.Sequential(*layers)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean()) if len(y) else float("nan")


def train_mlp(hidden: Sequence[int], x_tr: torch.Tensor, y_tr: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *,
              epochs: int = 100, patience: int = 10, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
              classes: int = 10) -> tuple[nn.Module, float, int]:
    """Train one MLP with early stopping on validation accuracy.

    Returns:
        ``(model, best_val_accuracy, epochs_run)``; ``model`` holds the best epoch's weights.
    """
    torch.manual_seed(seed)
    model = build_mlp(x_tr.shape[1], hidden, classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    best_acc, best_state, since, ran = -1.0, copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ran = epoch + 1
        acc = _accuracy(model, x_val, y_val)
        if acc > best_acc:
            best_acc, best_state, since = acc, copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    return model, best_acc, ran


def select_best(val_accuracies: Sequence[float]) -> int:
    """Index of the highest validation accuracy; ties go to the first (smaller) MLP."""
    if not val_accuracies:
        raise ValueError("no MLPs to select from")
    best = 0
    for i, a in enumerate(val_accuracies):
        if a > val_accuracies[best]:
            best = i
    return best


def split_indices(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random ``(train_idx, val_idx)`` with ``round(n * val_fraction)`` validation items."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


@dataclass
class MLPSelection:
    """Outcome of :func:`evaluate_mlps`: the test accuracy of the selected MLP and the table."""

    test_accuracy: float
    selected: tuple[int, ...]
    rows: list[dict] = field(default_factory=list)


def evaluate_mlps(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                  hidden_layers: Sequence[Sequence[int]] = HIDDEN_LAYERS, val_fraction: float = 0.2, epochs: int = 100,
                  patience: int = 10, batch_size: int = 128, lr: float = 1e-3, seed: int = 0, classes: int = 10,
                  progress: bool = True) -> MLPSelection:
    """Run the downstream protocol on embeddings.

    Args:
        train_x, train_y: embeddings ``(N, D)`` and labels of the labelled train set.
        test_x, test_y: embeddings and labels of the test set.
        hidden_layers: MLP shapes to try.

    Returns:
        :class:`MLPSelection` with rows ``{"hidden", "val_accuracy", "epochs", "selected"}``.
    """
    tr_idx, val_idx = split_indices(len(train_x), val_fraction, seed)
    x_tr, y_tr, x_val, y_val = train_x[tr_idx], train_y[tr_idx], train_x[val_idx], train_y[val_idx]
    mean, std = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True).clamp_min(1e-6)
    norm = lambda t: (t - mean) / std  # noqa: E731
    x_tr, x_val, x_te = norm(x_tr), norm(x_val), norm(test_x)
    models, rows = [], []
    # These MLPs are far too small for intra-op parallelism; extra threads only spin on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for hidden in tqdm(list(hidden_layers), desc="MLPs", disable=not progress, leave=False):
            model, acc, ran = train_mlp(hidden, x_tr, y_tr, x_val, y_val, epochs=epochs, patience=patience,
                                        batch_size=batch_size, lr=lr, seed=seed, classes=classes)
            models.append(model)
            rows.append({"hidden": str(list(hidden)), "val_accuracy": acc, "epochs": ran, "selected": ""})
    finally:
        torch.set_num_threads(threads)
    best = select_best([r["val_accuracy"] for r in rows])
    rows[best]["selected"] = "*"
    test_acc = _accuracy(models[best], x_te, test_y)
    return MLPSelection(test_accuracy=test_acc, selected=tuple(hidden_layers[best]), rows=rows)
