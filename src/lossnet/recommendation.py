"""Which loss network and layer to use for a task: the answer of Pihlgren et al.'s published tables.

(The module is ``recommendation``, not ``recommend``: the function :func:`recommend` is meant to be
exported as ``lossnet.recommend``, and a submodule of that name would replace it on import.)

:func:`recommend` ranks the 14 architectures for one of the paper's four tasks (``similarity``,
``superres``, ``roads``, ``autoencoder``) or for all of them (``all``), names the extraction layer
to use with each, shows the published scores at that layer, states the caveats the paper gives,
and writes the ``lossnet.PerceptualLoss(...)`` line. Given a results store, it ranks the user's own
results with the same rules instead.

Rules (the same for the published numbers and for a store):

- **Architectures** are ranked by their average rank for the task, Table III of the paper: per
  performance score, each architecture counts with its best layer; ranks are averaged over the
  task's scores (similarity: 2AFC and JND; superres: PSNR and SSIM at x4 and x8 on Set5, Set14 and
  BSD100; roads: correctness, completeness, quality; autoencoder: SVHN and STL-10), and ``all``
  weights the four tasks equally. From the paper, the published Table III column is used as
  printed (``table3_average_ranking.csv``); ties keep the paper's table order. From a store the
  ranks are computed with :func:`lossnet.report.tables.ranking_table`, which reproduces Table III
  from the published scores.
- **The layer** of an architecture is the one with the best mean rank among its (up to) four
  extraction layers over the task's scores (``all``: the mean over the four tasks of each task's
  mean). A layer that is best on every score of the task gets 1. Equal means go to the earlier
  layer, which is cheaper to run. Table IV's best layer per headline score is shown beside it.
- **The loss line** uses the task's distance in the paper: MSE of the features (Eq. 3, 5 and 6) for
  super-resolution, segmentation and the autoencoder, the unweighted spatial distance (Eq. 1) for
  similarity.

The caveats are the paper's own conclusions (Pihlgren et al., arXiv:2302.04032v3, abstract and
Sec. V): VGG networks without batch normalization perform best; the choice of extraction layer is
at least as important as the choice of architecture; better ImageNet accuracy does not imply better
performance as a loss network, and later layers are not always better. Each is printed with the
figures of the shipped tables that show it for the task. For perceptual similarity, Kumar et al.
(TMLR 2022) find the same inverse relation with ImageNet accuracy over modern classifiers.

This module reads only the shipped CSVs (:mod:`lossnet.paper`): it imports neither torch nor the
benchmark stack. A store is read through :mod:`lossnet.report.sources`, imported only then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from lossnet import paper
from lossnet.errors import InputError

__all__ = ["TASKS", "Choice", "Recommendation", "recommend", "from_rows", "score_label"]

LAYERS = paper.LAYER_KEYS


@dataclass(frozen=True)
class _Task:
    column: str  # Table III column
    benchmarks: tuple[str, ...]  # paper benchmarks (scores.csv) the task covers
    distance: str  # the distance the paper's benchmark uses with the loss network
    title: str
    headline: tuple[str, ...]  # Table IV columns shown per architecture


_TASKS: dict[str, _Task] = {
    "similarity": _Task(
        "b1", ("similarity",), "spatial", "perceptual similarity (BAPPS 2AFC and JND mAP)", ("b1_2afc", "b1_jnd")
    ),
    "superres": _Task(
        "b2",
        ("superres_x4", "superres_x8"),
        "mse",
        "super-resolution x4 and x8 (PSNR and SSIM on Set5, Set14, BSD100)",
        ("b2_x4_ssim_bsd100", "b2_x8_ssim_bsd100"),
    ),
    "roads": _Task(
        "b3",
        ("segmentation",),
        "mse",
        "road segmentation, Massachusetts Roads (correctness, completeness, quality in %)",
        ("b3_quality",),
    ),
    "autoencoder": _Task(
        "b4",
        ("autoencoder",),
        "mse",
        "autoencoder features, downstream accuracy on SVHN and STL-10",
        ("b4_svhn", "b4_stl10"),
    ),
}
_TASKS["all"] = _Task(
    "all",
    tuple(b for t in _TASKS.values() for b in t.benchmarks),
    "mse",
    "all four tasks, weighted equally (Table III 'all')",
    tuple(c for t in _TASKS.values() for c in t.headline),
)

#: The tasks :func:`recommend` answers, in the paper's order, then ``all``.
TASKS: tuple[str, ...] = tuple(_TASKS)

#: Table III column -> task name (the four single tasks).
_COLUMN_TASK = {t.column: name for name, t in _TASKS.items() if name != "all"}

#: Table IV columns -> (benchmark, metric, dataset), as in lossnet.report.tables.TABLE4_COLUMNS.
_TABLE4 = {
    "b1_2afc": ("similarity", "2afc", "bapps"),
    "b1_jnd": ("similarity", "jnd_map", "bapps"),
    "b2_x4_ssim_bsd100": ("superres_x4", "ssim", "bsd100"),
    "b2_x8_ssim_bsd100": ("superres_x8", "ssim", "bsd100"),
    "b3_quality": ("segmentation", "quality", "mrd"),
    "b4_svhn": ("autoencoder", "accuracy", "svhn"),
    "b4_stl10": ("autoencoder", "accuracy", "stl10"),
}


def score_label(benchmark: str, metric: str, dataset: str) -> str:
    """Short name of a score: ``"2afc"``, ``"x4 ssim bsd100"``, ``"quality"``, ``"svhn accuracy"``."""
    if benchmark.startswith("superres_"):
        return f"{benchmark.split('_')[1]} {metric} {dataset}"
    if benchmark == "autoencoder":
        return f"{dataset} {metric}"
    return metric


@dataclass(frozen=True)
class Choice:
    """One architecture's answer for a task.

    Attributes:
        arch: torchvision architecture name.
        rank: its average rank for the task (1 = best; Table III for the published numbers).
        layer: the extraction layer to use (E/S/M/L).
        layer_rank: that layer's mean rank among the architecture's layers over the task's scores
            (1 = best layer on every score).
        scores: every score of the task at ``layer``, by :func:`score_label` (higher is better).
        best_layers: Table IV column -> the architecture's best layer(s) for that score
            (``"S/M"`` for an exact tie).
        task_layers: for ``all`` only: each task's layer for this architecture.
        code: the ``lossnet.PerceptualLoss(...)`` line.
    """

    arch: str
    rank: float
    layer: str
    layer_rank: float
    scores: dict[str, float]
    best_layers: dict[str, str]
    task_layers: dict[str, str] = field(default_factory=dict)
    code: str = ""


@dataclass(frozen=True)
class Recommendation:
    """The answer for one task: architectures best first, caveats, and where it comes from."""

    task: str
    source: str  # "paper" or the store's path
    title: str
    column: str  # Table III column
    distance: str
    headline: tuple[str, ...]  # Table IV columns shown
    choices: tuple[Choice, ...]
    caveats: tuple[str, ...]
    notes: tuple[str, ...] = ()
    published: bool = False  # ranked by the published Table III (else computed from the rows)

    @property
    def best(self) -> Choice:
        """The top architecture with its layer."""
        return self.choices[0]

    @property
    def code(self) -> str:
        """The ``lossnet.PerceptualLoss(...)`` line of the top choice."""
        return self.best.code

    def to_text(self, top: int | None = None) -> str:
        """The answer as plain text (what ``lossnet recommend`` prints)."""
        return _text(self, top)


# --------------------------------------------------------------------------------------------------
# ranking helpers (pure Python: the paper's numbers are small)


def _avg_ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank keys by value, 1 = highest; ties share the average of the ranks they span."""
    order = sorted(values, key=lambda k: -values[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average-tie ranks."""
    rx = _avg_ranks(dict(enumerate(x)))
    ry = _avg_ranks(dict(enumerate(y)))
    a, b = [rx[i] for i in range(len(x))], [ry[i] for i in range(len(y))]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((p - ma) * (q - mb) for p, q in zip(a, b))
    va, vb = sum((p - ma) ** 2 for p in a), sum((q - mb) ** 2 for q in b)
    return cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else float("nan")


def _cells(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, dict[str, float]]]:
    """``{(benchmark, metric, dataset): {arch: {layer: value}}}`` of tidy rows."""
    out: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for r in rows:
        key = (r["benchmark"], r["metric"], r["dataset"])
        out.setdefault(key, {}).setdefault(r["arch"], {})[r["layer"]] = float(r["value"])
    return out


def _group_of(benchmark: str) -> str:
    for name, t in _TASKS.items():
        if name != "all" and benchmark in t.benchmarks:
            return t.column
    return "?"


def _layer_choice(arch: str, cells, keys) -> tuple[str, float] | None:
    """The layer with the best mean within-architecture rank over ``keys`` (grouped by Table III
    benchmark, groups weighted equally); ``None`` when the architecture has no value for them."""
    per_group: dict[str, list[dict[str, float]]] = {}
    for key in keys:
        layers = {l: v for l, v in cells.get(key, {}).get(arch, {}).items() if v == v}  # drop NaN
        if layers:
            per_group.setdefault(_group_of(key[0]), []).append(_avg_ranks(layers))
    if not per_group:
        return None
    means: dict[str, list[float]] = {}
    for ranks in per_group.values():
        for layer in LAYERS:
            got = [r[layer] for r in ranks if layer in r]
            if got:
                means.setdefault(layer, []).append(sum(got) / len(got))
    score = {l: sum(v) / len(v) for l, v in means.items()}
    layer = min(score, key=lambda l: (round(score[l], 9), LAYERS.index(l)))  # ties: the earlier layer
    return layer, score[layer]


def _best_layers(arch: str, cells, column: str) -> str:
    layers = cells.get(_TABLE4[column], {}).get(arch, {})
    finite = {l: v for l, v in layers.items() if v == v}
    if not finite:
        return "-"
    top = max(finite.values())
    return "/".join(l for l in LAYERS if finite.get(l) == top)


def _code(arch: str, layer: str, distance: str) -> str:
    return f'lossnet.PerceptualLoss(net="{arch}", layers=("{layer}",), distance="{distance}")'


# --------------------------------------------------------------------------------------------------
# the answer


def _arch_ranks_paper(column: str) -> list[tuple[str, float]]:
    rows = paper.read_csv("table3_average_ranking.csv")
    # sorted() is stable: ties keep the paper's table order
    return sorted(((r["arch"], float(r[column])) for r in rows), key=lambda ar: ar[1])


def _arch_ranks_rows(rows: list[dict[str, Any]], column: str) -> list[tuple[str, float]]:
    from lossnet.report.tables import ranking_table

    ranked = [(r["arch"], r[column]) for r in ranking_table(rows) if r.get(column) is not None]
    return sorted(ranked, key=lambda ar: ar[1])


def _caveats(task: str, spec: _Task, choices: Sequence[Choice], published: bool) -> list[str]:
    out = []
    t3 = {r["arch"]: float(r["all"]) for r in paper.read_csv("table3_average_ranking.csv")}
    top3 = sorted(t3, key=t3.get)[:3]
    out.append(
        "The paper: VGG networks without batch normalization perform best as loss networks overall "
        f"(Table III 'all': {', '.join(f'{a} {t3[a]:.2f}' for a in top3)}; vgg16_bn {t3['vgg16_bn']:.2f}, rank 1 = best of 14)."
    )
    counts = {l: sum(1 for c in choices if c.layer == l) for l in LAYERS}
    spread = ", ".join(f"{l} x{n}" for l, n in counts.items() if n)
    out.append(
        "The paper: the choice of extraction layer is at least as important as the choice of architecture "
        f"(the layer to use here, over the {len(choices)} architectures: {spread})."
    )
    top1 = {a: v["imagenet_top1"] for a, v in paper.architectures().items()}
    both = [c for c in choices if c.arch in top1]
    if len(both) >= 3:
        rho = _spearman([top1[c.arch] for c in both], [-c.rank for c in both])
        out.append(
            "The paper: better ImageNet accuracy does not imply a better loss network (a transfer-learning convention "
            f"deep perceptual loss breaks); here Spearman rho(ImageNet top-1, this ranking) = {rho:+.2f} over {len(both)} "
            "architectures (+1 would mean more accurate is always better)."
        )
    if task != "all":
        late = sum(1 for c in choices if c.layer == "L")
        out.append(
            "The paper: later layers are not always better (the other convention it finds broken); "
            f"L is the layer to use for {late} of {len(choices)} architectures here."
        )
    if task in ("similarity", "all"):
        out.append(
            "Kumar et al. (TMLR 2022) find the same for perceptual similarity over ResNets, EfficientNets and ViTs: "
            "past a mid-accuracy point, better ImageNet classifiers give worse BAPPS perceptual scores, and shallow ResNets "
            "or ResNets trained for under 5 epochs match networks trained on human similarity judgments."
        )
    if published:
        out.append(
            "These are the paper's benchmark setups (datasets, models and training: docs/fidelity.md); on other data "
            "the order can change: rank your own runs with `lossnet recommend TASK --store results.db`."
        )
    else:
        out.append("Ranked from the runs in the store: as good as those runs (their preset, data and seeds).")
    return out


def recommend(
    task: str,
    *,
    store: str | os.PathLike | None = None,
    preset: str | None = None,
    weights: str | None = None,
    distance: str | None = None,
    protocol: str | None = None,
) -> Recommendation:
    """Which loss networks and layers to use for ``task``, best first.

    Args:
        task: ``"similarity"``, ``"superres"``, ``"roads"``, ``"autoencoder"`` or ``"all"``.
        store: a results store (``lossnet bench --store`` / ``lossnet sweep``) to rank from instead
            of the published numbers.
        preset, weights, distance, protocol: with ``store``, use only runs with these settings
            (as ``lossnet report``); a store mixing variants of one benchmark must be narrowed.

    Returns:
        A :class:`Recommendation`; ``.best.code`` is the ``PerceptualLoss`` line to use.

    Raises:
        InputError: an unknown task, a filter without a store, or a store without results for
            the task.
        DataError: an unreadable store.
    """
    if task not in _TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    spec = _TASKS[task]
    notes: list[str] = []
    if store is None:
        if any(v is not None for v in (preset, weights, distance, protocol)):
            raise InputError("preset/weights/distance/protocol select runs of a results store; give store= as well")
        rows = paper.scores()
        source = "paper"
        notes.append("Source: the published tables of Pihlgren et al. (2024), shipped in lossnet/data/paper.")
    else:
        from lossnet.extras import require

        require("bench", "recommend(store=...) (reading a results store)")
        from lossnet.report.sources import store_scores_all_nets

        rows, other_rows, info = store_scores_all_nets(
            store, preset=preset, weights=weights, distance=distance, protocol=protocol
        )
        rows = [r for r in rows if r["benchmark"] in spec.benchmarks]
        others = sorted({r["arch"] for r in other_rows if r["benchmark"] in spec.benchmarks})
        # the ranking and its caveats are the paper's analysis of its 14 networks: the others are named, not ranked
        beyond = (
            (
                f"{len(others)} network(s) beyond the paper's 14 in the store ({', '.join(others)}) are not ranked here: "
                f"see section 'Beyond the paper's networks' of `lossnet report {store}`"
            )
            if others
            else ""
        )
        if not rows:
            raise InputError(
                f"{store}: no finished paper-comparable runs for task {task!r} "
                f"(benchmarks {', '.join(spec.benchmarks)}; see `lossnet report {store}` for what the store holds)"
                + (f"; {beyond}" if beyond else "")
            )
        source = os.fspath(store)
        notes.append(f"Source: {source}: {info.runs} runs ({info.variant}).")
        if beyond:
            notes.append(beyond + ".")
        notes.extend(info.notes)
    return from_rows(task, rows, source=source, published=store is None, notes=notes)


def from_rows(
    task: str, rows: Sequence[dict[str, Any]], *, source: str, published: bool = False, notes: Sequence[str] = ()
) -> Recommendation:
    """The answer for ``task`` from tidy score rows (:mod:`lossnet.report.sources`), e.g. for a report.

    Args:
        task: as :func:`recommend`.
        rows: tidy scores.
        source: what the rows are (``"paper"`` or a store path), for the text.
        published: the rows are the paper's: order the architectures by the published Table III
            column (those present in ``rows``) instead of computing their average ranks.
        notes: lines for the text.

    Raises:
        InputError: an unknown task, or no rows of the task's benchmarks.
    """
    if task not in _TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    spec = _TASKS[task]
    rows = [r for r in rows if r["benchmark"] in spec.benchmarks]
    if not rows:
        raise InputError(f"{source}: no results for task {task!r} (benchmarks {', '.join(spec.benchmarks)})")
    if published:
        present = {r["arch"] for r in rows}
        ranked = [(a, v) for a, v in _arch_ranks_paper(spec.column) if a in present]
    else:
        ranked = _arch_ranks_rows(list(rows), spec.column)
    cells = _cells(rows)
    keys = [k for k in cells if k[0] in spec.benchmarks]
    choices = []
    for arch, rank in ranked:
        picked = _layer_choice(arch, cells, keys)
        if picked is None:
            continue
        layer, layer_rank = picked
        scores = {score_label(*k): cells[k][arch][layer] for k in keys if layer in cells[k].get(arch, {})}
        task_layers = {}
        if task == "all":
            for name, t in _TASKS.items():
                if name != "all":
                    sub = _layer_choice(arch, cells, [k for k in keys if k[0] in t.benchmarks])
                    task_layers[name] = sub[0] if sub else "-"
        choices.append(
            Choice(
                arch,
                rank,
                layer,
                layer_rank,
                scores,
                {c: _best_layers(arch, cells, c) for c in spec.headline},
                task_layers,
                _code(arch, layer, spec.distance),
            )
        )
    return Recommendation(
        task,
        source,
        spec.title,
        spec.column,
        spec.distance,
        spec.headline,
        tuple(choices),
        tuple(_caveats(task, spec, choices, published)),
        tuple(notes),
        published,
    )


# --------------------------------------------------------------------------------------------------
# text


def _fmt(v: float | None) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"


def _head_label(column: str) -> str:
    return score_label(*_TABLE4[column])


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [fmt_row(header), fmt_row(["-" * w for w in widths]), *[fmt_row(r) for r in body]]


def _text(rec: Recommendation, top: int | None) -> str:
    shown = rec.choices[:top] if top else rec.choices
    b = rec.best
    lines = [f"lossnet recommend {rec.task}: {rec.title}"]
    lines += list(rec.notes)
    lines.append("")
    lines.append(f"Use: {b.arch} at layer {b.layer}")
    lines.append(f"    {b.code}")
    if rec.task == "similarity":
        lines.append(
            f'    as a metric: lossnet.PerceptualMetric(net="{b.arch}", layers=("{b.layer}",), distance="spatial")'
        )
    # 'all' shows each task's layer instead of the seven scores (each task's own answer has those)
    headline = () if rec.task == "all" else rec.headline
    heads = [_head_label(c) for c in headline]
    rank_head = f"avg rank ({'Table III ' if rec.published else ''}{rec.column})"
    header = ["#", "arch", rank_head, "layer"]
    if rec.task == "all":
        header += [f"{t} layer" for t in _TASKS if t != "all"]
    header += heads + [f"best: {_head_label(c)}" for c in headline]
    body = []
    prev = None
    for i, c in enumerate(shown, 1):
        tie = prev is not None and c.rank == prev
        prev = c.rank
        row = ["=" if tie else str(i), c.arch, f"{c.rank:.2f}", c.layer]
        if rec.task == "all":
            row += [c.task_layers.get(t, "-") for t in _TASKS if t != "all"]
        row += [_fmt(c.scores.get(_head_label(col))) for col in headline]
        row += [c.best_layers.get(col, "-") for col in headline]
        body.append(row)
    lines.append("")
    lines += _table(header, body)
    lines.append("")
    if rec.task == "all":
        lines.append(
            "The layer depends on the task (the '<task> layer' columns): for one task, run `lossnet recommend TASK`."
        )
    else:
        lines.append(
            f"Scores of {b.arch} at {b.layer} (higher is better): "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in b.scores.items())
        )
    lines.append(
        "'layer' = best mean rank among the architecture's layers over the task's scores (ties: the earlier "
        "layer); score columns: the score at that layer; 'best: X' = the layer(s) with the highest score X (Table IV)."
    )
    lines.append("")
    lines.append("Caveats:")
    lines += [f"- {c}" for c in rec.caveats]
    return "\n".join(lines) + "\n"
