"""Chart plumbing shared by the builders: the offline renderers and the row checks.

Rendering (``enable_offline``; importing ``routing_laws.charts`` calls it):
- mode ``"html"`` (set by ``routing_laws.book`` for papermill runs via ``ROUTING_LAWS_CHARTS=html``):
  each chart is a ``<div class="altair-chart">`` plus a ``vegaEmbed(...)`` call. The book's Sphinx
  extension (``book/_ext/vega_offline.py``) serves ``vegaEmbed`` from ``_static``: no CDN.
- mode ``"notebook"`` (the default in JupyterLab / Notebook 7 / VS Code): the spec is sent as the
  ``application/vnd.vegalite.v5+json`` mime type, drawn by the front end's own bundled vega (JupyterLab
  4 knows Vega-Lite v3-v5 only, so altair 6's v6 spec is relabelled v5; the builders use nothing
  v6-only, and tests compile them with Vega-Lite 5). No network either.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt

from routing_laws.errors import ValidationError, check_choice, check_int

RENDERER = "offline"
MODE_ENV = "ROUTING_LAWS_CHARTS"
MODES = ("html", "notebook")
NOTEBOOK_MIME = "application/vnd.vegalite.v5+json"
MAX_WIDTH = 450
LOSS_TITLE = "validation loss (nats/token)"
# The "Open in Vega Editor" action needs the internet; the rest works offline.
EMBED_OPTIONS = {"actions": {"export": True, "source": True, "compiled": False, "editor": False}}
CHART_DIV_RE = re.compile(r'<div[^>]*class="altair-chart"|<div id="altair-viz-[0-9a-f]+"')


# --------------------------------------------------------------------------- renderers
def html_renderer(spec: dict, **meta: Any) -> dict:
    """Mimebundle for the book: a div and a ``vegaEmbed`` call that waits for the page's local bundle."""
    div = "altair-" + uuid.uuid4().hex
    opt = {"mode": "vega-lite", **EMBED_OPTIONS, **(meta.get("embed_options") or {})}
    js_spec = json.dumps(spec).replace("</", "<\\/")
    html = (
        f'<div id="{div}" class="altair-chart"></div>\n'
        f'<script type="text/javascript">(function(){{var s={js_spec},o={json.dumps(opt)};'
        f'function d(){{vegaEmbed("#{div}",s,o).catch(function(e){{console.error("chart {div}: "+e);}});}}'
        f'if(window.vegaEmbed)d();else window.addEventListener("load",d);}})();</script>'
    )
    return {"text/html": html, "text/plain": "<altair chart>"}


def notebook_renderer(spec: dict, **meta: Any) -> dict:
    """Mimebundle for JupyterLab-style front ends: the spec under the Vega-Lite v5 mime type, no HTML."""
    spec5 = dict(spec)
    spec5["$schema"] = "https://vega.github.io/schema/vega-lite/v5.json"
    return {NOTEBOOK_MIME: spec5, "text/plain": "<altair chart>"}


def enable_offline(mode: str | None = None) -> str:
    """Register the offline renderers and enable one; return the mode used.

    ``mode=None`` reads ``ROUTING_LAWS_CHARTS`` (``html`` inside book builds) and defaults to ``notebook``.
    """
    field = "mode"
    if mode is None:
        field, mode = MODE_ENV, os.environ.get(MODE_ENV, "").strip() or "notebook"
    check_choice(field, mode, MODES)
    alt.renderers.register(RENDERER, html_renderer)
    alt.renderers.register(RENDERER + "-notebook", notebook_renderer)
    alt.renderers.enable(RENDERER if mode == "html" else RENDERER + "-notebook")
    return mode


def count_charts(html: str) -> int:
    """Number of altair charts a built HTML page holds (ours and altair-default ones)."""
    return len(CHART_DIV_RE.findall(html))


# --------------------------------------------------------------------------- input checks
def _num(field: str, value: Any, positive: bool) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValidationError(field, f"must be finite, got {value!r}", "drop NaN/inf rows before charting")
    if positive and out <= 0:
        raise ValidationError(field, f"must be > 0 on a log axis, got {out}", "drop non-positive rows")
    return out


def tidy_rows(name: str, rows: Iterable[Mapping], numeric: Sequence[str], text: Sequence[str] = (),
              positive: Sequence[str] = (), optional: Sequence[str] = ()) -> list[dict]:
    """Validate ``rows`` (non-empty mappings with the named fields) and return plain-JSON copies."""
    if isinstance(rows, Mapping) or isinstance(rows, (str, bytes)):
        raise ValidationError(name, "must be a list of row dicts", "e.g. [{'N': 1e6, 'E': 8, 'loss': 3.2}, ...]")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValidationError(f"{name}[{i}]", f"must be a dict, got {type(row).__name__}")
        clean: dict[str, Any] = {}
        for key in [*numeric, *text]:
            if key not in row:
                if key in optional:
                    continue
                raise ValidationError(f"{name}[{i}]", f"missing field {key!r}", f"each row needs {[*numeric, *text]}")
            if key in numeric:
                clean[key] = _num(f"{name}[{i}].{key}", row[key], key in positive)
            else:
                clean[key] = str(row[key])
        out.append(clean)
    if not out:
        raise ValidationError(name, "is empty", "pass at least one row")
    return out


def _size(width: int, height: int) -> tuple[int, int]:
    return (check_int("width", width, min_value=100, max_value=MAX_WIDTH),
            check_int("height", height, min_value=80, max_value=900))


def si(value: float) -> str:
    """Compact label with an SI suffix: 15000000 -> '15M', 1.3e9 -> '1.3B'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


def _label_sort(rows: list[dict], key: str, label: str) -> list[str]:
    """Legend order: labels sorted by the numeric ``key`` they name."""
    seen = {}
    for r in rows:
        seen.setdefault(r[label], r[key])
    return [lab for lab, _ in sorted(seen.items(), key=lambda kv: kv[1])]


def _title(title: str | None):
    return title if title else alt.Undefined


def _need_title(field: str, title: str) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ValidationError(field, "needs an axis title with units", "e.g. 'training tokens' or 'loss (nats/token)'")
    return title
