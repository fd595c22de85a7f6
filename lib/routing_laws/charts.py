"""Altair charts for the book: the offline renderers, the row checks and the chart builders.

Builders take tidy rows (a list of dicts; numpy scalars are fine) and return a top-level altair chart
with tooltips, axis titles with units, width <= ``MAX_WIDTH`` px and a legend-bound selection (click a
legend entry to highlight it, shift-click for more). Row glossary: N non-embedding parameters of the
dense model, E experts, loss validation loss in nats per token, tokens training tokens seen. The
interactive charts that compute the law in the browser live in ``routing_laws.law_charts``, built on
the public helpers here (``tidy_rows``, ``chart_size``, ``chart_title``, ``LOSS_TITLE``).

Rendering (``enable_offline``; importing this module calls it):
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
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt

from routing_laws.errors import ValidationError, check_choice, check_int
from routing_laws.tables import si

RENDERER = "offline"
MODE_ENV = "ROUTING_LAWS_CHARTS"
MODES = ("html", "notebook", "colab")
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

    ``mode=None`` reads ``ROUTING_LAWS_CHARTS`` (``html`` inside book builds) and defaults to ``colab``
    inside Google Colab, else ``notebook``. Colab's front end does not draw the Vega-Lite mime bundle,
    so there altair's own ``colab`` renderer is used (it loads vega from the web, which Colab has); the
    book and JupyterLab never need the network.
    """
    field = "mode"
    if mode is None:
        default = "colab" if "google.colab" in sys.modules else "notebook"
        field, mode = MODE_ENV, os.environ.get(MODE_ENV, "").strip() or default
    check_choice(field, mode, MODES)
    alt.renderers.register(RENDERER, html_renderer)
    alt.renderers.register(RENDERER + "-notebook", notebook_renderer)
    alt.renderers.enable({"html": RENDERER, "notebook": RENDERER + "-notebook", "colab": "colab"}[mode])
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


def chart_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) in pixels, checked: width 100..MAX_WIDTH (the text column), height 80..900."""
    return (check_int("width", width, min_value=100, max_value=MAX_WIDTH),
            check_int("height", height, min_value=80, max_value=900))


def _label_sort(rows: list[dict], key: str, label: str) -> list[str]:
    """Legend order: labels sorted by the numeric ``key`` they name."""
    seen = {}
    for r in rows:
        seen.setdefault(r[label], r[key])
    return [lab for lab, _ in sorted(seen.items(), key=lambda kv: kv[1])]


def chart_title(title: str | None):
    """A chart title, or altair's Undefined for none (so no empty title takes space)."""
    return title if title else alt.Undefined


def _need_title(field: str, title: str) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ValidationError(field, "needs an axis title with units", "e.g. 'training tokens' or 'loss (nats/token)'")
    return title


