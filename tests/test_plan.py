"""The grid plan: shapes, parameters, tokens and estimated time, without training (except the one small
measured case), and the gpu grid sized to fit 8 minutes of one H200 by its own estimate."""

import os

import pytest

from routing_laws import cli, plan, sweep
from routing_laws.config import model_config
from routing_laws.errors import ValidationError


def test_gpu_grid_fits_the_budget_by_its_own_estimate():
    rows = plan.plan_grid(sweep.get_grid("gpu"))
    s = plan.plan_summary(rows)
    assert s["runs"] >= 40 and s["E_max"] >= 256 and s["tokens_min"] >= 20_000_000
    assert 1e6 <= s["N_min"] and s["N_max"] <= 25e6
    assert s["total_s"] <= plan.GPU_BUDGET_S
    assert [r.run_id for r in rows] == [r.run_id for r in sweep.get_grid("gpu").runs()]
    assert all(r.compile_s > 0 and r.train_s > 0 for r in rows)


def test_estimates_follow_the_anchors():
    anchors = plan.load_anchors()
    xs = [r["non_embedding_params"] for r in anchors["rows"]]
    ys = [r["tokens_per_s"]["1"] for r in anchors["rows"]]
    for x, y in zip(xs, ys):  # the interpolation goes through every anchor
        assert plan._interp_loglog(x, xs, ys) == pytest.approx(y)
    assert plan._interp_loglog(xs[0] / 2, xs, ys) > ys[0]  # smaller models are faster, also past the ends
    assert plan._interp_loglog(xs[-1] * 2, xs, ys) < ys[-1]
    factors = [plan.routed_factor(e, anchors) for e in (1, 4, 16, 64, 128, 256)]
    assert factors[0] == 1.0 and all(a > b for a, b in zip(factors, factors[1:]))
    r16 = sum(r["tokens_per_s"]["16"] / r["tokens_per_s"]["1"] for r in anchors["rows"]) / 3
    assert plan.routed_factor(16, anchors) == pytest.approx(r16)


def test_top_k_and_more_routed_layers_cost_more():
    grid = sweep.Grid("p", ("3M",), (64,), ("sbase",), tokens=10**6, batch_size=8, seq_len=64,
                      variants=(("3M", "sbase", 64, 2, 0.5), ("3M", "sbase", 64, 1, 1.0)))
    dense, k1, k2, r1 = plan.plan_grid(grid)
    assert dense.train_s < k1.train_s < k2.train_s and k1.train_s < r1.train_s
    assert k1.N == dense.N and k1.P_non_embedding > dense.P_non_embedding


def test_plan_command_prints_the_total_and_its_source(capsys):
    assert cli.main(["sweep", "--grid", "gpu", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "estimate source: no accelerator" in out and "gpu-anchors.md" in out
    assert out.count("-s0 ") == len(sweep.get_grid("gpu").runs())
    assert "total:" in out.splitlines()[-1] and "min" in out.splitlines()[-1]


def test_measured_rates_are_used_when_given(tiny_data):
    grid = sweep.Grid("m", ("100k",), (1, 4), ("hash",), tokens=2 * 16 * 4, batch_size=2, seq_len=16)
    measured = plan.measure_sizes(grid, tiny_data, steps=3)
    tps, compile_s = measured["100k"]
    assert tps > 0 and compile_s >= 0
    rows = plan.plan_grid(grid, vocab_size=tiny_data.vocab_size, measured=measured)
    assert rows[0].tokens_per_s == tps and rows[0].compile_s == compile_s
    assert rows[1].tokens_per_s < tps  # routed: slowed by the anchors' ratio


def test_step_memory_refuses_impossible_batches():
    cfg = model_config("100k")
    assert plan.step_memory_bytes(cfg, 64) > plan.step_memory_bytes(cfg, 32) > 0
    with pytest.raises(ValidationError, match="--batch-size"):
        plan.check_step_memory("--batch-size", cfg, 10**9)
    plan.check_step_memory("--batch-size", cfg, 32)
    with pytest.raises(ValidationError, match="grid"):
        plan.plan_grid("gpu")


def test_cpu_plan_uses_the_routed_ratio_measured_here(tiny_data):
    """measure_cpu times dense per size and every (router, E) at one size; plan_grid applies that ratio,
    per routed layer, at every size, instead of the H200 anchors' ratio."""
    grid = sweep.Grid("c", ("100k",), (1, 4), ("hash",), tokens=2 * 16 * 4, batch_size=2, seq_len=16,
                      variants=(("100k", "hash", 4, 1, 1.0),))
    dense, rates = plan.measure_cpu(grid, tiny_data, steps=3)
    assert set(dense) == {"100k"} and set(rates.ratios) == {("hash", 4)} and rates.n_routed_layers == 1
    assert rates.ratios[("hash", 4)] > 0
    fake = plan.RoutedRates("100k", 1, {("hash", 4): 0.5})
    d, r05, r1 = plan.plan_grid(grid, vocab_size=tiny_data.vocab_size, measured=dense, routed_rates=fake)
    assert r05.tokens_per_s == pytest.approx(0.5 * d.tokens_per_s)
    assert r1.tokens_per_s == pytest.approx(0.25 * d.tokens_per_s)  # R = 1: two routed layers of 2
    with pytest.raises(ValidationError, match="routed_rates"):
        plan.plan_grid(grid, routed_rates={("hash", 4): 0.5})
    with pytest.raises(ValidationError, match="ref_size"):
        plan.measure_cpu(grid, tiny_data, ref_size="3M")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this OS cannot pin a process")
def test_one_core_pins_the_measurement_and_restores_the_cores():
    before = os.sched_getaffinity(0)
    with plan.one_core() as core:
        inside = os.sched_getaffinity(0)
    assert inside == {core} and core in before
    assert os.sched_getaffinity(0) == before
    with pytest.raises(RuntimeError):  # restored even when the block fails
        with plan.one_core():
            raise RuntimeError("boom")
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this OS cannot pin a process")
def test_cpu_plan_measures_pinned_to_one_core(tiny_data, monkeypatch):
    grid = sweep.Grid("c", ("100k",), (1, 4), ("hash",), tokens=2 * 16 * 4, batch_size=2, seq_len=16)
    seen = []

    def fake_measure(g, dataset, *, steps):
        seen.append(os.sched_getaffinity(0))
        return {"100k": (1000.0, 1.0)}, plan.RoutedRates("100k", 1, {("hash", 4): 0.5})

    monkeypatch.setattr(plan, "measure_cpu", fake_measure)
    before = os.sched_getaffinity(0)
    rows, source = plan.cpu_plan(grid, tiny_data)
    assert len(seen) == 1 and len(seen[0]) == 1 and os.sched_getaffinity(0) == before
    assert "pinned to core" in source or len(before) == 1
    assert len(rows) == 2
