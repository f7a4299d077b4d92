"""The HTML report read by looking: score heatmaps, the recommendation heading the page, and the page
rendered in headless Chromium (Debian's `chromium`; those tests skip where it is absent)."""

from __future__ import annotations

import csv
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lossnet.recommendation import recommend
from lossnet.report.render import _heat_range, build_report
from lossnet.report.sources import paper_scores

PAPER_DIR = Path(__file__).resolve().parents[2] / "src" / "lossnet" / "data" / "paper"
CHROMIUM = Path("/usr/bin/chromium")


class _Tables(HTMLParser):
    """Every <table>: its class, and per row the cells as (text, attrs); the h2 headings in order."""

    def __init__(self):
        super().__init__()
        self.tables, self.h2, self._cell, self._in_h2 = [], [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"class": attrs.get("class"), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = ["", attrs]
        elif tag == "h2":
            self._in_h2 = True
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append(tuple(self._cell))
            self._cell = None
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data
        if self._in_h2:
            self.h2[-1] += data


def _parse(path):
    p = _Tables()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p


def _luminance(hex_colour):
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _style(attrs):
    return dict(kv.split(":") for kv in attrs.get("style", "").split(";") if kv)


@pytest.fixture(scope="module")
def similarity_report(tmp_path_factory):
    rows = [r for r in paper_scores() if r["benchmark"] == "similarity"]
    return build_report(rows, tmp_path_factory.mktemp("sim"), source="paper", structure=False, make_figures=False)


def test_heatmap_colour_scale_best_and_hover(similarity_report):
    t4 = {r["arch"]: r for r in csv.DictReader((PAPER_DIR / "table4_best_layer.csv").read_text().splitlines())}
    published = {
        (r["metric"], r["arch"], r["layer"]): float(r["value"])
        for r in paper_scores()
        if r["benchmark"] == "similarity"
    }
    heat = [t for t in _parse(similarity_report["html"]).tables if t["class"] == "heat"]
    assert len(heat) == 2  # 2AFC and JND
    for table, (metric, column) in zip(heat, [("2afc", "b1_2afc"), ("jnd_map", "b1_jnd")]):
        header = [c[0] for c in table["rows"][0]]
        assert header == ["arch", "E", "S", "M", "L", "best"]
        cells = []
        for row in table["rows"][1:]:
            arch = row[0][0]
            boxed = [layer for layer, (_, attrs) in zip("ESML", row[1:5]) if "best" in (attrs.get("class") or "")]
            assert "/".join(boxed) == t4[arch][column]  # the best layer is the one marked
            for layer, (text, attrs) in zip("ESML", row[1:5]):
                value = published[(metric, arch, layer)]
                assert float(text) == value
                assert attrs["title"].startswith(f"{arch} at {layer} (similarity {metric}): {text} (published)")
                cells.append((value, _luminance(_style(attrs)["background"])))
        # one colour scale per score: a higher value is never lighter (darker = higher)
        cells.sort()
        lum = [l for _, l in cells]
        assert all(a >= b - 1e-12 for a, b in zip(lum, lum[1:]))
        assert lum[0] - lum[-1] > 0.5  # the scale spans light to dark


def test_hover_shows_paper_value_where_compared(tmp_path):
    rows = [{**r, "value": r["value"] + 0.01} for r in paper_scores() if r["benchmark"] == "similarity"]
    paths = build_report(rows, tmp_path, source="results.db", compare_paper=True, structure=False, make_figures=False)
    heat = [t for t in _parse(paths["html"]).tables if t["class"] == "heat"]
    vgg16 = next(r for r in heat[0]["rows"] if r[0][0] == "vgg16")
    text, attrs = vgg16[4]  # L
    assert text == "0.681 / 0.671 (+0.010)"
    assert (
        attrs["title"]
        == "vgg16 at L (similarity 2afc): ours 0.681; paper 0.671; ours - paper +0.010; best layer of vgg16"
    )


def test_recommendation_heads_the_page(tmp_path):
    paths = build_report(paper_scores(), tmp_path, source="paper", structure=False, make_figures=False)
    page = _parse(paths["html"])
    assert page.h2[0] == "Recommendation: which loss network and layer"
    html_text = paths["html"].read_text(encoding="utf-8")
    assert html_text.index('id="recommendation"') < html_text.index('<ul><li><a href="#s0">')  # above the contents
    lead = page.tables[0]["rows"]
    assert [c[0] for c in lead[0]] == ["task", "use", "avg rank", "next best (avg rank)", "loss"]
    for row in lead[1:]:
        rec = recommend(row[0][0])
        assert row[1][0] == f"{rec.best.arch} at {rec.best.layer}" and row[4][0] == rec.code
    assert [r[0][0] for r in lead[1:]] == ["similarity", "superres", "roads", "autoencoder", "all"]
    assert "VGG networks without batch normalization" in html_text
    assert "## Recommendation: which loss network and layer" in paths["md"].read_text()


def test_heat_range_clips_low_outliers_only():
    assert _heat_range([0.62, 0.63, 0.65, 0.69]) == (0.62, 0.69, False)
    # x4 PSNR Set5: vgg16_bn L 13.2 dB is a collapsed run among 20-31 dB values
    values = [30.7, 28.6, 28.1, 27.2, 28.6, 28.5, 23.2, 13.2, 30.2, 26.1, 26.2, 26.8]
    lo, hi, clipped = _heat_range(values)
    assert (lo, hi, clipped) == (23.2, 30.7, True)


# --------------------------------------------------------------------------------------------------
# headless Chromium

_CHECK_JS = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {images: imgs.length,
             broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; }),
             heat: document.querySelectorAll('table.heat').length,
             best: document.querySelectorAll('td.best').length,
             lead_top: document.getElementById('recommendation').getBoundingClientRect().top};
  var pre = document.createElement('pre'); pre.id = 'lossnet-check'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(*args, cwd):
    if not CHROMIUM.exists():
        pytest.skip(f"needs headless Chromium at {CHROMIUM} (Debian: apt-get install chromium); not installed here")
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={cwd / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180)


