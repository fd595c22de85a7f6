"""routing_laws.law_tables: rows and tables of the laws, checked against the laws module."""
import math

import numpy as np
import pytest

from routing_laws import law_tables, laws
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


def test_validation():
    with pytest.raises(ValidationError):
        law_tables.ehat_rows({})
    with pytest.raises(ValidationError):
        law_tables.coefficient_table({"x": 1})



def test_coefficient_table_can_show_some_columns():
    from routing_laws import paper

    t3 = paper.table3()
    t = law_tables.coefficient_table(t3, columns=["dense slope", "N_cutoff"])
    assert list(t.columns) == ["router", "dense slope", "N_cutoff"] and len(t.rows) == len(t3)
    with pytest.raises(ValidationError, match="columns"):
        law_tables.coefficient_table(t3, columns=["slope"])
    with pytest.raises(ValidationError, match="columns"):
        law_tables.coefficient_table(t3, columns="a")
