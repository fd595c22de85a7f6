"""The routers run on a real batch: the computations behind chapter 1 ('Routing networks') and the
benchmark rows of chapter 7 ('Performance'). Nothing else in the package uses this module; it lives in
the library, not in the notebooks, so the chapters hold no logic and every function here is tested.

Shape glossary: B batch, T sequence, N = B * T tokens routed together, D d_model, E experts,
I Sinkhorn sweeps (iteration 0 = before any sweep), V vocabulary.

``routed_inputs`` initialises the LM of a ``ModelConfig`` and captures what its first routed FFN
receives (the LayerNorm-ed hidden states h_ND) and the logits of that layer's freshly initialised
router (h_ND @ w_router); everything else here is bookkeeping over the library's routers
(``routers.route``), capacity rule (``moe.capacity``, ``moe.slot_positions``) and the bench JSON files.
"""

from __future__ import annotations

import json
from pathlib import Path

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from routing_laws import model, moe, routers
from routing_laws.config import ROUTER_LABELS as _KIND_LABELS, ModelConfig, RouterConfig
from routing_laws.errors import ValidationError, check_float, check_int
from routing_laws.io_utils import repo_root

ROUTER_LABELS = {"argmax": "plain argmax", **_KIND_LABELS, "rlr": "RL-R (sampled)"}


def routed_inputs(cfg: ModelConfig, tokens_BT, seed: int = 0) -> dict:
    """Inputs of the first routed FFN of a freshly initialised LM on ``tokens_BT``.

    Returns ``h_ND`` (LayerNorm-ed hidden states entering the layer, float32), ``logits_NE``
    (h_ND @ that layer's initial router weights; None for HASH), ``token_ids_N``, ``layer`` and the
    LM's initial ``params`` (for ``model.build(cfg).apply``).
    """
    if not isinstance(cfg, ModelConfig) or not cfg.router.routed:
        raise ValidationError("cfg", "must be a ModelConfig with a routed router (sbase, rlr, hash)")
    tokens_BT = np.asarray(tokens_BT)
    if tokens_BT.ndim != 2 or not np.issubdtype(tokens_BT.dtype, np.integer):
        raise ValidationError("tokens_BT", f"must be a 2-d integer array, got {tokens_BT.dtype} {tokens_BT.shape}")
    if tokens_BT.shape[1] > cfg.seq_len:
        raise ValidationError("tokens_BT", f"{tokens_BT.shape[1]} positions exceed seq_len {cfg.seq_len}",
                              "cut the batch to the model's seq_len")
    check_int("seed", seed, min_value=0)
    tokens = jnp.asarray(tokens_BT, jnp.int32)
    names = []  # filled while tracing: the module name of each routed FFN called

    def forward(ids):
        captured = []

        def grab(next_f, args, kwargs, context):
            if isinstance(context.module, moe.RoutedFFN) and context.method_name == "__call__":
                names.append(context.module.module_name)
                captured.append(args[0])
            return next_f(*args, **kwargs)

        with hk.intercept_methods(grab):
            model.LM(cfg)(ids, is_training=False)
        return captured[0]

    net = hk.transform(forward)

    key = jax.random.PRNGKey(seed)
    # compiled, not eager (op-by-op is far slower on a CPU); parameters do not depend on the batch size
    params = jax.jit(net.init)(key, tokens[:1])
    h_BTD = jax.jit(net.apply)(params, key, tokens)
    name = names[0]
    h_ND = jnp.asarray(h_BTD, jnp.float32).reshape(-1, cfg.d_model)
    layer = int(name.rsplit("_", 1)[1])
    w = params[name].get("w_router")
    logits = None if w is None else h_ND @ jnp.asarray(w, jnp.float32)
    return {"h_ND": h_ND, "logits_NE": logits, "token_ids_N": tokens.reshape(-1), "layer": layer, "params": params}


def _cfg(kind: str, n_experts: int, capacity_factor: float = 2.0) -> RouterConfig:
    return RouterConfig(kind=kind, n_experts=n_experts, capacity_factor=capacity_factor)


