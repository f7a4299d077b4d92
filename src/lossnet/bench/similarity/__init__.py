"""Benchmark 1: perceptual similarity on BAPPS (2AFC, JND mAP) and Kumar et al.'s perceptual score.

A loss network's features at one extraction layer (or a layer set) and a distance (default
``spatial``, Eq. 1 of Pihlgren et al., unweighted) score the human judgments of the BAPPS dataset
exactly as the LPIPS authors' evaluation does. No training: presets differ only in data size.

Presets:
  paper          every triplet/pair of the split (2AFC val: traditional, cnn, superres, deblur,
                 color, frameinterp; JND val: traditional, cnn); batch 64
  quick          at most 500 items per subset (a seeded random choice); batch 64
  lpips-alex, lpips-vgg, lpips-squeeze
                 ``paper`` with the calibrated LPIPS v0.1 metric (linear heads) instead of a
                 plain distance

Examples:
  lossnet bench similarity --data BAPPS --net alexnet --layer L
  lossnet bench similarity --data BAPPS --net all --layer E,S,M,L --preset paper   (56 runs)
  lossnet bench similarity --data BAPPS --net vgg16 --layer all     (every feature node; PNG curve)
  lossnet bench similarity --data BAPPS --net resnet18 --checkpoints ckpts/ (one run per file)

Runs: ``--net all`` is the paper's 14 architectures; ``--layer E,S,M,L`` (a list of paper
extraction points) gives one run per layer, while any other comma list (``relu1_2,relu2_2``) is one
run with that layer set (summed distance) unless ``--separate-layers``. The decoded BAPPS patches
are cached in the process, so a multi-run command reads the files once.

Metrics: ``bapps/2afc`` (mean over the 2AFC subsets), ``bapps/jnd_map_pooled`` (one AP over the
pairs of all JND subsets, as Pihlgren et al.'s code scores JND), ``bapps/jnd_map`` (mean over the JND
subsets), ``bapps/perceptual_score`` (Kumar et al.: unweighted mean 2AFC over the six val subsets;
only on ``--split val`` with all six present), ``bapps.<subset>/2afc``, ``bapps.<subset>/jnd_map``.
With ``--layer all``: ``bapps/2afc@<node>``, ``bapps/jnd_map@<node>`` per feature node.

References:
  Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.
  Kumar et al., "Do better ImageNet classifiers assess perceptual similarity better?", TMLR 2022.
  Pihlgren et al., "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, option
from lossnet.errors import DataError, LossnetError

__all__ = ["BENCHMARK", "SimilarityConfig", "PRESETS", "DISTANCES", "resolve_config", "run", "list_checkpoints"]

#: Distances this benchmark offers (names of :mod:`lossnet.distances`).
DISTANCES = ("spatial", "gram", "meanpool", "mse", "l1")

#: Layer sets of the calibrated LPIPS v0.1 metrics (those of the ``lpips`` package).
LPIPS_METRICS = {
    "lpips-alex": ("alexnet", "relu1,relu2,relu3,relu4,relu5"),
    "lpips-vgg": ("vgg16", "relu1_2,relu2_2,relu3_3,relu4_3,relu5_3"),
    "lpips-squeeze": ("squeezenet1_1", "relu1,fire2,fire4,fire5,fire6,fire7,fire8"),
}

_CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _jnd_names(value: str) -> list[str]:
    return [] if value.strip().lower() == "none" else _names(value)


@dataclass
class SimilarityConfig(CommonConfig):
    net: str | None = option(
        "alexnet", CommonConfig.__dataclass_fields__["net"].metadata["help"], kind="str", nullable=True
    )
    layer: str | None = option(
        "L",
        CommonConfig.__dataclass_fields__["layer"].metadata["help"] + "; 'all': every feature node",
        kind="str",
        nullable=True,
    )
    distance: str | None = option(
        "spatial", "feature distance (spatial = Eq. 1, unweighted)", kind="str", nullable=True, choices=DISTANCES
    )
    data: str | None = option(
        None,
        "BAPPS folder (containing 2afc/ and jnd/); default: the one `lossnet data fetch bapps` installed",
        kind="str",
        nullable=True,
    )
    metric_preset: str | None = option(
        None,
        "calibrated LPIPS metric (set by the lpips-* presets)",
        kind="str",
        nullable=True,
        choices=tuple(LPIPS_METRICS),
        cli=False,
    )
    heads: str | None = option(
        None,
        "heads file (lossnet heads fit / export-lpips): calibrated channel weights; sets --net, "
        "--layer and --normalize from the file",
        kind="str",
        nullable=True,
        metavar="FILE",
    )
    heads_sha256: str | None = option(
        None,
        "sha256 of the heads file (set from --heads: the run key follows its content)",
        kind="str",
        nullable=True,
        cli=False,
    )
    split: str = option("val", "BAPPS split (JND exists only for val)", kind="str", choices=("val", "train"))
    subsets_2afc: list | None = option(
        None,
        "comma-separated 2AFC subsets (none: all of the split)",
        kind="list",
        nullable=True,
        flag="--subsets",
        parse=_names,
    )
    subsets_jnd: list | None = option(
        None,
        "comma-separated JND subsets ('none' to skip; default traditional,cnn)",
        kind="list",
        nullable=True,
        flag="--jnd-subsets",
        parse=_jnd_names,
    )
    max_items: int | None = option(
        None, "at most this many triplets/pairs per subset (seeded random choice)", kind="int", nullable=True, minimum=1
    )
    size: int = option(64, "patch size the images are read at", kind="int", minimum=1, cli=False)
    batch_size: int = option(64, "patches per forward pass", kind="int", minimum=1)
    skip_bad: bool = option(False, "skip (and count) undecodable files instead of failing", kind="bool")


PRESETS: dict[str, dict[str, Any]] = {
    # the reference feeds ImageNet-normalised patches and never applies googlenet/inception's transform_input
    "paper": {"transform_input": False},
    "quick": {"max_items": 500},
    **{name: {"metric_preset": name, "net": net, "layer": layers} for name, (net, layers) in LPIPS_METRICS.items()},
}


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def list_checkpoints(folder: str) -> list[str]:
    """Checkpoint files in ``folder``, in natural name order (epoch_2 before epoch_10)."""
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"checkpoint folder not found: {d}")
    files = sorted(
        (p for p in d.iterdir() if p.is_file() and p.suffix.lower() in _CHECKPOINT_SUFFIXES), key=_natural_key
    )
    if not files:
        raise DataError(f"no {'/'.join(_CHECKPOINT_SUFFIXES)} checkpoint files in {d}")
    return [str(p) for p in files]


class Similarity(Benchmark):
    name = "similarity"
    Config = SimilarityConfig
    PRESETS = PRESETS
    DISTANCES = DISTANCES
    allows_all_layers = True
    trains = False

    def add_extra_arguments(self, group) -> None:
        group.add_argument(
            "--checkpoints", help="folder of .safetensors/.pth checkpoints of --net: one run per file (natural order)"
        )
        group.add_argument(
            "--separate-layers",
            action="store_true",
            help="with a comma-separated --layer of names other than E/S/M/L: one run per layer instead of one layer set",
        )

    def expand_args(self, args: argparse.Namespace, base: dict[str, Any]) -> list[dict[str, Any]]:
        """``--checkpoints DIR``: one run per checkpoint file (``weights`` = the file)."""
        folder = getattr(args, "checkpoints", None)
        if folder is None:
            return [base]
        from lossnet.bench.base import expand_nets

        nets = expand_nets(getattr(args, "net", None))
        if len(nets) != 1 or nets[0] is None:
            raise LossnetError("--checkpoints needs exactly one --net (the architecture of the checkpoints)")
        return [dict(base, weights=w) for w in list_checkpoints(folder)]

    def resolve_config(self, partial: dict[str, Any]) -> dict[str, Any]:
        """``heads``: the file's net, layers and normalisation replace the defaults (explicit values
        must agree with it), and ``heads_sha256`` records its content for the run key."""
        if partial.get("heads") is not None:
            partial = _apply_heads(dict(partial))
        elif partial.get("heads_sha256") is not None:
            raise LossnetError("similarity: heads_sha256 is set from heads; pass heads")
        return super().resolve_config(partial)

    def validate(self, config: SimilarityConfig) -> None:
        from lossnet.bench.similarity.bapps import SUBSETS_2AFC_TRAIN, SUBSETS_2AFC_VAL, SUBSETS_JND_VAL

        if not config.data:
            # the data root of `lossnet data` ($LOSSNET_DATA or the per-user cache)
            from lossnet.datasets import locate, missing_error

            part = "2afc-train" if config.split == "train" else None
            found = locate("bapps", part)
            if found is None:
                raise missing_error("bapps", "similarity benchmark (no --data given)", part)
            config.data = str(found)
        config.data = str(Path(config.data).expanduser().resolve())
        metric_preset = config.metric_preset
        if metric_preset is not None:
            net, layers = LPIPS_METRICS[metric_preset]
            if config.net != net or config.layer != layers:
                raise LossnetError(
                    f"preset {metric_preset} fixes --net {net} and its LPIPS layers; do not pass --net/--layer with it"
                )
            config.distance = "spatial"
        if config.subsets_2afc is None:
            config.subsets_2afc = list(SUBSETS_2AFC_VAL if config.split == "val" else SUBSETS_2AFC_TRAIN)
        if config.subsets_jnd is None:
            config.subsets_jnd = list(SUBSETS_JND_VAL) if config.split == "val" else []
        if config.subsets_jnd and config.split != "val":
            raise LossnetError(
                "BAPPS has JND judgments only for the val split; pass --jnd-subsets none with --split train"
            )
        if not config.subsets_2afc and not config.subsets_jnd:
            raise LossnetError("no BAPPS subset selected")
        if config.net is None:
            raise LossnetError("similarity: needs --net")
        if str(config.layer).strip().lower() == "all":
            config.layer = "all"
            if metric_preset is not None:
                raise LossnetError("--layer all cannot be combined with an LPIPS preset")

    def time_steps(self, config: SimilarityConfig, steps: int, *, warmup: int = 1, sizes: dict[str, Any] | None = None):
        """A step is one batch of BAPPS evaluation (one warm-up batch at most: nothing is trained)."""
        from lossnet.bench.similarity.timing import time_evaluation

        return time_evaluation(config, steps, warmup=min(warmup, 1), counts=(sizes or {}).get("counts"))

    def synthetic_data(self, root: Path, values: dict[str, Any]):
        """Synthetic BAPPS patches (one batch per subset); step counts of the real val split."""
        from lossnet.bench.similarity.synthetic import write_synthetic_bapps
        from lossnet.bench.synthetic import REAL_SIZES, SyntheticData

        root.mkdir(parents=True, exist_ok=True)
        bs = int(values.get("batch_size", 64))
        path = root / "bapps"
        if not (path / "2afc").is_dir():
            write_synthetic_bapps(path, n_2afc=bs, n_jnd=bs, seed=0)
        return SyntheticData(
            {"data": str(path)},
            {"counts": dict(REAL_SIZES["bapps"])},
            "similarity: synthetic BAPPS patches (64x64), item counts of the real BAPPS val split",
        )

    def paper_benchmark(self, config: dict[str, Any]) -> str | None:
        return "similarity"

    def run(
        self, config: SimilarityConfig | dict[str, Any], workdir: str | Path, *, progress: bool = True
    ) -> BenchResult:
        return _run(self.config_object(config), workdir, progress=progress)


def _apply_heads(partial: dict[str, Any]) -> dict[str, Any]:
    from lossnet.heads.file import heads_digest, load_heads
    from lossnet.models.layers import resolve_layers
    from lossnet.models.registry import get_spec

    path = Path(str(partial["heads"])).expanduser().resolve()
    h = load_heads(path)
    if partial.get("metric_preset") is not None or str(partial.get("preset") or "").startswith("lpips-"):
        raise LossnetError(
            "similarity: --heads cannot be combined with an LPIPS preset (the file brings its own heads)"
        )
    net, layer = partial.get("net"), partial.get("layer")
    if net is not None and get_spec(str(net)).name != h.net:
        raise LossnetError(f"similarity: heads file {path} is for --net {h.net}, not {net}")
    if layer is not None and list(resolve_layers(h.net, str(layer))) != list(resolve_layers(h.net, list(h.layers))):
        raise LossnetError(f"similarity: heads file {path} is for layers {','.join(h.layers)}, not {layer}")
    if partial.get("distance") not in (None, "spatial"):
        raise LossnetError(f"similarity: heads calibrate the spatial distance, not --distance {partial['distance']}")
    if partial.get("normalize") not in (None, h.normalize):
        raise LossnetError(
            f"similarity: heads file {path} was fitted with --normalize {h.normalize}, not {partial['normalize']}"
        )
    partial.update(
        heads=str(path),
        heads_sha256=heads_digest(path),
        net=h.net,
        layer=",".join(h.layers),
        distance="spatial",
        normalize=h.normalize,
    )
    return partial


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from lossnet.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _plot_layers(path: Path, nodes: list[str], two_afc, title: str) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lossnet.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(nodes)), 3.5))
    ax.plot(np.arange(len(nodes)), two_afc, marker="o", ms=3)
    ax.set_xlabel("FX node index (execution order)")
    ax.set_ylabel("BAPPS 2AFC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _run(config: SimilarityConfig, workdir: str | Path, *, progress: bool = True) -> BenchResult:
    """Score one (network, layer(s), distance) on the selected BAPPS subsets.

    Returns:
        :class:`BenchResult` with the metrics described in the module docstring, the per-subset
        CSV (``subsets.csv``) and, for ``layer="all"``, ``layers.csv`` and ``layers_2afc.png``.
    """
    from lossnet.bench.similarity.bapps import list_items
    from lossnet.bench.similarity.evaluate import LayerwiseDistance, config_metric
    from lossnet.devices import resolve_device

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config)
    # Check every subset's folders and pairing before building a (possibly large) network.
    for subset in config.subsets_2afc:
        list_items(config.data, "2afc", config.split, subset)
    for subset in config.subsets_jnd:
        list_items(config.data, "jnd", "val", subset)
    layerwise = config.layer == "all"
    layers, metric = config_metric(config, device)
    compare = LayerwiseDistance(config.distance) if layerwise else metric.compare
    per_2afc, per_jnd, rows, jnd_pairs = _score_subsets(
        config, metric.features, compare, device, layers if layerwise else None, progress
    )

    artifacts: dict[str, str] = {}
    if layerwise:
        metrics = _layerwise_metrics(config, layers, per_2afc, per_jnd, workdir, artifacts)
    else:
        metrics = _subset_metrics(config, per_2afc, per_jnd, jnd_pairs)
    metrics["bapps/n_bad"] = float(sum(r["n_bad"] for r in rows))
    _write_csv(workdir / "subsets.csv", rows)
    artifacts["subsets_csv"] = str(workdir / "subsets.csv")
    weights_name = config.weights if config.weights in ("imagenet", "none") else Path(config.weights).name
    details = [{"net": config.net, "layer": config.layer, "weights": weights_name, **r} for r in rows]
    return BenchResult(
        config=config, metrics=metrics, artifacts=artifacts, status="done", details=details, signature=metric.signature
    )


def _score_subsets(config: SimilarityConfig, features, compare, device, nodes: list[str] | None, progress: bool):
    """``(per_2afc, per_jnd, rows, jnd_pairs)``: the score of every subset (an array over ``nodes``
    when given: ``layer="all"``), one summary row per subset, and ``[(distances, same)]`` of each
    JND subset (for the pooled mAP). With ``nodes`` a row holds the subset's own best node and its
    score (``best_node``, ``best_node_score``), labelled so: it is not one layer's score."""
    import numpy as np

    from lossnet.bench.similarity import scores
    from lossnet.bench.similarity.bapps import load_subsets
    from lossnet.bench.similarity.evaluate import distances_2afc, distances_jnd

    load = dict(
        max_items=config.max_items,
        seed=config.seed,
        size=config.size,
        skip_bad=config.skip_bad,
        num_workers=config.num_workers or 0,
        progress=progress,
    )
    run_opts = dict(batch_size=config.batch_size, device=device, progress=progress)
    rows: list[dict[str, Any]] = []
    per_2afc: dict[str, Any] = {}
    per_jnd: dict[str, Any] = {}
    jnd_pairs: list[tuple[Any, Any]] = []
    # One queue over every subset: the next one decodes in the background while this one is scored.
    requests = [("2afc", config.split, s) for s in config.subsets_2afc] + [
        ("jnd", "val", s) for s in config.subsets_jnd
    ]
    layerwise = nodes is not None
    for data in load_subsets(config.data, requests, **load):
        subset = data.subset
        if data.kind == "2afc":
            d0, d1 = distances_2afc(data, features, compare, **run_opts)
            if layerwise:
                per_2afc[subset] = np.array(
                    [scores.score_2afc(d0[:, j], d1[:, j], data.judgments) for j in range(d0.shape[1])]
                )
            else:
                per_2afc[subset] = scores.score_2afc(d0, d1, data.judgments)
            score = per_2afc[subset]
        else:
            ds = distances_jnd(data, features, compare, **run_opts)
            jnd_pairs.append((ds, data.judgments))
            if layerwise:
                per_jnd[subset] = np.array([scores.jnd_map(ds[:, j], data.judgments) for j in range(ds.shape[1])])
            else:
                per_jnd[subset] = scores.jnd_map(ds, data.judgments)
            score = per_jnd[subset]
        row = {"kind": data.kind, "subset": subset, "n": len(data), "n_bad": data.n_bad}
        if layerwise:  # each subset's best node differs: name it (layers.csv has every node's mean)
            best = int(np.argmax(score))
            row.update(best_node=nodes[best], best_node_score=float(score[best]))
        else:
            row["score"] = float(np.mean(score))
        rows.append(row)
    return per_2afc, per_jnd, rows, jnd_pairs


