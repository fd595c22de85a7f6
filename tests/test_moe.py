"""moe: the fast routed FFN against the per-expert loop reference, capacity, metrics, Haiku modules."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moe_reference import routed_ffn_reference
from routing_laws import mesh, moe, routers
from routing_laws.config import ModelConfig, RouterConfig
from routing_laws.errors import ValidationError

D, F = 8, 16


def _inputs(T, E, K, seed, skew=0.0):
    """Random tokens, weights, distinct top-K experts (skew>0 piles tokens onto expert 0) and gates."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(T, D)), jnp.float32)
    w_in = jnp.asarray(rng.normal(size=(E, D, F)) / np.sqrt(D), jnp.float32)
    w_out = jnp.asarray(rng.normal(size=(E, F, D)) / np.sqrt(F), jnp.float32)
    scores = rng.normal(size=(T, E))
    scores[:, 0] += skew
    idx = np.argsort(-scores, axis=1)[:, :K].astype(np.int32)
    gate = jnp.asarray(rng.uniform(0.1, 1.0, size=(T, K)), jnp.float32)
    return x, w_in, w_out, jnp.asarray(idx), gate


CASES = [pytest.param(E, K, cf, skew, marks=[pytest.mark.slow] if cf == 0.5 and E >= 8 else [])
         for E in (1, 2, 8, 64) for K in (1, 2) if K <= E
         for cf, skew in ((4.0, 0.0), (1.0, 3.0), (0.5, 0.0))]  # cf 0.5 at E >= 8 duplicates the skewed drop case


@pytest.mark.parametrize("E,K,cf,skew", CASES)
def test_fast_path_matches_reference_outputs_and_gradients(E, K, cf, skew):
    T = 48
    x, w_in, w_out, idx, gate = _inputs(T, E, K, seed=E * 10 + K, skew=skew)
    C = moe.capacity(T, E, K, cf)
    idx_np = np.asarray(idx)  # the reference needs concrete indices: close over them

    def fast(x, a, b, g):
        return moe.routed_ffn_apply(x, a, b, jnp.asarray(idx_np), g, C)

    def ref(x, a, b, g):
        return routed_ffn_reference(x, a, b, idx_np, g, C)

    y, kept = jax.jit(fast)(x, w_in, w_out, gate)
    y_ref, kept_ref = jax.jit(ref)(x, w_in, w_out, gate)
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(kept_ref))
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    if cf < 1.0 or (skew > 0 and K < E):
        assert not np.asarray(kept).all(), "this case is meant to drop tokens"
    counts = np.bincount(idx_np.reshape(-1), minlength=E)
    assert int(np.asarray(kept).sum()) == int(np.minimum(counts, C).sum())

    probe = jnp.asarray(np.random.default_rng(1).normal(size=(T, D)), jnp.float32)

    def loss(fn):
        return jax.jit(jax.grad(lambda x, a, b, g: jnp.sum(fn(x, a, b, g)[0] * probe), argnums=(0, 1, 2, 3)))

    g_fast = loss(fast)(x, w_in, w_out, gate)
    g_ref = loss(ref)(x, w_in, w_out, gate)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

def test_first_choices_fill_capacity_before_second_choices():
    # 4 tokens, E=2, K=2: every token picks both experts; expert 1 is first choice of tokens 2,3
    idx = jnp.asarray([[0, 1], [0, 1], [1, 0], [1, 0]], jnp.int32)
    pos = np.asarray(moe.slot_positions(idx, 2))
    # expert 0 queue: first choices t0, t1, then second choices t2, t3
    np.testing.assert_array_equal(pos, [[0, 2], [1, 3], [0, 2], [1, 3]])