def _screenshot(html_path, png_path, size=(1280, 2400)):
    r = _chromium(
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={png_path}",
        html_path.resolve().as_uri(),
        cwd=png_path.parent,
    )
    assert png_path.is_file(), r.stderr[-2000:]
    from PIL import Image

    return np.asarray(Image.open(png_path).convert("RGB"), dtype=np.float64)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    """`lossnet report --source paper`'s HTML in Chromium: every figure decodes (naturalWidth > 0), the
    19 heatmaps and the recommendation box are drawn, and the screenshot is not blank."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs headless Chromium at {CHROMIUM} (Debian: apt-get install chromium); not installed here")
    paths = build_report(paper_scores(), tmp_path / "rep", source="paper", structure=False)
    html_path = paths["html"]
    n_figures = len(list((tmp_path / "rep" / "figures").glob("*.png")))
    assert n_figures == 7

    # 1. the DOM after load, with a check script in a copy of the page
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text(encoding="utf-8").replace("</body>", _CHECK_JS + "</body>"), encoding="utf-8")
    r = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri(), cwd=tmp_path)
    start = r.stdout.find('<pre id="lossnet-check">')
    assert start >= 0, f"the check script did not run; chromium said: {r.stderr[-2000:]}"
    check = json.loads(r.stdout[start:].split(">", 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    print("\nin-page check after load:", check)
    assert check["images"] == n_figures and check["broken"] == []
    assert check["heat"] == 19 and check["best"] >= 19 * 14
    assert check["lead_top"] < 400  # the recommendation is near the top of the page

    # 2. the screenshot is not blank, and the recommendation box's blue border is in its top part
    shot = _screenshot(html_path, tmp_path / "report.png")
    print(
        f"screenshot {shot.shape[1]}x{shot.shape[0]}: pixel std {shot.std():.1f}, "
        f"non-white {(np.abs(shot - 255).sum(axis=2) > 30).mean():.1%}"
    )
    assert shot.std() > 20
    assert (np.abs(shot - 255).sum(axis=2) > 30).mean() > 0.05  # > 5 % of the pixels are not white
    lead_blue = np.array([0x22, 0x5E, 0xA8])
    assert (np.abs(shot[:600] - lead_blue).sum(axis=2) < 30).sum() > 500
    # the same measure on an empty page is 0: the checks above can fail
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    blank = _screenshot(empty, tmp_path / "empty.png", size=(640, 480))
    assert blank.std() < 1
