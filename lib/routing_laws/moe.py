"""Feed-forward blocks: the dense FFN and the routed FFN (top-K dispatch into a capacity buffer).

Shape glossary: B batch, T sequence, D d_model, F d_ff = 4 D, E experts, K experts per token,
C expert capacity, N = K * T' routed token-slots (T' = B * T tokens routed together), S = E * C slots.

Capacity: C = min(ceil(capacity_factor * T' * K / E), T'): rounded up so the buffer never holds less
than cf times the mean load, and capped at T' (one expert never receives a token twice, so more slots
would only add padded work; this keeps E = 1 as cheap as the dense FFN).
At evaluation ``router.eval_capacity_factor`` applies instead; its default ``None`` drops nothing
(C = T'), so a token's evaluated output never depends on what other tokens of the batch chose; on one
device it runs at the smallest of a few static capacities that holds the busiest expert
(``dropless_ffn_apply``), which gives the same outputs at a fraction of the C = T' work.
Priority: slots fill in choice-major order (every token's first choice before any second choice),
then by token position; token-slots over capacity are dropped (output 0 for that slot; the residual
connection outside the block carries the token on).
Fast path: a stable argsort of the N expert ids gives each token-slot its position inside its
expert; tokens are gathered into the [E, C, D] buffer, experts run as one batched einsum, and outputs
are gathered back and weighted by the gates. No [T, E, C] one-hot tensors (quadratic in tokens).
``routed_ffn_reference`` is the obvious per-expert loop with the same dropping rule, for tests.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from routing_laws import dispatch, routers
from routing_laws.config import ModelConfig
from routing_laws.errors import ValidationError, check_float, check_int


class RoutingAux(NamedTuple):
    aux_loss: jax.Array  # scalar, already weighted, added to the LM loss
    logprob_BT: jax.Array  # log-prob of the chosen expert under the RL-R policy (zeros otherwise)
    entropy_BT: jax.Array  # RL-R policy entropy per token (zeros otherwise)
    metrics: dict  # load_E, dropped_frac, router_entropy, max_over_mean_load
    value_BT: jax.Array | None = None  # RL-R learned baseline per token (None unless rlr_baseline="learned")


def capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert: ceil(cf * tokens * K / E), at least 1 and at most ``n_tokens``."""
    T = check_int("n_tokens", n_tokens, min_value=1)
    E = check_int("router.n_experts", n_experts, min_value=1)
    K = check_int("router.top_k", top_k, min_value=1, max_value=E)
    cf = check_float("router.capacity_factor", capacity_factor, min_value=0.0, min_exclusive=True)
    return max(1, min(T, math.ceil(cf * T * K / E - 1e-9)))


def _gelu(x):
    return jax.nn.gelu(x, approximate=True)


def fan_in_init(*fan_in_axes: int, scale: float = 1.0) -> hk.initializers.Initializer:
    """Truncated-normal init with std sqrt(scale / fan-in), the fan-in being the product of ``fan_in_axes``.

    A weight's fan-in is its contraction axis. Haiku's default for a tensor of more than two axes
    treats every leading axis as a convolution's receptive field (fan-in = prod(shape[:-1])), which
    would make each expert of ``w_in [E, D, F]`` sqrt(E) too small; naming the axes avoids it.
    """
    return hk.initializers.VarianceScaling(scale, "fan_in", "truncated_normal", fan_in_axes=fan_in_axes)


def slot_positions(expert_idx_TK: jax.Array, n_experts: int) -> jax.Array:
    """Position of each token-slot inside its expert's queue ([T, K] int32), choice-major priority."""
    T, K = expert_idx_TK.shape
    e_N = expert_idx_TK.T.reshape(-1)  # choice-major: all first choices, then all second choices
    order_N = jnp.argsort(e_N, stable=True)
    counts_E = jnp.bincount(e_N, length=n_experts)
    starts_E = jnp.cumsum(counts_E) - counts_E
    pos_sorted_N = jnp.arange(e_N.shape[0], dtype=jnp.int32) - starts_E[e_N[order_N]].astype(jnp.int32)
    pos_N = jnp.zeros_like(pos_sorted_N).at[order_N].set(pos_sorted_N, unique_indices=True)
    return pos_N.reshape(K, T).T


