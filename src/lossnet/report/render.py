"""Assemble the report: Markdown, one self-contained HTML file, every table as CSV, figures.

:func:`build_report` runs the whole analysis on tidy score rows and writes, atomically
(:mod:`lossnet.atomic`), into ``out_dir``:

- ``report.md`` (figures linked as ``figures/*.png``),
- ``report.html`` (no external resources: CSS inline, figures as base64 PNG ``data:`` URIs),
- ``tables/*.csv`` (Table III, Table IV, every score table, comparison, correlations),
- ``figures/*.png`` and ``figures/*.svg``.

Runs of networks beyond the paper's 14 (``other_rows``) get their own section, "Beyond the paper's
networks" (:mod:`lossnet.report.beyond`), beside the paper networks of the same store; they enter no
other table, figure or correlation (those need the paper's Table I attributes or published numbers).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lossnet import paper
from lossnet.atomic import atomic_write_bytes, atomic_write_text
from lossnet.report import beyond
from lossnet.report import correlations as corr
from lossnet.report import figures as figs
from lossnet.report.sources import ScoreKey, key_of, paper_score_keys
from lossnet.report.tables import (
    BENCHMARK_GROUPS,
    TABLE4_COLUMNS,
    arch_order,
    best_layer_table,
    comparison_table,
    ranking_table,
    score_table,
)

__all__ = ["Cell", "Section", "build_report", "fmt"]

LAYERS = paper.LAYER_KEYS


def fmt(value: Any, digits: int | None = None) -> str:
    """Cell text: None -> "-", floats with 3 decimals (2 for values >= 10, e.g. PSNR / %),
    p-values in scientific notation when small."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "nan"
        if digits is not None:
            return f"{v:.{digits}f}"
        return f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"
    return str(value)


def _fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "nan"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


class Cell(str):
    """A table cell's text with how the HTML shows it: a heatmap colour, a hover title, a best mark.
    It is a ``str`` (its text), so Markdown and CSV see only the text."""

    def __new__(
        cls,
        text: str,
        *,
        bg: str | None = None,
        fg: str | None = None,
        title: str | None = None,
        best: bool = False,
        code: bool = False,
    ) -> "Cell":
        cell = super().__new__(cls, text)
        cell.bg, cell.fg, cell.title, cell.best, cell.code = bg, fg, title, best, code
        return cell

    def html(self) -> str:
        """The ``<td>`` element."""
        attrs = []
        classes = [c for c, on in (("best", self.best), ("code", self.code)) if on]
        if classes:
            attrs.append(f'class="{" ".join(classes)}"')
        if self.bg:
            attrs.append(f'style="background:{self.bg};color:{self.fg or "#000"}"')
        if self.title:
            attrs.append(f'title="{html.escape(self.title, quote=True)}"')
        return f"<td{' ' if attrs else ''}{' '.join(attrs)}>{html.escape(str(self))}</td>"


@dataclass
class Section:
    """A report section: title, paragraphs, tables (header + string rows), figures.

    ``legends`` maps a table's index to the ``(low, high, clipped)`` values of its heatmap colour scale
    (``clipped``: values below ``low`` exist and share its colour).
    """

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[figs.Figure] = field(default_factory=list)
    legends: dict[int, tuple[float, float, bool]] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)  # paragraphs after the tables


# --------------------------------------------------------------------------------------------------
# CSV


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        cols = list(rows[0])
        for r in rows[1:]:
            cols += [c for c in r if c not in cols]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# sections


_TIE_NOTE = (
    "The paper ranked its unrounded scores; where the published 3-digit best-layer scores tie, our average "
    "rank is the midpoint of the ranks the paper could have given, so such cells differ by a fraction of a "
    "rank (from the published numbers: 18 benchmark cells -- b1 6, b2 10, b4 2 -- and the 'all' cells "
    "of those architectures; every published value lies inside the tie range)."
)
_ERRATUM_NOTE = (
    "Published Table IV gives squeezenet1_1 b3_quality = L, but its appendix quality scores are "
    "E 12.3 / S 22.6 / M 16.8 / L 13.9 (S is best; Table III's b3 rank of 8 also needs S) -- an erratum in the paper."
)


