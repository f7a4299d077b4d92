"""Fitting LPIPS-style heads for any backbone: Zhang et al.'s 2AFC protocol on lossnet's harness.

The model (Zhang et al. 2018, Sec. 3; the ``lpips`` package's ``lpips/trainer.py``):

- **distance** (Eq. 1): unit-normalise each layer's features over channels, square the
  difference, weight the channels with learnable non-negative heads :math:`w_l`, average over
  space, sum over layers. During training the squared difference passes through dropout
  (p = 0.5) before the heads, as lpips's ``NetLinLayer(use_dropout=True)``;
- **ranking network** (lpips's ``Dist2LogitLayer``): (d0, d1, d0-d1, d0/(d1+0.1), d1/(d0+0.1))
  -> 32 -> 32 -> 1 with LeakyReLU(0.2) and a sigmoid, trained with binary cross-entropy against
  the human judgment ``h`` (fraction preferring p1);
- **optimiser**: Adam over heads and ranking network (lr 1e-4, betas (0.5, 0.999)); after every
  step the heads are clamped to >= 0. Only the heads are clamped: lpips's ``clamp_weights``
  clamps every 1x1 convolution of its model, which for SqueezeNet also clamps the frozen
  backbone's 1x1 ``squeeze`` convolutions; here the backbone stays exactly as loaded;
- **schedule**: ``epochs`` epochs at ``lr``, then ``decay_epochs`` epochs with the rate lowered by
  ``lr / decay_epochs`` after each (lpips's ``update_learning_rate``); heads initialised as
  lpips's (the default init of a bias-free 1x1 convolution, U(-1/sqrt(C), 1/sqrt(C))).

The backbone is frozen and runs without autograd (the heads see its features only), one call per
batch on ``[ref; p0; p1]``. Training runs on :func:`lossnet.bench.trainer.fit`: atomic checkpoint
per epoch, resume, divergence stop, ``history.json``, tqdm bars; a validation 2AFC score per epoch
(the best epoch's heads are written). Dropout masks come from the task's own seeded generator
(saved in the checkpoint), so a resumed run continues exactly.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from lossnet.bench.trainer import TrainingTask
from lossnet.errors import DataError, InputError

__all__ = [
    "HeadsFitConfig",
    "HeadsModel",
    "RankingNet",
    "HeadsTask",
    "HeadsFitResult",
    "fit_heads",
    "lr_at",
    "epoch_order",
    "RANK_EPS",
]

#: The epsilon of the ranking network's ratio inputs (lpips's ``Dist2LogitLayer.forward``).
RANK_EPS = 0.1


@dataclass
class HeadsFitConfig:
    """Everything a heads fit depends on (the checkpoint fingerprint is this minus runtime keys)."""

    net: str = "alexnet"
    layers: str = "E,S,M,L"
    weights: str = "imagenet"
    normalize: str = "imagenet"
    data: str | None = None  # BAPPS root (ROOT/2afc/<split>/<subset>)
    judgments: str | None = None  # or a CSV of (ref, p0, p1, judgment)
    split: str = "train"
    subsets: list | None = None  # BAPPS 2AFC subsets (default: every folder of the split)
    epochs: int = 5
    decay_epochs: int = 5
    lr: float = 1e-4
    beta1: float = 0.5
    batch_size: int = 50
    dropout: float = 0.5
    size: int = 64
    seed: int = 0
    val: str = "auto"  # auto | split | holdout | none
    val_fraction: float = 0.05
    val_max_items: int | None = None
    skip_bad: bool = False
    channels_last: bool = True
    amp: str = "off"  # mixed precision of the training passes: off | bf16 | fp16 (the trainer's)
    # runtime keys (not part of the fingerprint)
    device: str | None = None
    weights_dir: str | None = None
    num_workers: int | None = None

    def check(self, model=None) -> "HeadsFitConfig":
        """Validate and normalise in place (paths resolved, network and layers checked; with a
        user's ``model``, ``net`` becomes ``module:<Class>`` and the layers are kept as given)."""
        from lossnet.models.layers import resolve_layers
        from lossnet.models.registry import get_spec

        if (self.data is None) == (self.judgments is None):
            raise InputError("heads fit: give exactly one of --data (a BAPPS folder) or --judgments (a CSV)")
        for name in ("epochs", "batch_size", "size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"heads fit: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.decay_epochs < 0:
            raise InputError(f"heads fit: decay_epochs must be >= 0, got {self.decay_epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"heads fit: lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"heads fit: dropout must be in [0, 1), got {self.dropout!r}")
        if self.val not in ("auto", "split", "holdout", "none"):
            raise InputError(f"heads fit: val must be auto, split, holdout or none, got {self.val!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"heads fit: val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.amp not in ("off", "bf16", "fp16"):
            raise InputError(f"heads fit: amp must be off, bf16 or fp16, got {self.amp!r}")
        if self.normalize not in ("imagenet", "none"):
            raise InputError(f"heads fit: normalize must be imagenet or none, got {self.normalize!r}")
        names = self.layers if isinstance(self.layers, str) else ",".join(self.layers)
        if model is not None:
            self.net = f"module:{type(model).__name__}"
            self.layers = ",".join(n.strip() for n in names.split(",") if n.strip())
        else:
            self.net = get_spec(self.net).name  # torchvision names and timm:<name>
            self.layers = ",".join(resolve_layers(self.net, names))
        from lossnet.weights import WeightsSpec

        self.weights = WeightsSpec.parse(self.weights).label
        if self.data is not None:
            self.data = str(Path(self.data).expanduser().resolve())
        if self.judgments is not None:
            self.judgments = str(Path(self.judgments).expanduser().resolve())
        if self.val == "auto":
            self.val = (
                "split"
                if self.data is not None and (Path(self.data) / "2afc" / "val").is_dir() and self.split != "val"
                else "holdout"
            )
        if self.val == "split" and self.data is None:
            raise InputError("heads fit: val=split needs a BAPPS --data folder; use holdout with --judgments")
        return self

    def fingerprint_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("device", "weights_dir", "num_workers")}


def _data_identity(c: "HeadsFitConfig") -> str:
    """``sha256:<hex>`` of the judgments CSV, or ``listing:<hex>`` of the BAPPS folder (names + sizes,
    :func:`lossnet.runs.identity.folder_digest`)."""
    from lossnet.runs.identity import folder_digest
    from lossnet.weights import sha256_file

    if c.judgments is not None:
        return f"sha256:{sha256_file(c.judgments)}"
    return f"listing:{folder_digest(c.data)}"


def _backbone_digest(network) -> str:
    """sha256 over the loss network's tensors (:func:`lossnet.signature.tensors_digest`): recorded
    as ``backbone_sha256``, so a load on another backbone (another random init with --weights none,
    other weights) is told apart (:class:`lossnet.loss.PerceptualLoss` warns)."""
    from lossnet.signature import tensors_digest

    return tensors_digest(network.state_dict())


def lr_at(epoch: int, lr: float, epochs: int, decay_epochs: int) -> float:
    """Learning rate during 0-based ``epoch``: lpips's ``update_learning_rate`` after every epoch
    past ``epochs`` (the same float subtractions, so the values equal lpips's)."""
    out = lr
    for _ in range(max(0, epoch - epochs)):
        out = out - lr / decay_epochs
    return out


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled item order of ``epoch`` (a function of seed and epoch only: resumable)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


class RankingNet(nn.Module):
    """lpips's ``Dist2LogitLayer`` (as linear layers): (d0, d1, d0-d1, d0/(d1+eps), d1/(d0+eps)) -> P(p1 closer)."""

    def __init__(self, mid: int = 32) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(5, mid),
            nn.LeakyReLU(0.2),
            nn.Linear(mid, mid),
            nn.LeakyReLU(0.2),
            nn.Linear(mid, 1),
            nn.Sigmoid(),
        )

    def forward(self, d0: torch.Tensor, d1: torch.Tensor, eps: float = RANK_EPS) -> torch.Tensor:
        x = torch.stack((d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)), dim=1)
        return self.model(x)[:, 0]


