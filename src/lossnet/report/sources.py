"""Scores as one tidy table, from the published CSVs or from a results store.

Every row is a dict ``{"benchmark", "metric", "dataset", "arch", "layer", "value", "n"}`` in the
paper's vocabulary: benchmark is one of :data:`PAPER_BENCHMARKS` (``similarity``,
``superres_x4``, ``superres_x8``, ``segmentation``, ``autoencoder``), layer one of E/S/M/L, ``n``
the number of runs averaged (seeds). Rows from a store are mapped with the cross-team conventions:

- ``similarity`` -> ``similarity``; ``superres`` with ``config["scale"]`` 4/8 -> ``superres_x4`` /
  ``superres_x8``; ``roads`` -> ``segmentation``; ``autoencoder`` -> ``autoencoder``.
- metric ``"<dataset>/<name>"`` -> ``dataset``, ``metric`` (so ``bapps/2afc``, ``set5/psnr``,
  ``mrd/quality``, ``svhn/accuracy``); only the paper-comparable metrics are kept.
- layer: ``config["layer"]`` when it is E/S/M/L or resolves to the same node as one of them
  (:func:`lossnet.models.registry.layer_key`); runs at other layers are not paper cells and are skipped.
- the paper's JND score is one AP over the pooled cnn + traditional pairs (how Pihlgren et al.'s
  code scores it), so ``bapps/jnd_map_pooled`` is compared with it; ``bapps/jnd_map`` (the mean of
  the per-subset APs) is a different number and is not used.
- super-resolution runs of the two test protocols are different numbers: ``protocol`` is part of
  the variant (never averaged together), and the report's notes say which protocol each benchmark's
  runs used; the paper's numbers come from the ``reference`` protocol (its authors' test code).
  Runs made before the option existed count as ``full``.

Networks beyond the paper's 14 (``timm:<name>``, other torchvision models, ``module:<Class>``) are
not paper cells: :func:`store_scores` skips them ("not a paper architecture"), and
:func:`store_scores_all_nets` returns them apart, mapped with the same rules (same metrics, same
``sr_metric`` / ``roads_split`` choice, same filters), for the report's "Beyond the paper's networks"
section. Their layer is E/S/M/L when the run's layer is one of them or names the same node (timm's
rule for timm nets: docs/backbones.md), else the run's own layer name.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from lossnet import paper
from lossnet.errors import DataError, InputError, LossnetError
from lossnet.runs.identity import differing_keys

__all__ = [
    "ScoreKey",
    "PAPER_BENCHMARKS",
    "paper_score_keys",
    "paper_scores",
    "store_scores",
    "store_scores_all_nets",
    "read_store_metric_rows",
    "map_metric_row",
    "LoadInfo",
    "SR_METRICS",
    "ROADS_SPLITS",
]

#: The paper's benchmark names, in its order.
PAPER_BENCHMARKS = ("similarity", "superres_x4", "superres_x8", "segmentation", "autoencoder")


class ScoreKey(NamedTuple):
    """One performance score: ``(benchmark, metric, dataset)`` in the paper's vocabulary."""

    benchmark: str
    metric: str
    dataset: str

    @property
    def label(self) -> str:
        """Short readable name, e.g. ``"superres_x4 ssim bsd100"`` or ``"similarity 2afc"``."""
        if self.benchmark in ("similarity", "segmentation"):
            return f"{self.benchmark} {self.metric}"
        if self.benchmark == "autoencoder":
            return f"autoencoder {self.dataset}"
        return f"{self.benchmark} {self.metric} {self.dataset}"

    @property
    def slug(self) -> str:
        """File-name-safe name, e.g. ``"superres_x4-ssim-bsd100"``."""
        return f"{self.benchmark}-{self.metric}-{self.dataset}"


def key_of(row: dict[str, Any]) -> ScoreKey:
    """The :class:`ScoreKey` of a tidy row."""
    return ScoreKey(row["benchmark"], row["metric"], row["dataset"])