def routed_ffn_apply(x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK, capacity_: int):
    """Fast routed FFN: y_T = sum_k gate_k * FFN_{e_k}(x_T) over kept slots; also returns kept_TK.

    Tokens are written into an [E, C, D] buffer by a scatter of their slot ids (queue order from
    ``slot_positions``; over-capacity slots go to a dropped sentinel), experts run as one batched
    matmul, and a gather brings each slot's output back (``dispatch`` holds the pieces).
    """
    E = w_in_EDF.shape[0]
    slot_TK, kept_TK, buf_ECD = dispatch.dispatch_group(x_TD, expert_idx_TK, capacity_, E)
    y_ECD = dispatch.run_experts(buf_ECD[None], w_in_EDF, w_out_EFD)[0]
    return dispatch.combine_group(y_ECD, slot_TK, kept_TK, gate_TK), kept_TK


def dropless_capacities(n_tokens: int, n_experts: int, top_k: int) -> tuple[int, ...]:
    """Static capacity buckets for dropless evaluation: 2, 4, 8, ... x the mean load, then n_tokens."""
    caps, f = set(), 2.0
    while True:
        c = capacity(n_tokens, n_experts, top_k, f)
        caps.add(c)
        if c >= n_tokens:
            return tuple(sorted(caps))
        f *= 2.0


def dropless_ffn_apply(x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK):
    """``routed_ffn_apply`` with no slot dropped, at the cost of the busiest expert's load, not of C = T.

    A buffer of C = T slots per expert (always dropless) runs every expert on T rows: 64x the dense
    FFN's work at E = 64, most of a CPU evaluation. Instead the smallest bucket of
    ``dropless_capacities`` that holds the busiest expert's queue is chosen at run time
    (``lax.switch`` over static shapes), so nothing is dropped and balanced routing costs ~2-4x.
    """
    T, K = expert_idx_TK.shape
    E = w_in_EDF.shape[0]
    caps = dropless_capacities(T, E, K)
    max_load = jnp.max(jnp.bincount(expert_idx_TK.reshape(-1), length=E))
    branch = jnp.searchsorted(jnp.asarray(caps, jnp.int32), max_load.astype(jnp.int32))  # first cap >= max load
    fns = [lambda x, wi, wo, i, g, c=c: routed_ffn_apply(x, wi, wo, i, g, c) for c in caps]
    return jax.lax.switch(jnp.minimum(branch, len(caps) - 1), fns, x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK)


def routed_ffn_reference(x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK, capacity_: int):
    """Slow obvious reference: a Python loop over experts fills each queue (choice-major, then token
    order) up to capacity; then every expert runs on every token and a [E, T] weight keeps the kept
    slots. Needs concrete indices; differentiable in x, weights and gates."""
    idx = np.asarray(expert_idx_TK)
    T, K = idx.shape
    E = w_in_EDF.shape[0]
    kept = np.zeros((T, K), bool)
    for e in range(E):
        queue = [(t, k) for k in range(K) for t in range(T) if idx[t, k] == e]
        for t, k in queue[:capacity_]:
            kept[t, k] = True
    onehot_TKE = np.eye(E, dtype=np.float32)[idx] * kept[:, :, None]
    weight_ET = jnp.einsum("tke,tk->et", jnp.asarray(onehot_TKE), gate_TK)
    out_ETD = jnp.einsum("etf,efd->etd", _gelu(jnp.einsum("td,edf->etf", x_TD, w_in_EDF)), w_out_EFD)
    return jnp.einsum("etd,et->td", out_ETD, weight_ET), jnp.asarray(kept)


def routing_metrics(expert_idx_TK, kept_TK, n_experts: int, router_entropy) -> dict:
    """load_E (share of token-slots sent to each expert, before dropping), dropped_frac, max/mean load."""
    counts_E = jnp.bincount(expert_idx_TK.reshape(-1), length=n_experts).astype(jnp.float32)
    n = jnp.float32(expert_idx_TK.size)
    load_E = counts_E / n
    return {
        "load_E": load_E,
        "dropped_frac": 1.0 - jnp.sum(kept_TK.astype(jnp.float32)) / n,
        "router_entropy": jnp.asarray(router_entropy, jnp.float32),
        "max_over_mean_load": jnp.max(load_E) * n_experts,
    }


class DenseFFN(hk.Module):
    """Dense FFN: GELU(x W_in) W_out, no biases, D -> 4D -> D."""

    def __init__(self, d_ff: int | None = None, name: str | None = None):
        super().__init__(name=name)
        self.d_ff = d_ff

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        D = x_BTD.shape[-1]
        F = self.d_ff or 4 * D
        w_in = hk.get_parameter("w_in", [D, F], init=fan_in_init(0))
        w_out = hk.get_parameter("w_out", [F, D], init=fan_in_init(0))
        return _gelu(x_BTD @ w_in.astype(x_BTD.dtype)) @ w_out.astype(x_BTD.dtype)