def _same_cells(paper_rows, rows):
    """The published scores of exactly the (score, arch, layer) cells we ran."""
    ran = {(key_of(r), r["arch"], r["layer"]) for r in rows}
    return [r for r in paper_rows if (key_of(r), r["arch"], r["layer"]) in ran]


def _table3_section(rows, paper_rows, csvs, *, published: bool) -> Section:
    ours = ranking_table(rows, per_score=True)  # per-score rank columns go to the CSV only
    csvs["table3_average_ranking.csv"] = ours
    s = Section("Table III: average rankings")
    s.text.append(
        "Per performance score, architectures are ranked 1 (best) to N by the score of their best "
        "extraction layer (ties share their average rank); b1-b4 average the ranks of the benchmark's "
        "scores (b1: 2AFC, JND; b2: PSNR and SSIM at x4 and x8 on Set5, Set14, BSD100; b3: correctness, "
        "completeness, quality; b4: SVHN, STL-10); 'all' weights the four benchmarks equally."
    )
    cols = ["b1", "b2", "b3", "b4", "all"]
    ref = None
    if paper_rows is not None and published:
        ref = {r["arch"]: {c: float(r[c]) for c in cols} for r in paper.read_csv("table3_average_ranking.csv")}
        s.text.append("Cells show reproduced / published (the paper's Table III).")
        s.text.append(_TIE_NOTE)
    elif paper_rows is not None:
        ref = {r["arch"]: r for r in ranking_table(_same_cells(paper_rows, rows))}
        s.text.append(
            "Cells show ours / paper, where 'paper' ranks the published scores of exactly the cells we ran "
            "(same architectures, layers and scores), so the two rankings are comparable even for a partial sweep."
        )
    if ref is not None:
        body = [
            [
                r["arch"],
                *[f"{fmt(r[c], 2)} / {fmt(ref.get(r['arch'], {}).get(c), 2)}" for c in cols],
                str(r["n_scores"]),
            ]
            for r in ours
        ]
        for r in ours:
            for c in cols:
                r[f"{c}_paper"] = ref.get(r["arch"], {}).get(c)
    else:
        body = [[r["arch"], *[fmt(r[c], 2) for c in cols], str(r["n_scores"])] for r in ours]
    s.tables.append(("", ["arch", *cols, "scores"], body))
    return s


def _table4_section(rows, paper_rows, csvs, *, published: bool) -> Section:
    ours = best_layer_table(rows)
    csvs["table4_best_layer.csv"] = ours
    s = Section("Table IV: best extraction layer")
    s.text.append(
        "The layer with the highest score per architecture; exact ties list every tied layer (E/S/M/L order)."
    )
    cols = list(TABLE4_COLUMNS)
    ref = None
    if paper_rows is not None and published:
        ref = {r["arch"]: r for r in paper.read_csv("table4_best_layer.csv")}
        s.text.append("Cells show reproduced / published (the paper's Table IV); '*' marks a disagreement.")
        s.text.append(_ERRATUM_NOTE)
    elif paper_rows is not None:
        ref = {r["arch"]: r for r in best_layer_table(_same_cells(paper_rows, rows))}
        s.text.append("Cells show ours / paper, the paper's best among the layers we ran; '*' marks a disagreement.")
    if ref is not None:
        body = []
        for r in ours:
            cells = []
            for c in cols:
                p = ref.get(r["arch"], {}).get(c)
                mark = "*" if r[c] is not None and p is not None and r[c] != p else ""
                cells.append(f"{fmt(r[c])} / {p or '-'}{mark}")
                r[f"{c}_paper"] = p
            body.append([r["arch"], *cells])
    else:
        body = [[r["arch"], *[fmt(r[c]) for c in cols]] for r in ours]
    s.tables.append(("", ["arch", *cols], body))
    return s


