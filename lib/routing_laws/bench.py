"""Throughput benchmarks: one FFN layer (``layer_bench``) and the whole training step (``train_bench``).

Layer: a routed FFN (router + dispatch + experts + combine, forward and backward) against the dense
FFN of equal active FLOPs (d_ff = 4 d K), timed with jit, warm-up excluded, median of repeats.
``vs_dense`` = dense time / routed time (1.0: routing costs nothing). A capacity buffer of E x C slots
does cf times the dense work, so ``vs_dense`` is bounded by about 1 / cf.

Training step: forward, backward and the AdamW update of the real model (``train.make_loss_fn`` and
``train.optimizer``, RL-R's REINFORCE term and router learning rate included) for dense and each router
at a named size, on whatever backend JAX sees. Compile time is reported apart; tokens/s is the median
over ``repeats`` rounds, each timing ``steps`` steps of every configuration in turn, so a machine
whose load drifts slows all configurations alike (batches already on the device). GFLOP/s counts
3 x the model's forward FLOPs per token (``model.flops_per_token``: the useful work, not the capacity
buffer's padding) and sits beside the machine's fp32 matmul ceiling measured in the same call.
S-BASE rows also time the Sinkhorn alone on the step's logits shape, and its share of the step.

Shape glossary: T tokens in the timed batch, D d_model, F = 4 D, E experts, K experts per token,
C capacity, B batch (sequences), S sequence length.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from routing_laws import model as model_lib
from routing_laws import moe, routers
from routing_laws import train as train_lib
from routing_laws.config import ROUTERS, SIZES, RouterConfig, TrainConfig, model_config
from routing_laws.errors import ValidationError, check_choice, check_float, check_int
from routing_laws.io_utils import provenance, repo_root
from routing_laws.tables import Table

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
                sk = jax.jit(lambda lg: routers.sinkhorn_log(lg, cfg.sinkhorn_iters, cfg.sinkhorn_temperature,
                                                               tol=routers.SINKHORN_TOL))
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


# ----------------------------------------------------------------------------------- training step

def matmul_ceiling(n: int | None = None, repeats: int = 5) -> dict:
    """Measured fp32 GFLOP/s of one large [n, n] x [n, n] ``jnp.dot`` (n: 1024 on CPU, 8192 otherwise)."""
    n = check_int("n", n if n is not None else (1024 if jax.default_backend() == "cpu" else 8192), min_value=1)
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    dot = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    t = time_fn(dot, a, b, repeats=repeats)
    return {"n": n, "ms": t * 1e3, "gflops": 2 * n ** 3 / t / 1e9}


def _step_fn(model_cfg, train_cfg: TrainConfig, total_steps: int):
    """(jitted train step, initial params, opt state): the step ``train.train`` runs, without the loop."""
    loss_fn = train_lib.make_loss_fn(model_cfg, jnp.float32)
    rc = model_cfg.router
    opt = train_lib.optimizer(train_cfg, total_steps, rc.rlr_router_lr_mult if rc.kind == "rlr" else 1.0)

    def step(params, opt_state, batch_BT1, rng):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rng, batch_BT1, True)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = model_lib.build(model_cfg).init(jax.random.PRNGKey(train_cfg.seed),
                                             jnp.zeros((1, model_cfg.seq_len), jnp.int32), is_training=True)
    return jax.jit(step, donate_argnums=(0, 1)), params, opt.init(params)


def _check_list(field: str, values, check) -> list:
    if isinstance(values, (str, int)) or not values:
        raise ValidationError(field, f"must be a non-empty list, got {values!r}")
    return [check(v) for v in values]


def train_bench(
    sizes: Sequence[str] = ("100k",),
    experts: Sequence[int] = (16, 64),
    routers_: Sequence[str] = ROUTERS,
    *,
    batch_size: int = 32,
    seq_len: int = 128,
    vocab_size: int = 2048,
    steps: int = 50,
    repeats: int = 3,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Tokens/s, compile seconds and GFLOP/s of the full training step per (size, router, E); dense once per size.

    Inputs are validated before any compile: sizes from ``config.SIZES``, E >= 1, routers from
    ``config.ROUTERS``, 1 <= batch_size <= 4096, 1 <= steps <= 100_000, 1 <= repeats <= 100.
    """
    sizes = _check_list("sizes", sizes, lambda v: check_choice("size", v, SIZES))
    experts = _check_list("experts", experts, lambda v: check_int("n_experts", v, min_value=1, max_value=4096))
    routers_ = _check_list("routers", routers_, lambda v: check_choice("router", v, ROUTERS))
    B = check_int("batch_size", batch_size, min_value=1, max_value=4096)
    S = check_int("seq_len", seq_len, min_value=2, max_value=65536)
    V = check_int("vocab_size", vocab_size, min_value=2, max_value=65535)
    steps = check_int("steps", steps, min_value=1, max_value=100_000)
    repeats = check_int("repeats", repeats, min_value=1, max_value=100)
    ceiling = matmul_ceiling()
    if log:
        log(f"fp32 matmul ceiling: {ceiling['gflops']:.1f} GFLOP/s ({ceiling['n']}^2 jnp.dot, {ceiling['ms']:.1f} ms)")
    batches = jnp.asarray(np.random.default_rng(0).integers(0, V, size=(8, B, S + 1)), jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    runs = []  # every (size, router, E) compiled first, then timed in interleaved rounds (drifting load hits all alike)
    for size in sizes:
        combos = [("dense", 1)] if "dense" in routers_ else []
        combos += [(r, E) for r in routers_ if r != "dense" for E in experts]
        for kind, E in combos:
            cfg = model_config(size, vocab_size=V, seq_len=S, router=RouterConfig(kind=kind, n_experts=E))
            tcfg = TrainConfig(tokens=B * S * steps * repeats, batch_size=B)
            step, params, opt_state = _step_fn(cfg, tcfg, steps * repeats + 1)
            t0 = time.perf_counter()
            params, opt_state, loss = step(params, opt_state, batches[0], keys[0])  # compile and first step
            jax.block_until_ready(loss)
            run = {"size": size, "kind": kind, "E": E, "cfg": cfg, "step": step, "state": [params, opt_state, loss],
                   "compile_s": time.perf_counter() - t0, "times": [], "sinkhorn": []}
            if kind == "sbase":
                rc = cfg.router
                run["logits"] = jax.random.normal(jax.random.PRNGKey(2), (B * S, E), jnp.float32)
                run["sk"] = jax.jit(lambda z, rc=rc: routers.sinkhorn_log(z, rc.sinkhorn_iters, rc.sinkhorn_temperature,
                                                                         tol=routers.SINKHORN_TOL))
                jax.block_until_ready(run["sk"](run["logits"]))
            runs.append(run)
            if log:
                log(f"{size} {kind} E={E}: compiled in {run['compile_s']:.1f} s")
    for _ in range(repeats):
        for run in runs:
            params, opt_state, loss = run["state"]
            t0 = time.perf_counter()
            for i in range(steps):
                params, opt_state, loss = run["step"](params, opt_state, batches[i % 8], keys[i])
            jax.block_until_ready(loss)
            run["times"].append((time.perf_counter() - t0) / steps)
            run["state"] = [params, opt_state, loss]
            if "sk" in run:
                t0 = time.perf_counter()
                jax.block_until_ready(run["sk"](run["logits"]))
                run["sinkhorn"].append(time.perf_counter() - t0)
    rows, dense_tok_s = [], {}
    for run in runs:
        step_s = statistics.median(run["times"])
        acct = model_lib.count_params(run["cfg"])
        row = {"size": run["size"], "router": run["kind"], "n_experts": run["E"], "batch_size": B, "seq_len": S,
               "n_routed_layers": acct.n_routed_layers, "compile_s": run["compile_s"], "step_ms": step_s * 1e3,
               "step_ms_all": [t * 1e3 for t in run["times"]], "tokens_per_s": B * S / step_s,
               "gflops": 3 * acct.F * B * S / step_s / 1e9, "final_loss": float(run["state"][2])}
        row["ceiling_frac"] = row["gflops"] / ceiling["gflops"]
        if run["kind"] == "dense":
            dense_tok_s[run["size"]] = row["tokens_per_s"]
        if run["size"] in dense_tok_s:
            row["vs_dense"] = row["tokens_per_s"] / dense_tok_s[run["size"]]
        if run["sinkhorn"]:
            row["sinkhorn_ms"] = statistics.median(run["sinkhorn"]) * 1e3
            row["sinkhorn_share"] = row["sinkhorn_ms"] * acct.n_routed_layers / row["step_ms"]
        rows.append(row)
        if log:
            log(f"{row['size']} {row['router']} E={row['n_experts']}: {row['tokens_per_s'] / 1e3:.1f}k tok/s, step "
                f"{row['step_ms']:.1f} ms, {row['gflops']:.1f} GFLOP/s"
                + (f", {row['vs_dense']:.2f}x dense" if "vs_dense" in row else "")
                + (f", sinkhorn {row['sinkhorn_ms']:.2f} ms ({100 * row['sinkhorn_share']:.1f} %)"
                   if "sinkhorn_ms" in row else ""))
    return {"kind": "train", "provenance": provenance(), "matmul_ceiling": ceiling,
            "settings": {"sizes": sizes, "experts": experts, "routers": routers_, "batch_size": B, "seq_len": S,
                         "vocab_size": V, "steps": steps, "repeats": repeats, "dtype": "float32",
                         "timing": "compile + first step apart; then `repeats` rounds, each timing `steps` steps of "
                                   "every configuration in turn; median over rounds of the mean step time; 8 random "
                                   "batches already on the device"},
            "rows": rows}


def format_train_table(result: dict) -> str:
    """Markdown table of a ``train_bench`` result."""
    ceil = result["matmul_ceiling"]["gflops"]
    lines = [f"fp32 matmul ceiling {ceil:.1f} GFLOP/s", "",
             "| size | router | E | tokens/s | step ms | compile s | GFLOP/s | vs dense | sinkhorn share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        vs = f"{r['vs_dense']:.2f}" if "vs_dense" in r else "-"
        sk = f"{100 * r['sinkhorn_share']:.1f} %" if "sinkhorn_share" in r else "-"
        lines.append(f"| {r['size']} | {r['router']} | {r['n_experts']} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | "
                     f"{r['compile_s']:.1f} | {r['gflops']:.1f} | {vs} | {sk} |")
    return "\n".join(lines)


def train_table(folder: str | Path | None = None) -> Table:
    """Every recorded ``bench train`` result in ``folder`` (default data/bench) as one table: a row per
    (file, size, router, E; the file's date shown) with tokens/s, the ratio to the same file's dense step, GFLOP/s beside that
    call's measured fp32 matmul ceiling, and S-BASE's Sinkhorn share of the step. Unreadable files and
    other kinds of result are skipped (chapter 7 shows this table)."""
    folder = Path(folder) if folder is not None else repo_root() / "data" / "bench"
    if not folder.is_dir():
        raise ValidationError("folder", f"{folder} is not a folder", "pass the data/bench folder")
    rows = []
    for path in sorted(folder.glob("train-*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(result, dict) or result.get("kind") != "train":
            continue
        ceiling = (result.get("matmul_ceiling") or {}).get("gflops")
        for r in result.get("rows", []):
            share = r.get("sinkhorn_share")
            rows.append({"file": path.name, "date": path.stem.rsplit("-", 1)[-1], "size": r.get("size"), "router": r.get("router"), "E": r.get("n_experts"),
                         "tokens/s": r.get("tokens_per_s"), "vs dense": r.get("vs_dense"),
                         "GFLOP/s": r.get("gflops"), "matmul ceiling": ceiling,
                         "Sinkhorn %": 100 * share if isinstance(share, (int, float)) else None})
    return Table(rows, ["date", "size", "router", "E", "tokens/s", "vs dense", "GFLOP/s", "matmul ceiling",
                        "Sinkhorn %"],
                 formats={"tokens/s": ",.0f", "vs dense": ".2f", "GFLOP/s": ".1f", "matmul ceiling": ".0f",
                          "Sinkhorn %": ".1f"},
                 title="Full training step (forward, backward, AdamW), recorded by routing-laws bench train")
