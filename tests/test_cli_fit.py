"""``routing-laws fit``: a CSV of runs or the paper's raw runs in, coefficients with intervals out;
bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from routing_laws import laws, paper
from routing_laws.cli import main
from routing_laws.errors import RoutingLawsError

LAW = laws.RoutedLaw(-0.084, -0.126, 0.0108, 1.126, 2.4, 275.0)
SIZES = [16.5e6, 27.3e6, 57.4e6, 132e6, 368e6, 1309e6]


def write_runs(path, routers=("sbase", "hash"), sigma=0.002, seed=0, header=("router", "N", "E", "loss")):
    rng = np.random.default_rng(seed)
    rows = [("dense", n, 1, laws.predict_loss(n, 1, LAW) * 10 ** rng.normal(0, sigma)) for n in SIZES]
    for r in routers:
        rows += [(r, n, e, laws.predict_loss(n, e, LAW) * 10 ** rng.normal(0, sigma))
                 for n in SIZES for e in 2 ** np.arange(1, 10)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_fit_a_csv_prints_every_technique_and_writes_json(tmp_path, capsys):
    src = write_runs(tmp_path / "runs.csv")
    out = tmp_path / "fit.json"
    assert main(["fit", str(src), "--bootstrap", "100", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sbase:" in text and "hash:" in text and "N_cutoff" in text and "leave-largest-N-out" in text
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"sbase", "hash"} and res["sbase"]["n_points"] == 6 + 54
    for k in ("a", "b", "c", "d"):
        lo, hi = res["sbase"]["ci"][k]
        assert lo <= getattr(LAW, k) <= hi


def test_fit_technique_filter_plain_form_and_loss_column(tmp_path, capsys):
    src = write_runs(tmp_path / "runs.csv", header=("technique", "num_experts", "dense_parameter_count", "val"))
    # the header names E first and N second: the aliases, not the order, must decide
    with open(src) as f:
        rows = list(csv.reader(f))
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [[r[0], r[2], r[1], r[3]] for r in rows[1:]])
    assert main(["fit", str(src), "--technique", "hash", "--plain", "--bootstrap", "0", "--loss-column", "val"]) == 0
    text = capsys.readouterr().out
    assert "hash:" in text and "sbase:" not in text and "\n  e_max " not in text and "\n  c " in text


@pytest.mark.parametrize("argv_tail,phrase", [
    (["--bootstrap", "-1"], "--bootstrap"),
    (["--technique", "switch"], "unknown technique"),
    (["--loss-column", "nope"], "no column 'nope'"),
])
def test_fit_bad_options_exit_2_with_one_line(tmp_path, capsys, argv_tail, phrase):
    src = write_runs(tmp_path / "runs.csv")
    assert main(["fit", str(src)] + argv_tail) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and "\n" not in err


def test_fit_bad_csvs_exit_2(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    no_e = tmp_path / "no_e.csv"
    no_e.write_text("N,loss\n1e7,3.0\n1e8,2.8\n")
    assert main(["fit", str(no_e)]) == 2
    assert "E:" in capsys.readouterr().err
    nan = write_runs(tmp_path / "nan.csv")
    lines = nan.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:3] + ["nan"])
    nan.write_text("\n".join(lines) + "\n")
    assert main(["fit", str(nan), "--bootstrap", "0"]) == 2
    assert "loss" in capsys.readouterr().err


def test_fit_a_partial_sweep_fits_what_it_can_and_says_why_not_the_rest(tmp_path, capsys):
    src = write_runs(tmp_path / "runs.csv")
    with open(src, "a", newline="") as f:  # rlr at one E only: with dense, 2 expert counts cannot give E_start, E_max
        csv.writer(f).writerows([("rlr", n, 4, laws.predict_loss(n, 4, LAW)) for n in SIZES])
    out = tmp_path / "fit.json"
    assert main(["fit", str(src), "--bootstrap", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rlr: not fitted" in text and "2 distinct expert counts" in text and "not fitted: rlr" in text
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"sbase", "hash"} and "E_start" in doc["not_fitted"]["rlr"]
    assert main(["fit", str(src), "--bootstrap", "0", "--technique", "rlr"]) == 2  # asked for by name: an error
    assert "rlr: only 2 distinct expert counts" in capsys.readouterr().err
    only_rlr = tmp_path / "rlr.csv"
    only_rlr.write_text("\n".join(l for l in src.read_text().splitlines() if not l.startswith(("sbase", "hash"))) + "\n")
    assert main(["fit", str(only_rlr), "--bootstrap", "0"]) == 2
    assert "rlr: only 2 distinct expert counts" in capsys.readouterr().err


def test_fit_clark_without_the_runs_says_how_to_get_them(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(paper.RUNS_ENV, raising=False)
    monkeypatch.setattr(paper, "cache_path", lambda: tmp_path / "cache.csv")

    def offline(url, timeout):
        raise OSError("offline")

    monkeypatch.setattr(paper, "_download", offline)
    assert main(["fit", "clark"]) == 2
    err = capsys.readouterr().err
    assert paper.RUNS_ENV in err and paper.RUNS_URL in err


@pytest.mark.needs_clark_runs
def test_fit_clark_prints_table3_beside_the_refit(capsys):
    try:
        paper.find_runs(download=False)
    except RoutingLawsError as e:
        pytest.skip(str(e))
    assert main(["fit", "clark", "--technique", "sbase", "--technique", "RL-R", "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "S-BASE: 59 points from 61 runs" in text and "RL-R: 60 points from 62 runs" in text
    assert "Table 3" in text and "un-rounded 0.009021" in text and "(paper 9.37e+11)" in text
    assert "HASH" not in text