def paper_score_keys() -> list[ScoreKey]:
    """The 19 performance scores of the paper's appendix, in CSV order."""
    return list(_paper_score_keys())


@lru_cache(maxsize=1)
def _paper_score_keys() -> tuple[ScoreKey, ...]:
    seen: dict[ScoreKey, None] = {}
    for row in paper.read_csv("scores.csv"):
        seen.setdefault(key_of(row), None)
    return tuple(seen)


def paper_scores() -> list[dict[str, Any]]:
    """The published appendix Tables V-XI as tidy rows (``n`` = 1)."""
    return [{**row, "n": 1} for row in paper.scores()]


class LoadInfo(NamedTuple):
    """What :func:`store_scores` kept and skipped, for the report's notes."""

    runs: int
    kept_metrics: int
    skipped: dict[str, int]
    variant: str  # "benchmark: preset=..., weights=..., distance=..." per paper benchmark
    notes: tuple[str, ...] = ()  # how comparable the runs are with the paper (test protocols)
    skip_notes: tuple[str, ...] = ()  # why rows were skipped, where the reason alone misleads (stand-in datasets)
    other_runs: int = 0  # runs of networks beyond the paper's 14 that were kept (store_scores_all_nets)
    other_archs: tuple[str, ...] = ()  # those networks


# --------------------------------------------------------------------------------------------------
# store access