def _heat_range(values: list[float]) -> tuple[float, float, bool]:
    """``(low, high, clipped)`` of a score's colour scale: its lowest to its highest value, except that
    low outliers (below Q1 - 1.5 IQR, e.g. a collapsed training run) would leave every other cell at the
    dark end: the scale then starts at the lowest value inside that fence, and the outliers get its
    lightest colour (``clipped``)."""
    if not values:
        return 0.0, 0.0, False
    q1, q3 = (float(q) for q in np.percentile(values, [25, 75]))
    fence = q1 - 1.5 * (q3 - q1)
    inside = [v for v in values if v >= fence]
    lo = min(inside)
    return lo, max(values), lo > min(values)


def _score_sections(rows, paper_rows, csvs, *, published: bool = False) -> list[Section]:
    """One section per benchmark, one table per score. In the HTML each table is a heatmap: one colour
    scale per score (its lowest to its highest value), each architecture's best layer boxed, and the
    cell's value -- with the paper's and the difference where compared -- in its hover title."""
    present = {key_of(r) for r in rows}
    ref = {(key_of(r), r["arch"], r["layer"]): r["value"] for r in paper_rows or []}
    by_bench: dict[str, Section] = {}
    for key in [k for k in paper_score_keys() if k in present]:
        table = score_table(rows, key)
        csvs[f"scores_{key.slug}.csv"] = table
        if key.benchmark not in by_bench:
            sec = by_bench[key.benchmark] = Section(f"Scores: {key.benchmark}")
            sec.text.append(
                "Each table is a heatmap of one score (darker = higher = better; its own colour scale, from its lowest "
                "to its highest cell -- '≤' marks a scale that starts above a few outlying low cells, which get its "
                "lightest colour); the boxed cell is the architecture's best layer. Hover a cell for its value"
                + (" and the paper's." if paper_rows is not None else ".")
            )
        sec = by_bench[key.benchmark]
        values = [v for r in table for v in (r[l] for l in LAYERS) if v is not None and math.isfinite(v)]
        lo, hi, clipped = _heat_range(values)
        body = []
        for r in table:
            colours = figs.heat_colors([r[l] for l in LAYERS], lo, hi)
            best = set(r["best"].split("/")) if r["best"] else set()
            cells = []
            for l, colour in zip(LAYERS, colours):
                v = r[l]
                where = f"{r['arch']} at {l} ({key.label})"
                if paper_rows is not None and v is not None:
                    p = ref.get((key, r["arch"], l))
                    text = f"{fmt(v)} / {fmt(p)} ({'' if p is None else f'{v - p:+.3f}'})"
                    title = f"{where}: ours {fmt(v)}; paper {fmt(p)}" + (
                        "" if p is None else f"; ours - paper {v - p:+.3f}"
                    )
                else:
                    text = fmt(v)
                    title = f"{where}: {fmt(v)}" + (" (published)" if published and v is not None else "")
                if l in best:
                    title += "; best layer of " + r["arch"]
                bg, fg = colour if colour else (None, None)
                cells.append(
                    Cell(text, bg=bg, fg=fg, title=title if v is not None else f"{where}: not run", best=l in best)
                )
            body.append([r["arch"], *cells, r["best"]])
        caption = f"{key.metric} on {key.dataset}" + (
            " -- cells: ours / paper (ours - paper)" if paper_rows is not None else ""
        )
        if values:
            sec.legends[len(sec.tables)] = (lo, hi, clipped)
        sec.tables.append((caption, ["arch", *LAYERS, "best"], body))
    return list(by_bench.values())


