"""Tests of the table modules: ``tables`` (Table, the one ``si`` formatter), ``law_tables`` (rows and
tables against the laws module), ``run_tables`` (the sweep reader, measured grids) and ``law_charts``'
Vega-expression evaluator against the library (the interactive charts' formulas)."""
import csv
import math

import numpy as np
import pytest

from routing_laws import law_charts, law_tables, laws, run_tables, tables
from routing_laws.errors import ValidationError

LAW = laws.RoutedLaw(-0.082, -0.108, 0.009, 1.104, 1.847, 314.478)
LAWS = {"S-BASE": LAW, "HASH": laws.RoutedLaw(-0.087, -0.136, 0.012, 1.157, 4.175, 477.741)}


def test_rows_match_the_law():
    rng = np.random.default_rng(0)
    N = 10 ** rng.uniform(6, 10, 5)
    E = 2.0 ** rng.integers(0, 10, 4)
    for row in law_tables.law_rows(LAW, N, E):
        assert row["loss"] == pytest.approx(float(laws.predict_loss(row["N"], row["E"], LAW)), rel=1e-12)
    for row in law_tables.epc_rows(LAWS, N, E):
        law = LAWS[row["router"]]
        # slow reference: the dense size with the same loss, by bisection in log N
        lo, hi = 0.0, 20.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if laws.predict_loss(10 ** mid, 1.0, law) > row["loss"] else (lo, mid)
        assert math.log10(row["epc"]) == pytest.approx(lo, abs=1e-9)
        assert row["multiplier"] == pytest.approx(row["epc"] / row["N"])
    for row in law_tables.iso_loss_rows(LAW, [2.5, 3.0], E):
        assert float(laws.predict_loss(row["N"], row["E"], LAW)) == pytest.approx(row["loss"], rel=1e-9)


def test_cutoff_rows_and_table():
    un = {"S-BASE": laws.RoutedLaw(-0.082, -0.108, 0.009021, 1.104, 1.847, 314.478), "HASH": LAWS["HASH"]}
    rows = law_tables.cutoff_rows(LAWS, un, {"S-BASE": 937e9, "HASH": 83e9})
    assert rows[0]["N_cutoff from un-rounded c"] == pytest.approx(10 ** (0.108 / 0.009021))
    assert rows[0]["N_cutoff from Table 3 c"] == pytest.approx(1e12)
    text = law_tables.cutoff_table(LAWS, un, {"S-BASE": 937e9, "HASH": 83e9}).text()
    assert "1T" in text and "937B" in text
    assert "<table" in law_tables.coefficient_table(LAWS)._repr_html_()


def test_multiplier_table_and_ranking():
    t = law_tables.epc_multiplier_table(LAWS, [15e6], [64])
    assert t.rows[0]["15M, E=64"] == pytest.approx(float(laws.effective_params(15e6, 64, LAW)) / 15e6)
    rank = law_tables.ranking_rows(LAWS, [1e8], E=64)[0]
    best = min(LAWS, key=lambda r: float(laws.predict_loss(1e8, 64, LAWS[r])))
    assert rank["ranking (best first)"].startswith(best)


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