def read_store_metric_rows(path: str | Path) -> list[dict[str, Any]]:
    """Metric rows of a results store: dicts with run_key, benchmark, config (dict), dataset, name,
    value, of runs with status "done" (:meth:`lossnet.runs.store.ResultsStore.metric_rows`, read-only).

    Raises:
        DataError: the file is missing, not SQLite, or not a lossnet results store.
    """
    from lossnet.runs.store import ResultsStore

    path = Path(path)
    if not path.is_file():
        raise DataError(f"results store not found: {path}")
    try:
        with ResultsStore(path, readonly=True) as store:
            return store.metric_rows(status="done")
    except DataError:
        raise
    except LossnetError as exc:  # the store names the path; keep one error type for callers
        raise DataError(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: not a lossnet results store ({exc})") from exc


# --------------------------------------------------------------------------------------------------
# mapping store rows to paper cells


def _paper_benchmark(benchmark: str, config: dict[str, Any]) -> str | None:
    """The paper table group of a stored run: the built-in benchmark's ``paper_benchmark`` hook.
    A custom benchmark (a module path in the store) is never imported -- reading a store runs no
    code -- and has no paper cells."""
    from lossnet.bench.base import BENCHMARKS, get_benchmark

    if benchmark not in BENCHMARKS:
        return None
    return get_benchmark(benchmark).paper_benchmark(config)


def _layer_key(arch: str, layer: Any) -> str | None:
    if not isinstance(layer, str) or not layer or "," in layer:
        return None
    from lossnet.models.registry import layer_key

    try:
        return layer_key(arch, layer)
    except Exception:  # an unresolvable layer name is simply not a paper cell
        return None


def _other_layer(arch: Any, layer: Any) -> str | None:
    """Layer of a run of a network beyond the paper's: E/S/M/L when the run's layer is one of them
    or names the same node (the registry's rule; timm's for ``timm:`` nets), else the layer's own name;
    None for no single layer."""
    if not isinstance(arch, str) or not isinstance(layer, str) or not layer.strip() or "," in layer:
        return None
    return _other_layer_cached(arch, layer.strip())


@lru_cache(maxsize=None)
def _other_layer_cached(arch: str, layer: str) -> str:
    if len(layer) == 1 and layer.upper() in paper.LAYER_KEYS:
        return layer.upper()
    try:
        from lossnet.models.registry import get_spec, named_layer

        spec = get_spec(arch)  # timm nets: needs lossnet[timm]; module:<Class> nets: unknown here
        node = named_layer(arch, layer) or layer
        for key, value in spec.layers.items():
            if value == node:
                return key
    except Exception:  # an unknown network or a missing extra: the run's layer name is all we know
        pass
    return layer


#: ``sr_metric`` choices: which of the reference's super-resolution numbers are compared with the paper's.
SR_METRICS = ("skimage", "torchmetrics")
#: ``roads_split`` choices: which split's roads scores are compared with the paper's.
ROADS_SPLITS = ("val", "test")


def _choose_variant(benchmark: str, dataset: str, name: str, sr_metric: str, roads_split: str) -> tuple[str, str] | str:
    """``(dataset, name)`` of a row under the chosen SR metric / roads split, or the reason it is not used.

    Super-resolution (protocol ``reference``): ``psnr``/``ssim`` are the reference's "PSNR_2" and
    skimage SSIM, ``psnr_torchmetrics``/``ssim_torchmetrics`` its torchmetrics numbers; the paper does
    not say which fed its tables. Roads: ``mrd.val/...`` is the validation split, which the authors'
    test script scores; ``mrd/...`` the test split, which the paper's text names."""
    if benchmark.startswith("superres") and sr_metric == "torchmetrics":
        if name in ("psnr", "ssim"):
            return "the other SR metric variant (skimage; --sr-metric skimage)"
        if name in ("psnr_torchmetrics", "ssim_torchmetrics"):
            return dataset, name.split("_")[0]
    if benchmark == "segmentation":
        if roads_split == "val":
            if dataset == "mrd":
                return "roads test split (the report compares the validation split, mrd.val; --roads-split test)"
            if dataset == "mrd.val":
                return "mrd", name
        elif dataset == "mrd.val":
            return "roads validation split (the report compares the test split; --roads-split val)"
    return dataset, name


def map_metric_row(
    row: dict[str, Any], *, sr_metric: str = "skimage", roads_split: str = "val", other_nets: bool = False
) -> tuple[dict[str, Any] | None, str | None]:
    """Map one store metric row to a paper cell.

    Args:
        row: a store metric row.
        sr_metric, roads_split: which super-resolution numbers (:data:`SR_METRICS`) and which roads
            split (:data:`ROADS_SPLITS`) stand for the paper's cells.
        other_nets: also map runs of networks beyond the paper's 14 (their layer: E/S/M/L when it is
            one, else the run's layer name) instead of refusing them as "not a paper architecture".

    Returns:
        ``(cell, None)`` with keys benchmark, metric, dataset, arch, layer, value; or
        ``(None, reason)`` naming why the row is not a paper cell.
    """
    config = row.get("config") or {}
    benchmark = _paper_benchmark(row.get("benchmark") or config.get("benchmark", ""), config)
    if benchmark is None:
        return None, "not a paper benchmark"
    name = row["name"]
    if (benchmark, row["dataset"], name) in _RENAMED:
        name = _RENAMED[(benchmark, row["dataset"], name)]
        if name is None:
            return None, "JND mean of per-subset APs (the paper's is the pooled AP, bapps/jnd_map_pooled)"
    chosen = _choose_variant(benchmark, row["dataset"], name, sr_metric, roads_split)
    if isinstance(chosen, str):
        return None, chosen
    dataset, name = chosen
    key = ScoreKey(benchmark, name, dataset)
    if key not in _PAPER_KEYS():
        return None, "not a paper metric"
    arch = config.get("net")
    if not arch:
        return None, "no loss network (baseline)"
    beyond = arch not in paper.architectures()
    if beyond and not other_nets:
        return None, "not a paper architecture"
    if config.get("loss") not in (None, "perceptual"):
        return None, "not a perceptual-loss run"
    layer = _other_layer(arch, config.get("layer")) if beyond else _layer_key(arch, config.get("layer"))
    if layer is None:
        return None, "layer is not one of E/S/M/L"
    value = row.get("value")
    if value is None:
        return None, "no value"
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"run {row.get('run_key')}: metric {row.get('dataset')}/{row.get('name')} has the non-numeric value "
            f"{value!r}; fix or delete that row"
        ) from None
    return {**key._asdict(), "arch": arch, "layer": layer, "value": value}, None


