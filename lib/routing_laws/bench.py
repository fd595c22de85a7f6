"""Layer benchmark: a routed FFN (router + dispatch + experts + combine, forward and backward) against
the dense FFN of equal active FLOPs (d_ff = 4 d K), timed with jit, warm-up excluded, median of repeats.

Shape glossary: T tokens in the timed batch, D d_model, F = 4 D, E experts, K experts per token,
C capacity. ``vs_dense`` = dense time / routed time (1.0: routing costs nothing). A capacity buffer of
E x C slots does cf times the dense work, so ``vs_dense`` is bounded by about 1 / cf.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from routing_laws import moe, routers
from routing_laws.config import ROUTERS, RouterConfig
from routing_laws.errors import ValidationError, check_choice, check_float, check_int
from routing_laws.io_utils import provenance

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def time_fn(fn: Callable, *args, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall seconds of ``fn(*args)`` (blocked until ready) after ``warmup`` untimed calls."""
    check_int("repeats", repeats, min_value=1)
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _train_step(layer: Callable) -> Callable:
    """jit(value_and_grad) of a scalar loss of the layer's output, wrt the input and every weight."""
    def loss(params, x_TD):
        return jnp.mean(jnp.square(layer(params, x_TD).astype(jnp.float32)))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def dense_layer(params, x_TD):
    w_in, w_out = params
    return moe.gelu(x_TD @ w_in) @ w_out


def routed_layer(cfg: RouterConfig, capacity_: int, table=None) -> Callable:
    """The whole routed FFN as the model runs it in training (S-BASE includes its Sinkhorn)."""
    def layer(params, x_TD, ids_T=None):
        w_router, w_in, w_out = params
        if cfg.kind == "hash":
            out = routers.hash_route(ids_T, cfg, table)
        else:
            logits = x_TD.astype(jnp.float32) @ w_router.astype(jnp.float32)
            out = routers.route(cfg, logits_TE=logits, is_training=True, rng=jax.random.PRNGKey(0))
        y, _ = moe.routed_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK, capacity_)
        return y
    return layer