def _write_runs(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run_id", "status", "technique", "size", "N", "E", "K", "R", "loss"])
        w.writeheader()
        w.writerows(rows)


def test_read_sweep_fits_a_synthetic_grid(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for n in (1e5, 2e5, 4e5, 8e5):
        rows.append({"run_id": f"d{n}", "status": "finished", "technique": "dense", "size": "x", "N": n, "E": 1,
                     "K": 1, "R": 0.5, "loss": float(laws.predict_loss(n, 1, LAW)) * (1 + 1e-4 * rng.normal())})
        for tech in ("sbase", "hash"):
            for e in (4, 16, 64, 256):
                rows.append({"run_id": f"{tech}{n}{e}", "status": "finished", "technique": tech, "size": "x", "N": n,
                             "E": e, "K": 1, "R": 0.5,
                             "loss": float(laws.predict_loss(n, e, LAW)) * (1 + 1e-4 * rng.normal())})
    rows.append({"run_id": "bad", "status": "failed", "technique": "rlr", "size": "x", "N": "", "E": 4, "K": 1,
                 "R": 0.5, "loss": ""})
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("smoke", "cpu"), root=tmp_path)
    assert sw.ok and set(sw.tables) == {"S-BASE", "HASH"} and sw.n_failed == 1 and "RL-R" in sw.message
    fits = law_tables.fit_laws(sw.tables, bootstrap=0)
    assert fits["S-BASE"].law.b + fits["S-BASE"].law.c * 6 == pytest.approx(LAW.b + LAW.c * 6, abs=0.01)
    t = law_tables.extrapolation_table(sw.tables)
    assert t.rows[0]["RMSE held-out"] < 0.005


def test_read_sweep_says_what_to_run(tmp_path):
    _write_runs(tmp_path / "cpu" / "runs.csv", [{"run_id": "d", "status": "finished", "technique": "dense",
                                                 "size": "x", "N": 1e5, "E": 1, "K": 1, "R": 0.5, "loss": 3.0}])
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert not sw.ok and "make sweep PROFILE=cpu" in sw.message and "model size" in sw.message
    assert not run_tables.read_sweep(("gpu",), root=tmp_path).ok


def test_validation():
    with pytest.raises(ValidationError):
        law_tables.ehat_rows({})
    with pytest.raises(ValidationError):
        law_tables.coefficient_table({"x": 1})


def test_read_sweep_waits_for_eight_cells(tmp_path):
    # 7 (N, E) cells per router fit 6 parameters but leave no room for bootstrap intervals: not ready.
    rows = [{"run_id": f"{t}{n}{e}", "status": "finished", "technique": t, "size": "x", "N": n, "E": e, "K": 1,
             "R": 0.5, "loss": float(laws.predict_loss(n, e, LAW))}
            for t, n, e in [("dense", 1e5, 1), ("sbase", 1e5, 4), ("sbase", 1e5, 16), ("sbase", 1e5, 64),
                            ("sbase", 2e5, 4), ("sbase", 2e5, 64), ("dense", 2e5, 1)]]
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert not sw.ok and "7 distinct (N, E) cells" in sw.message
    rows.append({**rows[2], "run_id": "s2e16", "N": 2e5, "loss": float(laws.predict_loss(2e5, 16, LAW))})
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert sw.ok and set(sw.tables) == {"S-BASE"}
    fits = law_tables.fit_laws(sw.tables, bootstrap=20)
    assert fits["S-BASE"].n_points == 8


def test_measured_grid_table_matches_a_direct_lookup():
    rng = np.random.default_rng(5)
    runs = [{"technique": "dense", "N": n, "E": 1, "loss": 4.0 + rng.random()} for n in (1e5, 2e5)]
    runs += [{"technique": t, "N": n, "E": e, "loss": 3.0 + rng.random()}
             for t in run_tables.ROUTERS for n in (1e5, 2e5) for e in (4, 16) if rng.random() < 0.8]
    runs.append({"technique": "S-BASE", "N": 4e5, "E": 64, "loss": 3.5})  # a size without dense: blank gain
    t = run_tables.measured_grid_table(runs)
    look = {(r["technique"], r["N"], r["E"]): r["loss"] for r in runs}
    assert len(t.rows) == len({(r["N"], r["E"]) for r in runs if r["E"] > 1})
    for row in t.rows:
        n = {tables.si(x): x for x in (1e5, 2e5, 4e5)}[row["N"]]
        got = {r: look[(r, n, row["E"])] for r in run_tables.ROUTERS if (r, n, row["E"]) in look}
        assert {r: row[r] for r in run_tables.ROUTERS if r in row} == got
        best = min(got, key=got.get)
        assert row["best"] == (best if len(got) == 3 else f"{best} (of {len(got)})")
        dense = look.get(("dense", n, 1))
        assert row["gain over dense"] == (None if dense is None else pytest.approx(dense - got[best]))
    assert "S-BASE (of 1)" in t.text() and "gain over dense" in t._repr_html_()
    with pytest.raises(ValidationError, match=r"runs\[0\]"):
        run_tables.measured_grid_table([{"technique": "HASH", "N": 1e5, "E": 4, "loss": float("nan")}])
    with pytest.raises(ValidationError, match="runs"):
        run_tables.measured_grid_table([])


def test_read_sweep_keeps_every_finished_run(tmp_path):
    rows = [{"run_id": "d", "status": "finished", "technique": "dense", "size": "x", "N": 1e5, "E": 1, "K": 1,
             "R": 0.5, "loss": 4.0},
            {"run_id": "h", "status": "finished", "technique": "hash", "size": "x", "N": 1e5, "E": 4, "K": 1,
             "R": 0.5, "loss": 3.9},
            {"run_id": "k2", "status": "finished", "technique": "sbase", "size": "x", "N": 1e5, "E": 4, "K": 2,
             "R": 0.5, "loss": 3.8}]
    rows += [{"run_id": f"s{n}{e}", "status": "finished", "technique": "sbase", "size": "x", "N": n, "E": e, "K": 1,
              "R": 0.5, "loss": float(laws.predict_loss(n, e, LAW))} for n in (1e5, 2e5) for e in (4, 16, 64, 256)]
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert sw.ok and set(sw.tables) == {"S-BASE"}
    assert len(sw.runs) == len(rows) - 1  # the K = 2 variant is not a main-grid run
    assert {"technique": "HASH", "N": 1e5, "E": 4, "loss": 3.9} in sw.runs


@pytest.mark.parametrize("value, text", [
    (15e6, "15M"), (9.37e11, "937B"), (1.3e9, "1.3B"), (999_999, "1M"), (999.4, "999"), (512, "512"), (0, "0"),
    (-2e3, "-2k"), (1234, "1.23k"), (1e15, "1000T"), (0.00123, "0.00123"), (np.float32(2e5), "200k"),
    (np.int64(64), "64"), (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "n/a"),
])
def test_si_is_the_one_formatter(value, text):
    assert tables.si(value) == text


def test_si_refuses_what_is_not_a_number_and_tables_use_it():
    for bad in ("15M", None, True, [1.0]):
        with pytest.raises(ValidationError) as e:
            tables.si(bad)
        assert e.value.field == "value"
    t = tables.Table([{"N": 15e6, "cut": math.inf, "x": math.nan, "y": -math.inf}], ["N", "cut", "x", "y"],
                     {"N": "si", "cut": "si"})
    assert t.text().splitlines()[-1].split() == ["15M", "inf", "n/a", "-inf"]
