"""Several runs of one shape in one vmapped step equal the same runs stepped one by one."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import tiny_model
from routing_laws import train as train_lib


@pytest.mark.parametrize("router,experts", [("dense", 1), ("sbase", 4)])
def test_vmapped_runs_equal_runs_one_by_one(router, experts, tiny_data, tiny_train):
    cfg = tiny_model(router, experts)
    cfgs = [tiny_train.replace(seed=0, tokens=16 * 16 * 6),
            tiny_train.replace(seed=3, tokens=16 * 16 * 9, learning_rate=3e-3, weight_decay=0.0, clip_norm=0.5)]
    plans = [train_lib.plan_run(cfg, t, tiny_data) for t in cfgs]
    fns = train_lib.step_functions(cfg, plans[0].dtype_name, plans[0].router_lr_mult)
    runs = []
    for t in cfgs:
        batch = plans[0].batch(tiny_data, 0)[:, :-1]
        params = fns.init(jax.random.fold_in(jax.random.PRNGKey(t.seed), 10**9), batch)
        runs.append([params, fns.opt_init(params)])
    alone = [list(r) for r in runs]
    together = [train_lib.stack_runs([r[0] for r in runs]), train_lib.stack_runs([r[1] for r in runs])]
    step_many = train_lib.batched_train_step(cfg, plans[0].dtype_name, plans[0].router_lr_mult)
    losses_alone, losses_together = [[], []], []
    for step in range(5):
        inputs = [p.inputs(jax.random.PRNGKey(t.seed), step) for p, t in zip(plans, cfgs)]
        batches = [p.batch(tiny_data, step) for p in plans]
        for r in range(2):
            alone[r][0], alone[r][1], m = fns.train_step(alone[r][0], alone[r][1], batches[r], inputs[r])
            losses_alone[r].append(float(m["lm_loss"]))
        together[0], together[1], m = step_many(together[0], together[1], np.stack(batches),
                                                train_lib.stack_runs(inputs))
        losses_together.append(np.asarray(m["lm_loss"]))
    np.testing.assert_allclose(np.stack(losses_together).T, np.asarray(losses_alone), rtol=1e-5)
    assert losses_alone[0] != losses_alone[1]  # two different runs
    for r in range(2):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(np.asarray(a)[r], b, rtol=1e-4, atol=1e-6),
                               together[0], alone[r][0])