#: store metric -> paper metric where the names differ (None: not the paper's number).
_RENAMED = {("similarity", "bapps", "jnd_map_pooled"): "jnd_map", ("similarity", "bapps", "jnd_map"): None}

#: What each super-resolution test protocol means for a comparison with the paper.
_PROTOCOL_NOTES = {
    "reference": "the paper's test (its authors' code: 288 px resize + centre crop, their degradation, "
    "Y of 8-bit RGB, 2 px shave, skimage PSNR/SSIM), so its cells compare with the paper",
    "full": "whole images, BT.601 Y, scale-px border, Gaussian SSIM: NOT the paper's test, so differences from the "
    "paper's cells include the protocol (rerun with --protocol reference, the paper preset's default)",
}


def _protocol(benchmark: str, config: dict[str, Any]) -> str | None:
    if not benchmark.startswith("superres"):
        return None
    return str(config.get("protocol") or "full")


@lru_cache(maxsize=1)
def _PAPER_KEYS() -> frozenset[ScoreKey]:  # noqa: N802
    return frozenset(_paper_score_keys())


#: Config keys that pick the paper cell (or the replicate) rather than the variant of a run.
_CELL_KEYS = frozenset({"benchmark", "net", "layer", "loss", "seed"})


def _runtime_keys() -> frozenset[str]:
    from lossnet.runs.identity import RUNTIME_KEYS

    return frozenset(RUNTIME_KEYS)


def _identity(config: dict[str, Any], benchmark: str = "") -> dict[str, str]:
    """The settings that make a run's numbers what they are: the config without the runtime keys
    (:data:`lossnet.runs.identity.RUNTIME_KEYS`) and the keys naming its cell and seed, as canonical
    JSON values (defaults of old runs filled in: weights ``imagenet``, superres protocol ``full``)."""
    skip = _runtime_keys() | _CELL_KEYS
    out = {k: json.dumps(v, sort_keys=True, default=str) for k, v in config.items() if k not in skip}
    out["weights"] = json.dumps(config.get("weights", "imagenet"), default=str)
    protocol = _protocol(benchmark, config)
    if protocol is not None:
        out["protocol"] = json.dumps(protocol)
    return out


def _identity_key(identity: dict[str, str]) -> tuple:
    return tuple(sorted(identity.items()))


def _variant(config: dict[str, Any], benchmark: str = "", extra: Iterable[str] = ()) -> str:
    """Label of a variant: preset, weights, distance, the loss-network knobs, the superres protocol,
    then the other config keys named in ``extra`` (those that differ between the variants)."""
    parts = [f"preset={config.get('preset')}", f"weights={config.get('weights', 'imagenet')}"]
    if config.get("distance") is not None:
        parts.append(f"distance={config.get('distance')}")
    for knob in ("normalize", "loss_net_mode"):  # the loss-network knobs the paper presets set
        if config.get(knob) is not None:
            parts.append(f"{knob}={config[knob]}")
    protocol = _protocol(benchmark, config)
    if protocol is not None:
        parts.append(f"protocol={protocol}")
    shown = {"preset", "weights", "distance", "normalize", "loss_net_mode", "protocol"}
    for key in sorted(set(extra) - shown):
        value = config.get(key)
        parts.append(f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}")
    return ", ".join(parts)


