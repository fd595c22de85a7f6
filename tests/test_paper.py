"""routing_laws.paper: the published numbers and their consistency (Table 3, cutoffs, EPC, dense
slope), the raw-run loader and its fallbacks, the accounting formulas against the CSV, and refits
of the raw runs against Table 3."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from routing_laws import laws, paper
from routing_laws.errors import RoutingLawsError, ValidationError


@pytest.fixture(scope="module")
def clark_runs():
    try:
        return paper.load_runs(download=False)
    except RoutingLawsError as e:
        pytest.skip(str(e))


# ----------------------------------------------------------------------------- published numbers
def test_every_paper_csv_row_has_a_source_and_a_confidence():
    for name in ("table3", "dense_fit", "cutoffs", "derived_c", "epc_example"):
        rows = paper.read_table(name)
        assert rows and all(r["source"].strip() and r["confidence"] in ("reported", "derived") for r in rows)
    assert {r["confidence"] for r in paper.read_table("derived_c")} == {"derived"}
    assert (paper.paper_dir() / "SOURCES.md").is_file()


def test_table3_ehat_values_match_the_research_notes():
    # research/paper.md section 4.3, computed there independently from Table 3 (4 significant digits)
    expected = {"S-BASE": [1.847, 2.832, 4.784, 8.615, 16.00, 29.75, 53.77, 91.41, 141.4, 194.9],
                "RL-R": [1.880, 2.870, 4.837, 8.723, 16.30, 30.74, 57.02, 101.1, 166.1, 245.2],
                "HASH": [4.175, 5.156, 7.105, 10.96, 18.47, 32.80, 58.92, 102.9, 168.0, 247.9]}
    E = 2.0 ** np.arange(10)
    for tech, law in paper.table3().items():
        np.testing.assert_allclose(laws.saturating_experts(E, law.e_start, law.e_max), expected[tech], rtol=6e-4)


def test_cutoffs_with_unrounded_c_are_within_one_percent_of_the_reported():
    reported = paper.reported_cutoffs()
    c = paper.derived_c()
    for tech, law in paper.table3(unrounded_c=True).items():
        assert law.c == c[tech] and round(law.c, 3) == paper.table3()[tech].c  # rounds to Table 3
        assert laws.cutoff_params(law) == pytest.approx(reported[tech], rel=0.01)
    # with the rounded c the cutoffs are off by far more: the reason to keep the un-rounded values
    assert laws.cutoff_params(paper.table3()["RL-R"]) < 0.5 * reported["RL-R"]


def test_epc_example_and_dense_slope():
    ex = paper.epc_example()
    assert (ex["N"], ex["E"], ex["dense_equivalent"]) == (5e6, 128, 55e6)
    for unrounded in (False, True):
        t3 = paper.table3(unrounded_c=unrounded)
        for tech in ("S-BASE", "RL-R"):
            assert 45e6 <= laws.effective_params(ex["N"], ex["E"], t3[tech]) <= 65e6
    alpha = paper.dense_fit()["alpha_N"]
    assert paper.dense_fit()["N_c"] == 3.568e13
    for tech, law in paper.table3(unrounded_c=True).items():
        assert laws.dense_slope(law) == pytest.approx(-0.08, abs=0.003), tech
        assert -laws.dense_slope(law) == pytest.approx(alpha, abs=0.003), tech


def test_canonical_technique_names():
    assert paper.canonical_technique("sbase") == paper.canonical_technique("S-Base") == "S-BASE"
    assert paper.canonical_technique("rlr") == "RL-R" and paper.canonical_technique("Hash") == "HASH"
    with pytest.raises(ValidationError) as e:
        paper.canonical_technique("switch")
    assert e.value.field == "technique" and "S-BASE" in str(e.value)


# ----------------------------------------------------------------------------- loader
def _isolate(monkeypatch, tmp_path, download=None):
    monkeypatch.delenv(paper.RUNS_ENV, raising=False)
    monkeypatch.setattr(paper, "cache_path", lambda: tmp_path / ".cache" / "clark2022_moe_runs.csv")

    def fail(url, timeout):
        raise OSError("offline")

    monkeypatch.setattr(paper, "_download", download or fail)


def test_missing_runs_raise_an_error_that_says_how_to_get_them(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    with pytest.raises(RoutingLawsError) as e:
        paper.load_runs()
    msg = str(e.value)
    assert paper.RUNS_ENV in msg and paper.RUNS_URL in msg and paper.RUNS_SHA256 in msg and "offline" in msg
    monkeypatch.setenv(paper.RUNS_ENV, str(tmp_path / "nope.csv"))
    with pytest.raises(RoutingLawsError, match="does not exist"):
        paper.load_runs()


def test_download_is_checked_and_cached(monkeypatch, tmp_path):
    good = (b"hyper_id,step\n")  # wrong content: the sha256 check must refuse it
    _isolate(monkeypatch, tmp_path, download=lambda url, timeout: good)
    with pytest.raises(RoutingLawsError, match="sha256"):
        paper.find_runs()
    assert not (tmp_path / ".cache" / "clark2022_moe_runs.csv").exists()
    monkeypatch.setattr(paper, "RUNS_SHA256", hashlib.sha256(good).hexdigest())
    assert paper.find_runs() == tmp_path / ".cache" / "clark2022_moe_runs.csv"
    assert (tmp_path / ".cache" / "clark2022_moe_runs.csv").read_bytes() == good
    monkeypatch.setattr(paper, "_download", lambda url, timeout: pytest.fail("cache not used"))
    assert paper.find_runs().is_file()


@pytest.mark.needs_clark_runs
def test_explicit_path_env_and_table_helpers(clark_runs, monkeypatch, tmp_path):
    src = paper.find_runs(download=False)
    _isolate(monkeypatch, tmp_path)
    assert len(paper.load_runs(src)) == len(clark_runs) == 5799
    monkeypatch.setenv(paper.RUNS_ENV, str(src))
    final = paper.load_runs().final()
    assert len(final) == 223 and len(np.unique(final["hyper_id"])) == 223
    assert sorted(set(final["step"].tolist())) == [248000, 249000, 250000]
    assert len(clark_runs.where(router_type="Dense", step=249000)) == 13
    with pytest.raises(ValidationError, match="no column"):
        clark_runs["nope"]


@pytest.mark.needs_clark_runs
def test_accounting_reproduces_every_run_exactly(clark_runs):
    f = clark_runs.final()
    for i in range(len(f)):
        shape = (int(f["d_model"][i]), int(f["num_blocks"][i]), int(f["num_heads"][i]), int(f["kqv_size"][i]))
        kw = dict(E=int(f["num_experts"][i]), R=float(f["routing_frequency"][i]), router=str(f["router_type"][i]),
                  flop_increase=int(f["flop_increase"][i]))
        assert paper.paper_dense_params(*shape) == f["dense_parameter_count"][i]
        assert paper.paper_total_params(*shape, **kw) == f["total_parameter_count"][i]
        assert paper.paper_flops_per_token(*shape, k=int(f["k"][i]), **kw) * paper.TOKENS_PER_STEP == f["flops_per_step"][i]


@pytest.mark.needs_clark_runs
def test_main_grid_and_ablation_selection(clark_runs):
    sizes = {}
    for tech in paper.TECHNIQUES:
        g = paper.main_grid(tech, runs=clark_runs)
        sizes[tech] = len(g)
        assert (g["E"] == 1).sum() == 6 and len(np.unique(g["N"])) == 6
        dense130 = (g["E"] == 1) & (g["size"] == "130M")
        assert g["n_runs"][dense130][0] == 3 and g["hyper_ids"][dense130][0] == "9+10+11"
        seeds = clark_runs.final().filter(np.isin(clark_runs.final()["hyper_id"], [9, 10, 11]))
        assert g["loss"][dense130][0] == pytest.approx(seeds["loss_validation"].mean())
        assert (g["n_runs"][~dense130] == 1).all()
    assert sizes == {"S-BASE": 59, "RL-R": 60, "HASH": 57}
    keep = paper.ablation_runs("S-BASE", runs=clark_runs)
    drop = paper.ablation_runs("S-BASE", runs=clark_runs, duplicates="drop")
    dup = np.array(paper.DUPLICATED_SBASE_25M).ravel()
    assert np.isin(dup, keep["hyper_id"]).all() and not np.isin(dup, drop["hyper_id"]).any()
    assert len(keep) - len(drop) == 8 and set(keep["size"].tolist()) == {"25M", "370M"}
    assert {"R", "k", "main", "dense"} == set(keep["kind"].tolist())
    np.testing.assert_allclose(keep["B"], keep["P"] / keep["F"])


# ----------------------------------------------------------------------------- refits of the raw runs
@pytest.mark.needs_clark_runs
def test_refit_of_the_raw_runs_reproduces_table3_within_bootstrap_intervals(clark_runs):
    t3 = paper.table3(unrounded_c=True)
    for tech in paper.TECHNIQUES:
        g = paper.main_grid(tech, runs=clark_runs)
        fit = laws.fit_routed_law(g["N"], g["E"], g["loss"], bootstrap=300, seed=0)
        for k in laws.LAW_PARAMS:
            lo, hi = fit.ci[k]
            assert lo <= getattr(t3[tech], k) <= hi, (tech, k, getattr(t3[tech], k), fit.ci[k])
        assert 0.002 < fit.rmse < 0.004, (tech, fit.rmse)
        assert laws.dense_slope(fit.law) == pytest.approx(-0.08, abs=0.005)
        lo, hi = fit.ci_of(laws.cutoff_params)
        assert lo <= paper.reported_cutoffs()[tech] <= hi


@pytest.mark.needs_clark_runs
def test_fb_law_fits_the_r_and_k_ablations(clark_runs):
    for tech, bound in (("S-BASE", 0.008), ("HASH", 0.005)):
        a = paper.ablation_runs(tech, runs=clark_runs)
        fit = laws.fit_fb_law(a["F"], a["B"], a["loss"])
        assert fit.rmse < bound, (tech, fit.rmse)
        assert fit.law.a < 0 and fit.law.b < 0 and fit.law.c > 0  # more compute and more params help; less so at scale
        routed = a.filter(a["kind"] != "main")
        worst = np.abs(np.log10(routed["loss"]) - np.log10(laws.predict_fb_loss(routed["F"], routed["B"], fit.law)))
        assert worst.max() < 0.025
    # the four duplicated S-Base configurations are what limits the S-Base fit
    keep = laws.fit_fb_law(*(paper.ablation_runs("S-BASE", runs=clark_runs)[c] for c in ("F", "B", "loss")))
    drop = laws.fit_fb_law(*(paper.ablation_runs("S-BASE", runs=clark_runs, duplicates="drop")[c]
                             for c in ("F", "B", "loss")))
    assert drop.rmse < keep.rmse


@pytest.mark.needs_clark_runs
@pytest.mark.parametrize("loss_column", paper.LOSS_COLUMNS[1:])
def test_law_fits_the_other_evaluation_sets(clark_runs, loss_column):
    for tech in paper.TECHNIQUES:
        g = paper.main_grid(tech, runs=clark_runs, loss_column=loss_column)
        assert np.isfinite(g["loss"]).all() and len(g) == {"S-BASE": 59, "RL-R": 60, "HASH": 57}[tech]
        fit = laws.fit_routed_law(g["N"], g["E"], g["loss"])
        assert fit.rmse < 0.012, (tech, loss_column, fit.rmse)
        assert fit.law.b < 0 and fit.law.c > 0 and laws.dense_slope(fit.law) < 0
        assert fit.rmse < np.std(np.log10(g["loss"])) / 5  # explains > 96 % of the variance


@pytest.mark.needs_clark_runs
def test_dense_runs_follow_a_power_law_near_the_papers(clark_runs):
    g = paper.main_grid("S-BASE", runs=clark_runs)
    dense = g.filter(g["E"] == 1)
    fit = laws.fit_dense_law(dense["N"], dense["loss"])
    assert fit.alpha_N == pytest.approx(paper.dense_fit()["alpha_N"], abs=0.01)
    assert fit.rmse < 0.005 and math.isfinite(fit.N_c)


# ----------------------------------------------------------------------------- malformed raw-run files
HEADER = ("hyper_id,step,loss_c4,loss_curation_corpus,loss_lambada,loss_pile,loss_validation,loss_wikitext103,"
          "num_experts,d_model,num_blocks,num_heads,kqv_size,flop_increase,k,router_type,seed,routing_frequency,"
          "total_parameter_count,dense_parameter_count,flops_per_step,model_size_label")
ROW = "0,10000,3.15,2.43,2.47,2.92,2.87,2.97,1,1536,12,12,128,1.0,1,Dense,42,0.5,368123904.0,368123904.0,5.5e14,370M"


def _csv(tmp_path, text: str | bytes, name="runs.csv"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_a_small_well_formed_file_loads_with_a_checksum_warning(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    p = _csv(tmp_path, "\ufeff" + HEADER + "\n" + ROW + "\n" + ROW.replace("0,10000", "0,20000", 1) + "\n")
    with pytest.warns(paper.RunsChecksumWarning, match="not the paper's runs"):
        t = paper.load_runs(p)
    assert len(t) == 2 and t["hyper_id"].dtype == np.int64 and t["step"].tolist() == [10000, 20000]
    assert not t.sha256_ok and t.source == str(p) and t.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("content, phrase", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("hyper_id,caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    ("", "is empty"),
    (HEADER + "\n", "header but no rows"),
    (HEADER + "\n" + ROW + ",extra\n", "line 2 has 23 fields"),
    (HEADER + "\n" + ROW + "\n" + ",".join(ROW.split(",")[:5]) + "\n", "line 3 has 5 fields"),
    (HEADER + "\n" + ROW.replace("0,10000", "x,10000", 1), "column hyper_id: not a number: 'x'"),
    (HEADER + "\n" + ROW.replace("0,10000", "0,1.5", 1), "column step: not an integer: '1.5'"),
    (HEADER + "\n" + ROW.replace("3.15", "-3.15", 1), "column loss_c4: a loss must be finite and >= 0"),
    (HEADER + "\n" + ROW.replace("3.15", "inf", 1), "column loss_c4: a loss must be finite"),
    ("a,b\n1,2\n", "missing columns"),
])
def test_malformed_runs_files_are_clean_errors(monkeypatch, tmp_path, content, phrase):
    _isolate(monkeypatch, tmp_path)
    p = _csv(tmp_path, content)
    with pytest.raises(ValidationError) as e:
        paper.load_runs(p)
    assert e.value.field == "path" and phrase in str(e.value) and str(p) in str(e.value)
    assert "clark2022_moe_runs.csv" in e.value.fix  # says what file would work
    monkeypatch.setenv(paper.RUNS_ENV, str(p))  # the same through the environment variable names it
    with pytest.raises(ValidationError) as e:
        paper.load_runs()
    assert e.value.field == paper.RUNS_ENV and phrase in str(e.value)


def test_a_directory_is_named_as_one(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    with pytest.raises(ValidationError, match="is a directory") as e:
        paper.load_runs(tmp_path)
    assert e.value.field == "path"
    monkeypatch.setenv(paper.RUNS_ENV, str(tmp_path))
    with pytest.raises(ValidationError, match="is a directory") as e:
        paper.find_runs()
    assert e.value.field == paper.RUNS_ENV
    with pytest.raises(ValidationError, match="file path"):
        paper.load_runs(42)


def test_a_damaged_cache_is_not_used(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    cache = tmp_path / ".cache" / "clark2022_moe_runs.csv"
    cache.parent.mkdir()
    cache.write_text(HEADER + "\n" + ROW + "\n")
    with pytest.raises(RoutingLawsError, match="not the published file's, so it was not used"):
        paper.load_runs(download=False)
    with pytest.raises(RoutingLawsError, match="offline.*not used"):
        paper.load_runs()


def test_runs_or_reason(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    runs, why = paper.runs_or_reason()
    assert runs is None and why.startswith("The sections that need the paper's raw runs are skipped")
    assert paper.RUNS_ENV in why and paper.RUNS_URL in why and "\n" not in why
    runs, why = paper.runs_or_reason(_csv(tmp_path, HEADER + "\n"))  # a malformed file: the reason says so
    assert runs is None and "header but no rows" in why
    with pytest.warns(paper.RunsChecksumWarning):
        runs, why = paper.runs_or_reason(_csv(tmp_path, HEADER + "\n" + ROW + "\n"))
    assert len(runs) == 1 and why == ""


@pytest.mark.needs_clark_runs
def test_the_published_file_loads_without_a_warning(clark_runs, recwarn):
    src = paper.find_runs(download=False)
    t = paper.load_runs(src)
    assert t.sha256_ok and t.sha256 == paper.RUNS_SHA256
    assert not [w for w in recwarn if issubclass(w.category, paper.RunsChecksumWarning)]
    runs, why = paper.runs_or_reason(src)
    assert why == "" and len(runs) == len(clark_runs)