# --------------------------------------------------------------------------- generic helper
def xy_chart(rows: Iterable[Mapping], *, x: str, y: str, x_title: str, y_title: str, color: str | None = None,
             color_title: str | None = None, mark: str = "line", log_x: bool = False, log_y: bool = False,
             x_type: str = "quantitative", tooltip_formats: Mapping[str, str] | None = None,
             zoom: bool = False, title: str | None = None, width: int = 420, height: int = 260,
             x_format: str | None = None) -> alt.Chart:
    """Line / point / bar chart of ``rows`` with tooltips, titled axes and a legend selection on ``color``.

    ``x_format`` is a d3 format for the x labels (``"~s"`` writes 200k, not 200,000, so narrow log axes stay legible).
    """
    check_choice("mark", mark, ("line", "point", "bar"))
    check_choice("x_type", x_type, ("quantitative", "ordinal", "nominal"))
    _need_title("x_title", x_title)
    _need_title("y_title", y_title)
    width, height = chart_size(width, height)
    numeric = [y] + ([x] if x_type == "quantitative" else [])
    text = ([] if x_type == "quantitative" else [x]) + ([color] if color else [])
    positive = ([x] if log_x else []) + ([y] if log_y else [])
    data = tidy_rows("rows", rows, numeric, text, positive)
    fmts = dict(tooltip_formats or {})
    tips = [alt.Tooltip(f"{f}:Q", title=t, format=fmts.get(f, ".4g")) if f in numeric
            else alt.Tooltip(f"{f}:N", title=t)
            for f, t in ((color, color_title or color), (x, x_title), (y, y_title)) if f]
    if x_format is not None and (not isinstance(x_format, str) or x_type != "quantitative"):
        raise ValidationError("x_format", f"a d3 format string for a quantitative x axis, got {x_format!r}",
                              "pass e.g. x_format='~s', or leave it None for ordinal/nominal x")
    axis = alt.Axis(format=x_format, labelOverlap="greedy") if x_format else alt.Undefined
    xs = alt.X(x, type=x_type, title=x_title, axis=axis,
               scale=alt.Scale(type="log") if log_x else alt.Scale(zero=False)) \
        if x_type == "quantitative" else alt.X(x, type=x_type, title=x_title)
    ys = alt.Y(y, type="quantitative", title=y_title,
               scale=alt.Scale(type="log") if log_y else alt.Scale(zero=mark == "bar"))
    base = alt.Chart(alt.Data(values=data), width=width, height=height, title=chart_title(title))
    marks = {"line": base.mark_line(point=alt.OverlayMarkDef(size=24, filled=True)),
             "point": base.mark_point(filled=True, size=50), "bar": base.mark_bar()}[mark]
    enc = dict(x=xs, y=ys, tooltip=tips)
    params = []
    if color:
        sel = alt.selection_point(fields=[color], bind="legend")
        params.append(sel)
        enc["color"] = alt.Color(color, type="nominal", title=color_title or color,
                                 sort=sorted({r[color] for r in data}))
        enc["opacity"] = alt.condition(sel, alt.value(1.0), alt.value(0.15))
    if zoom:
        params.append(alt.selection_interval(bind="scales", encodings=["x"]))
    return marks.encode(**enc).add_params(*params) if params else marks.encode(**enc)


# --------------------------------------------------------------------------- the book's charts
def loss_curve_chart(records: Iterable[Mapping], *, x: str = "tokens", y: str = "loss", run: str = "run",
                     x_title: str | None = None, y_title: str = LOSS_TITLE, log_x: bool = False,
                     log_y: bool = False, title: str | None = None, width: int = 420, height: int = 260) -> alt.Chart:
    """Training curves: one line per ``run`` (rows ``{run, tokens|step, loss}``; optional ``split``).

    Click a legend entry to highlight a run; drag / scroll to zoom the x axis; hover for values. With a
    ``split`` field (e.g. train / validation) the splits are drawn with different dashes.
    """
    check_choice("x", x, ("tokens", "step"))
    x_title = x_title or {"tokens": "training tokens", "step": "training step (optimizer updates)"}[x]
    if not isinstance(records, (Mapping, str, bytes)):
        records = list(records)
        has_split = bool(records) and isinstance(records[0], Mapping) and "split" in records[0]
    else:
        has_split = False
    data = tidy_rows("records", records, [x, y], [run] + (["split"] if has_split else []),
                     positive=([x] if log_x else []) + ([y] if log_y else []))
    width, height = chart_size(width, height)
    sel = alt.selection_point(fields=[run], bind="legend")
    zoom = alt.selection_interval(bind="scales", encodings=["x"])
    tips = [alt.Tooltip(f"{run}:N", title="run"), alt.Tooltip(f"{x}:Q", title=x_title, format=",.0f"),
            alt.Tooltip(f"{y}:Q", title=y_title, format=".4f")]
    if has_split:
        tips.insert(1, alt.Tooltip("split:N", title="split"))
    enc = dict(
        x=alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(type="log") if log_x else alt.Scale(zero=False),
                axis=alt.Axis(format="~s")),
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(type="log") if log_y else alt.Scale(zero=False)),
        color=alt.Color(f"{run}:N", title="run", sort=sorted({r[run] for r in data})),
        opacity=alt.condition(sel, alt.value(1.0), alt.value(0.15)),
        tooltip=tips,
    )
    if has_split:
        enc["strokeDash"] = alt.StrokeDash("split:N", title="split")
    base = alt.Chart(alt.Data(values=data), width=width, height=height, title=chart_title(title))
    line = base.mark_line(strokeWidth=1.8).encode(**{k: v for k, v in enc.items() if k != "tooltip"})
    pts = base.mark_point(filled=True, size=28).encode(**{k: v for k, v in enc.items() if k != "strokeDash"})
    return alt.layer(line.add_params(zoom), pts.add_params(sel))