def layer_bench(
    experts: Sequence[int] = (8, 64, 256),
    d_models: Sequence[int] = (256, 512, 1024),
    *,
    tokens: int = 512,
    capacity_factor: float = 1.25,
    router: str = "sbase",
    top_k: int = 1,
    dtype: str = "float32",
    repeats: int = 5,
    max_param_bytes: float = 2e9,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Time routed vs dense FFN layers over a grid; rows over ``max_param_bytes`` are skipped (recorded)."""
    check_int("tokens", tokens, min_value=1)
    check_float("capacity_factor", capacity_factor, min_value=0.0, min_exclusive=True)
    check_choice("router", router, [r for r in ROUTERS if r != "dense"])
    check_choice("dtype", dtype, DTYPES)
    if not experts or not d_models:
        raise ValidationError("experts/d_models", "need at least one value each")
    dt = DTYPES[dtype]
    rows = []
    for d in d_models:
        d = check_int("d_model", d, min_value=1)
        f = 4 * d
        key = jax.random.PRNGKey(d)
        kx, k1, k2, k3 = jax.random.split(key, 4)
        x = jax.random.normal(kx, (tokens, d), dt)
        dense_params = (jax.random.normal(k1, (d, f * top_k), dt) / math.sqrt(d),
                        jax.random.normal(k2, (f * top_k, d), dt) / math.sqrt(f * top_k))
        t_dense = time_fn(_train_step(dense_layer), dense_params, x, repeats=repeats)
        flops = 2 * 3 * 2 * tokens * d * f * top_k  # fwd + bwd (x3) of two matmuls
        for E in experts:
            E = check_int("n_experts", E, min_value=1)
            row = {"d_model": d, "d_ff": f, "n_experts": E, "top_k": top_k, "tokens": tokens, "router": router,
                   "capacity_factor": capacity_factor, "dtype": dtype, "dense_ms": t_dense * 1e3,
                   "dense_gflops": flops / t_dense / 1e9}
            nbytes = 2 * E * d * f * jnp.dtype(dt).itemsize
            if nbytes * 3 > max_param_bytes:  # weights, grads and temporaries
                row["skipped"] = f"expert weights {nbytes / 1e9:.1f} GB x3 exceed max_param_bytes {max_param_bytes / 1e9:.1f} GB"
                rows.append(row)
                if log:
                    log(f"d={d} E={E}: skipped ({row['skipped']})")
                continue
            cfg = RouterConfig(kind=router, n_experts=E, top_k=top_k, capacity_factor=capacity_factor)
            C = moe.capacity(tokens, E, top_k, capacity_factor)
            ks = jax.random.split(k3, 3)
            params = (jax.random.normal(ks[0], (d, E), jnp.float32) / math.sqrt(d),
                      jax.random.normal(ks[1], (E, d, f), dt) / math.sqrt(d),
                      jax.random.normal(ks[2], (E, f, d), dt) / math.sqrt(f))
            table = routers.hash_table(max(tokens, E), E, 0) if router == "hash" else None
            ids = jnp.arange(tokens, dtype=jnp.int32) % max(tokens, E)
            layer = routed_layer(cfg, C, table)
            t_routed = time_fn(_train_step(lambda p, x: layer(p, x, ids)), params, x, repeats=repeats)
            row.update(capacity=C, routed_ms=t_routed * 1e3, vs_dense=t_dense / t_routed,
                       bound_one_over_cf=1.0 / capacity_factor)
            if router == "sbase":
                logits = x.astype(jnp.float32) @ params[0]
                sk = jax.jit(lambda lg: routers.sinkhorn_log(lg, cfg.sinkhorn_iters, cfg.sinkhorn_temperature))
                row["sinkhorn_ms"] = time_fn(sk, logits, repeats=repeats) * 1e3
                row.update(sinkhorn_iters=cfg.sinkhorn_iters, sinkhorn_temperature=cfg.sinkhorn_temperature)
            out = jax.jit(lambda p, x: moe.routed_ffn_apply(
                x, p[1], p[2], *routers.route(cfg, logits_TE=x.astype(jnp.float32) @ p[0], token_ids_T=ids,
                                              is_training=True, rng=jax.random.PRNGKey(0), table=table)[:2], C)[1])(params, x)
            row["dropped_frac"] = float(1.0 - np.asarray(out).mean())
            rows.append(row)
            if log:
                log(f"d={d} E={E}: dense {t_dense * 1e3:.2f} ms, routed {t_routed * 1e3:.2f} ms, "
                    f"vs_dense {row['vs_dense']:.2f}" + (f", sinkhorn {row['sinkhorn_ms']:.2f} ms" if "sinkhorn_ms" in row else ""))
    return {"kind": "layer", "provenance": provenance(),
            "settings": {"tokens": tokens, "capacity_factor": capacity_factor, "router": router, "top_k": top_k,
                         "dtype": dtype, "repeats": repeats, "timing": "jit(value_and_grad), 2 warm-up calls, median"},
            "rows": rows}


def format_table(result: dict) -> str:
    """Markdown table of a ``layer_bench`` result."""
    lines = ["| d | E | C | dense ms | routed ms | vs_dense | sinkhorn ms | dropped |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['d_model']} | {r['n_experts']} | - | {r['dense_ms']:.2f} | skipped | - | - | - |")
            continue
        sk = f"{r['sinkhorn_ms']:.2f}" if "sinkhorn_ms" in r else "-"
        lines.append(f"| {r['d_model']} | {r['n_experts']} | {r['capacity']} | {r['dense_ms']:.2f} | "
                     f"{r['routed_ms']:.2f} | {r['vs_dense']:.2f} | {sk} | {r['dropped_frac']:.3f} |")
    return "\n".join(lines)
