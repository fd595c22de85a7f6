"""``routing-laws fit``: a CSV of runs or the paper's raw runs in, coefficients with intervals out;
bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from routing_laws import laws, paper
from routing_laws.cli import main
from routing_laws.errors import RoutingLawsError

LAW = laws.RoutedLaw(-0.084, -0.126, 0.0108, 1.126, 2.4, 275.0)
SIZES = [16.5e6, 27.3e6, 57.4e6, 132e6, 368e6, 1309e6]
CLARK_HEADER = ("hyper_id,step,loss_c4,loss_curation_corpus,loss_lambada,loss_pile,loss_validation,loss_wikitext103,"
                "num_experts,d_model,num_blocks,num_heads,kqv_size,flop_increase,k,router_type,seed,routing_frequency,"
                "total_parameter_count,dense_parameter_count,flops_per_step,model_size_label")


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


# ----------------------------------------------------------------------------- bad input: exit 2, one line
def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("routing-laws fit: error: ")
    assert "fitted" not in cap.out  # nothing was fitted
    return err


def _edit(path, fn):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")
    return path


@pytest.mark.parametrize("make, phrase", [
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00IHDR\x00"), "is a binary file"),
    (lambda p: p.write_bytes("router,N,E,loss\ncaf\u00e9,1e7,1,3.0\n".encode("latin-1")), "not UTF-8"),
    (lambda p: p.write_text(""), "is empty"),
    (lambda p: p.write_text("router,N,E,loss\n"), "has a header but no rows"),
    (lambda p: p.write_text("router,N,E,loss\n\n\n"), "has a header but no rows"),
    (lambda p: _edit(write_runs(p), lambda l: l[:3] + [l[3] + ",9"] + l[4:]), "line 4 has 5 fields, the header has 4"),
    (lambda p: _edit(write_runs(p), lambda l: l[:2] + ["hash,1e7,4"] + l[2:]), "line 3 has 3 fields"),
    (lambda p: p.write_text("router,N,N,loss\nhash,1,2,3\n"), "repeats the column(s) N"),
    (lambda p: _edit(write_runs(p), lambda l: l + [l[5]]), "are the same run"),
    (lambda p: _edit(write_runs(p), lambda l: l[:2] + [l[2].rsplit(",", 1)[0] + ",-2.5"] + l[3:]),
     "line 3: loss must be > 0"),
    (lambda p: _edit(write_runs(p), lambda l: l[:2] + [l[2].rsplit(",", 1)[0] + ",inf"] + l[3:]), "line 3: 'inf' is not finite"),
    (lambda p: _edit(write_runs(p), lambda l: l[:2] + [l[2].rsplit(",", 1)[0] + ",abc"] + l[3:]),
     "line 3: not a number: 'abc'"),
    (lambda p: _edit(write_runs(p), lambda l: l[:2] + ["hash,1e7,0.5,3.1"] + l[2:]), "line 3: E must be >= 1"),
    (lambda p: _edit(write_runs(p), lambda l: l[:2] + ["hash,-7,4,3.1"] + l[2:]), "line 3: N must be > 0"),
])
def test_malformed_fit_csvs_are_one_line_errors(tmp_path, capsys, make, phrase):
    p = tmp_path / "runs.csv"
    make(p)
    err = _one_line_error(capsys, ["fit", str(p), "--bootstrap", "0"])
    assert phrase in err and "(" in err  # the problem and, in brackets, the fix


def test_a_byte_order_mark_is_read_and_a_folder_is_named_as_one(tmp_path, capsys):
    p = write_runs(tmp_path / "runs.csv")
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())  # what spreadsheets write
    assert main(["fit", str(p), "--bootstrap", "0"]) == 0
    assert "sbase:" in capsys.readouterr().out
    err = _one_line_error(capsys, ["fit", str(tmp_path)])
    assert "is a directory" in err and "does not exist" not in err


def test_repeat_seeds_are_separate_runs_but_a_copied_line_is_refused(tmp_path, capsys):
    p = write_runs(tmp_path / "runs.csv")
    # the same (router, N, E) with another loss is a second seed: kept
    _edit(p, lambda l: l + [",".join(l[10].split(",")[:3] + [str(float(l[10].split(",")[3]) * 1.001)])])
    out = tmp_path / "fit.json"
    assert main(["fit", str(p), "--bootstrap", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["results"]["sbase"]["n_points"] == 6 + 54 + 1
    capsys.readouterr()
    _edit(p, lambda l: l + [l[10]])
    assert "lines 11 and 117 are the same run" in _one_line_error(capsys, ["fit", str(p), "--bootstrap", "0"])


@pytest.mark.parametrize("target, phrase", [
    (lambda d: d, "is a folder"),
    (lambda d: (d / "file.txt", (d / "file.txt").write_text("x"))[0] / "fit.json", "which is a file"),
])
def test_the_json_target_is_checked_before_any_fitting(tmp_path, capsys, target, phrase):
    src = write_runs(tmp_path / "runs.csv")
    err = _one_line_error(capsys, ["fit", str(src), "--bootstrap", "0", "--json", str(target(tmp_path))])
    assert "--json" in err and phrase in err


def test_a_json_target_in_a_missing_folder_is_created(tmp_path, capsys):
    src = write_runs(tmp_path / "runs.csv")
    out = tmp_path / "new" / "folder" / "fit.json"
    assert main(["fit", str(src), "--bootstrap", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())


def test_an_unwritable_json_target_is_refused_before_fitting(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    src = write_runs(tmp_path / "runs.csv")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert "not writable" in _one_line_error(capsys, ["fit", str(src), "--json", str(ro / "fit.json")])


def test_huge_bootstrap_is_refused(tmp_path, capsys):
    src = write_runs(tmp_path / "runs.csv")
    assert "--bootstrap" in _one_line_error(capsys, ["fit", str(src), "--bootstrap", str(10 ** 9)])


def test_a_clark_format_file_that_is_not_the_published_one_is_fitted_with_a_warning(tmp_path, capsys):
    rows = []
    hid = 0
    for size, n in (("15M", 15e6), ("130M", 130e6), ("370M", 370e6)):
        for router, E in (("Dense", 1), ("S-Base", 4), ("S-Base", 16), ("S-Base", 64), ("S-Base", 256)):
            loss = laws.predict_loss(n, E, LAW)
            rows.append(f"{hid},249000,{loss},{loss},{loss},{loss},{loss},{loss},{E},512,8,8,64,1.0,1,{router},1,0.5,"
                        f"{n * E},{n},1e14,{size}")
            hid += 1
    p = tmp_path / "clark_copy.csv"
    p.write_text(CLARK_HEADER + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "fit.json"
    assert main(["fit", str(p), "--technique", "S-BASE", "--bootstrap", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("warning: ") and "not the published runs file's" in text and "Table 3" in text
    assert json.loads(out.read_text())["published_runs_file"] is False