def test_capacity_rounding_and_errors():
    assert moe.capacity(100, 8, 1, 1.25) == 16  # ceil(15.625)
    assert moe.capacity(64, 8, 1, 2.0) == 16  # exact products are not bumped up
    assert moe.capacity(64, 8, 2, 1.0) == 16
    assert moe.capacity(10, 1, 1, 2.0) == 10  # capped at the token count
    assert moe.capacity(3, 64, 1, 0.01) == 1
    with pytest.raises(ValidationError, match="capacity_factor"):
        moe.capacity(10, 4, 1, 0.0)
    with pytest.raises(ValidationError, match="top_k"):
        moe.capacity(10, 2, 3, 1.0)
    with pytest.raises(ValidationError, match="n_experts"):
        moe.capacity(10, 0, 1, 1.0)


def test_metrics_count_load_drops_and_kept_gates():
    idx = jnp.asarray([[0], [0], [0], [1]], jnp.int32)
    kept = jnp.asarray([[True], [True], [False], [True]])
    gate = jnp.asarray([[0.2], [0.4], [0.9], [0.6]])
    m = moe.routing_metrics(idx, kept, gate, 4, {"router_entropy": 0.5, "argmax_agreement": 0.75})
    np.testing.assert_allclose(np.asarray(m["load_E"]), [0.75, 0.25, 0, 0])
    assert float(m["dropped_frac"]) == pytest.approx(0.25)
    assert float(m["max_over_mean_load"]) == pytest.approx(3.0)
    assert float(m["mean_gate"]) == pytest.approx(0.4)  # the dropped slot's 0.9 is not counted
    assert float(m["router_entropy"]) == pytest.approx(0.5) and float(m["argmax_agreement"]) == 0.75
    with pytest.raises(ValidationError, match="argmax_agreement"):
        moe.routing_metrics(idx, kept, gate, 4, {"router_entropy": 0.5})


def _model_cfg(kind, E=4, K=1, cf=2.0):
    return ModelConfig(vocab_size=50, d_model=D, n_layers=2, n_heads=1, head_dim=8, seq_len=16,
                       router=RouterConfig(kind=kind, n_experts=E, top_k=K, capacity_factor=cf))


@pytest.mark.parametrize("kind,K", [("sbase", 1), ("sbase", 2), ("rlr", 1), ("hash", 1)])
def test_routed_ffn_module_runs_and_matches_reference(kind, K):
    cfg = _model_cfg(kind, K=K)
    f = hk.transform(lambda x, ids, tr: moe.RoutedFFN(cfg)(x, ids, is_training=tr))
    rng = jax.random.PRNGKey(0)
    x = jax.random.normal(rng, (2, 16, D))
    ids = jax.random.randint(rng, (2, 16), 0, 50)
    params = f.init(rng, x, ids, True)
    shapes = {k: {n: v.shape for n, v in p.items()} for k, p in params.items()}
    (layer,) = shapes.values()
    assert layer["w_in"] == (4, D, 4 * D) and layer["w_out"] == (4, 4 * D, D)
    assert ("w_router" in layer) == (kind != "hash")
    for training in (True, False):
        y, aux = jax.jit(f.apply, static_argnums=4)(params, rng, x, ids, training)
        assert y.shape == x.shape and aux.logprob_BT.shape == (2, 16)
        m = aux.metrics
        assert float(jnp.sum(m["load_E"])) == pytest.approx(1.0)
        assert 0.0 <= float(m["dropped_frac"]) <= 1.0
        assert set(m) == {"load_E", "max_over_mean_load", "dropped_frac", "mean_gate", "router_entropy",
                          "argmax_agreement"}
        assert all(np.ndim(v) == 0 for k, v in m.items() if k != "load_E")
        if kind in ("rlr", "hash"):
            assert float(m["mean_gate"]) == 1.0
        if not training or kind == "hash":  # evaluation routes by argmax (HASH: by its table, always)
            assert float(m["argmax_agreement"]) == 1.0
    if kind == "hash":  # deterministic routing: the module equals the reference loop on its table
        table = routers.hash_table(50, 4, 0)
        idx = jnp.asarray(table[np.asarray(ids).reshape(-1)])[:, None]
        p = params["routed_ffn"]
        y_ref, _ = routed_ffn_reference(x.reshape(-1, D), p["w_in"], p["w_out"], idx,
                                            jnp.ones_like(idx, jnp.float32), 32)  # evaluation is dropless
        np.testing.assert_allclose(np.asarray(y).reshape(-1, D), np.asarray(y_ref), rtol=1e-5, atol=1e-5)


