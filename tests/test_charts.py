"""routing_laws.charts (row checks, public helpers, builders) and routing_laws.law_charts (charts built on
those helpers). The renderers and the book-facing builders are also exercised by test_book.py."""

import math

import numpy as np
import pytest

from routing_laws import charts, law_charts, laws
from routing_laws.errors import ValidationError


def test_public_helpers_check_their_input():
    assert charts.chart_size(300, 200) == (300, 200)
    for w, h in ((charts.MAX_WIDTH + 1, 200), (50, 200), (300, 10), (300.5, 200)):
        with pytest.raises(ValidationError):
            charts.chart_size(w, h)
    assert charts.chart_title("t") == "t" and charts.chart_title(None) is charts.alt.Undefined
    rows = charts.tidy_rows("rows", [{"N": 1, "E": 2, "router": "HASH"}], ["N", "E"], ["router"], positive=["N"])
    assert rows == [{"N": 1.0, "E": 2.0, "router": "HASH"}]
    for bad, phrase in (([{"N": math.nan, "E": 1, "router": "x"}], "finite"), ([{"N": 0, "E": 1, "router": "x"}], "> 0"),
                        ([{"E": 1, "router": "x"}], "missing field 'N'"), ([], "is empty"), ({"N": 1}, "list of row dicts")):
        with pytest.raises(ValidationError, match=phrase):
            charts.tidy_rows("rows", bad, ["N", "E"], ["router"], positive=["N"])


def test_law_charts_use_the_shared_checks():
    rows = [{"router": "S-BASE", "param": "a", "fit": -0.08, "lo": -0.09, "hi": -0.07}]
    spec = law_charts.interval_chart(rows, width=300).to_dict()
    assert "'width': 300" in str(spec) and spec["vconcat"][0]["layer"][0]["mark"]["type"] == "rule"
    with pytest.raises(ValidationError, match="width"):
        law_charts.interval_chart(rows, width=charts.MAX_WIDTH + 1)
    with pytest.raises(ValidationError, match="laws"):
        law_charts.law_coefficient_rows({})


def test_routing_chart_builders():
    rows = [{"x": "a", "y": 0.2, "g": "p", "i": 0}, {"x": "b", "y": 0.8, "g": "q", "i": 1}]
    spec = charts.grouped_bar_chart(rows, x="x", y="y", group="g", x_title="expert", y_title="share (fraction)",
                                    rule_y=0.5).to_dict()
    assert spec["layer"][0]["encoding"]["xOffset"]["field"] == "g" and spec["layer"][1]["mark"]["type"] == "rule"
    spec = charts.slider_bar_chart(rows, x="x", y="y", step="i", x_title="expert", y_title="share (fraction)",
                                   step_name="sweeps").to_dict()
    assert spec["params"][0]["bind"]["input"] == "range" and spec["params"][0]["value"] == 1
    b = {"series": "s", "n_experts": 8, "vs_dense": 0.5, "d_model": 64, "dense_ms": 1.0, "routed_ms": 2.0,
         "capacity_factor": 1.25}
    spec = charts.bench_chart([b]).to_dict()
    assert sorted(r["ref"] for r in spec["layer"][0]["data"]["values"]) == [0.8, 1.0]
    with pytest.raises(ValidationError):
        charts.grouped_bar_chart(rows, x="x", y="y", group="g", x_title="", y_title="share")
    with pytest.raises(ValidationError):
        charts.bench_chart([{**b, "vs_dense": 0.0}])


LAW = laws.RoutedLaw(-0.082, -0.108, 0.009, 1.104, 1.847, 314.478)
LAWS = {"S-BASE": LAW, "HASH": laws.RoutedLaw(-0.087, -0.136, 0.012, 1.157, 4.175, 477.741)}


def test_chart_expressions_agree_with_the_library():
    rng = np.random.default_rng(1)
    coef = law_charts.law_coefficient_rows(LAWS, {"S-BASE": 0.009021})
    spec = law_charts.epc_calculator_chart(coef).to_dict()
    for _ in range(20):
        row = coef[rng.integers(len(coef))]
        x, k, unr = rng.uniform(6, 12), int(rng.integers(0, 11)), bool(rng.integers(2))
        out = law_charts.evaluate_chart(spec, "epc", row, {"log10_N": x, "log2_E": k, "unrounded": unr})
        law = LAWS[row["router"]]
        if unr:
            law = laws.RoutedLaw(law.a, law.b, row["c_unrounded"], law.d, law.e_start, law.e_max)
        assert out["loss"] == pytest.approx(float(laws.predict_loss(10 ** x, 2.0 ** k, law)), rel=1e-10)
        assert out["epc"] == pytest.approx(float(laws.effective_params(10 ** x, 2.0 ** k, law)), rel=1e-8)
    # the explorer shares the formulas
    ex = law_charts.law_explorer_chart(coef).to_dict()
    assert [a for a, _ in law_charts.chart_calculations(ex, "loss")][-1] == "loss"


def test_vega_eval_rejects_code():
    assert law_charts.vega_eval("pow(2, datum.x) + k", {"x": 3}, {"k": 1}) == 9
    for bad in ["__import__('os')", "a ? 1 : 2", "open('x')[0]"]:
        with pytest.raises((ValidationError, NameError)):
            law_charts.vega_eval(bad, {}, {"a": 1})

