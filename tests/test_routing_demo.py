import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from routing_laws import model, moe, routers
from routing_laws import routing_demo as rd
from routing_laws.config import ModelConfig, RouterConfig, model_config
from routing_laws.errors import ValidationError


def _cfg(kind="sbase", E=4):
    return ModelConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, head_dim=8, seq_len=16,
        router=RouterConfig(kind=kind, n_experts=E))


def test_routed_inputs_are_what_the_layer_routes():
    cfg = _cfg()
    tokens = np.random.default_rng(0).integers(0, 64, (3, 16))
    out = rd.routed_inputs(cfg, tokens, seed=1)
    assert out["h_ND"].shape == (48, 16) and out["logits_NE"].shape == (48, 4)
    assert out["layer"] in cfg.routed_layers
    # LayerNorm at init (scale 1, offset 0): every row has mean 0 and variance ~1
    np.testing.assert_allclose(np.mean(out["h_ND"], axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.var(out["h_ND"], axis=1), 1, atol=1e-2)
    # the LM itself (evaluation: S-BASE routes by argmax of the logits) reports the same expert loads
    net = model.build(cfg)
    _, auxes = jax.jit(net.apply)(out["params"], jax.random.PRNGKey(1), jnp.asarray(tokens, jnp.int32))
    load = np.bincount(np.argmax(np.asarray(out["logits_NE"]), 1), minlength=4) / 48
    np.testing.assert_allclose(np.asarray(auxes[0].metrics["load_E"]), load, atol=1e-6)
    np.testing.assert_array_equal(out["token_ids_N"], tokens.reshape(-1))


def test_routed_inputs_validates():
    with pytest.raises(ValidationError):
        rd.routed_inputs(_cfg(), np.zeros((2, 17), np.int32))
    with pytest.raises(ValidationError):
        rd.routed_inputs(model_config("100k", router=RouterConfig()), np.zeros((2, 4), np.int32))
    with pytest.raises(ValidationError):
        rd.routed_inputs(_cfg(), np.zeros((2, 4), np.float32))


def test_route_all_matches_the_routers():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(64, 4)).astype(np.float32)
    ids = rng.integers(0, 50, 64)
    got = rd.route_all(logits, ids, vocab_size=50, seed=2)
    np.testing.assert_array_equal(got["argmax"], np.argmax(logits, 1))
    cfg = RouterConfig(kind="sbase", n_experts=4)
    np.testing.assert_array_equal(got["sbase"], np.argmax(np.asarray(
        routers.sinkhorn_log(logits, cfg.sinkhorn_iters, cfg.sinkhorn_temperature)), 1))
    np.testing.assert_array_equal(got["hash"], routers.hash_table(50, 4, 2)[ids])
    assert got["rlr"].shape == (64,) and got["rlr"].min() >= 0 and got["rlr"].max() < 4
    rows = rd.load_rows(got, 4)
    assert len(rows) == 16 and abs(sum(r["share"] for r in rows if r["router"] == "HASH") - 1) < 1e-9
    with pytest.raises(ValidationError):
        rd.route_all(logits, ids[:10], vocab_size=50)
    with pytest.raises(ValidationError):
        rd.route_all(logits, ids, vocab_size=10)


def test_queue_positions_and_dropping_match_references():
    rng = np.random.default_rng(4)
    for E in (1, 3, 8):
        e = rng.integers(0, E, 97)
        ref = np.asarray(moe.slot_positions(jnp.asarray(e, jnp.int32)[:, None], E))[:, 0]
        np.testing.assert_array_equal(rd.queue_positions(e, E), ref)
        for cf in (0.5, 1.25, 2.0):
            C = moe.capacity(97, E, 1, cf)
            seen, dropped = {}, 0
            for x in e:  # obvious loop: earlier tokens take the slots
                seen[x] = seen.get(x, 0) + 1
                dropped += seen[x] > C
            assert rd.dropped_fraction(e, E, cf) == pytest.approx(dropped / 97)
    with pytest.raises(ValidationError):
        rd.queue_positions([0, 5], 3)
    with pytest.raises(ValidationError):
        rd.dropped_fraction([0, 1], 2, 0.0)


def test_sinkhorn_trace_ends_at_the_library_plan():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(200, 5)).astype(np.float32) * np.array([1, 2, 0.5, 3, 1], np.float32)
    n, tau = 40, 0.1
    tr = rd.sinkhorn_trace(logits, n, tau)
    assert tr["v_IE"].shape == (n + 1, 5) and tr["load_IE"].shape == (n + 1, 5)
    np.testing.assert_array_equal(tr["load_IE"].sum(1), 200)
    np.testing.assert_array_equal(tr["load_IE"][0], np.bincount(np.argmax(logits, 1), minlength=5))
    lib = np.asarray(routers.sinkhorn_log(logits, n, tau))
    z = np.asarray(routers.standardize_logits(logits))
    mine = (z + tr["v_IE"][-1]) / tau
    # equal up to the per-row constant u / tau
    np.testing.assert_allclose(lib - lib.max(1, keepdims=True), mine - mine.max(1, keepdims=True), atol=2e-3)
    np.testing.assert_array_equal(tr["load_IE"][-1], np.bincount(np.argmax(lib, 1), minlength=5))
    np.testing.assert_allclose(tr["colsum_IE"].sum(1), 200, rtol=1e-4)  # rows sum to 1
    assert np.abs(tr["colsum_IE"][-1] / tr["target"] - 1).max() < np.abs(tr["colsum_IE"][0] / tr["target"] - 1).max()
    lines, bars = rd.sinkhorn_rows(tr)
    assert len(lines) == 3 * (n + 1) and len(bars) == 5 * (n + 1)
    assert rd.sinkhorn_trace(logits, 0, tau)["v_IE"].shape == (1, 5)
    with pytest.raises(ValidationError):
        rd.sinkhorn_trace(logits, 3, 0.0)


def test_policy_rows_and_hash_examples():
    logits = np.array([[0.0, 0.0], [10.0, -10.0]], np.float32)
    ent, rows = rd.policy_rows(logits, n_tokens=5)
    np.testing.assert_allclose(ent, [np.log(2), 0.0], atol=1e-5)
    assert len(rows) == 4 and rows[0]["probability"] == pytest.approx(0.5)
    table = np.array([1, 0, 1, 0])
    ex = rd.hash_examples([2, 2, 3, 0, 1], table, lambda ids: f"<{ids[0]}>", n=3)
    assert ex == [{"id": 2, "text": "<2>", "expert": 1}, {"id": 3, "text": "<3>", "expert": 0},
                  {"id": 0, "text": "<0>", "expert": 1}]


def test_bench_rows(tmp_path):
    prov = {"backend": "gpu", "device": "H100", "jax": "0.10.2", "date_utc": "2026-11-28T10:58:17+00:00", "machine": "m"}
    good = {"kind": "layer", "provenance": prov, "rows": [
        {"d_model": 64, "n_experts": 8, "vs_dense": 0.5}, {"d_model": 64, "n_experts": 64, "skipped": "too big"}]}
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text("{not json")
    (tmp_path / "c.json").write_text(json.dumps({"kind": "other"}))
    rows = rd.bench_rows(tmp_path)
    assert len(rows) == 1
    assert rows[0]["backend"] == "gpu" and rows[0]["date"] == "2026-11-28" and rows[0]["file"] == "a.json"
    assert rd.bench_rows(tmp_path / "missing") == []