def loss_vs_experts_chart(points: Iterable[Mapping], fitted_lines: Iterable[Mapping] | None = None, *,
                          y_title: str = LOSS_TITLE, title: str | None = None,
                          width: int = 420, height: int = 300) -> alt.Chart:
    """The paper's Figure 1a: loss vs E on log-log axes, one colour per model size N.

    ``points`` are measured runs ``{N, E, loss}``; ``fitted_lines`` (optional) are the law's predictions
    ``{N, E, loss}`` on a dense E grid, drawn as lines in the same colour. Click a legend entry to pick
    sizes; hover a point for N, E and loss.
    """
    pts = tidy_rows("points", points, ["N", "E", "loss"], positive=["N", "E", "loss"])
    lines = tidy_rows("fitted_lines", fitted_lines, ["N", "E", "loss"], positive=["N", "E", "loss"]) \
        if fitted_lines is not None else []
    width, height = chart_size(width, height)
    for r in pts + lines:
        r["size"] = si(r["N"])
    order = _label_sort(pts + lines, "N", "size")
    sel = alt.selection_point(fields=["size"], bind="legend")
    x = alt.X("E:Q", title="experts E (count, log scale)", scale=alt.Scale(type="log", base=2),
              axis=alt.Axis(values=sorted({2 ** k for k in range(13)}), format="~d"))
    lo, hi = min(r["loss"] for r in pts + lines), max(r["loss"] for r in pts + lines)
    y = alt.Y("loss:Q", title=y_title + ", log scale", axis=alt.Axis(format=".3~f", tickCount=6),
              scale=alt.Scale(type="log", nice=False, domain=[lo / 1.01, hi * 1.01]))
    color = alt.Color("size:N", title="N (parameters)", sort=order, scale=alt.Scale(scheme="viridis"))
    op = alt.condition(sel, alt.value(1.0), alt.value(0.12))
    dot = alt.Chart(alt.Data(values=pts), width=width, height=height, title=chart_title(title)).mark_point(
        filled=True, size=60).encode(
        x=x, y=y, color=color, opacity=op,
        tooltip=[alt.Tooltip("size:N", title="N"), alt.Tooltip("N:Q", title="N (exact)", format=",.0f"),
                 alt.Tooltip("E:Q", title="experts E", format="d"), alt.Tooltip("loss:Q", title=y_title, format=".4f")],
    ).add_params(sel)
    if not lines:
        return dot
    fit = alt.Chart(alt.Data(values=lines)).mark_line(strokeWidth=1.5).encode(
        x=x, y=y, color=color, opacity=op, detail="size:N",
        tooltip=[alt.Tooltip("size:N", title="N"), alt.Tooltip("E:Q", title="experts E", format=".3g"),
                 alt.Tooltip("loss:Q", title="fitted " + y_title, format=".4f")],
    )
    return alt.layer(fit, dot)