def store_scores(
    path: str | Path,
    *,
    preset: str | None = None,
    weights: str | None = None,
    distance: str | None = None,
    protocol: str | None = None,
    sr_metric: str = "skimage",
    roads_split: str = "val",
) -> tuple[list[dict[str, Any]], LoadInfo]:
    """Paper-comparable scores of a results store, averaged over seeds.

    Args:
        path: SQLite results store (:mod:`lossnet.runs.store`, schema version 1 to 3).
        preset, weights, distance: keep only runs whose config has this value.
        protocol: keep only super-resolution runs of this test protocol (other benchmarks are kept).
        sr_metric: ``skimage`` (the reference's PSNR_2 and skimage SSIM) or ``torchmetrics`` (its
            torchmetrics PSNR and SSIM) as the paper's super-resolution numbers.
        roads_split: ``val`` (the split the authors' test script scores, ``mrd.val/...``) or ``test``
            (the paper text's, ``mrd/...``) as the paper's segmentation numbers.

    Returns:
        ``(rows, info)``: tidy rows (``n`` = number of runs averaged) and what was kept/skipped.
        Runs of networks beyond the paper's 14 are skipped ("not a paper architecture");
        :func:`store_scores_all_nets` returns them apart.

    Raises:
        DataError: unreadable store.
        InputError: the selected runs of one paper benchmark mix variants (presets / weights /
            distances) that must not be averaged or ranked together; the message lists them so the
            caller can filter. Different benchmarks may use different variants.
    """
    rows, _, info = _load(
        path,
        preset=preset,
        weights=weights,
        distance=distance,
        protocol=protocol,
        sr_metric=sr_metric,
        roads_split=roads_split,
        other_nets=False,
    )
    return rows, info


def store_scores_all_nets(
    path: str | Path,
    *,
    preset: str | None = None,
    weights: str | None = None,
    distance: str | None = None,
    protocol: str | None = None,
    sr_metric: str = "skimage",
    roads_split: str = "val",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], LoadInfo]:
    """:func:`store_scores`, plus the runs of networks beyond the paper's 14 (timm, other torchvision
    models, user modules) as a second list of tidy rows.

    The other networks' rows are mapped, filtered and averaged exactly as the paper networks' rows
    (same metrics, ``sr_metric``, ``roads_split``, filters; ``layer`` is E/S/M/L or the run's own
    layer name). They never change the paper networks' rows, and never make the call fail: per
    benchmark they are used when they are of the paper networks' variant (preset, weights, distance,
    protocol and the other settings), or -- where no paper network of the benchmark was run -- when
    they are of one variant; otherwise they are skipped with a counted reason naming the variants.

    Returns:
        ``(rows, other_rows, info)``; ``info.other_runs`` / ``info.other_archs`` say what was kept.
    """
    return _load(
        path,
        preset=preset,
        weights=weights,
        distance=distance,
        protocol=protocol,
        sr_metric=sr_metric,
        roads_split=roads_split,
        other_nets=True,
    )


