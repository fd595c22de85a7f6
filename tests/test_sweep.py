import csv
import dataclasses
import json

import pytest

from routing_laws import data as data_lib
from routing_laws import io_utils, sweep
from routing_laws import model as model_lib
from routing_laws.config import RouterConfig, model_config
from routing_laws.errors import ValidationError


def test_grids_cover_what_the_book_needs():
    cpu = sweep.get_grid("cpu")
    runs = cpu.runs()
    assert {r.router for r in runs} == {"dense", "sbase", "rlr", "hash"}
    assert cpu.tokens >= 8_000_000 and len(cpu.sizes) >= 3
    assert len({r.run_id for r in runs}) == len(runs)
    gpu = sweep.get_grid("gpu")
    assert max(gpu.experts) >= 256 and gpu.tokens >= 20_000_000


def test_v2_cpu_grid_is_the_designed_one():
    """v2: 3 four-layer rungs x E {1, 4, 16, 64} x 3 routers, the (F, B) variants at 200k-L4 S-BASE E = 16,
    seed 1 for dense and E = 16 of each router at the smallest and largest rung, 2x v1's tokens, and the
    two seed checks."""
    cpu, v1 = sweep.get_grid("cpu"), sweep.get_grid("cpu-v1")
    runs = cpu.runs()
    assert len(runs) == 30 + 3 + 8 + 2 and len({r.run_id for r in runs}) == len(runs)
    assert cpu.tokens == 2 * v1.tokens == 4096 * 32 * 128
    assert {model_config(s).n_layers for s in cpu.sizes} == {4}
    for s in cpu.sizes:  # R = 0.5 routes two FFNs, never only the last one
        assert model_config(s, router=RouterConfig(kind="sbase", n_experts=4)).routed_layers == (1, 3)
    Ns = [model_lib.count_params(model_config(s)).N for s in cpu.sizes]
    assert Ns == [111_456, 197_760, 444_096] and Ns[-1] / Ns[0] > 3.9
    # the two checks added after 30 records: a second seed of 200k-L4 dense, a third of 440k-L4 HASH E = 16
    assert {r.run_id for r in cpu.extra_runs} == {"200k-L4-dense-E1-K1-R0.5-s1", "440k-L4-hash-E16-K1-R0.5-s2"}
    seeds = [r for r in runs if r.seed == 1 and r not in cpu.extra_runs]
    assert {(r.size, r.router, r.experts) for r in seeds} == {
        (s, r, e) for s in ("110k-L4", "440k-L4") for r, e in (("dense", 1), ("sbase", 16), ("rlr", 16), ("hash", 16))}
    assert all(r.run_id.endswith("-s1") for r in seeds)
    assert {(r.top_k, r.routing_frequency) for r in runs if r.size == "200k-L4" and r.experts == 16
            and r.router == "sbase"} == {(1, 0.5), (1, 0.25), (1, 1.0), (2, 0.5)}
    assert len(v1.runs()) == 33 and sweep.runs_dir("cpu-v1").name == "cpu-v1"


def test_ablation_grids_pair_what_they_compare():
    abl = {n: g for n, g in sweep.GRIDS.items() if n.startswith("ablate-")}
    assert set(abl) == {"ablate-init", "ablate-depth", "ablate-gate", "ablate-rlr"}
    v1 = {r.run_id for r in sweep.get_grid("cpu-v1").runs()}
    for name, g in abl.items():
        assert g.tokens == 8_388_608 and sweep.runs_dir(name).name == "ablations"
        assert all(sweep.is_safe_run_id(r.run_id) for r in g.runs())
        for r in g.runs():  # every run builds
            model_config(r.size, router=r.router_config())
    assert {r.run_id for r in abl["ablate-init"].runs()} <= v1  # paired with cpu-v1's records by run id
    gates = {dict(r.router_overrides).get("sbase_gate", "softmax") for r in abl["ablate-gate"].runs()}
    assert gates == {"softmax", "sigmoid", "st"}
    rlr = [r for r in abl["ablate-rlr"].runs() if r.router == "rlr"]
    assert {(r.size, r.experts) for r in rlr} == {(s, e) for s in ("110k-L4", "200k-L4") for e in (16, 64)}
    assert len({r.router_overrides for r in rlr}) == len(sweep.RLR_SETTINGS) >= 2
    assert {r.size for r in abl["ablate-rlr"].runs() if r.router == "dense"} == {"110k-L4", "200k-L4"}
    # the same run in two comparisons is one record
    ids = [r.run_id for g in abl.values() for r in g.runs()]
    assert "100k-sbase-E64-K1-R0.5-s0" in ids and ids.count("100k-sbase-E64-K1-R0.5-s0") == 2