def route_all(logits_NE, token_ids_N, vocab_size: int, seed: int = 0) -> dict:
    """Expert of every token (int [N]) under plain argmax, S-BASE, RL-R (one training sample) and HASH."""
    logits_NE = jnp.asarray(logits_NE, jnp.float32)
    if logits_NE.ndim != 2 or logits_NE.shape[0] != np.shape(token_ids_N)[0]:
        raise ValidationError("logits_NE", f"must be [N, E] with N = len(token_ids_N), got {logits_NE.shape}")
    E = int(logits_NE.shape[1])
    ids = jnp.asarray(token_ids_N, jnp.int32)
    table = routers.hash_table(vocab_size, E, seed)
    kinds = ("sbase", "rlr", "hash")

    @jax.jit
    def run(lg, ids_N, tab, key):
        out = [jnp.argmax(lg, axis=1)]
        for kind in kinds:
            r = routers.route(_cfg(kind, E), logits_TE=lg, token_ids_T=ids_N, is_training=True, rng=key, table=tab)
            out.append(r.expert_idx_TK[:, 0])
        return out

    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValidationError("token_ids_N", f"ids must lie in [0, {vocab_size})", "match the tokenizer to the model")
    got = run(logits_NE, ids, jnp.asarray(table), jax.random.PRNGKey(seed))
    return {k: np.asarray(v) for k, v in zip(("argmax",) + kinds, got)}


def load_rows(experts: dict, n_experts: int) -> list[dict]:
    """Tidy rows ``{router, expert, share, tokens}``: the share of the batch's tokens each expert receives."""
    E = check_int("n_experts", n_experts, min_value=1)
    rows = []
    for kind, e_N in experts.items():
        counts = np.bincount(np.asarray(e_N), minlength=E)
        for e in range(E):
            rows.append({"router": ROUTER_LABELS.get(kind, kind), "expert": f"{e:02d}", "tokens": int(counts[e]),
                         "share": float(counts[e] / max(len(e_N), 1))})
    return rows


def dropped_fraction(expert_N, n_experts: int, capacity_factor: float) -> float:
    """Share of tokens over capacity C = ceil(cf N / E) (top-1; earlier tokens keep their slots)."""
    e_N = np.asarray(expert_N)
    cf = check_float("capacity_factor", capacity_factor, min_value=0.0, min_exclusive=True)
    C = moe.capacity(len(e_N), n_experts, 1, cf)
    return float(np.mean(queue_positions(e_N, n_experts) >= C))


def queue_positions(expert_N, n_experts: int) -> np.ndarray:
    """Numpy twin of ``moe.slot_positions`` for top-1: each token's place in its expert's queue."""
    e_N = np.asarray(expert_N).astype(np.int64)
    E = check_int("n_experts", n_experts, min_value=1)
    if e_N.ndim != 1 or (e_N.size and (e_N.min() < 0 or e_N.max() >= E)):
        raise ValidationError("expert_N", f"must be a 1-d array of experts in [0, {E})")
    order = np.argsort(e_N, kind="stable")
    counts = np.bincount(e_N, minlength=E)
    starts = np.cumsum(counts) - counts
    pos = np.empty_like(e_N)
    pos[order] = np.arange(e_N.size) - starts[e_N[order]]
    return pos


def sinkhorn_trace(logits_NE, n_iters: int, temperature: float) -> dict:
    """Sinkhorn balancing sweep by sweep, on the same schedule as ``routers.sinkhorn_log``.

    Returns ``v_IE`` (column potentials after each sweep, I = n_iters + 1), ``taus_I`` (temperature of
    that sweep), ``load_IE`` (tokens per expert when each token takes the argmax of the plan) and
    ``colsum_IE`` (column sums of the row-normalised plan; target N / E, rows sum to 1 by construction).
    The score after the last sweep equals ``sinkhorn_log(logits_NE, n_iters, temperature)``.
    """
    n_iters = check_int("n_iters", n_iters, min_value=0)
    t_final = check_float("temperature", temperature, min_value=0.0, min_exclusive=True)
    z_NE = routers.standardize_logits(logits_NE)
    N, E = z_NE.shape
    taus = jnp.asarray(routers.sinkhorn_temperatures(n_iters, t_final))
    log_col = jnp.log(jnp.float32(N) / E)

    v0 = jnp.zeros((E,), jnp.float32)
    taus_I = jnp.concatenate([taus[:1] if n_iters else jnp.asarray([t_final], jnp.float32), taus])

    @jax.jit
    def run(z_NE, taus, taus_I):
        def sweep(v_E, t):  # the row step, then the column step, as in routers.sinkhorn_log
            u_N = -t * jax.nn.logsumexp((z_NE + v_E[None, :]) / t, axis=1)
            v_E = t * log_col - t * jax.nn.logsumexp((z_NE + u_N[:, None]) / t, axis=0)
            return v_E, v_E

        _, vs = jax.lax.scan(sweep, v0, taus)
        v_IE = jnp.concatenate([v0[None], vs], axis=0)
        score_INE = z_NE[None] + v_IE[:, None, :]
        load_IE = jax.vmap(lambda s: jnp.bincount(jnp.argmax(s, axis=1), length=E))(score_INE)
        colsum_IE = jnp.sum(jax.nn.softmax(score_INE / taus_I[:, None, None], axis=2), axis=1)
        return v_IE, load_IE, colsum_IE

    v_IE, load_IE, colsum_IE = run(z_NE, taus, taus_I)
    return {"v_IE": np.asarray(v_IE), "taus_I": np.asarray(taus_I), "load_IE": np.asarray(load_IE),
            "colsum_IE": np.asarray(colsum_IE), "target": float(N) / E}


