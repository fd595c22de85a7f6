"""bench: the layer benchmark runs, records provenance and sane ratios; the CLI writes JSON atomically."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from routing_laws import bench
from routing_laws.cli import main
from routing_laws.errors import ValidationError


def test_time_fn_is_a_median_after_warmup():
    calls = []

    def f(x):
        calls.append(x)
        return jnp.asarray(x)

    t = bench.time_fn(f, 1, repeats=3, warmup=2)
    assert len(calls) == 5 and t >= 0


@pytest.mark.parametrize("router", [pytest.param("sbase", marks=pytest.mark.slow), "hash"])
def test_layer_bench_rows(router):
    res = bench.layer_bench([2, 4], [16], tokens=32, capacity_factor=1.0, router=router, repeats=1,
                            max_param_bytes=2 * 4 * 16 * 64 * 4 * 3)  # E=4 fits exactly, nothing more
    assert res["provenance"]["backend"] and res["settings"]["router"] == router
    rows = res["rows"]
    assert [r["n_experts"] for r in rows] == [2, 4]
    for r in rows:
        assert r["capacity"] == -(-32 // r["n_experts"])
        assert r["vs_dense"] == pytest.approx(r["dense_ms"] / r["routed_ms"])
        assert 0.0 <= r["dropped_frac"] <= 1.0
        assert ("sinkhorn_ms" in r) == (router == "sbase")
    assert "| 16 | 4 |" in bench.format_table(res)


def test_layer_bench_skips_rows_over_the_memory_cap():
    res = bench.layer_bench([64], [16], tokens=8, repeats=1, max_param_bytes=1000)
    assert "skipped" in res["rows"][0] and "| skipped |" in bench.format_table(res)


def test_layer_bench_bad_input():
    with pytest.raises(ValidationError, match="router"):
        bench.layer_bench([2], [8], router="dense")
    with pytest.raises(ValidationError, match="capacity_factor"):
        bench.layer_bench([2], [8], capacity_factor=0)
    with pytest.raises(ValidationError, match="n_experts"):
        bench.layer_bench([0], [8], tokens=4, repeats=1)


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "layer", "--e", "2", "--d", "8", "--tokens", "16", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["rows"][0]["n_experts"] == 2 and "commit" in data["provenance"]
    assert "vs_dense" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # argparse refuses the number before any work
        main(["bench", "layer", "--e", "0", "--d", "8", "--out", str(out)])
    assert refused.value.code == 2


def test_train_bench_rows_and_ratios():
    res = bench.train_bench(["100k"], [4], ["dense", "sbase", "rlr", "hash"], batch_size=2, seq_len=16, vocab_size=64,
                            steps=2, repeats=1)
    rows = {r["router"]: r for r in res["rows"]}
    assert set(rows) == {"dense", "sbase", "rlr", "hash"} and rows["dense"]["n_experts"] == 1
    assert res["matmul_ceiling"]["gflops"] > 0 and res["provenance"]["backend"]
    for r in rows.values():
        assert r["tokens_per_s"] == pytest.approx(2 * 16 / (r["step_ms"] / 1e3))
        assert r["vs_dense"] == pytest.approx(r["tokens_per_s"] / rows["dense"]["tokens_per_s"])
        assert r["compile_s"] > 0 and r["gflops"] > 0 and np.isfinite(r["final_loss"])
        assert ("sinkhorn_share" in r) == (r["router"] == "sbase")
    assert "| 100k | sbase | 4 |" in bench.format_train_table(res)


@pytest.mark.parametrize("kw,field", [({"sizes": ["7B"]}, "size"), ({"experts": [0]}, "n_experts"),
                                      ({"routers_": ["moe"]}, "router"), ({"batch_size": 0}, "batch_size"),
                                      ({"steps": 0}, "steps"), ({"steps": 10 ** 6}, "steps"),
                                      ({"repeats": 0}, "repeats"), ({"experts": 16}, "experts")])
def test_train_bench_validates_before_any_work(monkeypatch, kw, field):
    def no_work(*a, **k):
        raise AssertionError("measured before validating")

    monkeypatch.setattr(bench, "matmul_ceiling", no_work)
    with pytest.raises(ValidationError, match=field):
        bench.train_bench(**kw)


def test_cli_bench_train_writes_json(tmp_path, capsys):
    out = tmp_path / "t.json"
    rc = main(["bench", "train", "--routers", "dense", "hash", "--e", "2", "--batch", "2", "--steps", "1",
               "--repeats", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["router"] for r in data["rows"]] == ["dense", "hash"] and "commit" in data["provenance"]
    assert "tokens/s" in capsys.readouterr().out
    assert main(["bench", "train", "--sizes", "nope", "--out", str(out)]) == 2


def test_train_table_reads_every_recorded_train_result(tmp_path):
    import json

    good = {"kind": "train", "matmul_ceiling": {"gflops": 100.0},
            "rows": [{"size": "100k", "router": "dense", "n_experts": 1, "tokens_per_s": 8000.0, "vs_dense": 1.0,
                      "gflops": 12.0},
                     {"size": "100k", "router": "sbase", "n_experts": 16, "tokens_per_s": 7000.0, "vs_dense": 0.875,
                      "gflops": 11.0, "sinkhorn_share": 0.02}]}
    (tmp_path / "train-cpu-20260101.json").write_text(json.dumps(good))
    (tmp_path / "train-cpu-broken.json").write_text("{not json")
    (tmp_path / "layer-cpu-sbase-20260101.json").write_text(json.dumps({"kind": "layer", "rows": []}))
    t = bench.train_table(tmp_path)
    assert [(r["router"], r["E"]) for r in t.rows] == [("dense", 1), ("sbase", 16)]
    assert t.rows[1]["Sinkhorn %"] == 2.0 and t.rows[0]["Sinkhorn %"] is None
    assert "0.88" in t.text() and "<table" in t._repr_html_()
    with pytest.raises(ValidationError, match="folder"):
        bench.train_table(tmp_path / "missing")


def test_train_table_reads_the_committed_results():
    assert bench.train_table().rows, "data/bench holds at least one bench train result"