def iso_loss_chart(curves: Iterable[Mapping], *, points: Iterable[Mapping] | None = None,
                   title: str | None = None, loss_title: str = "loss (nats/token)",
                   width: int = 420, height: int = 300) -> alt.Chart:
    """The paper's Figure 1b: iso-loss curves, the N needed at each E for a given loss (log-log).

    ``curves`` rows ``{loss, E, N}`` (one curve per loss level, e.g. from ``laws.iso_loss_curve``);
    optional ``points`` ``{N, E}`` mark the measured models. Click a legend entry to pick a level.
    """
    rows = tidy_rows("curves", curves, ["loss", "E", "N"], positive=["loss", "E", "N"])
    width, height = chart_size(width, height)
    for r in rows:
        r["level"] = f"{r['loss']:.3f}"
    order = _label_sort(rows, "loss", "level")
    sel = alt.selection_point(fields=["level"], bind="legend")
    x = alt.X("E:Q", title="experts E (count, log scale)", scale=alt.Scale(type="log", base=2),
              axis=alt.Axis(values=sorted({2 ** k for k in range(13)}), format="~d"))
    y = alt.Y("N:Q", title="N, dense parameters for that loss (log scale)", scale=alt.Scale(type="log", nice=False),
              axis=alt.Axis(format="~s"))
    chart = alt.Chart(alt.Data(values=rows), width=width, height=height, title=chart_title(title)).mark_line(
        strokeWidth=1.8, point=alt.OverlayMarkDef(size=16, filled=True)).encode(
        x=x, y=y, detail="level:N",
        color=alt.Color("level:N", title=loss_title, sort=order, scale=alt.Scale(scheme="plasma")),
        opacity=alt.condition(sel, alt.value(1.0), alt.value(0.12)),
        tooltip=[alt.Tooltip("level:N", title=loss_title), alt.Tooltip("E:Q", title="experts E", format=".3g"),
                 alt.Tooltip("N:Q", title="N (parameters)", format=".3s")],
    ).add_params(sel)
    if points is None:
        return chart
    pts = tidy_rows("points", points, ["N", "E"], positive=["N", "E"])
    dots = alt.Chart(alt.Data(values=pts)).mark_point(shape="diamond", size=50, color="black").encode(
        x=x, y=y, tooltip=[alt.Tooltip("N:Q", title="N (parameters)", format=".3s"),
                           alt.Tooltip("E:Q", title="experts E", format="d")])
    return alt.layer(chart, dots)


def points_lines_chart(points: Iterable[Mapping], lines: Iterable[Mapping] | None = None, *, x: str, y: str,
                       color: str, x_title: str, y_title: str, color_title: str, log_x: bool = True,
                       log_y: bool = True, select: str | None = None, select_title: str | None = None,
                       tooltip: Sequence[str] = (), color_order: Sequence[str] | None = None,
                       title: str | None = None, width: int = 420, height: int = 300) -> alt.Chart:
    """Measured points plus (optional) law lines in the same colours, e.g. loss vs E per N for one router.

    ``points`` / ``lines`` rows hold ``x``, ``y`` and the text field ``color`` (lines: one per colour
    value; ``color_order`` fixes the legend order); ``select`` names a text field (e.g. router) to filter
    by with a dropdown. Click a legend
    entry to highlight; hover for values; extra ``tooltip`` fields (numeric or text) are shown too.
    """
    _need_title("x_title", x_title)
    _need_title("y_title", y_title)
    width, height = chart_size(width, height)
    text = [color] + ([select] if select else [])
    pts_in = list(points)
    extra_num = [f for f in tooltip if pts_in and isinstance(pts_in[0].get(f), (int, float)) and f not in (x, y)]
    extra_txt = [f for f in tooltip if f not in extra_num and f not in text]
    positive = ([x] if log_x else []) + ([y] if log_y else [])
    pts = tidy_rows("points", pts_in, [x, y, *extra_num], [*text, *extra_txt], positive)
    lns = tidy_rows("lines", lines, [x, y], text, positive) if lines is not None else []
    labels = {r[color] for r in pts + lns}
    order = [c for c in (color_order or []) if c in labels] + sorted(labels - set(color_order or []))
    sel = alt.selection_point(fields=[color], bind="legend")
    xs = alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(type="log") if log_x else alt.Scale(zero=False),
               axis=alt.Axis(format="~s") if log_x else alt.Undefined)
    ys = alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(type="log", nice=False) if log_y else alt.Scale(zero=False),
               axis=alt.Axis(format=".3~f", tickCount=6))
    col = alt.Color(f"{color}:N", title=color_title, sort=order)
    op = alt.condition(sel, alt.value(1.0), alt.value(0.12))
    tips = ([alt.Tooltip(f"{select}:N", title=select_title or select)] if select else []) + [
        alt.Tooltip(f"{color}:N", title=color_title), alt.Tooltip(f"{x}:Q", title=x_title, format=".4~s"),
        alt.Tooltip(f"{y}:Q", title=y_title, format=".4f")] + [
        alt.Tooltip(f"{f}:Q", title=f, format=".4~g") for f in extra_num] + [
        alt.Tooltip(f"{f}:N", title=f) for f in extra_txt]
    dot = alt.Chart(alt.Data(values=pts), width=width, height=height, title=chart_title(title)).mark_point(
        filled=True, size=55).encode(x=xs, y=ys, color=col, opacity=op, tooltip=tips).add_params(sel)
    layers = [dot]
    if lns:
        layers.insert(0, alt.Chart(alt.Data(values=lns)).mark_line(strokeWidth=1.5).encode(
            x=xs, y=ys, color=col, opacity=op, detail=f"{color}:N",
            tooltip=[alt.Tooltip(f"{color}:N", title=color_title), alt.Tooltip(f"{x}:Q", title=x_title, format=".4~s"),
                     alt.Tooltip(f"{y}:Q", title="law: " + y_title, format=".4f")]))
    if select:
        options = sorted({r[select] for r in pts + lns})
        pick = alt.param(name="pick_" + re.sub(r"\W", "_", select), value=options[0],
                         bind=alt.binding_select(options=options, name=(select_title or select) + " "))
        layers = [lay.transform_filter(f"datum.{select} == {pick.name}") for lay in layers]
        return alt.layer(*layers).add_params(pick)
    return alt.layer(*layers) if len(layers) > 1 else dot