def _subset_metrics(config: SimilarityConfig, per_2afc: dict, per_jnd: dict, jnd_pairs: list) -> dict[str, float]:
    """Means over the subsets, the pooled JND mAP, Kumar et al.'s perceptual score, and every subset's score.

    ``bapps/jnd_map`` is the mean of the per-subset APs (the LPIPS authors' per-subset evaluation);
    ``bapps/jnd_map_pooled`` is one AP over the pairs of all JND subsets together, as the reference
    code of Pihlgren et al. scores JND (a ConcatDataset of cnn + traditional); compare with their
    tables using the pooled value.
    """
    import numpy as np

    from lossnet.bench.similarity import scores

    metrics: dict[str, float] = {}
    if per_2afc:
        metrics["bapps/2afc"] = float(np.mean(list(per_2afc.values())))
    if per_jnd:
        metrics["bapps/jnd_map"] = float(np.mean(list(per_jnd.values())))
        metrics["bapps/jnd_map_pooled"] = scores.jnd_map(
            np.concatenate([d for d, _ in jnd_pairs]), np.concatenate([s for _, s in jnd_pairs])
        )
    if config.split == "val":
        ps = scores.perceptual_score(per_2afc)
        if np.isfinite(ps):
            metrics["bapps/perceptual_score"] = ps
    for subset, v in per_2afc.items():
        metrics[f"bapps.{subset}/2afc"] = float(v)
    for subset, v in per_jnd.items():
        metrics[f"bapps.{subset}/jnd_map"] = float(v)
    return metrics


