"""The paper's figures, drawn with matplotlib (Agg) and returned as PNG bytes + SVG text.

- Fig. 2: per-architecture score vs extraction layer, one panel per score (one figure per
  benchmark).
- Fig. 3: SVHN vs STL-10 autoencoder accuracy, every (architecture, layer) cell, coloured by layer.
- Fig. 4: BAPPS 2AFC vs forward MFLOPs up to the extraction layer (64x64 input), log x-axis.
- Fig. 5: best-layer score per architecture vs ImageNet top-1, one panel per Table IV score.

Each function returns a :class:`Figure` or None when the data it needs is absent.
"""

from __future__ import annotations

import io
import math
from typing import Any, Iterable, NamedTuple

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from lossnet import paper  # noqa: E402
from lossnet.report.sources import ScoreKey, paper_score_keys  # noqa: E402
from lossnet.report.tables import TABLE4_COLUMNS, arch_order, best_scores, cell_values  # noqa: E402

__all__ = [
    "Figure",
    "fig_score_vs_layer",
    "fig_svhn_vs_stl10",
    "fig_2afc_vs_flops",
    "fig_best_vs_top1",
    "all_figures",
    "HEAT_CMAP",
    "heat_colors",
    "heat_gradient_css",
]

LAYERS = paper.LAYER_KEYS
LAYER_COLORS = {"E": "#1b9e77", "S": "#d95f02", "M": "#7570b3", "L": "#e7298a"}

_TITLES = {
    "similarity": "Similarity (BAPPS)",
    "superres_x4": "Super-resolution x4",
    "superres_x8": "Super-resolution x8",
    "segmentation": "Road segmentation (MRD)",
    "autoencoder": "Autoencoder downstream accuracy",
}


class Figure(NamedTuple):
    """A rendered figure: file stem, caption, PNG bytes, SVG text."""

    name: str
    caption: str
    png: bytes
    svg: str


def _render(fig: "plt.Figure", name: str, caption: str) -> Figure:
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    # Keep SVG text as paths with no external fonts/links so it renders offline anywhere.
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "lossnet"}):
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return Figure(name, caption, png.getvalue(), svg.getvalue())


def _arch_styles(archs: list[str]) -> dict[str, dict[str, Any]]:
    cmap = plt.get_cmap("tab20")
    markers = "osD^vP*Xh<>p"
    return {a: {"color": cmap(i % 20), "marker": markers[i % len(markers)]} for i, a in enumerate(archs)}


def fig_score_vs_layer(
    rows: Iterable[dict[str, Any]],
    benchmark: str,
    *,
    source: str = "",
    name: str | None = None,
    caption: str | None = None,
) -> Figure | None:
    """Fig. 2: score vs extraction layer for every architecture, one panel per score (``name``,
    ``caption``: the file stem and caption, default the paper figure's)."""
    values = cell_values(rows)
    keys = [k for k in paper_score_keys() if k.benchmark == benchmark and k in values]
    if not keys:
        return None
    archs = arch_order({a for k in keys for a in values[k]})
    styles = _arch_styles(list(paper.architectures()))
    others = [a for a in archs if a not in paper.architectures()]
    for i, a in enumerate(others):  # networks beyond the paper's: dashed, in colours no paper network has
        styles[a] = {"color": plt.get_cmap("Set1")(i % 9), "marker": "osD^vP*Xh<>p"[i % 12], "ls": "--"}
    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for arch in archs:
            cells = values[key].get(arch, {})
            xs = [i for i, l in enumerate(LAYERS) if l in cells]
            if xs:
                ax.plot(xs, [cells[LAYERS[i]] for i in xs], label=arch, lw=1.2, ms=4, **styles[arch])
        ax.set_xticks(range(4), LAYERS)
        ax.set_title(f"{key.metric} {key.dataset}" if benchmark.startswith("superres") else key.label, fontsize=9)
        ax.set_xlabel("extraction layer")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{_TITLES.get(benchmark, benchmark)}: score vs extraction layer {source}".strip())
    fig.tight_layout()
    return _render(
        fig,
        name or f"fig2_{benchmark}",
        caption or f"Score vs extraction layer, {_TITLES.get(benchmark, benchmark)} (cf. paper Fig. 2).",
    )


def fig_svhn_vs_stl10(rows: Iterable[dict[str, Any]], *, source: str = "") -> Figure | None:
    """Fig. 3: SVHN vs STL-10 accuracy of every (arch, layer) cell, coloured by layer."""
    values = cell_values(rows)
    sv, st = ScoreKey("autoencoder", "accuracy", "svhn"), ScoreKey("autoencoder", "accuracy", "stl10")
    if sv not in values or st not in values:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.8))
    for layer in LAYERS:
        pts = [
            (values[sv][a][layer], values[st][a][layer], a)
            for a in values[sv]
            if layer in values[sv][a] and layer in values[st].get(a, {})
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                c=LAYER_COLORS[layer],
                label=layer,
                s=28,
                edgecolor="k",
                lw=0.3,
            )
    ax.set_xlabel("SVHN accuracy")
    ax.set_ylabel("STL-10 accuracy")
    ax.legend(title="layer")
    ax.grid(alpha=0.3)
    ax.set_title(f"Autoencoder: SVHN vs STL-10 by layer {source}".strip())
    return _render(
        fig,
        "fig3_svhn_vs_stl10",
        "SVHN vs STL-10 downstream accuracy of every architecture and layer, coloured by layer (cf. paper Fig. 3).",
    )


