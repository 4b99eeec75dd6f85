"""Figures open without a network: the HTML loads plotly.js from its own folder."""

from __future__ import annotations

import re
from pathlib import Path

import plotly.graph_objects as go

from misdir.plots import save_figure


def test_html_figures_open_offline(tmp_path: Path) -> None:
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0.1, 0.4, 0.2], name="cosine"))
    assert tmp_path / "figure.html" in save_figure(fig, tmp_path / "figure")
    save_figure(fig, tmp_path / "second")
    html = (tmp_path / "figure.html").read_text()
    # Nothing is fetched from elsewhere when it opens: the only script it loads is the bundle beside it.
    assert re.findall(r"""<script[^>]*\ssrc=["']([^"']+)["']""", html) == ["plotly.min.js"]
    assert not re.search(r"""(?:src|href)=["']?https?://""", html)
    bundle = tmp_path / "plotly.min.js"
    assert bundle.stat().st_size > 1_000_000 and "Plotly" in bundle.read_text()[:5000]
    assert len(html) < 100_000  # one bundle per folder, not one per figure


def test_localize_html_rewrites_a_cdn_figure_to_the_bundle_beside_it(tmp_path: Path) -> None:
    from misdir.plots import localize_html

    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    fig.write_html(str(tmp_path / "old.html"), include_plotlyjs="cdn")  # what figures were written with before
    assert "cdn.plot.ly" in (tmp_path / "old.html").read_text()
    assert localize_html(tmp_path / "old.html")
    html = (tmp_path / "old.html").read_text()
    assert re.findall(r"""<script[^>]*\ssrc=["']([^"']+)["']""", html) == ["plotly.min.js"]
    assert "cdn.plot.ly" not in html and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert not localize_html(tmp_path / "old.html")  # already local: nothing to do


def test_no_committed_html_figure_loads_from_the_network() -> None:
    """Every HTML figure under figures/ opens offline: it loads only a plotly.min.js that lies where it points."""
    figures = Path(__file__).resolve().parents[2] / "figures"
    pages = sorted(figures.rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"""(?:src|href)=["']?https?://""", html), page
        for src in re.findall(r"""<script[^>]*\ssrc=["']([^"']+)["']""", html):
            assert (page.parent / src).is_file(), (page, src)


def test_figures_in_subfolders_share_the_nearest_bundle(tmp_path: Path) -> None:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    save_figure(fig, tmp_path / "top")
    save_figure(fig, tmp_path / "a" / "b" / "deep")
    html = (tmp_path / "a" / "b" / "deep.html").read_text()
    assert re.findall(r"""<script[^>]*\ssrc=["']([^"']+)["']""", html) == ["../../plotly.min.js"]
    assert not (tmp_path / "a" / "b" / "plotly.min.js").exists() and not (tmp_path / "a" / "plotly.min.js").exists()
    save_figure(fig, tmp_path / "a" / "b" / "c" / "d" / "e" / "far")  # five levels down: too far, its own copy
    assert (tmp_path / "a" / "b" / "c" / "d" / "e" / "plotly.min.js").is_file()


def test_interval_error_bars_span_each_estimates_interval():
    from misdir.plots import interval_error_bars

    bars = interval_error_bars([{"value": 0.5, "low": 0.25, "high": 1.0}, {"value": -1.0, "low": -3.0, "high": 0.0}])
    assert bars == {"type": "data", "symmetric": False, "array": [0.5, 1.0], "arrayminus": [0.25, 2.0]}
