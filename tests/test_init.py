"""Initialisation: every weight's std is 1/sqrt(fan-in of its own contraction), whatever E and H.

Haiku's ``VarianceScaling`` counts every leading axis of a >2-D weight as fan-in unless told its
``fan_in_axes``; with that rule an expert weight ``w_in [E, D, F]`` would be sqrt(E) too small and
``w_qkv (D, 3, H, K)`` sqrt(3 H) too small. These tests state each parameter's intended std from the
model's dimensions (not from the tensor's shape), so they fail on that rule.
"""

from __future__ import annotations

import math

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from routing_laws import model, moe
from routing_laws.config import ModelConfig, RouterConfig

TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]
TOL = 0.10


def _cfg(kind: str, E: int, H: int) -> ModelConfig:
    router = RouterConfig(kind=kind, n_experts=E, routing_frequency=1.0 if kind != "dense" else 0.5)
    return ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=H, head_dim=128 // H, seq_len=16,
                       router=router)


def intended_std(name: str, cfg: ModelConfig) -> float | None:
    """std each parameter should have at init, from the model's dimensions; None: a constant (checked apart)."""
    D, F, HK = cfg.d_model, cfg.d_ff, cfg.n_heads * cfg.head_dim
    table = {
        "embeddings": 0.02 * TRUNC_STD,  # hk.initializers.TruncatedNormal(0.02) does not rescale for truncation
        "pos_embed": 0.02 * TRUNC_STD,
        "w_qkv": 1 / math.sqrt(D),  # q, k and v each contract over D
        "w_o": 1 / math.sqrt(HK),  # the output projection contracts over heads x head size
        "w_in": 1 / math.sqrt(D),  # dense and every expert: D -> F
        "w_out": 1 / math.sqrt(F),  # F -> D
        "w_router": math.sqrt(0.1 / D),  # small router init (scale 0.1)
    }
    return table.get(name)


def _params(cfg: ModelConfig):
    tokens = jnp.zeros((2, cfg.seq_len), jnp.int32)
    # jitted: one compile is ~3x faster than haiku's op-by-op init at E = 64 (same values)
    return jax.jit(lambda key, x: model.build(cfg).init(key, x, is_training=False))(jax.random.PRNGKey(0), tokens)


# every router and E at H = 2, and H = 1 and 4 for dense and for the largest E (H moves only the
# attention weights, E only the experts: this covers both axes without the full product)
CASES = [(k, E, 2) for k, E in [("dense", 1), ("sbase", 1), ("sbase", 4), ("sbase", 64), ("hash", 64), ("rlr", 4)]]
CASES += [("dense", 1, 1), ("dense", 1, 4), ("sbase", 64, 1), ("sbase", 64, 4)]


@pytest.mark.parametrize("kind,E,H", CASES)
def test_every_parameter_std_matches_its_contraction(kind, E, H):
    cfg = _cfg(kind, E, H)
    flat = jax.tree_util.tree_flatten_with_path(_params(cfg))[0]
    checked, wrong = 0, []
    for path, leaf in flat:
        name = path[-1].key
        x = np.asarray(leaf, np.float64)
        if name in ("scale", "offset", "w_value", "b_value"):  # LayerNorm 1 / 0, RL-R value head 0
            want = 1.0 if name == "scale" else 0.0
            assert np.all(x == want), f"{jax.tree_util.keystr(path)} should be all {want}"
            continue
        want = intended_std(name, cfg)
        assert want is not None, f"no intended std stated for {jax.tree_util.keystr(path)}: add it to intended_std"
        if x.ndim == 3 and name in ("w_in", "w_out"):  # each expert's matrix on its own, not pooled over E
            got, n = [float(np.std(x[e])) for e in range(x.shape[0])], x[0].size
        else:
            got, n = [float(np.std(x))], x.size
        tol = TOL + 3 / math.sqrt(2 * n)  # plus 3 sigma of a std estimated from n samples (small router weights)
        for g in got:
            if abs(g / want - 1) > tol:
                wrong.append(f"{jax.tree_util.keystr(path)} {tuple(x.shape)}: std {g:.4f}, intended {want:.4f} "
                             f"(ratio {g / want:.3f})")
        checked += 1
    assert not wrong, "weights off their intended std:\n" + "\n".join(wrong[:20])
    assert checked >= 4 * cfg.n_layers  # every attention and FFN weight was looked at


def test_routed_ffn_output_matches_dense_at_init():
    """On the gate = 1 path (HASH, capacity = all tokens) a routed FFN's output std is a dense FFN's."""
    D, T = 128, 4096
    x_BTD = jax.random.normal(jax.random.PRNGKey(1), (1, T, D))
    ids_BT = jnp.arange(T, dtype=jnp.int32)[None] % 256

    def dense(x):
        return moe.DenseFFN(4 * D)(x)

    def routed(E):
        cfg = ModelConfig(vocab_size=256, d_model=D, n_layers=2, n_heads=2, head_dim=64, seq_len=T,
                          router=RouterConfig(kind="hash", n_experts=E, capacity_factor=float(E)))

        def f(x, ids):
            y, aux = moe.RoutedFFN(cfg)(x, ids, is_training=True)
            return y, aux.metrics["dropped_frac"]
        return f

    d = hk.without_apply_rng(hk.transform(dense))
    y_dense = d.apply(d.init(jax.random.PRNGKey(2), x_BTD), x_BTD)
    std_dense = float(jnp.std(y_dense))
    for E in (1, 4, 64):
        r = hk.without_apply_rng(hk.transform(routed(E)))
        y, dropped = r.apply(r.init(jax.random.PRNGKey(3), x_BTD, ids_BT), x_BTD, ids_BT)
        assert float(dropped) == 0.0
        ratio = float(jnp.std(y)) / std_dense
        assert abs(ratio - 1) < TOL, f"E={E}: routed output std / dense output std = {ratio:.3f}"