def fig_2afc_vs_flops(
    rows: Iterable[dict[str, Any]], layer_attrs: dict[tuple[str, str], dict[str, float]], *, source: str = ""
) -> Figure | None:
    """Fig. 4: 2AFC vs MFLOPs of the forward pass up to the extraction layer (log x)."""
    values = cell_values(rows).get(ScoreKey("similarity", "2afc", "bapps"))
    if not values or not layer_attrs:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for layer in LAYERS:
        pts = [
            (layer_attrs[(a, layer)]["layer_mflops"], v[layer])
            for a, v in values.items()
            if layer in v and (a, layer) in layer_attrs
        ]
        pts = [p for p in pts if p[0] > 0]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                c=LAYER_COLORS[layer],
                label=layer,
                s=28,
                edgecolor="k",
                lw=0.3,
            )
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs up to the extraction layer (64x64 input, log scale)")
    ax.set_ylabel("BAPPS 2AFC")
    ax.legend(title="layer")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"2AFC vs forward cost {source}".strip())
    return _render(
        fig, "fig4_2afc_vs_flops", "BAPPS 2AFC vs MFLOPs up to the extraction layer, log x-axis (cf. paper Fig. 4)."
    )


def fig_best_vs_top1(rows: Iterable[dict[str, Any]], *, source: str = "") -> Figure | None:
    """Fig. 5: best-layer score per architecture vs ImageNet top-1, one panel per Table IV score."""
    best = best_scores(rows)
    keys = [k for k in TABLE4_COLUMNS.values() if k in best]
    if not keys:
        return None
    top1 = {a: v["imagenet_top1"] for a, v in paper.architectures().items()}
    styles = _arch_styles(list(paper.architectures()))
    ncol = min(4, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.1 * nrow), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for arch, v in best[key].items():
            if arch in top1:
                ax.scatter(
                    top1[arch],
                    v,
                    label=arch,
                    s=30,
                    edgecolor="k",
                    lw=0.3,
                    color=styles[arch]["color"],
                    marker=styles[arch]["marker"],
                )
        ax.set_title(key.label, fontsize=9)
        ax.set_xlabel("ImageNet top-1 (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"Best-layer score vs ImageNet top-1 {source}".strip())
    fig.tight_layout()
    return _render(
        fig, "fig5_best_vs_top1", "Best-layer score per architecture vs its ImageNet top-1 accuracy (cf. paper Fig. 5)."
    )


def all_figures(
    rows: list[dict[str, Any]], layer_attrs: dict[tuple[str, str], dict[str, float]], *, source: str = ""
) -> list[Figure]:
    """Every figure the data allows, in paper order."""
    figs = [fig_score_vs_layer(rows, b, source=source) for b in _TITLES]
    figs += [
        fig_svhn_vs_stl10(rows, source=source),
        fig_2afc_vs_flops(rows, layer_attrs, source=source),
        fig_best_vs_top1(rows, source=source),
    ]
    return [f for f in figs if f is not None]


# --------------------------------------------------------------------------------------------------
# heatmap colours for the HTML score tables (one colour scale per score)

#: Colour map of the score heatmaps: light (low) to dark blue (high); every paper score is higher-is-better.
HEAT_CMAP = "YlGnBu"
# The map's two ends are cut off: its white end would vanish on the page, its darkest end hides black text
# (the text turns white on dark cells anyway, see heat_colors).
_HEAT_RANGE = (0.08, 0.92)


def _heat_rgb(t: float) -> tuple[float, float, float]:
    lo, hi = _HEAT_RANGE
    r, g, b, _ = plt.get_cmap(HEAT_CMAP)(lo + (hi - lo) * t)
    return r, g, b


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def heat_colors(
    values: Iterable[float | None], lo: float | None = None, hi: float | None = None
) -> list[tuple[str, str] | None]:
    """``(background, text colour)`` hex pairs for values on one linear scale from ``lo`` to ``hi``
    (default: the finite values' min and max), or None for a missing / non-finite value.

    The text colour is the one of higher contrast (WCAG 2): white where the background's relative
    luminance L is below 0.179, where (1.05 / (L + 0.05)) = ((L + 0.05) / 0.05).
    """
    values = list(values)
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return [None] * len(values)
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    span = hi - lo
    out: list[tuple[str, str] | None] = []
    for v in values:
        if v is None or not math.isfinite(float(v)):
            out.append(None)
            continue
        t = 0.5 if span <= 0 else min(1.0, max(0.0, (float(v) - lo) / span))
        rgb = _heat_rgb(t)
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
        out.append((_hex(rgb), "#fff" if lum < 0.179 else "#000"))
    return out


def heat_gradient_css(steps: int = 8) -> str:
    """A CSS ``linear-gradient`` of the heatmap scale, low (left) to high (right), for the legend."""
    stops = ", ".join(_hex(_heat_rgb(i / (steps - 1))) for i in range(steps))
    return f"linear-gradient(to right, {stops})"