# --------------------------------------------------------------------------- routing and performance charts
# (builders for the 'Routing networks', 'Performance' and 'Running at scale' chapters)
def grouped_bar_chart(rows: Iterable[Mapping], *, x: str, y: str, group: str, x_title: str, y_title: str,
                      group_title: str | None = None, rule_y: float | None = None, rule_label: str = "reference",
                      y_format: str = ".3f", title: str | None = None, width: int = 420,
                      height: int = 240) -> alt.LayerChart:
    """Bars of ``y`` per ``x`` category, one bar per ``group`` side by side (not stacked); optional
    horizontal reference rule at ``rule_y`` (e.g. the uniform share 1/E). Click a legend entry to
    highlight a group; hover for values."""
    _need_title("x_title", x_title)
    _need_title("y_title", y_title)
    width, height = chart_size(width, height)
    data = tidy_rows("rows", rows, [y], [x, group])
    order = list(dict.fromkeys(r[group] for r in data))
    sel = alt.selection_point(fields=[group], bind="legend")
    tips = [alt.Tooltip(f"{group}:N", title=group_title or group), alt.Tooltip(f"{x}:N", title=x_title),
            alt.Tooltip(f"{y}:Q", title=y_title, format=y_format)]
    bars = alt.Chart(alt.Data(values=data), width=width, height=height, title=chart_title(title)).mark_bar().encode(
        x=alt.X(f"{x}:N", title=x_title, sort=list(dict.fromkeys(r[x] for r in data)), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{group}:N", sort=order),
        y=alt.Y(f"{y}:Q", title=y_title),
        color=alt.Color(f"{group}:N", title=group_title or group, sort=order),
        opacity=alt.condition(sel, alt.value(1.0), alt.value(0.2)), tooltip=tips).add_params(sel)
    if rule_y is None:
        return alt.layer(bars)
    rule_y = _num("rule_y", rule_y, False)
    rule = alt.Chart(alt.Data(values=[{"ref": rule_y, "label": rule_label}])).mark_rule(
        color="#555", strokeDash=[4, 3]).encode(
        y="ref:Q", tooltip=[alt.Tooltip("label:N", title="line"), alt.Tooltip("ref:Q", title=y_title, format=y_format)])
    return alt.layer(bars, rule)


def slider_bar_chart(rows: Iterable[Mapping], *, x: str, y: str, step: str, x_title: str, y_title: str,
                     step_name: str, rule_y: float | None = None, rule_label: str = "reference",
                     y_format: str = ".3f", title: str | None = None, width: int = 420,
                     height: int = 240) -> alt.LayerChart:
    """Bars of ``y`` per ``x`` at one value of the integer field ``step``, picked with a slider below the
    chart (e.g. expert loads after each Sinkhorn sweep). Starts at the last step; hover for values."""
    _need_title("x_title", x_title)
    _need_title("y_title", y_title)
    width, height = chart_size(width, height)
    data = tidy_rows("rows", rows, [y, step], [x])
    steps = sorted({int(r[step]) for r in data})
    slider = alt.param(name="step_choice", value=steps[-1],
                       bind=alt.binding_range(min=steps[0], max=steps[-1], step=1, name=step_name + " "))
    y_max = max(r[y] for r in data) * 1.05
    tips = [alt.Tooltip(f"{step}:Q", title=step_name, format="d"), alt.Tooltip(f"{x}:N", title=x_title),
            alt.Tooltip(f"{y}:Q", title=y_title, format=y_format)]
    bars = alt.Chart(alt.Data(values=data), width=width, height=height, title=chart_title(title)).transform_filter(
        f"datum.{step} == step_choice").mark_bar().encode(
        x=alt.X(f"{x}:N", title=x_title, sort=list(dict.fromkeys(r[x] for r in data)), axis=alt.Axis(labelAngle=0)),
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(domain=[0, y_max])), tooltip=tips)
    layers = [bars]
    if rule_y is not None:
        rule_y = _num("rule_y", rule_y, False)
        layers.append(alt.Chart(alt.Data(values=[{"ref": rule_y, "label": rule_label}])).mark_rule(
            color="#555", strokeDash=[4, 3]).encode(
            y="ref:Q", tooltip=[alt.Tooltip("label:N", title="line"), alt.Tooltip("ref:Q", title=y_title, format=y_format)]))
    return alt.layer(*layers).add_params(slider)