def _recommend_section(rows, *, published: bool, source: str) -> Section | None:
    """``lossnet recommend``'s answer for every task the rows cover: it heads the report."""
    from lossnet.errors import InputError
    from lossnet.recommendation import TASKS, from_rows

    s = Section("Recommendation: which loss network and layer")
    benchmarks = {r["benchmark"] for r in rows}
    body, caveats = [], None
    for task in TASKS:
        if task == "all" and len(benchmarks) < len({b for group in BENCHMARK_GROUPS.values() for b in group}):
            continue  # 'all' weights the four tasks equally: only meaningful with all four
        try:
            rec = from_rows(task, rows, source=source, published=published)
        except InputError:
            continue  # no rows of this task
        if not rec.choices:
            continue
        b = rec.best
        nxt = ", ".join(f"{c.arch} {c.layer} ({fmt(c.rank, 2)})" for c in rec.choices[1:3]) or "-"
        body.append([task, f"{b.arch} at {b.layer}", fmt(b.rank, 2), nxt, Cell(b.code, code=True)])
        if caveats is None or task == "all":
            caveats = rec.caveats
    if not body:
        return None
    s.text.append(
        "What `lossnet recommend TASK` answers (run it for the scores behind each answer) from "
        + (
            "the published tables: architectures by their published average rank for the task (Table III; 1 = best), "
            if published
            else "these results: architectures by their average rank for the task (Table III's rule; 1 = best), "
        )
        + "each with the layer of best mean rank among its layers over the task's scores. "
        "The PerceptualLoss line uses the distance of the paper's benchmark (MSE; spatial for similarity)."
    )
    s.tables.append(("", ["task", "use", "avg rank", "next best (avg rank)", "loss"], body))
    s.after += list(caveats or ())
    return s


def _compare_section(rows, paper_rows, csvs) -> Section:
    cmp = comparison_table(rows, paper_rows)
    csvs["compare_paper.csv"] = cmp
    s = Section("Comparison with the paper")
    diffs = [r["diff"] for r in cmp if r["diff"] is not None]
    s.text.append(f"{len(cmp)} cells run; {len(diffs)} have a published value. Full list: tables/compare_paper.csv.")
    body = [
        [
            r["benchmark"],
            r["metric"],
            r["dataset"],
            r["arch"],
            r["layer"],
            fmt(r["ours"]),
            fmt(r["paper"]),
            "-" if r["diff"] is None else f"{r['diff']:+.3f}",
            str(r["n"]),
        ]
        for r in cmp
    ]
    s.tables.append(("", ["benchmark", "metric", "dataset", "arch", "layer", "ours", "paper", "diff", "runs"], body))
    return s


def _corr_body(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["score"],
            r["attribute"],
            str(r["n"]),
            fmt(r["pearson_r"], 3),
            _fmt_p(r["pearson_p"]),
            fmt(r["spearman_rho"], 3),
            _fmt_p(r["spearman_p"]),
        ]
        for r in rows
    ]


#: Fewer architectures than this give no verdict (with 2 points r is always +-1).
MIN_CORRELATION_N = 3


def _verdict(n: int, r: float, p: float) -> str:
    """What the headline correlation allows to say: a conclusion only from a defined, significant r."""
    import math

    if n < MIN_CORRELATION_N or r is None or p is None or not (math.isfinite(r) and math.isfinite(p)):
        return f"no conclusion: not enough architectures (n={n}; at least {MIN_CORRELATION_N} with distinct values are needed)"
    if p >= 0.05:
        return "no significant relation (p >= 0.05): these runs neither confirm nor refute the paper's finding"
    if r < 0:
        return "negative: architectures that classify ImageNet better make *worse* perceptual-similarity loss networks"
    return "positive"


