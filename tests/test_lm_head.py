"""routing_laws.lm_head: the per-token log-likelihood of the tied output layer. The plain form against
log_softmax + take_along_axis, the chunked custom-VJP form against the plain one (values and both
gradients, uneven chunks, bfloat16), and the model's targets path against its logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model
from routing_laws import lm_head
from routing_laws import model as model_lib


def _inputs(N=37, D=8, V=53, seed=3, offset=50.0):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.normal(size=(N, D)) * 2 + rng.normal(size=(N, 1)) * offset / 10, jnp.float32)
    w = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    t = jnp.asarray(rng.integers(0, V, size=N), jnp.int32)
    g = jnp.asarray(rng.normal(size=N), jnp.float32)
    return h, w, t, g


def _slow(h, w, t):
    logits = (h @ w.T).astype(jnp.float32)
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), t[:, None], axis=-1)[:, 0]


def test_plain_matches_log_softmax_take_with_large_logits():
    h, w, t, g = _inputs()
    np.testing.assert_allclose(lm_head.token_logprob_plain(h, w, t), _slow(h, w, t), rtol=1e-5, atol=1e-4)
    fast = jax.jit(jax.grad(lambda h, w: jnp.sum(g * lm_head.token_logprob_plain(h, w, t)), argnums=(0, 1)))(h, w)
    slow = jax.jit(jax.grad(lambda h, w: jnp.sum(g * _slow(h, w, t)), argnums=(0, 1)))(h, w)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("N,chunk", [(37, 8), (64, 16), (5, 512), (40, 40), (41, 1)])
def test_chunked_matches_plain_values_and_gradients(N, chunk):
    value = jax.jit(lambda h, w, t: lm_head.token_logprob_chunked(h, w, t, chunk))
    fast = jax.jit(jax.grad(lambda h, w, t, g: jnp.sum(g * lm_head.token_logprob_chunked(h, w, t, chunk)), argnums=(0, 1)))
    slow = jax.jit(jax.grad(lambda h, w, t, g: jnp.sum(g * lm_head.token_logprob_plain(h, w, t)), argnums=(0, 1)))
    for seed in range(3):  # random inputs, one compilation per form
        h, w, t, g = _inputs(N=N, seed=seed)
        np.testing.assert_allclose(value(h, w, t), lm_head.token_logprob_plain(h, w, t), rtol=1e-5, atol=1e-4)
        for a, b in zip(fast(h, w, t, g), slow(h, w, t, g)):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_chunked_bfloat16_keeps_dtypes_and_stays_close():
    h, w, t, g = _inputs(N=48, offset=5.0)
    hb, wb = h.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    out = jax.jit(lambda h, w: lm_head.token_logprob_chunked(h, w, t, 16))(hb, wb)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, lm_head.token_logprob_plain(hb, wb, t), rtol=2e-2, atol=5e-2)
    dh, dw = jax.jit(jax.grad(lambda h, w: jnp.sum(g * lm_head.token_logprob_chunked(h, w, t, 16)), argnums=(0, 1)))(hb, wb)
    rh, rw = jax.jit(jax.grad(lambda h, w: jnp.sum(g * lm_head.token_logprob_plain(h, w, t)), argnums=(0, 1)))(hb, wb)
    assert dh.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16
    for a, b in ((dh, rh), (dw, rw)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.abs(a - b).max() <= 0.05 * np.abs(b).max()


def test_bad_chunk_is_rejected():
    h, w, t, _ = _inputs()
    with pytest.raises(ValueError, match="chunk"):
        lm_head.token_logprob_chunked(h, w, t, 0)


@pytest.mark.parametrize("router", ["dense"])
def test_model_targets_path_equals_logprob_of_its_logits(router):
    cfg = tiny_model(router, 4 if router != "dense" else 1)
    net = model_lib.build(cfg)
    x = jax.random.randint(jax.random.PRNGKey(1), (2, cfg.seq_len + 1), 0, cfg.vocab_size)
    params = jax.jit(lambda r, x: net.init(r, x, is_training=True))(jax.random.PRNGKey(0), x[:, :-1])
    logits, lp = jax.jit(lambda p, x: (net.apply(p, jax.random.PRNGKey(2), x[:, :-1], is_training=False)[0],
                                       net.apply(p, jax.random.PRNGKey(2), x[:, :-1], is_training=False,
                                                 targets_BT=x[:, 1:])[0]))(params, x)
    ref = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), x[:, 1:, None], -1)[..., 0]
    assert lm_head.use_chunked()  # the CPU test process has one device: the chunked path is the one tested
    np.testing.assert_allclose(lp, ref, rtol=1e-5, atol=1e-5)
