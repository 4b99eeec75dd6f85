"""Figures: interactive HTML always (opens offline: it loads a `plotly.min.js` bundle from its own folder or
the nearest folder above it that holds one, not a CDN), a static PNG where a browser for kaleido is installed."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from misdir.io import atomic_path

_PNG_HINT = (
    "PNG export needs a Chromium for kaleido (e.g. `apt-get install chromium`, or set BROWSER_PATH); "
    "the HTML figure was written"
)


BUNDLE = "plotly.min.js"
BUNDLE_LEVELS = 3
"""How many folders above a figure's own `save_figure` looks for a bundle to share before writing one beside it."""


def bundle_for(folder: str | Path) -> str:
    """The `src` a figure in `folder` loads plotly.js from: the bundle in `folder` or in the nearest of its
    `BUNDLE_LEVELS` parents that holds one (a tree of figures shares one 4.6 MB copy), else a new one written
    in `folder` itself."""
    folder = Path(folder).absolute()
    for up, above in enumerate([folder, *folder.parents][: BUNDLE_LEVELS + 1]):
        if (above / BUNDLE).is_file():
            return "/".join([*[".."] * up, BUNDLE])
    from plotly.offline import get_plotlyjs

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / BUNDLE) as tmp:
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
    return BUNDLE


def interval_error_bars(estimates: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """A plotly `error_y` (or `error_x`) spanning each estimate's interval: from its "low" to its "high" around its
    "value" (the dict form of `misdir.stats.Estimate` that results files hold)."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [e["high"] - e["value"] for e in estimates],
        "arrayminus": [e["value"] - e["low"] for e in estimates],
    }


def save_figure(fig: Any, stem: str | Path, *, title: str = "") -> list[Path]:
    """Write `stem.html` (always; it loads plotly.js from the bundle `bundle_for` finds or writes, so figures
    open offline without carrying 4.6 MB each) and `stem.png` (when it can be made); return the paths written."""
    stem = Path(stem)
    html = stem.with_suffix(".html")
    src = bundle_for(html.parent)
    with atomic_path(html) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=src)
    written = [html]
    png = stem.with_suffix(".png")
    try:
        with atomic_path(png) as tmp:
            fig.write_image(str(tmp), format="png", width=900, height=500)
        written.append(png)
    except Exception as error:  # kaleido raises its own kinds when no browser can be found or started
        print(f"misdir: no PNG for {title or stem.name}: {_PNG_HINT} ({type(error).__name__})", file=sys.stderr)
    return written


def optional_figure(draw: Callable[..., list[Path]], *args: Any, **kwargs: Any) -> list[Path]:
    """The files `draw(*args, **kwargs)` writes, or none where plotly is not installed (the GPU machine has none),
    said in one line on stderr: a run's results never wait on its figures."""
    try:
        return draw(*args, **kwargs)
    except ImportError as error:
        print(f"misdir: no figure ({error}); draw it where plotly is installed", file=sys.stderr)
        return []


_CDN_SCRIPT = re.compile(r"""<script\b[^>]*\ssrc=["']https?://cdn\.plot\.ly/[^"']*["'][^>]*>""")


def localize_html(html: str | Path) -> bool:
    """Make an HTML figure written with plotly's CDN default open offline: its `<script src="https://cdn.plot.ly/...">`
    loads the bundle `bundle_for` finds or writes instead (as `save_figure` does). Returns whether it changed."""
    html = Path(html)
    text = html.read_text(encoding="utf-8")
    if not _CDN_SCRIPT.search(text):
        return False
    local = _CDN_SCRIPT.sub(f'<script charset="utf-8" src="{bundle_for(html.parent)}">', text)
    with atomic_path(html) as tmp:
        tmp.write_text(local, encoding="utf-8")
    return True


def plot_norm_by_layer(norms: list[float], spec: str) -> Any:
    """The norm of a model's mean `resid_post` by layer (log scale): where the residual stream grows."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=list(range(len(norms))), y=norms, mode="lines+markers"))
    fig.update_layout(
        title=f"Norm of the mean resid_post over answer tokens ({spec})",
        xaxis_title="layer",
        yaxis_title="norm",
        yaxis_type="log",
        template="plotly_white",
    )
    return fig