def _averaged(groups: dict[tuple, dict[str, list[float]]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Tidy rows of ``{(identity, benchmark, metric, dataset, arch, layer): {seed: values}}``: runs of one
    config and seed are not replicates, so each seed counts once (the mean of its runs); also the number
    of cells with a repeated seed per benchmark."""
    rows = []
    duplicated: dict[str, int] = defaultdict(int)
    for (_, b, m, d, a, l), by_seed in groups.items():
        per_seed = [statistics.fmean(vals) for vals in by_seed.values()]
        if any(len(vals) > 1 for vals in by_seed.values()):
            duplicated[b] += 1
        rows.append(
            {
                "benchmark": b,
                "metric": m,
                "dataset": d,
                "arch": a,
                "layer": l,
                "value": statistics.fmean(per_seed),
                "n": len(per_seed),
            }
        )
    rows.sort(key=_sort_key)
    return rows, duplicated


def _load(path, *, preset, weights, distance, protocol, sr_metric, roads_split, other_nets):
    metric_rows = read_store_metric_rows(path)
    filters = {"preset": preset, "weights": weights, "distance": distance}
    skipped: dict[str, int] = defaultdict(int)
    # (identity, benchmark, metric, dataset, arch, layer) -> seed -> values of the runs with that seed
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    identities: dict[tuple[str, tuple], tuple[dict[str, str], dict[str, Any]]] = {}  # -> (identity, a config)
    variant_runs: dict[tuple[str, tuple], set] = defaultdict(set)
    protocols: dict[str, str] = {}  # paper benchmark -> its runs' superres test protocol
    stand_ins: set[tuple[str, str]] = set()  # (paper benchmark, a dataset the paper did not use for it)
    runs = set()
    stand_in_runs: dict[str, set] = defaultdict(set)  # benchmark -> runs marked not paper-comparable
    stand_in_reasons: dict[str, set] = defaultdict(set)
    # the same for the networks beyond the paper's (other_nets): kept apart, decided on after the paper rows
    other_groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    other_identities: dict[tuple[str, tuple], tuple[dict[str, str], dict[str, Any]]] = {}
    other_variant_runs: dict[tuple[str, tuple], set] = defaultdict(set)
    other_metric_rows: dict[tuple[str, tuple], int] = defaultdict(int)
    for row in metric_rows:
        config = row.get("config") or {}
        if any(
            v is not None and str(config.get(k, "imagenet" if k == "weights" else None)) != v
            for k, v in filters.items()
        ):
            skipped["filtered out"] += 1
            continue
        if config.get("stand_in"):
            bench_name = row.get("benchmark") or config.get("benchmark", "")
            stand_in_runs[bench_name].add(row["run_key"])
            stand_in_reasons[bench_name].update(map(str, config["stand_in"]))
        cell, reason = map_metric_row(row, sr_metric=sr_metric, roads_split=roads_split, other_nets=other_nets)
        if cell is None:
            skipped[reason] += 1
            if reason == "not a paper metric":
                _note_stand_in(row, config, stand_ins)
            continue
        used = _protocol(cell["benchmark"], config)
        if protocol is not None and used not in (None, protocol):
            skipped["filtered out"] += 1
            continue
        identity = _identity(config, cell["benchmark"])
        ident = _identity_key(identity)
        seed = json.dumps(config.get("seed"), default=str)
        group_key = (ident, cell["benchmark"], cell["metric"], cell["dataset"], cell["arch"], cell["layer"])
        if cell["arch"] not in paper.architectures():  # only with other_nets
            other_identities.setdefault((cell["benchmark"], ident), (identity, config))
            other_variant_runs[(cell["benchmark"], ident)].add(row["run_key"])
            other_metric_rows[(cell["benchmark"], ident)] += 1
            other_groups[group_key][seed].append(cell["value"])
            continue
        runs.add(row["run_key"])
        if used is not None:
            protocols[cell["benchmark"]] = used  # one per benchmark: runs of several are refused below
        identities.setdefault((cell["benchmark"], ident), (identity, config))
        variant_runs[(cell["benchmark"], ident)].add(row["run_key"])
        groups[group_key][seed].append(cell["value"])
    # label each benchmark's variants by the keys where they differ
    by_bench: dict[str, list[tuple]] = defaultdict(list)
    for bench, ident in identities:
        by_bench[bench].append(ident)
    labels: dict[tuple[str, tuple], str] = {}
    for bench, idents in by_bench.items():
        differing = differing_keys(identities[(bench, i)][0] for i in idents)
        for ident in idents:
            labels[(bench, ident)] = _variant(identities[(bench, ident)][1], bench, differing)
    per_bench: dict[str, list[str]] = defaultdict(list)
    for bench, ident in sorted(labels, key=lambda bi: (bi[0], labels[bi])):
        per_bench[bench].append(labels[(bench, ident)])
    mixed = {b: by_bench[b] for b, v in per_bench.items() if len(v) > 1}
    if mixed:
        listing = "; ".join(
            f"{b}: "
            + " | ".join(
                f"{labels[(b, i)]} ({len(variant_runs[(b, i)])} runs)"
                for i in sorted(idents, key=lambda i: labels[(b, i)])
            )
            for b, idents in sorted(mixed.items())
        )
        raise InputError(
            f"{path}: runs of several variants would be mixed ({listing}). "
            "Select one with --preset / --weights / --distance / --protocol, or report from a store "
            "holding one variant per benchmark."
        )
    rows, duplicated = _averaged(groups)
    kept = _other_variants(identities, other_identities, other_metric_rows, skipped)
    other_rows, other_duplicated = _averaged({k: v for k, v in other_groups.items() if (k[1], k[0]) in kept})
    for bench, ident in kept:
        if bench not in by_bench:  # the benchmark's variant is the other networks' one
            identities[(bench, ident)] = other_identities[(bench, ident)]
            used = _protocol(bench, other_identities[(bench, ident)][1])
            if used is not None:
                protocols[bench] = used
            per_bench[bench].append(_variant(other_identities[(bench, ident)][1], bench))
    for bench, k in other_duplicated.items():
        duplicated[bench] += k
    all_rows = rows + other_rows
    variant_text = "; ".join(f"{b}: {vs[0]}" for b, vs in per_bench.items())
    notes = tuple(
        f"{bench}: test protocol {used} = {_PROTOCOL_NOTES.get(used, 'unknown protocol')}."
        for bench, used in sorted(protocols.items())
    )
    notes += tuple(
        f"{bench}: {len(keys)} run(s) NOT paper-comparable: run with --allow-stand-in on stand-in data "
        f"({'; '.join(sorted(stand_in_reasons[bench]))})"
        for bench, keys in sorted(stand_in_runs.items())
    )
    if any(r["benchmark"] == "segmentation" for r in all_rows):
        split = (
            "validation split (mrd.val/..., the split the authors' test script scores)"
            if roads_split == "val"
            else "test split (mrd/..., the split the paper's text names)"
        )
        other = "test" if roads_split == "val" else "val"
        notes += (f"segmentation: scores of the {split} are compared; --roads-split {other} for the other",)
    if any(r["benchmark"].startswith("superres") for r in all_rows):
        which = (
            "PSNR_2 (skimage, 2 px shave) and skimage 7x7 SSIM"
            if sr_metric == "skimage"
            else "torchmetrics PSNR (unshaved Y, inferred range) and torchmetrics SSIM"
        )
        other = "torchmetrics" if sr_metric == "skimage" else "skimage"
        notes += (f"superres: {which} of the reference protocol are compared; --sr-metric {other} for the other",)
    notes += tuple(
        f"{bench}: {k} score(s) have several runs of the same config and seed; they are not "
        "replicates, so each seed counts once (the mean of its runs) in the value and n."
        for bench, k in sorted(duplicated.items())
    )
    notes += _comparability_notes(identities)
    skip_notes = tuple(
        f"{dataset} is a stand-in dataset; the paper's {bench} datasets are {', '.join(_paper_datasets().get(bench, ()))}"
        for bench, dataset in sorted(stand_ins)
    )
    other_runs = set().union(*(other_variant_runs[k] for k in kept)) if kept else set()
    other_archs = tuple(sorted({r["arch"] for r in other_rows}))
    info = LoadInfo(len(runs), len(rows), dict(skipped), variant_text, notes, skip_notes, len(other_runs), other_archs)
    return rows, other_rows, info


def _other_variants(identities: dict, other_identities: dict, other_metric_rows: dict, skipped: dict[str, int]) -> set:
    """The ``(benchmark, identity)`` variants of the other networks' runs to use: per benchmark the paper
    networks' variant (the tables set them side by side), or the only one where no paper network ran.
    The metric rows of the rest are counted in ``skipped`` under a reason naming the variants."""
    paper_variant = {bench: ident for bench, ident in identities}  # one per benchmark (mixed ones were refused)
    by_bench: dict[str, list[tuple]] = defaultdict(list)
    for bench, ident in other_identities:
        by_bench[bench].append(ident)
    kept = set()
    for bench, idents in sorted(by_bench.items()):
        if bench in paper_variant:
            ref = paper_variant[bench]
            for ident in idents:
                if ident == ref:
                    kept.add((bench, ident))
                    continue
                differing = differing_keys([identities[(bench, ref)][0], other_identities[(bench, ident)][0]])
                reason = (
                    f"network beyond the paper's run as another variant than the paper networks' "
                    f"({bench}: {_variant(other_identities[(bench, ident)][1], bench, differing)} vs "
                    f"{_variant(identities[(bench, ref)][1], bench, differing)}; select one with --preset / --weights / "
                    "--distance / --protocol)"
                )
                skipped[reason] += other_metric_rows[(bench, ident)]
        elif len(idents) == 1:
            kept.add((bench, idents[0]))
        else:
            differing = differing_keys(other_identities[(bench, i)][0] for i in idents)
            listing = " | ".join(sorted(_variant(other_identities[(bench, i)][1], bench, differing) for i in idents))
            reason = (
                f"networks beyond the paper's run as several variants ({bench}: {listing}); "
                "select one with --preset / --weights / --distance / --protocol"
            )
            skipped[reason] += sum(other_metric_rows[(bench, i)] for i in idents)
    return kept


def _comparability_notes(identities: dict) -> tuple[str, ...]:
    """Caveats for runs that are not the paper's set-up (a quick preset, fewer BAPPS subsets): their
    difference to the published numbers is not a replication result (issue #32, --compare-paper)."""
    out = []
    for (bench, _), (_, config) in sorted(identities.items(), key=lambda kv: kv[0][0]):
        why = []
        preset = config.get("preset")
        if preset not in (None, "paper"):
            why.append(f"preset {preset!r}, not 'paper'")
        for key, full in (("subsets_2afc", 6), ("subsets_jnd", 2)):
            subsets = config.get(key)
            if isinstance(subsets, (list, tuple)) and 0 < len(subsets) < full:
                why.append(
                    f"{len(subsets)} of {full} BAPPS {key.split('_')[1].upper()} subsets ({', '.join(map(str, subsets))})"
                )
        if why:
            out.append(
                f"{bench}: CAVEAT: these runs use {'; '.join(why)}; their scores and any difference to the paper's "
                "numbers are indicative only, not a replication result."
            )
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=1)
def _paper_datasets() -> dict[str, tuple[str, ...]]:
    """Paper benchmark -> the datasets of its published scores (autoencoder: stl10, svhn)."""
    out: dict[str, set[str]] = defaultdict(set)
    for key in _paper_score_keys():
        out[key.benchmark].add(key.dataset)
    return {b: tuple(sorted(ds)) for b, ds in out.items()}


def _note_stand_in(row: dict[str, Any], config: dict[str, Any], stand_ins: set[tuple[str, str]]) -> None:
    """Record a "not a paper metric" row whose dataset the paper never used for its benchmark (digits
    for the autoencoder): the reason alone does not tell the user why nothing matched."""
    bench = _paper_benchmark(row.get("benchmark") or config.get("benchmark", ""), config)
    dataset = row.get("dataset") or ""
    if dataset.split(".")[0] == "val":  # the validation split of the training data, not a test set
        return
    # "bapps.traditional" is a per-subset breakdown of a paper dataset, not a stand-in
    if bench is not None and dataset and dataset.split(".")[0] not in _paper_datasets().get(bench, ()):
        stand_ins.add((bench, dataset))


def _sort_key(row: dict[str, Any]) -> tuple:
    archs = list(paper.architectures())
    order = {k: i for i, k in enumerate(_paper_score_keys())}
    layer = row["layer"]
    rank = "ESML".find(layer) if len(layer) == 1 else -1
    return (
        order.get(key_of(row), 99),
        archs.index(row["arch"]) if row["arch"] in archs else 99,
        row["arch"],
        rank if rank >= 0 else 4,
        layer,
    )


def filter_keys(rows: Iterable[dict[str, Any]], keys: Iterable[ScoreKey]) -> list[dict[str, Any]]:
    """Rows whose score is one of ``keys``."""
    wanted = set(keys)
    return [r for r in rows if key_of(r) in wanted]