def test_grid_router_settings_reach_every_run_of_that_router_and_its_id():
    base = sweep.Grid("g", ("100k",), (1, 16), ("sbase", "rlr"), tokens=4096, seed_runs=(("100k", "rlr", 16),),
                      extra_seeds=(1,), variants=(("100k", "rlr", 16, 1, 1.0),))
    setting = (("rlr_balance_coef", 0.1),)
    g = dataclasses.replace(base, router_settings=(("rlr", setting),))
    rlr = [r for r in g.runs() if r.router == "rlr"]
    assert len(rlr) == 3 and all(r.router_overrides == setting and r.run_id.endswith("-bal0.1") for r in rlr)
    assert all(r.router_config().rlr_balance_coef == 0.1 for r in rlr)
    others = [r for r in g.runs() if r.router != "rlr"]
    assert others == [r for r in base.runs() if r.router != "rlr"]  # dense and S-BASE untouched
    assert [r.run_id for r in base.runs() if r.router == "rlr"] == [r.run_id.removesuffix("-bal0.1") for r in rlr]
    with pytest.raises(ValidationError, match="router_settings"):  # not a router of the grid
        dataclasses.replace(base, router_settings=(("hash", setting),))
    with pytest.raises(ValidationError, match="router_overrides"):  # not a per-run setting
        dataclasses.replace(base, router_settings=(("rlr", (("capacity_factor", 4.0),)),))


def test_select_and_shard_partition_the_grid():
    runs = sweep.get_grid("cpu").runs()
    parts = [sweep.select(runs, None, (i, 3)) for i in range(3)]
    assert sorted(r.run_id for p in parts for r in p) == sorted(r.run_id for r in runs)
    assert all(r.router == "hash" for r in sweep.select(runs, ["hash"]))
    with pytest.raises(ValidationError, match="--only"):
        sweep.select(runs, ["nothing-like-this"])
    for bad in ("3/3", "a/b", "1", "-1/2"):
        with pytest.raises(ValidationError, match="--shard"):
            sweep.parse_shard(bad)
    with pytest.raises(ValidationError, match="--grid"):
        sweep.get_grid("huge")