def bench_chart(rows: Iterable[Mapping], *, title: str | None = None, width: int = 420,
                height: int = 260) -> alt.LayerChart:
    """Routed / dense throughput (``vs_dense``) vs experts E, one line per series (e.g. 'cpu, d=256'),
    with the capacity-factor ceiling 1/cf and parity (1.0) as rules. Rows need ``series, n_experts,
    vs_dense, d_model, dense_ms, routed_ms, capacity_factor`` (optional ``capacity, date, jax, device``)."""
    width, height = chart_size(width, height)
    data = tidy_rows("rows", rows, ["n_experts", "vs_dense", "d_model", "dense_ms", "routed_ms", "capacity_factor",
                                    "capacity"], ["series", "date", "jax", "device"], positive=["n_experts", "vs_dense"],
                     optional=["capacity", "date", "jax", "device"])
    sel = alt.selection_point(fields=["series"], bind="legend")
    order = sorted({r["series"] for r in data})
    es = sorted({int(r["n_experts"]) for r in data})
    tips = [alt.Tooltip("series:N"), alt.Tooltip("n_experts:Q", title="experts E", format="d"),
            alt.Tooltip("d_model:Q", title="d_model", format="d"),
            alt.Tooltip("dense_ms:Q", title="dense step (ms)", format=".2f"),
            alt.Tooltip("routed_ms:Q", title="routed step (ms)", format=".2f"),
            alt.Tooltip("vs_dense:Q", title="routed/dense throughput (ratio)", format=".3f"),
            alt.Tooltip("capacity_factor:Q", title="capacity factor", format=".2f")]
    tips += [alt.Tooltip(f"{k}:N", title=k) for k in ("device", "jax", "date") if any(k in r for r in data)]
    base = alt.Chart(alt.Data(values=data), width=width, height=height, title=chart_title(title))
    enc = dict(x=alt.X("n_experts:Q", title="experts E (count, log scale)", scale=alt.Scale(type="log", base=2),
                       axis=alt.Axis(values=es, format="~d")),
               y=alt.Y("vs_dense:Q", title="routed / dense throughput (ratio, log scale)",
                       scale=alt.Scale(type="log")),
               color=alt.Color("series:N", title="series", sort=order),
               opacity=alt.condition(sel, alt.value(1.0), alt.value(0.15)))
    line = base.mark_line().encode(**enc)
    pts = base.mark_point(filled=True, size=50).encode(**enc, tooltip=tips).add_params(sel)
    cfs = sorted({r["capacity_factor"] for r in data})
    refs = [{"ref": 1.0, "label": "parity with dense (1.0)"}] + [
        {"ref": 1.0 / cf, "label": f"ceiling 1/cf at cf = {cf:g}"} for cf in cfs]
    rule = alt.Chart(alt.Data(values=refs)).mark_rule(strokeDash=[4, 3], color="#777").encode(
        y="ref:Q", tooltip=[alt.Tooltip("label:N", title="line"), alt.Tooltip("ref:Q", title="ratio", format=".3f")])
    return alt.layer(rule, line, pts)


enable_offline()