class RoutedFFN(hk.Module):
    """E expert FFNs of the dense FFN's shape behind a router (``cfg.router.kind``: sbase, rlr, hash).

    RL-R needs an rng in training (``hk.next_rng_key``). HASH uses ``hash_table`` if given (e.g. a
    frequency-balanced table from the corpus counts), else the vocabulary-balanced seeded table.
    """

    def __init__(self, cfg: ModelConfig, name: str | None = None, *, hash_table=None):
        super().__init__(name=name)
        if not isinstance(cfg, ModelConfig):
            raise ValidationError("cfg", f"must be a ModelConfig, got {type(cfg).__name__}")
        if not cfg.router.routed:
            raise ValidationError("router.kind", "RoutedFFN needs a routed router (sbase, rlr, hash)",
                                  "use DenseFFN for router 'dense'")
        self.cfg = cfg
        self.rcfg = cfg.router
        self.table = None
        if self.rcfg.kind == "hash":
            table = hash_table if hash_table is not None else routers.hash_table(
                cfg.vocab_size, self.rcfg.n_experts, self.rcfg.hash_seed)
            self.table = routers.check_hash_table(table, cfg.vocab_size, self.rcfg.n_experts)

    def __call__(self, x_BTD: jax.Array, token_ids_BT: jax.Array, *, is_training: bool):
        B, T, D = x_BTD.shape
        if D != self.cfg.d_model:
            raise ValidationError("x_BTD", f"last dim {D} != d_model {self.cfg.d_model}")
        E, F, rc = self.rcfg.n_experts, self.cfg.d_ff, self.rcfg
        w_in = hk.get_parameter("w_in", [E, D, F], init=fan_in_init(1))  # each expert contracts over D
        w_out = hk.get_parameter("w_out", [E, F, D], init=fan_in_init(1))  # ... and over F
        x_TD = x_BTD.reshape(B * T, D)
        if rc.kind == "hash":
            out = routers.hash_route(jnp.reshape(token_ids_BT, (B * T,)), rc, self.table)
        else:
            # small router init: routing starts near-uniform (Switch/MaxText practice)
            w_router = hk.get_parameter("w_router", [D, E], jnp.float32,
                                        init=fan_in_init(0, scale=0.1))
            detach = rc.kind == "rlr" and rc.rlr_detach_input
            x_in_TD = jax.lax.stop_gradient(x_TD) if detach else x_TD  # RL-R: policy terms train the router only
            logits_TE = x_in_TD.astype(jnp.float32) @ w_router.astype(jnp.float32)
            rng = hk.maybe_next_rng_key() if (rc.kind == "rlr" and is_training) else None
            out = routers.route(rc, logits_TE=logits_TE, is_training=is_training, rng=rng)
        value_BT = None
        if rc.has_value_head:
            # value head on the stop-gradient router input: it predicts the token's reward (relative to
            # the position mean) before the expert is drawn, so as a baseline it keeps REINFORCE unbiased
            w_value = hk.get_parameter("w_value", [D], jnp.float32, init=jnp.zeros)
            b_value = hk.get_parameter("b_value", [], jnp.float32, init=jnp.zeros)
            value_BT = (jax.lax.stop_gradient(x_TD.astype(jnp.float32)) @ w_value + b_value).reshape(B, T)
        cf = rc.capacity_factor if is_training else rc.eval_capacity_factor
        G = rc.dispatch_groups
        Tg = max(1, B * T // G)  # grouped_ffn_apply rejects a G that does not divide B * T
        C = Tg if cf is None else capacity(Tg, E, rc.top_k, cf)  # None: dropless evaluation
        if G == 1 and cf is None and dispatch.current_mesh() is None:  # dropless evaluation, one device
            y_TD, kept_TK = dropless_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK)
        elif G == 1:  # one global queue (on a mesh XLA partitions it)
            y_TD, kept_TK = routed_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK, C)
        else:
            y_TD, kept_TK = dispatch.grouped_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK, C, G,
                                                       dispatch.current_mesh())
        metrics = routing_metrics(out.expert_idx_TK, kept_TK, E, out.metrics["router_entropy"])
        aux = RoutingAux(out.aux_loss, out.logprob_T.reshape(B, T), out.entropy_T.reshape(B, T), metrics, value_BT)
        return y_TD.reshape(B, T, D).astype(x_BTD.dtype), aux