def test_sweep_resumes_records_failures_and_reports_foreign(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(data_lib, "get_dataset", lambda corpus=None, **kw: tiny_data)
    monkeypatch.setattr(io_utils, "git_commit", lambda root=None: "0" * 40)  # a clean tree
    prof = sweep.Grid("t", ("100k",), (1, 2), ("hash",), tokens=16 * 16 * 3, batch_size=16, seq_len=16,
                         variants=(("100k", "sbase", 2, 1, 0.25),))  # R=0.25 with 2 layers: invalid -> failed
    counts = sweep.run_sweep(prof, out_dir=tmp_path, progress=False)
    assert counts == {"selected": 3, "finished": 2, "skipped": 0, "failed": 1, "set_aside": 0, "unwritten": 0,
                      "failed_total": 1}
    failed = json.loads((tmp_path / "100k-sbase-E2-K1-R0.25-s0.json").read_text())
    assert failed["status"] == "failed" and "routing_frequency" in failed["reason"]
    again = sweep.run_sweep(prof, out_dir=tmp_path, progress=False)
    assert again["skipped"] == 3 and again["finished"] == 0
    assert again["failed_total"] == 1  # the recorded failure still counts on a re-run
    (tmp_path / "junk.json").write_text("{broken")
    (tmp_path / "100k-hash-E2-K1-R0.5-s0.json").write_text(json.dumps({"foreign": True}))
    records, problems = sweep.read_records(tmp_path)
    assert len(problems) == 2 and any("junk.json" in p for p in problems)
    sweep.write_summary(tmp_path)
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert {r["status"] for r in rows} == {"finished", "failed"}
    fin = [r for r in rows if r["status"] == "finished"]
    assert fin[0]["technique"] == "dense" and float(fin[0]["loss"]) > 0 and int(fin[0]["N"]) > 0


def test_one_run_id_function():
    spec = sweep.RunSpec("100k", "sbase", 16, 2, 0.25, 3)
    assert spec.run_id == sweep.run_id("100k", "sbase", 16, 2, 0.25, 3) == "100k-sbase-E16-K2-R0.25-s3"
    assert sweep.is_safe_run_id(spec.run_id)
    for bad in ("../../etc/evil", "a/b", "..", "", ".hidden", None, 5, "x" * 200):
        assert not sweep.is_safe_run_id(bad)


def test_comparison_and_curve_rows_from_records():
    """comparison_rows: sorted by loss, difference to the dense run of the same size, routing metrics;
    curve_rows: one row per validation point; failed records are left out; bad input is named."""
    def rec(router, E, loss, size="100k"):
        return {"status": "finished", "spec": {"router": router, "experts": E, "size": size}, "tokens": 100,
                "final_val_loss": loss, "curve": [{"tokens": 50, "val_loss": loss + 1}, {"tokens": 100, "val_loss": loss}],
                "train_curve": [{"dropped_frac": 0.5}, {"dropped_frac": 0.01}],
                "routing": {"max_over_mean_load": [1.5, 2.5], "router_entropy": 0.7} if router != "dense" else {}}
    recs = [rec("dense", 1, 4.3), rec("rlr", 16, 4.25), rec("hash", 16, 4.1), rec("sbase", 4, 4.0, "200k"),
            {"status": "failed", "run_id": "x", "reason": "NaN"}]
    rows = sweep.comparison_rows(recs)
    assert [r["run"] for r in rows] == ["S-BASE E=4", "HASH E=16", "RL-R E=16", "dense"]
    by = {r["run"]: r for r in rows}
    assert by["HASH E=16"]["vs_dense"] == pytest.approx(-0.2) and by["dense"]["vs_dense"] == 0.0
    assert by["S-BASE E=4"]["vs_dense"] is None  # no dense run of its size
    assert by["RL-R E=16"]["train_dropped"] == 0.01 and by["RL-R E=16"]["eval_max_over_mean_load"] == 2.5
    assert by["RL-R E=16"]["train_dropped_max"] == 0.5  # the worst window, not the last
    assert (by["RL-R E=16"]["router"], by["RL-R E=16"]["E"], by["dense"]["router"], by["dense"]["E"]) == ("RL-R", 16, "dense", 1)
    curves = sweep.curve_rows(recs)
    assert len(curves) == 8 and {"run": "dense", "tokens": 50, "loss": 5.3} in curves
    with pytest.raises(ValidationError, match="records"):
        sweep.comparison_rows("data/runs/routers")


def test_summary_rows_name_per_run_router_settings():
    rows = sweep.summary_rows([
        {"run_id": "a", "status": "failed", "reason": "x",
         "spec": {"router": "sbase", "router_overrides": {"sbase_gate": "sigmoid"}}},
        {"run_id": "b", "status": "failed", "reason": "x",
         "spec": {"router": "rlr", "router_overrides": {"rlr_router_lr_mult": 3.0, "rlr_balance_coef": 0.1}}},
        {"run_id": "c", "status": "failed", "reason": "x", "spec": {"router": "hash"}}])
    assert [r["overrides"] for r in rows] == ["gsigmoid", "bal0.1-lr3", ""]
    assert "overrides" in sweep.SUMMARY_FIELDS


def test_sweep_only_flags_add_up_when_repeated():
    from routing_laws import cli
    args = cli.build_parser().parse_args(["sweep", "--grid", "cpu", "--only", "110k-L4-rlr-E16", "--only", "hash", "sbase"])
    assert args.only == ["110k-L4-rlr-E16", "hash", "sbase"]  # the last flag alone used to win
    assert cli.build_parser().parse_args(["sweep", "--grid", "cpu"]).only is None
