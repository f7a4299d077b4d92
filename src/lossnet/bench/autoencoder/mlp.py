"""Downstream evaluation: seven MLPs on frozen embeddings, the one with the best validation accuracy tested.

Both protocols split the labelled train set's embeddings (seeded) into MLP-train and validation
parts, train each MLP (hidden layers ``[]`` (linear), ``[32]``, ``[64]``, ``[32, 32]``,
``[64, 32]``, ``[64, 64]``, ``[128, 128]``) with Adam, keep the weights of one epoch, and evaluate
the MLP with the best validation accuracy (ties: the first in the list, i.e. the smaller) once on
the test set, which gives the score. They differ in everything else (``--mlp-protocol``):

==================  ==========================================  ==========================================
aspect              ``reference`` (the paper's code)            ``ce`` (lossnet's earlier protocol)
==================  ==========================================  ==========================================
loss                MSE between the outputs and one-hot labels  cross-entropy
hidden activation   LeakyReLU (slope 0.01)                      ReLU
embeddings          as the encoder gives them                   z-scored with the MLP-train statistics
early stopping      on validation **loss**, patience            on validation **accuracy**, patience
                    ``max(10, epochs / 20)``                    10
weights kept        the epoch with the lowest validation loss   the epoch with the highest val. accuracy
validation part     ``floor(0.2 n)`` items                      ``round(0.2 n)`` items
==================  ==========================================  ==========================================

An epoch "improves" when its monitored value is strictly better than the best so far; training
stops once ``patience`` epochs in a row did not improve (or after ``epochs``). The reported
validation accuracy of an MLP is that of the kept weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "HIDDEN_LAYERS",
    "PROTOCOLS",
    "MLPSelection",
    "build_mlp",
    "reference_patience",
    "train_mlp",
    "select_best",
    "evaluate_mlps",
    "split_indices",
]

HIDDEN_LAYERS: tuple[tuple[int, ...], ...] = ((), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128))
#: ``--mlp-protocol`` choices (kept in ``__init__`` too, so the CLI needs no torch)
PROTOCOLS = ("reference", "ce")


def reference_patience(epochs: int) -> int:
    """The reference's early-stopping patience ``max(10, epochs / 20)`` as a whole number of epochs
    (stopping after ``wait >= 10.5`` epochs is stopping after 11)."""
    return max(10, math.ceil(epochs / 20))


def build_mlp(in_features: int, hidden: Sequence[int], classes: int = 10, activation: str = "relu") -> nn.Sequential:
    """Linear layers with ``activation`` (``"relu"`` or ``"leaky_relu"``, slope 0.01) between them and
    none on the output; ``hidden=()`` is a linear classifier."""
    act = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01)}[activation]
    layers: list[nn.Module] = []
    n = in_features
    for h in hidden:
        layers += [nn.Linear(n, h), act()]
        n = h
    layers.append(nn.Linear(n, classes))
    return nn.Sequential(*layers)


def _loss_fn(protocol: str, classes: int):
    if protocol == "reference":
        eye = torch.eye(classes)
        return lambda out, y: nn.functional.mse_loss(out, eye.to(out.device)[y])
    if protocol == "ce":
        return nn.functional.cross_entropy
    raise ValueError(f"unknown MLP protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> tuple[float, float]:
    """``(mean loss, accuracy)`` over the whole set (what per-batch means weighted by batch size give)."""
    model.eval()
    if not len(y):
        return float("nan"), float("nan")
    out = model(x)
    return float(loss_fn(out, y)), float((out.argmax(1) == y).float().mean())


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return _evaluate(model, x, y, lambda o, t: torch.zeros(()))[1]


def train_mlp(
    hidden: Sequence[int],
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    epochs: int = 100,
    patience: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    classes: int = 10,
    protocol: str = "ce",
    history: list | None = None,
) -> tuple[nn.Module, dict]:
    """Train one MLP with early stopping (``protocol`` ``"reference"``: on validation loss; ``"ce"``:
    on validation accuracy; see the module docstring).

    Args:
        history: when given, receives one ``{"epoch", "val_loss", "val_accuracy"}`` row per epoch.

    Returns:
        ``(model, row)``: ``model`` holds the kept epoch's weights; ``row`` has ``val_accuracy`` and
        ``val_loss`` of those weights, ``best_epoch`` (1-based) and ``epochs`` (epochs run).
    """
    loss_fn = _loss_fn(protocol, classes)
    torch.manual_seed(seed)
    model = build_mlp(x_tr.shape[1], hidden, classes, "leaky_relu" if protocol == "reference" else "relu")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    # monitored value, higher is better: -val_loss (reference) or val_accuracy (ce)
    best, best_state, best_epoch, best_vals, since, ran = (
        -math.inf,
        copy.deepcopy(model.state_dict()),
        0,
        (math.nan, math.nan),
        0,
        0,
    )
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ran = epoch + 1
        val_loss, val_acc = _evaluate(model, x_val, y_val, loss_fn)
        if history is not None:
            history.append({"epoch": ran, "val_loss": val_loss, "val_accuracy": val_acc})
        monitored = -val_loss if protocol == "reference" else val_acc
        if monitored > best:
            best, best_state, best_epoch, best_vals, since = (
                monitored,
                copy.deepcopy(model.state_dict()),
                ran,
                (val_loss, val_acc),
                0,
            )
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, {"val_accuracy": best_vals[1], "val_loss": best_vals[0], "best_epoch": best_epoch, "epochs": ran}


def select_best(val_accuracies: Sequence[float]) -> int:
    """Index of the highest validation accuracy; ties go to the first (smaller) MLP."""
    if not val_accuracies:
        raise ValueError("no MLPs to select from")
    best = 0
    for i, a in enumerate(val_accuracies):
        if a > val_accuracies[best]:
            best = i
    return best


def split_indices(
    n: int, val_fraction: float = 0.2, seed: int = 0, *, floor: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random ``(train_idx, val_idx)`` with ``round(n * val_fraction)`` validation items
    (``floor``: ``int(n * val_fraction)``, as the reference's ``random_split``)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(n * val_fraction) if floor else int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


@dataclass
class MLPSelection:
    """Outcome of :func:`evaluate_mlps`: the test accuracy of the selected MLP and the table."""

    test_accuracy: float
    selected: tuple[int, ...]
    rows: list[dict] = field(default_factory=list)


def evaluate_mlps(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    hidden_layers: Sequence[Sequence[int]] = HIDDEN_LAYERS,
    val_fraction: float = 0.2,
    epochs: int = 100,
    patience: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    classes: int = 10,
    protocol: str = "ce",
    progress: bool = True,
) -> MLPSelection:
    """Run the downstream protocol on embeddings.

    Args:
        train_x, train_y: embeddings ``(N, D)`` and labels of the labelled train set.
        test_x, test_y: embeddings and labels of the test set.
        hidden_layers: MLP shapes to try.
        protocol: ``"reference"`` or ``"ce"`` (module docstring).

    Returns:
        :class:`MLPSelection` with rows ``{"hidden", "val_accuracy", "val_loss", "best_epoch", "epochs",
        "selected"}`` (``val_loss`` in the protocol's loss: MSE to one-hot, or cross-entropy).
    """
    _loss_fn(protocol, classes)  # unknown protocol: fail before any work
    reference = protocol == "reference"
    tr_idx, val_idx = split_indices(len(train_x), val_fraction, seed, floor=reference)
    x_tr, y_tr, x_val, y_val, x_te = train_x[tr_idx], train_y[tr_idx], train_x[val_idx], train_y[val_idx], test_x
    if not reference:
        mean, std = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True).clamp_min(1e-6)
        x_tr, x_val, x_te = ((t - mean) / std for t in (x_tr, x_val, x_te))
    models, rows = [], []
    # These MLPs are far too small for intra-op parallelism; extra threads only spin on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for hidden in tqdm(list(hidden_layers), desc="MLPs", disable=not progress, leave=False):
            model, row = train_mlp(
                hidden,
                x_tr,
                y_tr,
                x_val,
                y_val,
                epochs=epochs,
                patience=patience,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                classes=classes,
                protocol=protocol,
            )
            models.append(model)
            rows.append({"hidden": str(list(hidden)), **row, "selected": ""})
    finally:
        torch.set_num_threads(threads)
    best = select_best([r["val_accuracy"] for r in rows])
    rows[best]["selected"] = "*"
    test_acc = _accuracy(models[best], x_te, test_y)
    return MLPSelection(test_accuracy=test_acc, selected=tuple(hidden_layers[best]), rows=rows)
