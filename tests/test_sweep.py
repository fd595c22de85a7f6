import csv
import json

import pytest

from routing_laws import data as data_lib
from routing_laws import io_utils, sweep
from routing_laws.errors import ValidationError


def test_grids_cover_what_the_book_needs():
    cpu = sweep.get_grid("cpu")
    runs = cpu.runs()
    assert {r.router for r in runs} == {"dense", "sbase", "rlr", "hash"}
    assert cpu.tokens >= 8_000_000 and len(cpu.sizes) >= 3
    assert len({r.run_id for r in runs}) == len(runs)
    gpu = sweep.get_grid("gpu")
    assert max(gpu.experts) >= 256 and gpu.tokens >= 20_000_000


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