def _correlation_sections(rows, arch_attrs, layer_attrs, notes, csvs) -> list[Section]:
    header = ["score", "attribute", "n", "pearson r", "p", "spearman rho", "p"]
    out = []
    ac = corr.arch_correlations(rows, arch_attrs)
    csvs["correlations_architecture.csv"] = ac
    head = Section("Correlations: architecture attributes")
    headline = [
        r
        for r in ac
        if r["score"] == ScoreKey("similarity", "2afc", "bapps").label and r["attribute"] == "imagenet_top1"
    ]
    if headline:
        h = headline[0]
        verdict = _verdict(h["n"], h["pearson_r"], h["pearson_p"])
        head.text.append(
            f"**Best-layer BAPPS 2AFC vs ImageNet top-1** over {h['n']} architectures: Pearson r = {h['pearson_r']:.3f} "
            f"(p = {_fmt_p(h['pearson_p'])}), Spearman rho = {h['spearman_rho']:.3f} (p = {_fmt_p(h['spearman_p'])}) -- {verdict}."
        )
    head.text.append(
        "Best-layer score of each architecture against its attributes; two-sided p-values (H0: no correlation)."
    )
    head.text += [n for n in notes if n]
    head.tables.append(("", header, _corr_body(ac)))
    out.append(head)
    lc = corr.layer_correlations(rows, layer_attrs)
    lay = Section("Correlations: layer attributes")
    if lc:
        csvs["correlations_layer.csv"] = lc
        lay.text.append(
            "Score of every (architecture, layer) cell against parameters, depth and MFLOPs up to the extraction "
            "point and channels / features at it (random-init models, 64x64 input)."
        )
        lay.tables.append(("", header, _corr_body(lc)))
    else:
        lay.text.append("Not computed: layer statistics are unavailable (see the note above).")
    out.append(lay)
    labels, r, p = corr.cross_benchmark_matrix(rows)
    csvs["correlations_cross_benchmark.csv"] = [
        {
            "score": labels[i],
            **{labels[j]: (None if not math.isfinite(r[i, j]) else float(r[i, j])) for j in range(len(labels))},
        }
        for i in range(len(labels))
    ]
    cross = Section("Cross-benchmark correlation (Spearman rho of best-layer scores)")
    short = [f"s{i + 1}" for i in range(len(labels))]
    # each explanation is its table's caption, so that it sits right above that table
    cross.tables.append(
        (
            "Columns: " + "; ".join(f"s{i + 1} = {l}" for i, l in enumerate(labels)) + ".",
            ["score", *short],
            [[f"s{i + 1} {labels[i]}", *[fmt(r[i, j], 2) for j in range(len(labels))]] for i in range(len(labels))],
        )
    )
    blabels, brho, bp = corr.benchmark_rank_matrix(rows)
    if len(blabels) > 1:
        cross.tables.append(
            (
                "Between benchmarks (Spearman rho of the Table III average ranks, p in brackets):",
                ["", *blabels],
                [
                    [a, *[f"{fmt(brho[i, j], 2)} ({_fmt_p(bp[i, j])})" for j in range(len(blabels))]]
                    for i, a in enumerate(blabels)
                ],
            )
        )
        csvs["correlations_benchmarks.csv"] = [
            {
                "benchmark": a,
                **{b: (None if not math.isfinite(brho[i, j]) else float(brho[i, j])) for j, b in enumerate(blabels)},
            }
            for i, a in enumerate(blabels)
        ]
    out.append(cross)
    return out


def _rank(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.0f}" if float(r).is_integer() else f"{r:.1f}"


def _names(archs: Sequence[str]) -> str:
    return ", ".join(archs)