def _layerwise_metrics(
    config: SimilarityConfig, layers: list[str], per_2afc: dict, per_jnd: dict, workdir: Path, artifacts: dict[str, str]
) -> dict[str, float]:
    """``layer="all"``: the subset-mean score per node, the best node, ``layers.csv`` and the curve PNG."""
    import numpy as np

    metrics: dict[str, float] = {}
    mean_2afc = np.mean(np.stack(list(per_2afc.values())), axis=0) if per_2afc else None
    mean_jnd = np.mean(np.stack(list(per_jnd.values())), axis=0) if per_jnd else None
    layer_rows = []
    for j, node in enumerate(layers):
        row: dict[str, Any] = {"index": j, "node": node}
        if mean_2afc is not None:
            metrics[f"bapps/2afc@{node}"] = row["2afc"] = float(mean_2afc[j])
        if mean_jnd is not None:
            metrics[f"bapps/jnd_map@{node}"] = row["jnd_map"] = float(mean_jnd[j])
        layer_rows.append(row)
    _write_csv(workdir / "layers.csv", layer_rows)
    artifacts["layers_csv"] = str(workdir / "layers.csv")
    if mean_2afc is not None:
        best = int(np.argmax(mean_2afc))
        metrics["bapps/2afc_best"] = float(mean_2afc[best])
        metrics["bapps/2afc_best_index"] = float(best)
        _plot_layers(
            workdir / "layers_2afc.png",
            layers,
            mean_2afc,
            f"{config.net} ({config.distance}): 2AFC per node; best {layers[best]}",
        )
        artifacts["layers_plot"] = str(workdir / "layers_2afc.png")
    return metrics


BENCHMARK = Similarity()
resolve_config = BENCHMARK.resolve_config
run = BENCHMARK.run
