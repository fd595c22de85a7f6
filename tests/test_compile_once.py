"""Runs of one shape share one compiled training step: seeds, learning rates, schedules and step counts are
data, never constants baked into the traced function."""

from __future__ import annotations

import collections

import jax
import pytest

from conftest import tiny_model
from routing_laws import train as train_lib


@pytest.fixture
def backend_compiles():
    """Counter of XLA backend compilations by function name while the test runs."""
    counts: collections.Counter = collections.Counter()

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            counts[kw.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield counts
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("router,experts", [("dense", 1), ("rlr", 4)])
def test_two_runs_of_one_shape_compile_the_train_step_once(router, experts, tiny_data, tiny_train, backend_compiles):
    cfg = tiny_model(router, experts, d_model=24, head_dim=12)  # a shape no other test compiles
    train_lib.step_functions.cache_clear()
    first = train_lib.train(cfg, tiny_train.replace(tokens=16 * 16 * 6, eval_every=3), tiny_data, progress=False)
    after_first = dict(backend_compiles)
    second = train_lib.train(cfg, tiny_train.replace(tokens=16 * 16 * 10, seed=5, learning_rate=3e-3, warmup_frac=0.3,
                                                     final_lr_frac=0.5, weight_decay=0.01, clip_norm=0.5, eval_every=5),
                             tiny_data, progress=False)
    assert first["status"] == second["status"] == "finished"
    assert first["final_val_loss"] != second["final_val_loss"]  # really different runs
    fns = train_lib.step_functions(cfg, "float32", train_lib.plan_run(cfg, tiny_train, tiny_data).router_lr_mult)
    assert fns.train_step._cache_size() == 1 and fns.eval_step._cache_size() == 1 and fns.init._cache_size() == 1
    steps = {name: n for name, n in backend_compiles.items() if "train_step" in name}
    assert sum(steps.values()) == 1, dict(backend_compiles)
    assert {k: v for k, v in backend_compiles.items() if "step" in k or "lambda" in k} == \
        {k: v for k, v in after_first.items() if "step" in k or "lambda" in k}, (after_first, dict(backend_compiles))
    print("backend compiles over both runs:", dict(backend_compiles))
