"""Small HTML building blocks for a self-contained report (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from etem.plotting import plt

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1150px;padding:1em 2em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #345;padding-bottom:.2em}h2{margin-top:2em;color:#234;
border-bottom:1px solid #ccc}h3{color:#345}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eef}
td:first-child,th:first-child{text-align:left}
.missing{background:#fff4e0;border-left:4px solid #e90;padding:.4em .8em;margin:.5em 0}
.ok{color:#070}.bad{color:#b00}figure{display:inline-block;margin:.4em;vertical-align:top}
figcaption{font-size:11px;color:#555;max-width:600px}img{max-width:100%}
pre{background:#f6f6f6;padding:.6em;font-size:11px;overflow:auto;max-height:400px}
nav a{margin-right:1em}details{margin:.4em 0}summary{cursor:pointer;color:#345}
.headline{background:#f3f7fb;border:1px solid #cdd9e5;padding:.6em 1.2em;margin:1em 0}
.headline li{margin:.25em 0}
"""


def esc(text: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))


def png_bytes_img(data: bytes, alt: str = "", width: int | None = None) -> str:
    """An <img> with the PNG embedded as base64."""
    b64 = base64.b64encode(data).decode("ascii")
    w = f' width="{width}"' if width else ""
    return f'<img alt="{esc(alt)}"{w} src="data:image/png;base64,{b64}">'


def png_file(path: Path, caption: str = "", width: int | None = None) -> str:
    """A <figure> embedding a PNG file."""
    img = png_bytes_img(Path(path).read_bytes(), Path(path).name, width)
    return f"<figure>{img}<figcaption>{esc(caption or Path(path).name)}</figcaption></figure>"


def figure(fig: Any, caption: str = "", width: int | None = None) -> str:
    """A <figure> embedding a matplotlib figure (closed afterwards)."""

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return f"<figure>{png_bytes_img(buf.getvalue(), caption, width)}" \
           f"<figcaption>{esc(caption)}</figcaption></figure>"


def folded(summary: str, body: str, open_: bool = False) -> str:
    """``body`` folded under a clickable ``summary`` line (tables people open when needed)."""
    return (f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>"
            f"{body}</details>")


def table(df: pd.DataFrame | None, max_rows: int = 60, floatfmt: str = "{:.4g}") -> str:
    """A DataFrame as an HTML table (first ``max_rows`` rows)."""
    if df is None or len(df) == 0:
        return missing("empty table")
    shown = df.head(max_rows)
    html_ = shown.to_html(index=False, border=0, float_format=lambda v: floatfmt.format(v),
                          na_rep="–", escape=True)
    more = f"<p><small>{len(df) - max_rows} more rows in the file.</small></p>" \
        if len(df) > max_rows else ""
    return html_ + more


def missing(text: str) -> str:
    """A highlighted note saying what is missing."""
    return f'<div class="missing">{esc(text)}</div>'


def section(anchor: str, title: str, body: str) -> str:
    """A <section> with an anchor."""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}\n</section>\n'


def page(title: str, nav: list[tuple[str, str]], body: str) -> str:
    """The whole HTML document."""
    links = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n<nav>{links}</nav>\n{body}</body></html>\n"
    )