def _beyond_section(rows, other_rows, csvs, *, make_figures: bool) -> Section:
    """The networks beyond the paper's 14 beside the paper networks of the same store: average ranks
    over all of them (Table III's rule), one heatmap table per score (network x E/S/M/L, every cell with
    its rank among all cells of the score), and score-vs-layer figures with every network of the store."""
    others = sorted({r["arch"] for r in other_rows})
    papers = arch_order({r["arch"] for r in rows})
    s = Section("Beyond the paper's networks")
    s.text.append(
        f"Networks outside the paper's 14 run in this store: {_names(others)}; beside them, the paper networks of the "
        f"same store ({_names(papers) or 'none'}). Their runs pass the same filters, are of the same variant (preset, "
        "weights, distance, protocol, other settings) and use the same metrics (--sr-metric, --roads-split) as the "
        "tables above; runs of another variant are not used (see the notes at the top). No published numbers exist "
        "for these networks, and they are left out of the paper's tables, figures and correlations."
    )
    s.text.append(
        "E/S/M/L are each network's extraction points (timm nets: early, after the first downsampling stages, middle, "
        "last -- docs/backbones.md); a run at another layer (a node name) is listed under 'other layers' by that name. "
        "Cells: value #k = the cell's rank among all (network, layer) cells of that score in the store (1 = best; ties "
        "share their average rank). 'net rank': the network's best cell over all its layers ranked among the networks "
        "(Table III's per-score rule); the boxed cell is the network's best layer. Full list: tables/beyond_scores.csv."
    )
    ranking = beyond.beyond_ranking_table(rows, other_rows)
    csvs["beyond_average_ranking.csv"] = ranking
    n_nets = len(ranking)
    s.tables.append(
        (
            f"Average rank among the {n_nets} networks of the store (Table III's rule: b1-b4 average a benchmark's score "
            "ranks, 'all' the benchmarks present; compare 'all' only between networks with the same scores)",
            ["network", "set", "b1", "b2", "b3", "b4", "all", "scores"],
            [
                [
                    r["arch"],
                    "paper" if r["paper_net"] else "beyond",
                    *[fmt(r[c], 2) for c in ("b1", "b2", "b3", "b4", "all")],
                    str(r["n_scores"]),
                ]
                for r in ranking
            ],
        )
    )
    csvs["beyond_scores.csv"] = beyond.beyond_long_rows(rows, other_rows)
    for key in beyond.scores_present(other_rows):
        table, n_cells, n_ranked = beyond.beyond_score_table(rows, other_rows, key)
        values = [
            v
            for t in table
            for v in (*[t[l] for l in LAYERS], *t["other_layers"].values())
            if v is not None and math.isfinite(v)
        ]
        lo, hi, clipped = _heat_range(values)
        body = []
        for t in table:
            best = set(t["best"].split("/")) if t["best"] else set()
            colours = figs.heat_colors([t[l] for l in LAYERS], lo, hi)
            cells = []
            for l, colour in zip(LAYERS, colours):
                v = t[l]
                where = f"{t['arch']} at {l} ({key.label})"
                if v is None:
                    cells.append(Cell("-", title=f"{where}: not run"))
                    continue
                rank = t["ranks"].get(l)
                title = f"{where}: {fmt(v)}; rank {_rank(rank)} of {n_cells} cells" + (
                    "; best layer of " + t["arch"] if l in best else ""
                )
                bg, fg = colour if colour else (None, None)
                cells.append(Cell(f"{fmt(v)} #{_rank(rank)}", bg=bg, fg=fg, title=title, best=l in best))
            other = (
                "; ".join(
                    f"{l} {fmt(v)} #{_rank(t['ranks'].get(l))}" + (" (best)" if l in best else "")
                    for l, v in t["other_layers"].items()
                )
                or "-"
            )
            body.append(
                [
                    t["arch"],
                    "paper" if t["paper_net"] else "beyond",
                    *cells,
                    other,
                    t["best"] or "-",
                    f"{_rank(t['net_rank'])} / {n_ranked}",
                ]
            )
        if values:
            s.legends[len(s.tables)] = (lo, hi, clipped)
        s.tables.append(
            (
                f"{key.label} -- {n_cells} cells, {n_ranked} networks",
                ["network", "set", *LAYERS, "other layers", "best", "net rank"],
                body,
            )
        )
    if make_figures:
        for bench in dict.fromkeys(k.benchmark for k in beyond.scores_present(other_rows)):
            f = figs.fig_score_vs_layer(
                [*[r for r in rows if r["benchmark"] == bench], *[r for r in other_rows if r["benchmark"] == bench]],
                bench,
                name=f"beyond_{bench}",
                caption=f"Score vs extraction layer, {bench}: the networks beyond the paper's beside the store's paper "
                "networks (E/S/M/L cells only).",
            )
            if f is not None:
                s.figures.append(f)
    return s


# --------------------------------------------------------------------------------------------------
# rendering


def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _markdown(title: str, intro: list[str], sections: list[Section], lead: Section | None = None) -> str:
    parts = [f"# {title}", *intro]
    for s in ([lead] if lead else []) + sections:
        parts.append(f"## {s.title}")
        parts += s.text
        for caption, header, body in s.tables:
            if caption:
                parts.append(f"**{caption}**")
            parts.append(_md_table(header, body))
        parts += s.after
        for f in s.figures:
            parts.append(f"![{f.caption}](figures/{f.name}.png)\n\n*{f.caption}* ([SVG](figures/{f.name}.svg))")
    return "\n\n".join(parts) + "\n"


_CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}"
    "figcaption{font-style:italic;font-size:13px}.cap{font-weight:bold;margin-top:1em}"
    "td.best{font-weight:bold;outline:2px solid #d7301f;outline-offset:-2px}"
    "td.code,code{font-family:monospace;text-align:left;font-size:12px}"
    ".legend{font-size:12px;margin:.2em 0}.legend span.bar{display:inline-block;width:140px;height:10px;"
    "vertical-align:middle;margin:0 .4em;border:1px solid #999}"
    ".tile{display:inline-block;vertical-align:top;margin-right:1.5em}"
    ".lead{border:2px solid #225ea8;border-radius:6px;padding:.2em 1em;background:#f5f9ff;margin:1em 0}"
)


def _md_inline(text: str) -> str:
    out = html.escape(text)
    # only **bold** and *italic* are used in our paragraphs
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", out)


def _html_section(s: Section, anchor: str) -> list[str]:
    parts = [f'<h2 id="{anchor}">{html.escape(s.title)}</h2>']
    parts += [f"<p>{_md_inline(t)}</p>" for t in s.text]
    for i, (caption, header, body) in enumerate(s.tables):
        if i in s.legends:  # heatmaps of one benchmark sit side by side where the page is wide enough
            parts.append('<div class="tile">')
        if caption:
            parts.append(f'<div class="cap">{html.escape(caption)}</div>')
        if i in s.legends:
            lo, hi, clipped = s.legends[i]
            parts.append(
                f'<div class="legend">{"≤ " if clipped else ""}{html.escape(fmt(lo))}<span class="bar" '
                f'style="background:{figs.heat_gradient_css()}"></span>{html.escape(fmt(hi))}</div>'
            )
        rows = "".join(
            "<tr>"
            + "".join(c.html() if isinstance(c, Cell) else f"<td>{html.escape(str(c))}</td>" for c in row)
            + "</tr>"
            for row in body
        )
        table_tag = '<table class="heat">' if i in s.legends else "<table>"
        parts.append(
            table_tag
            + "<thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + f"</tr></thead><tbody>{rows}</tbody></table>"
        )
        if i in s.legends:
            parts.append("</div>")
    if s.after:
        parts.append("<ul>" + "".join(f"<li>{_md_inline(t)}</li>" for t in s.after) + "</ul>")
    for f in s.figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(f.caption)}</figcaption></figure>'
        )
    return parts


