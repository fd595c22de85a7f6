import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model
from routing_laws import model as model_lib
from routing_laws.config import RouterConfig, model_config


def _init(cfg, shapes_only=False):
    """Parameters of ``cfg`` (only their shapes with ``shapes_only``: counting needs no compute)."""
    net = model_lib.build(cfg)
    x = jnp.zeros((2, cfg.seq_len), jnp.int32)
    if shapes_only:
        return net, jax.eval_shape(lambda r, t: net.init(r, t, is_training=True), jax.random.PRNGKey(0), x)
    return net, jax.jit(lambda r, t: net.init(r, t, is_training=True))(jax.random.PRNGKey(0), x)


def _split_counts(params):
    emb = sum(v.size for m, d in params.items() for k, v in d.items() if m.endswith("embed") or k == "pos_embed")
    total = sum(v.size for d in params.values() for v in d.values())
    return total, total - emb


@pytest.mark.parametrize("router,experts,R,K", [
    ("dense", 1, 0.5, 1), ("sbase", 8, 0.5, 1), ("sbase", 4, 1.0, 2), ("rlr", 2, 0.5, 1), ("hash", 8, 0.5, 1),
    ("sbase", 1, 0.5, 1),
])
def test_parameter_accounting_matches_tree(router, experts, R, K):
    cfg = tiny_model(router, experts, routing_frequency=R, top_k=K, n_layers=4)
    _, params = _init(cfg, shapes_only=True)
    total, non_emb = _split_counts(params)
    acct = model_lib.count_params(cfg)
    assert acct.P == total
    assert acct.P_non_embedding == non_emb
    dense_cfg = tiny_model("dense", 1, n_layers=4)
    _, dparams = _init(dense_cfg, shapes_only=True)
    assert acct.N == _split_counts(dparams)[1] == model_lib.dense_params(cfg)
    assert acct.n_routed_layers == len(cfg.routed_layers)
    assert acct.B == pytest.approx(acct.P / acct.F)


def test_ladder_sizes_are_what_their_names_say():
    for name, target in [("100k", 1e5), ("200k", 2e5), ("400k", 4e5), ("800k", 8e5), ("1.6M", 1.6e6),
                         ("3M", 3e6), ("6M", 6e6), ("12M", 12e6), ("25M", 25e6)]:
        n = model_lib.dense_params(model_config(name))
        assert 0.75 * target < n < 1.3 * target, (name, n)


def test_flops_match_xla_cost_analysis():
    """F (our formula) against XLA's own count of the compiled forward pass (dense; within 15%)."""
    cfg = model_config("400k", vocab_size=512, seq_len=64)
    net, params = _init(cfg)
    x = jnp.zeros((1, cfg.seq_len), jnp.int32)
    f = jax.jit(lambda p, t: net.apply(p, None, t, is_training=False)[0])
    cost = f.lower(params, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_per_token = cost["flops"] / cfg.seq_len
    ours = model_lib.flops_per_token(cfg)
    assert abs(xla_per_token - ours) / ours < 0.15, (xla_per_token, ours)


def test_flops_count_active_experts_only():
    base = model_lib.flops_per_token(tiny_model("sbase", 8))
    more = model_lib.flops_per_token(tiny_model("sbase", 64))
    k2 = model_lib.flops_per_token(tiny_model("sbase", 8, top_k=2))
    D = 16
    assert more - base == 2 * D * (64 - 8)  # only the router grows with E
    assert k2 - base == 2 * 8 * D * D  # K=2 adds one FFN per routed layer


@pytest.mark.parametrize("router,experts", [("dense", 1), ("hash", 4), ("sbase", 4), ("rlr", 4)])
def test_forward_is_causal_and_shaped(router, experts):
    cfg = tiny_model(router, experts)
    net, params = _init(cfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, size=(2, cfg.seq_len))
    y = x.copy()
    y[:, -1] = (y[:, -1] + 1) % cfg.vocab_size
    apply = jax.jit(lambda p, t: net.apply(p, jax.random.PRNGKey(1), t, is_training=False))
    lx, aux = apply(params, jnp.asarray(x))
    ly, _ = apply(params, jnp.asarray(y))
    assert lx.shape == (2, cfg.seq_len, cfg.vocab_size) and lx.dtype == jnp.float32
    assert len(aux) == len(cfg.routed_layers)
    np.testing.assert_allclose(lx[:, :-1], ly[:, :-1], atol=1e-5)
    assert np.all(np.isfinite(lx))
