"""The tied output layer and the per-token log-likelihood, computed in token chunks on CPU.

``token_logprob(h_ND, w_VD, targets_N)`` is log softmax(h w^T)[target] per token. The plain form
materialises the [N, V] logits (32 MiB for the cpu grid's 4096 tokens x 2048 vocabulary) and its
gradient; glibc serves such blocks with mmap, so every step page-faults and zeroes them (a third of
a CPU training step in ``perf``). The chunked form keeps a [chunk, V] block in cache, saves only
the log-normaliser per token and recomputes each chunk's logits in the backward pass (a custom
VJP): on one CPU core the loss and its gradient took 125 ms instead of 178 ms. Accelerators and
multi-device meshes keep the plain form, which they run as one large matmul.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CPU_CHUNK_TOKENS = 512  # [512, 2048] float32 logits = 4 MiB; 256 and 1024 were slower on this machine


def _pick(logits_NV: jax.Array, targets_N: jax.Array) -> jax.Array:
    """logits[n, targets[n]] by an iota comparison (take_along_axis' gradient is a slow scatter on CPU)."""
    hit_NV = jax.lax.broadcasted_iota(jnp.int32, (1, logits_NV.shape[-1]), 1) == targets_N[:, None]
    return jnp.sum(jnp.where(hit_NV, logits_NV, 0.0), axis=-1)


def token_logprob_plain(h_ND: jax.Array, w_VD: jax.Array, targets_N: jax.Array) -> jax.Array:
    """The obvious reference: float32 logits = h w^T, then logit[target] - logsumexp(logits)."""
    logits_NV = (h_ND @ w_VD.T).astype(jnp.float32)
    return _pick(logits_NV, targets_N) - jax.nn.logsumexp(logits_NV, axis=-1)


def _chunked(chunk: int):
    @jax.custom_vjp
    def f(h_ND, w_VD, targets_N):
        return fwd(h_ND, w_VD, targets_N)[0]

    def fwd(h_ND, w_VD, targets_N):
        N, D = h_ND.shape

        def one(args):
            h_CD, t_C = args
            logits_CV = (h_CD @ w_VD.T).astype(jnp.float32)
            lse_C = jax.nn.logsumexp(logits_CV, axis=-1)
            return _pick(logits_CV, t_C) - lse_C, lse_C

        out_MC, lse_MC = jax.lax.map(one, (h_ND.reshape(N // chunk, chunk, D), targets_N.reshape(N // chunk, chunk)))
        return out_MC.reshape(N), (h_ND, w_VD, targets_N, lse_MC)

    def bwd(res, g_N):
        h_ND, w_VD, targets_N, lse_MC = res
        N, D = h_ND.shape
        V = w_VD.shape[0]

        def body(dw_VD, args):
            h_CD, t_C, lse_C, g_C = args
            p_CV = jnp.exp((h_CD @ w_VD.T).astype(jnp.float32) - lse_C[:, None])
            hit_CV = jax.lax.broadcasted_iota(jnp.int32, (1, V), 1) == t_C[:, None]
            # d/dlogits of g * (logit[t] - lse) = g * (onehot(t) - softmax)
            dl_CV = (g_C[:, None] * (hit_CV.astype(jnp.float32) - p_CV)).astype(h_CD.dtype)
            return dw_VD + (dl_CV.T @ h_CD).astype(jnp.float32), dl_CV @ w_VD

        M = N // chunk
        dw_VD, dh_MCD = jax.lax.scan(body, jnp.zeros(w_VD.shape, jnp.float32),
                                     (h_ND.reshape(M, chunk, D), targets_N.reshape(M, chunk), lse_MC,
                                      g_N.astype(jnp.float32).reshape(M, chunk)))
        return dh_MCD.reshape(N, D).astype(h_ND.dtype), dw_VD.astype(w_VD.dtype), None

    f.defvjp(fwd, bwd)
    return f


def token_logprob_chunked(h_ND: jax.Array, w_VD: jax.Array, targets_N: jax.Array,
                          chunk: int = CPU_CHUNK_TOKENS) -> jax.Array:
    """Same value and gradient as ``token_logprob_plain``, never holding more than [chunk, V] logits.
    N need not divide by ``chunk``: the tail is padded with zero rows whose gradient is dropped."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    N = h_ND.shape[0]
    chunk = min(chunk, N)
    pad = -N % chunk
    if pad:
        h_ND = jnp.pad(h_ND, ((0, pad), (0, 0)))
        targets_N = jnp.pad(targets_N, (0, pad))
    return _chunked(chunk)(h_ND, w_VD, targets_N)[:N]


def use_chunked() -> bool:
    """Chunk on a single CPU device; elsewhere one large matmul is faster (and shards cleanly)."""
    return jax.default_backend() == "cpu" and jax.device_count() == 1


def token_logprob(h_ND: jax.Array, w_VD: jax.Array, targets_N: jax.Array) -> jax.Array:
    """log softmax(h w^T)[target] per token (float32), by the form suited to the backend."""
    if use_chunked():
        return token_logprob_chunked(h_ND, w_VD, targets_N)
    return token_logprob_plain(h_ND, w_VD, targets_N)