def _html(title: str, intro: list[str], sections: list[Section], lead: Section | None = None) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{_md_inline(t)}</p>" for t in intro]
    if lead is not None:  # the answer heads the page, above the contents
        parts.append('<div class="lead" id="recommendation">')
        parts += _html_section(lead, "lead")
        parts.append("</div>")
    parts.append(
        "<ul>"
        + "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
        + "</ul>"
    )
    for i, s in enumerate(sections):
        parts += _html_section(s, f"s{i}")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    *,
    source: str,
    compare_paper: bool = False,
    structure: bool = True,
    make_figures: bool = True,
    notes: Sequence[str] = (),
    layer_stats_fn=None,
    arch_attributes_fn=None,
    other_rows: Sequence[dict[str, Any]] = (),
) -> dict[str, Path]:
    """Run the analysis on tidy score rows and write the report.

    Args:
        rows: tidy scores (:mod:`lossnet.report.sources`).
        out_dir: output folder (created).
        source: what the rows are, for the title (e.g. ``"paper"`` or the store path).
        compare_paper: put the published value and the difference beside every cell.
        structure: use :mod:`lossnet.structure` for parameter counts and layer statistics (builds
            random-init models; results cached). Without it, layer correlations and Fig. 4 are
            skipped and the report says so.
        make_figures: draw the figures.
        notes: extra lines for the introduction (what was loaded / skipped).
        layer_stats_fn, arch_attributes_fn: replacements for ``lossnet.structure.layer_stats`` /
            ``arch_attributes`` (tests).
        other_rows: tidy scores of networks beyond the paper's 14
            (:func:`lossnet.report.sources.store_scores_all_nets`): the "Beyond the paper's networks"
            section, beside ``rows``; nothing else uses them. With no ``rows`` the report is that section.

    Returns:
        ``{"md": path, "html": path, "tables": folder, "figures": folder}``.
    """
    from lossnet.outputs import check_output_dir

    out = check_output_dir(out_dir, "-o/--out")  # an existing file or a missing parent is refused, nothing created
    (out / "tables").mkdir(parents=True, exist_ok=True)
    from lossnet.report.sources import paper_scores

    paper_rows = paper_scores() if compare_paper else None
    other_rows = list(other_rows)
    paper_part = bool(rows) or not other_rows  # a store of other networks only: just their section
    archs = sorted({r["arch"] for r in rows})
    if paper_part:
        arch_attrs, arch_note = corr.arch_attribute_values(archs, structure=structure, attributes_fn=arch_attributes_fn)
        cells = sorted({(r["arch"], r["layer"]) for r in rows})
        layer_attrs, layer_note = corr.layer_attribute_values(cells, structure=structure, stats_fn=layer_stats_fn)

    csvs: dict[str, list[dict[str, Any]]] = {}
    # Tables III/IV are always set beside the published ones when analysing the published numbers:
    # that is the reproduction check.
    published = source == "paper"
    sections: list[Section] = []
    fig_list: list[figs.Figure] = []
    beyond_note = None
    if other_rows:
        beyond_note = (
            f"Networks beyond the paper's 14 ({_names(sorted({r['arch'] for r in other_rows}))}) are left out of every "
            "correlation: ImageNet top-1, depth and MFLOPs (Table I) ship only for the paper's networks, and no "
            "value is made up for the others (their scores: section 'Beyond the paper's networks')."
        )
    if paper_part:
        t_ref = paper_rows if paper_rows is not None else (paper_scores() if published else None)
        sections += [
            _table3_section(rows, t_ref, csvs, published=published),
            _table4_section(rows, t_ref, csvs, published=published),
        ]
        if compare_paper:
            sections.append(_compare_section(rows, paper_rows, csvs))
        sections += _score_sections(rows, paper_rows, csvs, published=published)
    if other_rows:
        beyond_section = _beyond_section(rows, other_rows, csvs, make_figures=make_figures)
        sections.append(beyond_section)
        fig_list += beyond_section.figures
    if paper_part:
        sections += _correlation_sections(rows, arch_attrs, layer_attrs, [arch_note, layer_note, beyond_note], csvs)
    if make_figures and paper_part:
        paper_figs = figs.all_figures(rows, layer_attrs, source=f"({source})" if source == "paper" else "")
        fig_list += paper_figs
        fig_section = Section("Figures", figures=paper_figs)
        if not layer_attrs:
            fig_section.text.append("Fig. 4 (2AFC vs FLOPs) needs layer statistics and was skipped.")
        if paper_figs or fig_section.text:
            sections.append(fig_section)

    n_cells = len(rows)
    title = f"lossnet report: {source}"
    intro = [
        f"Source: {'the published numbers of Pihlgren et al. (2024)' if source == 'paper' else source}; "
        f"{n_cells} (score, architecture, layer) cells, {len(archs)} architectures, "
        f"{len({key_of(r) for r in rows})} performance scores.",
        *[n for n in notes if n],
    ]
    if other_rows:
        intro.append(
            f"Also {len(other_rows)} cells of {len({r['arch'] for r in other_rows})} network(s) beyond the paper's 14: "
            "section 'Beyond the paper's networks'"
            + ("." if rows else " (the store has no runs of the paper's networks).")
        )
    (out / "figures").mkdir(exist_ok=True)
    for f in fig_list:
        atomic_write_bytes(out / "figures" / f"{f.name}.png", f.png)
        atomic_write_text(out / "figures" / f"{f.name}.svg", f.svg)
    for name, table in csvs.items():
        atomic_write_text(out / "tables" / name, _csv_text(table))
    lead = _recommend_section(rows, published=published, source=source) if rows else None
    if lead is not None and other_rows:
        lead.after.append(
            "Ranked among the paper's networks only: the networks beyond them are compared in section "
            "'Beyond the paper's networks'."
        )
    atomic_write_text(out / "report.md", _markdown(title, intro, sections, lead))
    atomic_write_text(out / "report.html", _html(title, intro, sections, lead))
    return {"md": out / "report.md", "html": out / "report.html", "tables": out / "tables", "figures": out / "figures"}