def sinkhorn_rows(trace: dict) -> tuple[list[dict], list[dict]]:
    """Chart rows from ``sinkhorn_trace``: per sweep ``{iteration, series, value}`` and per sweep and
    expert ``{iteration, expert, share}`` (share of the batch's tokens, argmax of the plan)."""
    load, col, target = trace["load_IE"], trace["colsum_IE"], trace["target"]
    E = load.shape[1]
    lines, bars = [], []
    for i in range(load.shape[0]):
        mean = load[i].sum() / E
        lines += [{"iteration": i, "series": "argmax load: max / mean", "value": float(load[i].max() / mean)},
                  {"iteration": i, "series": "plan column sum: max / target", "value": float(col[i].max() / target)},
                  {"iteration": i, "series": "plan column sum: min / target", "value": float(col[i].min() / target)}]
        bars += [{"iteration": i, "expert": f"{e:02d}", "share": float(load[i, e] / load[i].sum())} for e in range(E)]
    return lines, bars


def policy_rows(logits_NE, n_tokens: int = 4) -> tuple[np.ndarray, list[dict]]:
    """RL-R's policy softmax(logits): entropy per token (nats) and ``{token, expert, probability}`` rows
    for the first ``n_tokens`` tokens."""
    logp = jax.nn.log_softmax(jnp.asarray(logits_NE, jnp.float32), axis=1)
    p = np.asarray(jnp.exp(logp))
    entropy_N = -np.sum(p * np.asarray(logp), axis=1)
    rows = [{"token": f"token {t}", "expert": f"{e:02d}", "probability": float(p[t, e])}
            for t in range(min(check_int("n_tokens", n_tokens, min_value=1), p.shape[0])) for e in range(p.shape[1])]
    return entropy_N, rows


def hash_examples(token_ids_N, table, decode, n: int = 8) -> list[dict]:
    """The first ``n`` distinct tokens of the batch with their text and HASH expert."""
    seen, out = set(), []
    for t in np.asarray(token_ids_N).tolist():
        if t not in seen:
            seen.add(t)
            out.append({"id": int(t), "text": decode([int(t)]), "expert": int(table[t])})
        if len(out) >= n:
            break
    return out


# ------------------------------------------------------------------------------------------ bench files
def bench_rows(folder: str | Path | None = None) -> list[dict]:
    """Every measured row of every ``layer`` result in ``folder`` (default data/bench), flattened with
    its file's provenance (backend, device, jax, date, machine) and file name. Skipped rows are left out."""
    folder = Path(folder) if folder is not None else repo_root() / "data" / "bench"
    rows = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(result, dict) or result.get("kind") != "layer":
            continue
        prov = result.get("provenance", {})
        for r in result.get("rows", []):
            if "skipped" in r or "vs_dense" not in r:
                continue
            rows.append({**r, "file": path.name, "backend": prov.get("backend", "?"), "device": prov.get("device", "?"),
                         "jax": prov.get("jax", "?"), "date": str(prov.get("date_utc", "?"))[:10],
                         "machine": prov.get("machine", "?")})
    return rows
