"""Charts of the law itself (chapters 03-06): fitted coefficients with their intervals, and the two
interactive charts (EPC calculator, law explorer) that compute the law in the browser.

The book is static HTML, so the interactive charts carry the coefficients as data
(``law_coefficient_rows``) and compute Eq. 1, E-hat and the EPC with Vega expressions
(``LAW_EXPRESSIONS``). ``evaluate_chart`` re-runs a chart's expressions in Python (``vega_eval``, a
checked arithmetic subset) so a chapter can compare them with ``laws.effective_params``: the formula
in the page is the library's formula. Shared row checks and sizes come from ``routing_laws.charts``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import altair as alt

from routing_laws import laws
from routing_laws.charts import LOSS_TITLE, chart_size, chart_title, tidy_rows
from routing_laws.errors import ValidationError

LAW_EXPRESSIONS = (  # (field, Vega expression); params log10_N, log2_E, unrounded; datum = coefficient row
    ("cc", "datum.c + unrounded * (datum.c_unrounded - datum.c)"),
    ("N", "pow(10, log10_N)"),
    ("E", "pow(2, log2_E)"),
    ("s", "1 / datum.e_start - 1 / datum.e_max"),
    ("E_hat", "1 / (datum.s / ((datum.E - 1) * datum.s + 1) + 1 / datum.e_max)"),
    ("z", "log(datum.E_hat) / LN10"),
    ("z1", "log(datum.e_start) / LN10"),
    ("logL", "datum.a * log10_N + datum.b * datum.z + datum.cc * log10_N * datum.z + datum.d"),
    ("loss", "pow(10, datum.logL)"),
    ("slope", "datum.a + datum.cc * datum.z1"),
    ("epc", "pow(10, (datum.logL - datum.b * datum.z1 - datum.d) / datum.slope)"),
    ("multiplier", "datum.epc / datum.N"),
)
_COEF_FIELDS = ["a", "b", "c", "d", "e_start", "e_max", "c_unrounded"]


def _coef_rows(coef_rows: Iterable[Mapping]) -> list[dict]:
    return tidy_rows("coef_rows", coef_rows, _COEF_FIELDS, ["router"], positive=["e_start", "e_max"])


def _law_params(N_default: float, log10_N_range: tuple[float, float], with_E: bool, E_default: int,
                routers: list[str] | None):
    lo, hi = log10_N_range
    params = [alt.param(name="log10_N", value=round(math.log10(N_default), 2),
                        bind=alt.binding_range(min=lo, max=hi, step=0.01, name="log10 N (dense parameters) ")),
              alt.param(name="unrounded", value=False, bind=alt.binding_checkbox(name="use un-rounded c "))]
    if with_E:
        params.insert(1, alt.param(name="log2_E", value=int(round(math.log2(E_default))),
                                   bind=alt.binding_range(min=0, max=10, step=1, name="log2 E (experts = 2^x) ")))
    if routers:
        params.append(alt.param(name="router_choice", value=routers[0],
                                bind=alt.binding_select(options=routers, name="router ")))
    return params


def _calc(chart: alt.Chart, upto: str) -> alt.Chart:
    for name, expr in LAW_EXPRESSIONS:
        chart = chart.transform_calculate(**{name: expr})
        if name == upto:
            break
    return chart


def interval_chart(rows: Iterable[Mapping], *, title: str | None = None, width: int = 400) -> alt.VConcatChart:
    """Fitted coefficients with 95% intervals (bars), one panel per parameter, the paper's value as a red
    diamond. Rows ``{router, param, fit, lo, hi[, paper]}``; hover for the numbers."""
    rows = list(rows)
    has_paper = bool(rows) and all("paper" in r for r in rows)
    data = tidy_rows("rows", rows, ["fit", "lo", "hi"] + (["paper"] if has_paper else []), ["router", "param"])
    width, _ = chart_size(width, 100)
    panels = []
    for p in list(dict.fromkeys(r["param"] for r in data)):
        sub = [r for r in data if r["param"] == p]
        y = alt.Y("router:N", title=None, sort=list(dict.fromkeys(r["router"] for r in sub)))
        tips = [alt.Tooltip("router:N"), alt.Tooltip("fit:Q", title=f"{p} fitted", format=".5f"),
                alt.Tooltip("lo:Q", title="95% low", format=".5f"), alt.Tooltip("hi:Q", title="95% high", format=".5f")]
        if has_paper:
            tips.append(alt.Tooltip("paper:Q", title=f"{p} Table 3", format=".5f"))
        base = alt.Chart(alt.Data(values=sub), width=width, height=22 * len(sub))
        xs = alt.X("lo:Q", title=f"{p} (dimensionless; bar = 95% bootstrap interval)", scale=alt.Scale(zero=False))
        layer = [base.mark_rule(strokeWidth=3, opacity=0.6).encode(x=xs, x2="hi:Q", y=y, color=alt.Color(
                     "router:N", legend=None), tooltip=tips),
                 base.mark_point(filled=True, size=60).encode(x="fit:Q", y=y, color="router:N", tooltip=tips)]
        if has_paper:
            layer.append(base.mark_point(shape="diamond", size=70, color="#d62728", filled=False, strokeWidth=2).encode(
                x="paper:Q", y=y, tooltip=tips))
        panels.append(alt.layer(*layer))
    return alt.vconcat(*panels, title=chart_title(title)).resolve_scale(x="independent")


def epc_calculator_chart(coef_rows: Iterable[Mapping], *, N_default: float = 5e6, E_default: int = 128,
                         log10_N_range: tuple[float, float] = (6.0, 12.5), width: int = 420,
                         height: int = 300) -> alt.LayerChart:
    """EPC calculator (Figure 1c, interactive): sliders for N (log) and E, a router dropdown, a checkbox
    for the un-rounded c. The chart computes L(N, E) and the EPC from ``coef_rows`` (see
    ``law_coefficient_rows``) with ``LAW_EXPRESSIONS``, and draws the router's dense power law,
    the routed model at N, and the dense model with the same loss at N = EPC."""
    coefs = _coef_rows(coef_rows)
    routers = list(dict.fromkeys(r["router"] for r in coefs))
    width, height = chart_size(width, height)
    lo, hi = log10_N_range
    grid = [{**r, "xg": lo + (hi - lo) * i / 80} for r in coefs for i in range(81)]
    params = _law_params(N_default, log10_N_range, True, E_default, routers)
    pick = "datum.router == router_choice"
    xs = alt.X("Nx:Q", title="parameters (dense N, or EPC), log scale", scale=alt.Scale(type="log",
               domain=[10 ** lo, 10 ** hi]), axis=alt.Axis(format="~s"))
    ys = alt.Y("Ly:Q", title=LOSS_TITLE + ", log scale", scale=alt.Scale(type="log", nice=False, zero=False),
               axis=alt.Axis(format=".2f", tickCount=6))
    dense = alt.Chart(alt.Data(values=grid), width=width, height=height,
                      title="EPC calculator: move the sliders").transform_filter(pick).transform_calculate(
        cc=LAW_EXPRESSIONS[0][1], z1=dict(LAW_EXPRESSIONS)["z1"], Nx="pow(10, datum.xg)",
        Ly="pow(10, datum.a * datum.xg + datum.b * datum.z1 + datum.cc * datum.xg * datum.z1 + datum.d)",
        curve="'dense power law (E = 1)'").mark_line(color="#888", strokeDash=[4, 3]).encode(
        x=xs, y=ys, tooltip=[alt.Tooltip("curve:N", title="line"), alt.Tooltip("Nx:Q", title="dense N", format=".3s"),
                             alt.Tooltip("Ly:Q", title="dense loss (nats/token)", format=".4f")])
    model = _calc(alt.Chart(alt.Data(values=coefs)).transform_filter(pick), "multiplier")
    tips = [alt.Tooltip("router:N"), alt.Tooltip("N:Q", title="N (dense params)", format=".3s"),
            alt.Tooltip("E:Q", title="experts E", format="d"), alt.Tooltip("loss:Q", title="predicted loss", format=".4f"),
            alt.Tooltip("epc:Q", title="EPC (parameters)", format=".3s"),
            alt.Tooltip("multiplier:Q", title="EPC / N", format=".2f")]
    routed = model.transform_calculate(Nx="datum.N", Ly="datum.loss").mark_point(
        filled=True, size=110, color="#1f77b4").encode(x=xs, y=ys, tooltip=tips)
    equiv = model.transform_calculate(Nx="datum.epc", Ly="datum.loss").mark_point(
        shape="diamond", filled=True, size=130, color="#d62728").encode(x=xs, y=ys, tooltip=tips)
    arrow = model.transform_calculate(Nx="datum.N", Ly="datum.loss").mark_rule(color="#d62728").encode(
        x=xs, x2="epc:Q", y=ys)
    label = model.transform_calculate(text=(
        "'N = ' + format(datum.N, '.3s') + ', E = ' + format(datum.E, 'd') + ' (' + datum.router + ')|"
        "predicted loss = ' + format(datum.loss, '.4f') + '|EPC = ' + format(datum.epc, '.3s') + '  (x' "
        "+ format(datum.multiplier, '.2f') + ')'")).mark_text(
        align="right", baseline="top", lineBreak="|", fontSize=12, dx=-6, dy=6).encode(
        x=alt.value(width), y=alt.value(0), text="text:N")
    return alt.layer(dense, arrow, routed, equiv, label).add_params(*params)


def law_explorer_chart(coef_rows: Iterable[Mapping], *, N_default: float = 1.3e8,
                       log10_N_range: tuple[float, float] = (6.0, 12.5), E_max: int = 512,
                       width: int = 420, height: int = 300) -> alt.LayerChart:
    """Explorer of the published law: L vs E (log) for every router at the N of a slider, with a checkbox
    for the un-rounded c; computed in the browser from ``coef_rows``. Click a legend entry to highlight."""
    coefs = _coef_rows(coef_rows)
    width, height = chart_size(width, height)
    n_steps = int(round(4 * math.log2(E_max)))
    grid = [{**r, "log2_Eg": i / 4} for r in coefs for i in range(n_steps + 1)]
    params = _law_params(N_default, log10_N_range, False, 1, None)
    sel = alt.selection_point(fields=["router"], bind="legend")
    exprs = dict(LAW_EXPRESSIONS)
    chart = alt.Chart(alt.Data(values=grid), width=width, height=height,
                      title="The published law: move the N slider").transform_calculate(E="pow(2, datum.log2_Eg)")
    for name in ("cc", "N", "s", "E_hat", "z", "z1", "logL", "loss"):
        chart = chart.transform_calculate(**{name: exprs[name]})
    order = list(dict.fromkeys(r["router"] for r in coefs))
    enc = dict(x=alt.X("E:Q", title="experts E (count, log scale)", scale=alt.Scale(type="log", base=2),
                       axis=alt.Axis(values=[2 ** k for k in range(int(math.log2(E_max)) + 1)], format="~d")),
               y=alt.Y("loss:Q", title=LOSS_TITLE, scale=alt.Scale(zero=False)),
               color=alt.Color("router:N", title="router", sort=order),
               opacity=alt.condition(sel, alt.value(1.0), alt.value(0.15)),
               tooltip=[alt.Tooltip("router:N"), alt.Tooltip("N:Q", title="N (dense params)", format=".3s"),
                        alt.Tooltip("E:Q", title="experts E", format=".3g"),
                        alt.Tooltip("E_hat:Q", title="E-hat", format=".2f"),
                        alt.Tooltip("loss:Q", title="predicted loss (nats/token)", format=".4f")])
    line = chart.mark_line(strokeWidth=2).encode(**{k: v for k, v in enc.items() if k != "tooltip"})
    pts = chart.transform_filter("datum.log2_Eg == floor(datum.log2_Eg)").mark_point(filled=True, size=40).encode(**enc)
    return alt.layer(line, pts.add_params(sel)).add_params(*params)


# ----------------------------------------------------------------------------- in-chart formulas
def law_coefficient_rows(laws_by_router, unrounded_c: Mapping[str, float] | None = None) -> list[dict]:
    """{router, a, b, c, c_unrounded, d, e_start, e_max}: the data the interactive charts compute from."""
    out = []
    for r, law in laws.check_laws(laws_by_router).items():
        d = law.as_dict()
        if not math.isfinite(d["e_max"]):
            d["e_max"] = 1e300  # JSON has no inf; 1/1e300 is 0 to double precision, as 1/inf
        out.append({"router": r, **d, "c_unrounded": float((unrounded_c or {}).get(r, law.c))})
    return out


_EXPR_OK = re.compile(r"^[\w\s.+\-*/(),<>=!&|?:']*$")
_EXPR_NAMES = {"pow": math.pow, "log": math.log, "LN10": math.log(10), "exp": math.exp, "sqrt": math.sqrt,
               "min": min, "max": max, "true": True, "false": False}


def vega_eval(expr: str, datum: Mapping[str, float], params: Mapping[str, float]) -> float:
    """Evaluate a Vega expression of the arithmetic subset the book's charts use (datum.x, params,
    + - * /, pow, log, LN10) in Python, so a notebook can check a chart's formula against the library."""
    if not isinstance(expr, str) or not _EXPR_OK.match(expr) or "__" in expr:
        raise ValidationError("expr", f"not in the supported arithmetic subset: {expr!r}")
    py = re.sub(r"\bdatum\.(\w+)", r"_d['\1']", expr)
    if "?" in py or "&&" in py or "||" in py:
        raise ValidationError("expr", "ternaries and logic are not supported", "write them arithmetically")
    return eval(py, {"__builtins__": {}}, {**_EXPR_NAMES, **params, "_d": datum})  # noqa: S307 (checked subset)


def chart_calculations(spec: Mapping, output: str) -> list[tuple[str, str]]:
    """The ordered ``calculate`` transforms of the first (sub)view of a Vega-Lite ``spec`` computing ``output``."""
    stack = [spec]
    while stack:
        node = stack.pop(0)
        if isinstance(node, Mapping):
            calcs = [(t["as"], t["calculate"]) for t in node.get("transform", []) if "calculate" in t]
            if any(a == output for a, _ in calcs):
                return calcs
            stack += [v for v in node.values() if isinstance(v, (Mapping, list))]
        elif isinstance(node, list):
            stack += node
    raise ValidationError("output", f"no view of the chart computes {output!r}", "check the chart's transforms")


def evaluate_chart(spec: Mapping, output: str, datum: Mapping[str, float], params: Mapping[str, float]) -> dict:
    """Run the chart's calculate chain for one data row and slider setting; returns all computed fields."""
    row = dict(datum)
    for name, expr in chart_calculations(spec, output):
        row[name] = vega_eval(expr, row, params)
    return row
