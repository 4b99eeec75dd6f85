"""Figures: interactive HTML always (opens offline: it loads the `plotly.min.js` written once beside it, not a
CDN), a static PNG where a browser for kaleido is installed."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from misdir.io import atomic_path

_PNG_HINT = (
    "PNG export needs a Chromium for kaleido (e.g. `apt-get install chromium`, or set BROWSER_PATH); "
    "the HTML figure was written"
)


def save_figure(fig: Any, stem: str | Path, *, title: str = "") -> list[Path]:
    """Write `stem.html` (always; it loads `plotly.min.js` from its own folder, written there once, about
    4.6 MB, so a folder of figures opens offline without carrying plotly.js in every file) and `stem.png`
    (when it can be made); return the paths written."""
    stem = Path(stem)
    html = stem.with_suffix(".html")
    with atomic_path(html) as tmp:
        fig.write_html(str(tmp), include_plotlyjs="directory")
    written = [html]
    png = stem.with_suffix(".png")
    try:
        with atomic_path(png) as tmp:
            fig.write_image(str(tmp), format="png", width=900, height=500)
        written.append(png)
    except Exception as error:  # kaleido raises its own kinds when no browser can be found or started
        print(f"misdir: no PNG for {title or stem.name}: {_PNG_HINT} ({type(error).__name__})", file=sys.stderr)
    return written


_CDN_SCRIPT = re.compile(r"""<script\b[^>]*\ssrc=["']https?://cdn\.plot\.ly/[^"']*["'][^>]*>""")


def localize_html(html: str | Path) -> bool:
    """Make an HTML figure written with plotly's CDN default open offline: its `<script src="https://cdn.plot.ly/...">`
    becomes `<script src="plotly.min.js">`, and the bundle of the installed plotly is written beside it when missing
    (what `save_figure` writes for new figures). Returns whether the file changed."""
    html = Path(html)
    text = html.read_text(encoding="utf-8")
    local, n = _CDN_SCRIPT.subn('<script charset="utf-8" src="plotly.min.js">', text)
    if n == 0:
        return False
    bundle = html.parent / "plotly.min.js"
    if not bundle.is_file():
        from plotly.offline import get_plotlyjs

        with atomic_path(bundle) as tmp:
            tmp.write_text(get_plotlyjs(), encoding="utf-8")
    with atomic_path(html) as tmp:
        tmp.write_text(local, encoding="utf-8")
    return True