def test_dropless_capacities_are_doubling_buckets_up_to_all_tokens():
    assert moe.dropless_capacities(4096, 64, 1) == (128, 256, 512, 1024, 2048, 4096)
    assert moe.dropless_capacities(48, 2, 2) == (48,)
    assert moe.dropless_capacities(50, 8, 1) == (13, 25, 50)


@pytest.mark.parametrize("E,K,skew", [(8, 1, 0.0), (8, 1, 2.0), (8, 2, 50.0), (64, 1, 0.0), (1, 1, 0.0)])
def test_dropless_path_matches_the_all_tokens_buffer_and_the_reference(E, K, skew):
    """Balanced, skewed and all-on-one-expert routings: the bucketed dropless FFN keeps every slot and equals
    C = T (the obvious dropless buffer) and the reference loop (evaluation only: no gradients taken)."""
    T = 96
    x, w_in, w_out, idx, gate = _inputs(T, E, K, seed=E + K, skew=skew)
    idx_np = np.asarray(idx)
    fast = jax.jit(lambda x, a, b, g: moe.dropless_ffn_apply(x, a, b, jnp.asarray(idx_np), g))
    full = jax.jit(lambda x, a, b, g: moe.routed_ffn_apply(x, a, b, jnp.asarray(idx_np), g, T))
    y, kept = fast(x, w_in, w_out, gate)
    assert np.asarray(kept).all()
    np.testing.assert_allclose(y, full(x, w_in, w_out, gate)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, routed_ffn_reference(x, w_in, w_out, idx_np, gate, T)[0], rtol=1e-5, atol=1e-5)