class HeadsModel(nn.Module):
    """The trainable part: one head per layer (``heads.<l>``, shape ``(C_l,)``) and the ranking net.

    Initialisation consumes the global torch RNG in a fixed order (heads by layer, then the
    ranking network), so ``torch.manual_seed(s); HeadsModel(channels)`` is reproducible.
    """

    def __init__(self, channels: Sequence[int], dropout: float = 0.5) -> None:
        super().__init__()
        self.channels = [int(c) for c in channels]
        self.heads = nn.ParameterList()
        for c in self.channels:
            bound = 1.0 / math.sqrt(c)  # nn.Conv2d(c, 1, 1, bias=False)'s default init, as lpips's NetLinLayer
            self.heads.append(nn.Parameter(torch.empty(c).uniform_(-bound, bound)))
        self.rank = RankingNet()
        self.p = float(dropout)

    def clamp_(self) -> None:
        """Heads >= 0 (after every optimiser step)."""
        with torch.no_grad():
            for h in self.heads:
                h.clamp_(min=0)

    def head_tensors(self) -> list[torch.Tensor]:
        return [h.detach().clone().float().cpu() for h in self.heads]

    def distance(
        self, fa: Sequence[torch.Tensor], fb: Sequence[torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(N,)`` weighted Eq. 1 distance; in training mode with dropout on the squared
        difference (lpips's order: layer by layer). In eval mode it is
        :func:`lossnet.distances.spatial` with the heads as channel weights."""
        from lossnet.distances import compute_distance, unit_normalize

        if not self.training or self.p == 0.0:
            # Eq. 1 of lossnet.distances (the heads may be transiently negative before the first clamp)
            return compute_distance("spatial", list(fa), list(fb), None, list(self.heads), check_sign=False)
        total = None
        for a, b, w in zip(fa, fb, self.heads):
            diff = (unit_normalize(a.float()) - unit_normalize(b.float())).pow(2).contiguous()
            # F.dropout's CPU kernel: bernoulli_(1 - p) noise / (1 - p), from our generator
            noise = torch.empty_like(diff).bernoulli_(1.0 - self.p, generator=generator).div_(1.0 - self.p)
            d = (diff * noise * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
            total = d if total is None else total + d
        return total


def _channels(network, size: int) -> list[int]:
    with torch.no_grad():
        out = network(torch.zeros(1, 3, size, size))
    return [int(f.shape[1]) for f in out.values()]


class HeadsTask(TrainingTask):
    """The heads fit as a :class:`~lossnet.bench.trainer.TrainingTask`."""

    score_name = "val_2afc"

    def __init__(
        self, config: HeadsFitConfig, network, channels: list[int], train_set, val: Any, device, progress: bool
    ) -> None:
        self.config = config
        self.network = network
        self.model = HeadsModel(channels, config.dropout).to(device)
        self.device = torch.device(device)
        self.train_set = train_set
        self.val = val
        self.progress = progress
        self.optimizer = torch.optim.Adam(list(self.model.parameters()), lr=config.lr, betas=(config.beta1, 0.999))
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.losses: list[float] = []
        self.bce = nn.BCELoss()

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    # -- features --------------------------------------------------------------------------------
    def features(self, x_uint8: torch.Tensor) -> list[torch.Tensor]:
        x = x_uint8.to(self.device).float().div_(255.0)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return list(self.network(x).values())

    def batches(self, epoch: int, epochs: int):
        """The epoch's BAPPS batches (lr of the epoch set; bad items dropped, all-bad batches skipped)
        as ``(ref, p0, p1, judge)``."""
        from torch.utils.data import DataLoader

        from lossnet.bench.heads.data import check_batch

        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(epoch, c.lr, c.epochs, c.decay_epochs)
        order = epoch_order(len(self.train_set), c.seed, epoch)
        loader = DataLoader(
            self.train_set,
            batch_size=c.batch_size,
            sampler=order,
            num_workers=c.num_workers or 0,
            generator=torch.Generator().manual_seed(0),
        )
        for batch in loader:
            ok = check_batch(batch, c.skip_bad)
            if not bool(ok.any()):
                continue
            yield batch["ref"][ok], batch["p0"][ok], batch["p1"][ok], torch.as_tensor(batch["judge"])[ok]

    def batch_count(self, epoch: int) -> int:
        return math.ceil(len(self.train_set) / self.config.batch_size)

    def epoch_label(self, epoch: int, epochs: int) -> str:
        return f"heads epoch {epoch + 1}/{epochs}"

    def to_device(self, batch):
        return batch  # uint8 images go to the device in features(), after concatenation

    def step(self, batch) -> dict[str, Any]:
        """The 2AFC ranking loss of a batch (uint8 images, judgments in [0, 1])."""
        ref, p0, p1, judge = batch
        n = ref.shape[0]
        f = self.features(torch.cat([ref, p0, p1]))
        fr, f0, f1 = [x[:n] for x in f], [x[n : 2 * n] for x in f], [x[2 * n :] for x in f]
        d0 = self.model.distance(fr, f0, self.generator)
        d1 = self.model.distance(fr, f1, self.generator)
        target = ((judge.to(self.device).float() * 2.0 - 1.0) + 1.0) / 2.0  # lpips: judge*2-1, then (j+1)/2
        with torch.autocast(device_type=self.device.type, enabled=False):  # BCE in fp32 even under --amp
            loss = self.bce(self.model.rank(d0.float(), d1.float()), target)
        return {"loss": loss, "items": n}

    def after_optimize(self) -> None:
        self.model.clamp_()

    def epoch_row(self, epoch: int, records: list[dict[str, float]]) -> dict[str, Any]:
        c = self.config
        losses = [r["loss"] for r in records]
        self.losses += losses
        return {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": lr_at(epoch, c.lr, c.epochs, c.decay_epochs),
            "items": int(sum(r["items"] for r in records)),
        }

    def val_distances(self, data) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        d0s, d1s = [], []
        with torch.no_grad():
            for s in range(0, len(data), 64):
                sl = slice(s, s + 64)
                n = data.ref[sl].shape[0]
                f = self.features(torch.cat([data.ref[sl], data.p0[sl], data.p1[sl]]))
                fr, f0, f1 = [x[:n] for x in f], [x[n : 2 * n] for x in f], [x[2 * n :] for x in f]
                d0s.append(self.model.distance(fr, f0).double().cpu())
                d1s.append(self.model.distance(fr, f1).double().cpu())
        return torch.cat(d0s).numpy(), torch.cat(d1s).numpy()

    def score(self, epoch: int) -> float | None:
        if not self.val:
            return None
        from lossnet.bench.similarity.scores import score_2afc

        scores = []
        for data in self.val:
            d0, d1 = self.val_distances(data)
            scores.append(score_2afc(d0, d1, data.judge.numpy()))
        self.model.train()
        return float(np.mean(scores))


@dataclass
class HeadsFitResult:
    """What :func:`fit_heads` did: the heads file, the outcome of the trainer core, the task."""

    path: Path | None
    heads: list[torch.Tensor]
    val_2afc: float | None
    status: str
    history: list[dict[str, Any]]
    task: HeadsTask = field(repr=False)
    outcome: Any = field(repr=False)


def _split_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise DataError(f"heads fit: {n} triplets are too few to hold out {fraction:g} for validation (use --val none)")
    return sorted(perm[k:].tolist()), sorted(perm[:k].tolist())


def _datasets(c: HeadsFitConfig, progress: bool):
    """``(train_set, [validation Triplets])``."""
    from torch.utils.data import Subset

    from lossnet.bench.heads.data import CsvJudgments, bapps_2afc, decode_triplets

    full = (
        CsvJudgments(c.judgments, c.size) if c.judgments is not None else bapps_2afc(c.data, c.split, c.subsets, c.size)
    )
    if len(full) == 0:
        raise DataError("heads fit: no training triplets")
    val: list = []
    if c.val == "holdout":
        train_idx, val_idx = _split_holdout(len(full), c.val_fraction, c.seed)
        train = Subset(full, train_idx)
        val = [
            decode_triplets(
                full, val_idx, skip_bad=c.skip_bad, num_workers=c.num_workers or 0, progress=progress, desc="read val"
            )
        ]
    else:
        train = full
        if c.val == "split":
            base = Path(c.data) / "2afc" / "val"
            for sub in sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")):
                ds = bapps_2afc(c.data, "val", [sub], c.size)
                idx = None
                if c.val_max_items is not None and c.val_max_items < len(ds):
                    idx = sorted(np.random.default_rng(c.seed).choice(len(ds), c.val_max_items, replace=False).tolist())
                val.append(
                    decode_triplets(
                        ds,
                        idx,
                        skip_bad=c.skip_bad,
                        num_workers=c.num_workers or 0,
                        progress=progress,
                        desc=f"read val/{sub}",
                    )
                )
            if not val:
                raise DataError(f"heads fit: no 2AFC subsets in {base} for validation (use --val holdout or none)")
    return train, val


def fit_heads(
    config: HeadsFitConfig | dict[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    *,
    workdir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    model: "torch.nn.Module | None" = None,
    **kwargs: Any,
) -> HeadsFitResult:
    """Fit heads for ``config.net`` at ``config.layers`` and write them to ``out`` (a heads file).

    Args:
        config: a :class:`HeadsFitConfig`, a dict of its fields, or None (then ``kwargs``).
        out: heads file to write (``.safetensors``); None writes nothing.
        workdir: checkpoint folder (``checkpoint.pt``, ``best.pt``, ``history.json``); a run
            killed part-way resumes from it. Default: ``<out>.run/`` next to ``out``.
        progress: tqdm bars.
        log: receives one line per epoch.
        model: your own ``nn.Module`` as the loss network (``config.net`` is then ignored and
            recorded as ``module:<Class>``; ``config.layers`` are its FX node names / module paths).
            The digest of its state dict is part of the run's fingerprint.

    Returns:
        :class:`HeadsFitResult`; the heads are those of the best validation epoch (the last epoch
        without validation).

    Raises:
        InputError / DataError / WeightsError: bad option, data or weights; CheckpointError: a
        checkpoint of another configuration in ``workdir``.
    """
    from lossnet.bench.trainer import fit, load_checkpoint
    from lossnet.heads.file import Heads, save_heads
    from lossnet.network import LossNetwork

    if isinstance(config, HeadsFitConfig):
        c = HeadsFitConfig(**asdict(config))
    else:
        known = {f.name for f in fields(HeadsFitConfig)}
        given = {**(config or {}), **kwargs}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InputError(f"heads fit: unknown option(s) {', '.join(unknown)}")
        c = HeadsFitConfig(**given)
    c.check(model)
    device = torch.device(c.device or "cpu")
    if out is None and workdir is None:
        raise InputError("heads fit: give an output heads file or a workdir")
    workdir = Path(workdir) if workdir is not None else Path(str(out) + ".run")
    weights = None if c.weights == "none" else c.weights
    if model is not None:
        network = LossNetwork(model=model, layers=c.layers.split(","), normalize=c.normalize).to(device)
    else:
        network = LossNetwork(
            c.net, c.layers.split(","), weights=weights, weights_dir=c.weights_dir, normalize=c.normalize
        ).to(device)
    if c.channels_last:
        network.to(memory_format=torch.channels_last)
    channels = _channels(network.cpu(), c.size)
    network.to(device)
    train, val = _datasets(c, progress)
    # The training data's content is part of the resumable config (issue #32 M6): a changed judgments
    # CSV or BAPPS folder makes the checkpoint "a different configuration" instead of being reused.
    data_id = _data_identity(c)
    fit_config = {
        **c.fingerprint_dict(),
        "epochs": c.epochs + c.decay_epochs,
        "fit_epochs": c.epochs,
        "data_content": data_id,
    }
    if model is not None:  # another module (or other weights) must not resume this run
        from lossnet.signature import state_digest

        fit_config["module_state"] = state_digest(network.body)[:16]

    def make_task() -> HeadsTask:
        return HeadsTask(c, network, channels, train, val, device, progress)

    fresh = not workdir.exists()
    try:
        task, outcome = fit(make_task, fit_config, workdir, device=device, log=log, name="heads fit")
    except BaseException:
        if fresh and workdir.is_dir() and not any(workdir.iterdir()):
            workdir.rmdir()  # a fit that failed before its first checkpoint leaves no empty run folder (issue #32 L8)
        raise
    if outcome.best_path is not None and outcome.status == "done":
        task.model.load_state_dict(load_checkpoint(outcome.best_path, device)["model"])
    heads = task.model.head_tensors()
    val_2afc = None if outcome.best_score == -math.inf else float(outcome.best_score)
    path = None
    if out is not None and outcome.has_weights:
        # No absolute path in the file: the data's name and its content digest.
        data = (
            Path(c.judgments).name
            if c.judgments is not None
            else f"{Path(c.data).name} (2afc/{c.split}{'/' + ','.join(c.subsets) if c.subsets else ''})"
        )
        meta = {
            "data": data,
            "data_content": data_id,
            "backbone_sha256": _backbone_digest(network),
            "epochs": c.epochs,
            "decay_epochs": c.decay_epochs,
            "epochs_done": outcome.epochs_done,
            "best_epoch": outcome.best_epoch,
            "val_2afc": val_2afc,
            "val": c.val,
            "weights": c.weights,
            "lr": c.lr,
            "batch_size": c.batch_size,
            "seed": c.seed,
            "size": c.size,
            "status": outcome.status,
        }
        path = save_heads(out, Heads(c.net, c.layers.split(","), heads, c.normalize, meta))
    return HeadsFitResult(path, heads, val_2afc, outcome.status, outcome.history, task, outcome)
