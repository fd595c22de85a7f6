"""The three routers of Clark et al. (2022) as pure functions: S-BASE (Sinkhorn), RL-R (REINFORCE), HASH.

Every router maps router logits (or token ids, for HASH) to a ``RouterOutput``:
``(expert_idx_TK, gate_TK, aux_loss, logprob_T, entropy_T, metrics)``; ``moe`` does the data movement.

Shape glossary: T tokens routed together (batch x sequence, flattened), E experts, K experts per
token, V vocabulary. All router math is float32 whatever the model's compute dtype.

Choices (documented in the book, 'Routing networks'):
- S-BASE: log-space Sinkhorn at temperature ``tau`` over the tokens of the batch, annealed, stopped once
  every expert's share of the plan is within ``SINKHORN_TOL`` of 1/E (at most ``sinkhorn_iters``
  sweeps), no gradient through it; expert = top-K of the balanced plan; gate = softmax(logits)
  probability of each chosen expert (not renormalised over the K) by default, or the alternatives of
  ``sbase_gate`` (``RouterConfig.sbase_gate``: BASE's sigmoid, a straight-through gate of value 1). Evaluation uses plain top-K of the
  logits (causal); ``sbase_balanced_eval`` balances the evaluation batch too, which lets a token's
  expert depend on other positions, the future included.
- RL-R: policy softmax(logits), sampled in training, argmax at evaluation, gate 1 (the expert output
  is not scaled). The router learns only from ``rlr_loss`` (REINFORCE, leave-one-out per-position
  baseline, advantage divided by its std, entropy bonus) plus a Switch-style balance term returned
  as ``aux_loss``.
- HASH: a seeded random permutation of the vocabulary dealt round-robin to experts (every expert owns
  floor or ceil of V/E ids), or, given token counts, a greedy frequency-balanced table; gate 1.

Router metrics (``RouterOutput.metrics``, float32 scalars): ``router_entropy``, the mean entropy of
softmax(logits) (0 for HASH), and ``argmax_agreement``, the share of tokens whose first choice is the
plain argmax of the logits on the same batch (S-BASE in training: how often the Sinkhorn plan keeps the
router's own preference, i.e. how close evaluation routing is to training routing; RL-R in training:
how often the sample is the mode; 1 for HASH and for argmax evaluation).

The S-BASE balance study at the end (``sbase_balance``) compares Sinkhorn over the whole batch with
Sinkhorn per data shard of a device mesh, on the same logits.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from routing_laws.config import SBASE_GATES, RouterConfig
from routing_laws.errors import ValidationError, check_int
from routing_laws.mesh import DATA, check_mesh


class RouterOutput(NamedTuple):
    expert_idx_TK: jax.Array  # int32 expert of each of a token's K choices (choice 0 has priority)
    gate_TK: jax.Array  # float32 weight of each choice's expert output
    aux_loss: jax.Array  # scalar, already weighted, added to the LM loss
    logprob_T: jax.Array  # log-prob of the chosen expert under the RL-R policy (zeros otherwise)
    entropy_T: jax.Array  # RL-R policy entropy per token (zeros otherwise)
    metrics: dict  # router_entropy, argmax_agreement (module docstring)


def _check_logits(logits_TE, cfg: RouterConfig) -> jax.Array:
    if not isinstance(cfg, RouterConfig):
        raise ValidationError("cfg", f"must be a RouterConfig, got {type(cfg).__name__}")
    if getattr(logits_TE, "ndim", None) != 2:
        raise ValidationError("logits_TE", f"must be 2-d [tokens, experts], got shape {getattr(logits_TE, 'shape', None)}")
    if logits_TE.shape[1] != cfg.n_experts:
        raise ValidationError("logits_TE", f"has {logits_TE.shape[1]} experts, config says {cfg.n_experts}",
                              "project to n_experts logits")
    return jnp.asarray(logits_TE, jnp.float32)


def _agreement(expert_idx_TK: jax.Array, logits_TE: jax.Array) -> jax.Array:
    """Share of tokens whose first choice is the argmax of ``logits_TE`` (float32 scalar)."""
    argmax_T = jnp.argmax(jax.lax.stop_gradient(logits_TE), axis=-1)
    return jnp.mean((expert_idx_TK[:, 0] == argmax_T).astype(jnp.float32))


def _mean_entropy(logits_TE: jax.Array) -> tuple[jax.Array, jax.Array]:
    logp_TE = jax.nn.log_softmax(logits_TE, axis=-1)
    entropy_T = -jnp.sum(jnp.exp(logp_TE) * logp_TE, axis=-1)
    return logp_TE, entropy_T


# ----------------------------------------------------------------------------------------------- S-BASE

def standardize_logits(logits_TE) -> jax.Array:
    """Logits centred per token and divided by their overall std (no gradient).

    This makes the Sinkhorn temperature relative to the spread of the router's logits, so the same
    temperature balances alike whether the router's weights are small (early training) or large.
    """
    z_TE = jax.lax.stop_gradient(jnp.asarray(logits_TE, jnp.float32))
    z_TE = z_TE - jnp.mean(z_TE, axis=1, keepdims=True)
    return z_TE / (jnp.sqrt(jnp.mean(jnp.square(z_TE))) + 1e-6)


SINKHORN_ANNEAL_SWEEPS = 10  # geometric temperature steps from max(1, tau) down to tau (at most half the sweeps)
SINKHORN_TOL = 0.02  # training stops sweeping once every expert's share is within 2 % of T / E


def sinkhorn_temperatures(n_iters: int, temperature: float) -> np.ndarray:
    """Per-sweep temperatures: geometric from max(1, tau) down to tau over the first
    min(n_iters // 2, SINKHORN_ANNEAL_SWEEPS) sweeps, then tau.

    Annealing (epsilon scaling) reaches a low-temperature plan in far fewer sweeps than starting cold.
    """
    n1 = min(n_iters // 2, SINKHORN_ANNEAL_SWEEPS)
    hot = np.geomspace(max(1.0, temperature), temperature, n1) if n1 else np.zeros(0)
    return np.concatenate([hot, np.full(n_iters - n1, temperature)]).astype(np.float32)


def sinkhorn_log(logits_TE, n_iters: int, temperature: float, tol: float = 0.0) -> jax.Array:
    """Log of the balanced plan after at most ``n_iters`` annealed Sinkhorn sweeps on standardised logits.

    A sweep makes every row of exp((z + u + v) / tau) sum to 1 and then every column sum to T/E. Both
    steps share one exponential: with p = softmax((z + v) / tau) over experts (the row step), the column
    step is v <- v - tau * log(s), s_E = sum_T p / (T/E) the experts' shares of the row-normalised plan.
    Potentials are in logit units so the temperature can change between sweeps. With ``tol > 0`` the
    sweeps stop, once annealing is over, as soon as max_E |s_E - 1| <= tol (``lax.while_loop``); ``tol =
    0`` runs all ``n_iters``. The result is ``(z + u + v) / tau``; only the column potentials ``v`` change a
    token's ranking of experts. ``n_iters = 0`` gives the plain logits' ranking. No gradient flows through it.
    """
    n_iters = check_int("sinkhorn_iters", n_iters, min_value=0)
    if not temperature > 0:
        raise ValidationError("sinkhorn_temperature", f"must be > 0, got {temperature}")
    if not (isinstance(tol, (int, float)) and 0 <= tol < 1):
        raise ValidationError("tol", f"must be a number in [0, 1), got {tol!r}")
    z_TE = standardize_logits(logits_TE)
    T, E = z_TE.shape
    col = jnp.float32(T) / E
    taus_np = sinkhorn_temperatures(n_iters, temperature)
    n_anneal = min(n_iters // 2, SINKHORN_ANNEAL_SWEEPS)
    taus = jnp.asarray(taus_np if n_iters else np.full(1, temperature, np.float32))

    def sweep(i, v_E):
        t = taus[i]
        a_TE = (z_TE + v_E[None, :]) / t
        p_TE = jnp.exp(a_TE - jnp.max(a_TE, axis=1, keepdims=True))
        p_TE = p_TE / jnp.sum(p_TE, axis=1, keepdims=True)
        share_E = jnp.sum(p_TE, axis=0) / col
        # a share that underflowed to 0 moves its potential a bounded step up, not to infinity
        return v_E - t * jnp.log(jnp.maximum(share_E, 1e-30)), jnp.max(jnp.abs(share_E - 1.0))

    v0 = jnp.zeros((E,), jnp.float32)
    if tol > 0 and n_iters:
        def cond(carry):
            i, _, err = carry
            return (i < n_iters) & ((i <= n_anneal) | (err > tol))

        def body(carry):
            i, v_E, _ = carry
            v_E, err = sweep(i, v_E)
            return i + 1, v_E, err

        _, v_E, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), v0, jnp.float32(jnp.inf)))
    else:
        v_E = jax.lax.fori_loop(0, n_iters, lambda i, v: sweep(i, v)[0], v0)
    u_T = -temperature * jax.nn.logsumexp((z_TE + v_E[None, :]) / temperature, axis=1)
    return jax.lax.stop_gradient((z_TE + u_T[:, None] + v_E[None, :]) / temperature)


def sbase_gate(logits_TE: jax.Array, logp_TE: jax.Array, expert_idx_TK: jax.Array, mode: str) -> jax.Array:
    """Gate [T, K] of each chosen expert under ``RouterConfig.sbase_gate`` (the router's only gradient path):

    - ``softmax``: softmax(logits)[e] (default; most likely the paper's; about 1/E at init, so at large E
      the expert output starts small and so does the router's gradient);
    - ``sigmoid``: sigmoid(logits[e]) as in BASE layers (Lewis et al. 2021): about 0.5 at init at every E;
    - ``st``: 1 + p - stop_gradient(p), p = softmax(logits)[e]: the value 1 (the expert output unscaled)
      with the softmax gate's gradient (straight-through).
    """
    if mode not in SBASE_GATES:
        raise ValidationError("router.sbase_gate", f"unknown gate {mode!r}", "choose one of: " + ", ".join(SBASE_GATES))
    p_TK = jnp.take_along_axis(jnp.exp(logp_TE), expert_idx_TK, axis=-1)
    if mode == "softmax":
        return p_TK
    if mode == "sigmoid":
        return jax.nn.sigmoid(jnp.take_along_axis(logits_TE, expert_idx_TK, axis=-1))
    return 1.0 + p_TK - jax.lax.stop_gradient(p_TK)


def sbase_route(logits_TE, cfg: RouterConfig, *, is_training: bool) -> RouterOutput:
    """S-BASE: experts from a Sinkhorn-balanced plan (training), gates from softmax(logits)."""
    logits_TE = _check_logits(logits_TE, cfg)
    logp_TE, entropy_T = _mean_entropy(logits_TE)
    if is_training or cfg.sbase_balanced_eval:
        score_TE = sinkhorn_log(logits_TE, cfg.sinkhorn_iters, cfg.sinkhorn_temperature, tol=SINKHORN_TOL)
    else:
        score_TE = jax.lax.stop_gradient(logits_TE)
    _, expert_idx_TK = jax.lax.top_k(score_TE, cfg.top_k)
    gate_TK = sbase_gate(logits_TE, logp_TE, expert_idx_TK, cfg.sbase_gate)
    zeros_T = jnp.zeros(logits_TE.shape[:1], jnp.float32)
    expert_idx_TK = expert_idx_TK.astype(jnp.int32)
    return RouterOutput(expert_idx_TK, gate_TK, jnp.zeros((), jnp.float32), zeros_T, zeros_T,
                        {"router_entropy": jnp.mean(entropy_T), "argmax_agreement": _agreement(expert_idx_TK, logits_TE)})


# ------------------------------------------------------------------------------------------------ RL-R

def switch_balance_loss(probs_TE: jax.Array, expert_idx_T: jax.Array) -> jax.Array:
    """Switch Transformer balance term E * sum_e f_e P_e (1 when uniform); gradient flows through P."""
    E = probs_TE.shape[-1]
    frac_E = jnp.mean(jax.nn.one_hot(expert_idx_T, E, dtype=jnp.float32), axis=0)
    return E * jnp.sum(jax.lax.stop_gradient(frac_E) * jnp.mean(probs_TE, axis=0))


def rlr_route(logits_TE, cfg: RouterConfig, *, is_training: bool, rng: jax.Array | None = None) -> RouterOutput:
    """RL-R: sample (training) or argmax (evaluation) the policy softmax(logits); gate 1."""
    logits_TE = _check_logits(logits_TE, cfg) / cfg.rlr_temperature
    if cfg.top_k != 1:
        raise ValidationError("router.top_k", f"RL-R routes top-1, got top_k={cfg.top_k}", "use top_k=1")
    logp_TE, entropy_T = _mean_entropy(logits_TE)
    if is_training:
        if rng is None:
            raise ValidationError("rng", "RL-R samples its experts in training and needs an rng key",
                                  "transform the model with an rng (hk.transform) and pass one to apply")
        expert_T = jax.random.categorical(rng, jax.lax.stop_gradient(logits_TE), axis=-1)
    else:
        expert_T = jnp.argmax(logits_TE, axis=-1)
    expert_T = expert_T.astype(jnp.int32)
    logprob_T = jnp.take_along_axis(logp_TE, expert_T[:, None], axis=-1)[:, 0]
    aux = cfg.rlr_balance_coef * switch_balance_loss(jnp.exp(logp_TE), expert_T) if is_training else jnp.zeros(())
    gate_TK = jnp.ones((logits_TE.shape[0], 1), jnp.float32)
    return RouterOutput(expert_T[:, None], gate_TK, jnp.asarray(aux, jnp.float32), logprob_T, entropy_T,
                        {"router_entropy": jnp.mean(entropy_T), "argmax_agreement": _agreement(expert_T[:, None], logits_TE)})


def _loo_baseline(reward_BT, mask_BT) -> jax.Array:
    """Leave-one-out mean reward at the same position over the other sequences (batch mean when B = 1)."""
    reward_BT = jax.lax.stop_gradient(jnp.asarray(reward_BT, jnp.float32))
    mask_BT = jnp.asarray(mask_BT, jnp.float32)
    r_BT = reward_BT * mask_BT
    if reward_BT.shape[0] > 1:
        loo_n_BT = jnp.sum(mask_BT, axis=0)[None, :] - mask_BT
        return (jnp.sum(r_BT, axis=0)[None, :] - r_BT) / jnp.maximum(loo_n_BT, 1.0)
    return jnp.full_like(r_BT, jnp.sum(r_BT) / jnp.maximum(jnp.sum(mask_BT), 1.0))


def rlr_advantage(reward_BT, mask_BT, *, normalize: bool = True, value_BT=None) -> jax.Array:
    """Advantage = reward minus the leave-one-out mean reward at the same position over the batch
    [minus the learned per-token baseline ``value_BT``].

    The position baseline of token (b, t) uses only other sequences, so it is independent of b's own
    routing and the estimator stays unbiased; per-position means remove the strong dependence of the
    loss on position. ``value_BT`` (RL-R's value head, computed from the router input before the expert
    is drawn) removes most of what is left: how hard the token is, which says nothing about the expert.
    ``normalize`` divides by the masked std (scale-free step size; a small, documented bias).
    """
    reward_BT = jax.lax.stop_gradient(jnp.asarray(reward_BT, jnp.float32))
    mask_BT = jnp.asarray(mask_BT, jnp.float32)
    adv_BT = (reward_BT - _loo_baseline(reward_BT, mask_BT)) * mask_BT
    if value_BT is not None:
        adv_BT = adv_BT - jax.lax.stop_gradient(jnp.asarray(value_BT, jnp.float32)) * mask_BT
    if normalize:
        n = jnp.maximum(jnp.sum(mask_BT), 1.0)
        var = jnp.sum(jnp.square(adv_BT - jnp.sum(adv_BT) / n) * mask_BT) / n
        adv_BT = adv_BT / (jnp.sqrt(var) + 1e-6)
    return jax.lax.stop_gradient(adv_BT)


def rlr_loss(logprob_BT, reward_BT, mask_BT, entropy_BT, cfg: RouterConfig, *, normalize: bool = True,
             value_BT=None) -> jax.Array:
    """REINFORCE surrogate for one routed layer: -coef * mean(A * log pi(e)) - entropy_coef * mean(H)
    [+ value_coef * MSE of the value head when ``value_BT`` is given].

    ``reward_BT`` is the per-token log-likelihood of the next token (stop-gradient applied here);
    ``mask_BT`` marks real tokens; ``value_BT`` is the learned baseline (``rlr_advantage``). The
    surrogate's gradient wrt the router logits is an unbiased estimate of -coef * grad E[reward]
    (with ``normalize=False``), plus the entropy bonus.
    """
    if not isinstance(cfg, RouterConfig):
        raise ValidationError("cfg", f"must be a RouterConfig, got {type(cfg).__name__}")
    arrays = (logprob_BT, reward_BT, mask_BT, entropy_BT) + (() if value_BT is None else (value_BT,))
    shapes = {jnp.shape(a) for a in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValidationError("rlr_loss", f"logprob, reward, mask, entropy (and value) must share one [B, T] shape, "
                              f"got {shapes}")
    mask_BT = jnp.asarray(mask_BT, jnp.float32)
    adv_BT = rlr_advantage(reward_BT, mask_BT, normalize=normalize, value_BT=value_BT)
    n = jnp.maximum(jnp.sum(mask_BT), 1.0)
    surrogate = -jnp.sum(adv_BT * logprob_BT * mask_BT) / n
    bonus = jnp.sum(entropy_BT * mask_BT) / n
    total = cfg.rlr_loss_coef * surrogate - cfg.rlr_entropy_coef * bonus
    if value_BT is not None:
        target_BT = jax.lax.stop_gradient(jnp.asarray(reward_BT, jnp.float32) - _loo_baseline(reward_BT, mask_BT))
        total = total + cfg.rlr_value_coef * jnp.sum(jnp.square(value_BT - target_BT) * mask_BT) / n
    return total


# ------------------------------------------------------------------------------------------------ HASH

def hash_table(vocab_size: int, n_experts: int, seed: int = 0, token_counts=None) -> np.ndarray:
    """Fixed token-id -> expert table (int32 [V]); numpy's seeded generator, so equal in every process.

    Without counts: a random permutation of the ids dealt round-robin, so every expert owns floor or
    ceil of V/E ids. With ``token_counts`` [V]: ids in a seeded random order, stably sorted by count
    (most frequent first), each given to the expert with the least total count so far (greedy
    frequency balance; ties go to the lowest expert index).
    """
    V = check_int("vocab_size", vocab_size, min_value=1)
    E = check_int("router.n_experts", n_experts, min_value=1)
    seed = check_int("router.hash_seed", seed, min_value=0)
    perm = np.random.default_rng(seed).permutation(V)
    table = np.empty(V, np.int32)
    if token_counts is None:
        table[perm] = np.arange(V) % E
        return table
    counts = np.asarray(token_counts, np.float64)
    if counts.shape != (V,) or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValidationError("token_counts", f"must be {V} finite non-negative counts, got shape {counts.shape}",
                              "count every vocabulary id once")
    order = perm[np.argsort(-counts[perm], kind="stable")]
    load = np.zeros(E)
    for i in order:
        e = int(np.argmin(load))
        table[i] = e
        load[e] += counts[i]
    return table


def check_hash_table(table, vocab_size: int, n_experts: int) -> np.ndarray:
    """Validate a HASH table against the model's vocabulary and expert count."""
    table = np.asarray(table)
    if table.ndim != 1 or table.shape[0] != vocab_size:
        raise ValidationError("hash_table", f"has shape {table.shape}, the vocabulary has {vocab_size} ids",
                              "build the table with hash_table(vocab_size, n_experts, seed)")
    if not np.issubdtype(table.dtype, np.integer) or table.min(initial=0) < 0 or table.max(initial=0) >= n_experts:
        raise ValidationError("hash_table", f"entries must be integers in [0, {n_experts})",
                              "rebuild it for this n_experts")
    return table.astype(np.int32)


def hash_route(token_ids_T, cfg: RouterConfig, table) -> RouterOutput:
    """HASH: expert = table[token id]; gate 1, no parameters, no auxiliary loss."""
    if not isinstance(cfg, RouterConfig):
        raise ValidationError("cfg", f"must be a RouterConfig, got {type(cfg).__name__}")
    if cfg.top_k != 1:
        raise ValidationError("router.top_k", f"HASH routes top-1, got top_k={cfg.top_k}", "use top_k=1")
    table = jnp.asarray(table, jnp.int32)
    ids_T = jnp.asarray(token_ids_T)
    if ids_T.ndim != 1 or not jnp.issubdtype(ids_T.dtype, jnp.integer):
        raise ValidationError("token_ids_T", f"must be a 1-d integer array, got {ids_T.dtype} {ids_T.shape}")
    try:  # concrete ids (outside jit) are checked; traced ids cannot be
        ids_np = np.asarray(token_ids_T)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        ids_np = None
    if ids_np is not None and ids_np.size and (ids_np.min() < 0 or ids_np.max() >= table.shape[0]):
        raise ValidationError("token_ids_T", f"ids must lie in [0, {table.shape[0]})", "match the tokenizer to the model")
    expert_T = table[ids_T]
    T = ids_T.shape[0]
    zeros_T = jnp.zeros((T,), jnp.float32)
    return RouterOutput(expert_T[:, None], jnp.ones((T, 1), jnp.float32), jnp.zeros((), jnp.float32), zeros_T,
                        zeros_T, {"router_entropy": jnp.zeros((), jnp.float32), "argmax_agreement": jnp.ones((), jnp.float32)})


def route(cfg: RouterConfig, *, logits_TE=None, token_ids_T=None, is_training: bool, rng=None, table=None) -> RouterOutput:
    """Dispatch to the router named by ``cfg.kind``."""
    if not isinstance(cfg, RouterConfig):
        raise ValidationError("cfg", f"must be a RouterConfig, got {type(cfg).__name__}")
    if cfg.kind == "sbase":
        return sbase_route(logits_TE, cfg, is_training=is_training)
    if cfg.kind == "rlr":
        return rlr_route(logits_TE, cfg, is_training=is_training, rng=rng)
    if cfg.kind == "hash":
        if table is None:
            raise ValidationError("hash_table", "HASH routing needs a table", "pass hash_table(V, E, seed)")
        return hash_route(token_ids_T, cfg, table)
    raise ValidationError("router.kind", f"{cfg.kind!r} is not a routed router", "use sbase, rlr or hash")


# ------------------------------------------------------------------------ S-BASE: global vs per shard

def sbase_choice(logits_TE, cfg: RouterConfig) -> jax.Array:
    """Top-1 expert [T] of the Sinkhorn plan over the tokens given (what S-BASE does in training)."""
    return sbase_route(logits_TE, cfg, is_training=True).expert_idx_TK[:, 0]


def sbase_per_shard(logits_TE, cfg: RouterConfig, mesh: Mesh) -> jax.Array:
    """Experts [T] when every data shard balances only its own tokens (``shard_map`` over 'data'); the
    alternative to the default global balance, kept for measurement."""
    check_mesh(mesh)
    # check_vma=False: Sinkhorn's loop starts from an unvarying carry; each shard's loop is purely local
    fn = jax.shard_map(lambda z: sbase_choice(z, cfg), mesh=mesh, in_specs=P(DATA), out_specs=P(DATA), check_vma=False)
    return jax.jit(fn)(jax.device_put(logits_TE, NamedSharding(mesh, P(DATA))))


def balance_stats(expert_T, logits_TE, n_experts: int, n_shards: int) -> dict:
    """max/mean load over the whole batch, the worst shard's max/mean load, and the share of tokens sent to
    their highest-logit expert (how much balancing overrode the router's preference)."""
    e = np.asarray(expert_T)
    n_experts = check_int("n_experts", n_experts, min_value=1)
    n_shards = check_int("n_shards", n_shards, min_value=1)
    if e.ndim != 1 or e.size % n_shards:
        raise ValidationError("expert_T", f"must be 1-d with a length divisible by {n_shards} shards, got {e.shape}")
    loads = np.bincount(e, minlength=n_experts) / e.size
    per = [np.bincount(s, minlength=n_experts) / s.size for s in np.split(e, n_shards)]
    return {"max_over_mean": float(loads.max() * n_experts),
            "worst_shard_max_over_mean": float(max(p.max() for p in per) * n_experts),
            "top1_agreement": float(np.mean(e == np.argmax(np.asarray(logits_TE), axis=-1)))}


def sbase_balance(logits_TE, cfg: RouterConfig, mesh: Mesh) -> dict:
    """Balance of S-BASE over the global batch (the default, computed under jit with tokens split over
    'data') vs per data shard, on the same logits: {'global': stats, 'per_shard': stats}."""
    check_mesh(mesh)
    S = mesh.shape[DATA]
    if logits_TE.shape[0] % S:
        raise ValidationError("logits_TE", f"{logits_TE.shape[0]} tokens do not split over {S} data shards")
    sharded = jax.device_put(logits_TE, NamedSharding(mesh, P(DATA)))
    glob = jax.jit(lambda z: sbase_choice(z, cfg))(sharded)
    local = sbase_per_shard(logits_TE, cfg, mesh)
    return {"global": balance_stats(glob, logits_TE, cfg.n_experts, S),
            "per_shard": balance_stats(local, logits_TE, cfg.n_experts, S)}