def test_evaluation_is_dropless_unless_an_eval_capacity_is_set():
    """All tokens of one id go to one hash expert: training (cf 1) drops, default evaluation does not."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, D))
    ids = jnp.full((2, 16), 7, jnp.int32)
    drops = {}
    for eval_cf in (None, 1.0):
        cfg = ModelConfig(vocab_size=50, d_model=D, n_layers=2, n_heads=1, head_dim=8, seq_len=16,
                          router=RouterConfig(kind="hash", n_experts=4, capacity_factor=1.0,
                                              eval_capacity_factor=eval_cf))
        f = hk.transform(lambda x, ids, tr: moe.RoutedFFN(cfg)(x, ids, is_training=tr))
        params = f.init(jax.random.PRNGKey(0), x, ids, True)
        for training in (True, False):
            _, aux = f.apply(params, None, x, ids, training)
            drops[eval_cf, training] = float(aux.metrics["dropped_frac"])
    assert drops[None, True] == drops[1.0, True] == drops[1.0, False] == pytest.approx(0.75)
    assert drops[None, False] == 0.0
    with pytest.raises(ValidationError, match="eval_capacity_factor"):
        RouterConfig(kind="hash", n_experts=4, eval_capacity_factor=0.0)


def test_dense_ffn_shapes_and_value():
    f = hk.transform(lambda x: moe.DenseFFN()(x))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 3, D))
    params = f.init(jax.random.PRNGKey(0), x)
    p = params["dense_ffn"]
    assert p["w_in"].shape == (D, 4 * D) and p["w_out"].shape == (4 * D, D) and len(p) == 2
    y = f.apply(params, None, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.nn.gelu(x @ p["w_in"]) @ p["w_out"]), rtol=1e-5, atol=1e-6)


def test_routed_ffn_rejects_dense_and_rlr_without_rng():
    with pytest.raises(ValidationError, match="router.kind"):
        hk.transform(lambda x: moe.RoutedFFN(ModelConfig(d_model=D))(x, None, is_training=True)).init(
            jax.random.PRNGKey(0), jnp.ones((1, 4, D)))
    cfg = _model_cfg("rlr")
    f = hk.transform(lambda x, ids: moe.RoutedFFN(cfg)(x, ids, is_training=True))
    x = jnp.ones((1, 4, D))
    params = f.init(jax.random.PRNGKey(0), x, jnp.zeros((1, 4), jnp.int32))
    with pytest.raises(ValidationError, match="rng"):
        f.apply(params, None, x, jnp.zeros((1, 4), jnp.int32))


@pytest.mark.parametrize("G,K,cf,skew", [(1, 1, 1.0, 3.0), (2, 1, 1.0, 3.0), (4, 2, 1.0, 0.0), (6, 1, 0.5, 2.0)])
def test_grouped_dispatch_matches_reference_per_group(G, K, cf, skew):
    """dispatch_groups = G: each group of T/G tokens has its own queues and capacity, as if the slow
    reference ran on each group alone; outputs and gradients agree, and G = 1 is the global queue."""
    T, E = 48, 8
    x, w_in, w_out, idx, gate = _inputs(T, E, K, seed=G * 7 + K, skew=skew)
    Tg = T // G
    C = moe.capacity(Tg, E, K, cf)
    idx_np = np.asarray(idx)

    def fast(x, a, b, g):
        return moe.grouped_ffn_apply(x, a, b, jnp.asarray(idx_np), g, C, G)

    def ref(x, a, b, g):
        parts = [routed_ffn_reference(x[i * Tg:(i + 1) * Tg], a, b, idx_np[i * Tg:(i + 1) * Tg],
                                          g[i * Tg:(i + 1) * Tg], C) for i in range(G)]
        return jnp.concatenate([p[0] for p in parts]), jnp.concatenate([p[1] for p in parts])

    y, kept = jax.jit(fast)(x, w_in, w_out, gate)
    y_ref, kept_ref = ref(x, w_in, w_out, gate)
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(kept_ref))
    assert not np.asarray(kept).all(), "each case is meant to drop tokens"
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    probe = jnp.asarray(np.random.default_rng(2).normal(size=(T, D)), jnp.float32)
    grads = [jax.grad(lambda *a: jnp.sum(fn(*a)[0] * probe), argnums=(0, 1, 2, 3))(x, w_in, w_out, gate)
             for fn in (jax.jit(fast), ref)]
    for g_fast, g_ref in zip(*grads):
        np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_ref), rtol=1e-4, atol=1e-5)
    if G == 1:
        y1, _ = moe.routed_ffn_apply(x, w_in, w_out, idx, gate, C)
        np.testing.assert_allclose(np.asarray(y), np.asarray(y1), rtol=1e-6, atol=1e-6)


def test_grouped_dispatch_rejects_uneven_groups():
    x, w_in, w_out, idx, gate = _inputs(10, 4, 1, seed=0)
    with pytest.raises(ValidationError, match="dispatch_groups"):
        moe.grouped_ffn_apply(x, w_in, w_out, idx, gate, 4, 3)
    with pytest.raises(ValidationError, match="dispatch_groups"):
        RouterConfig(kind="sbase", n_experts=4, dispatch_groups=0)
    with pytest.raises(ValidationError, match="mesh"):
        with mesh.expert_parallel("2x4"):
            pass


def test_hash_table_mismatch_is_a_clear_error():
    cfg = _model_cfg("hash")
    with pytest.raises(ValidationError, match="hash_table"):
        hk.transform(lambda x, ids: moe.RoutedFFN(cfg, hash_table=np.zeros(49, np.int32))(x, ids, is_training=True)).init(
            jax.random.PRNGKey(0), jnp.ones((1, 4, D)), jnp.zeros((1, 4), jnp.int32))
