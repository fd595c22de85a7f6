"""Feed-forward blocks, dense and routed, and the routed FFN's kernels: capacity, queues, dispatch into a
capacity buffer, the experts' batched matmuls, combine, grouped and expert-parallel (all-to-all) dispatch.

Shape glossary: B batch, T sequence (or tokens routed together), D d_model, F d_ff = 4 D, E experts
(per expert shard: El), K experts per token, C expert capacity, N = K * T routed token-slots,
S = E * C slots, G dispatch groups (Tg tokens each), n devices on the mesh's expert axis.

Capacity: C = min(ceil(capacity_factor * T * K / E), T): rounded up so the buffer never holds less
than cf times the mean load, and capped at T (one expert never receives a token twice, so more slots
would only add padded work; this keeps E = 1 as cheap as the dense FFN).
At evaluation ``router.eval_capacity_factor`` applies instead; its default ``None`` drops nothing
(C = T), so a token's evaluated output never depends on what other tokens of the batch chose; on one
device it runs at the smallest of a few static capacities that holds the busiest expert
(``dropless_ffn_apply``), which gives the same outputs at a fraction of the C = T work.
Priority: slots fill in choice-major order (every token's first choice before any second choice),
then by token position; token-slots over capacity are dropped (output 0 for that slot; the residual
connection outside the block carries the token on).
Fast path: a stable argsort of the N expert ids gives each token-slot its position inside its
expert (``slot_positions``); tokens are gathered into the [E, C, D] buffer (``dispatch_group``),
experts run as one batched einsum (``run_experts``), and outputs are gathered back and weighted by the
gates (``combine_group``). No [T, E, C] one-hot tensors (quadratic in tokens). The tests compare it
with an obvious per-expert loop kept beside them (tests/moe_reference.py).

Grouped dispatch: ``router.dispatch_groups = G`` splits the flattened batch into G equal, contiguous
groups, each with its own capacity ``capacity(Tg, E, K, cf)`` and queues, so which tokens are dropped
depends only on the group; routing itself (S-BASE's Sinkhorn included) stays over the whole batch.
With G a multiple of the device count and a mesh whose expert axis is > 1 (``mesh.expert_parallel``,
set by ``parallel.shard_training``), each device fills the [E, C, D] buffers of its own groups and an
``all_to_all`` over the expert axis hands every expert shard the slots for its experts:
[Gl, E, C, D] -> [Gl * n, El, C, D]; the experts run on local weights; a second all_to_all returns
the results. Traffic per device is O(cf * local tokens * D) instead of the O(all tokens * D) of the
gather that XLA's partitioner emits for the global queue. Both forms compute the same numbers.

Routing metrics (``RoutingAux.metrics``, one dict per routed layer; ``train`` stacks
or averages them over layers into every training-curve point), every value a float32 scalar except ``load_E``:
- ``load_E`` [E]: share of token-slots sent to each expert, before dropping;
- ``max_over_mean_load``: max over experts of that load divided by the mean load 1/E (1 = balanced);
- ``dropped_frac``: share of token-slots over capacity (dropped);
- ``mean_gate``: mean gate value of the kept token-slots (the scale the router puts on expert outputs;
  1 for RL-R and HASH; about 1/E at init for S-BASE's softmax gate);
- ``router_entropy``: mean entropy of softmax(router logits), nats (0 for HASH);
- ``argmax_agreement``: share of tokens whose routed first choice is the plain argmax of the logits on
  the same batch; in training, how far S-BASE's Sinkhorn plan (or RL-R's sample) is from the routing
  that evaluation uses (1 for HASH, and at evaluation unless ``sbase_balanced_eval``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from routing_laws import routers
from routing_laws.config import ModelConfig
from routing_laws.errors import ValidationError, check_float, check_int
from routing_laws.mesh import DATA, EXPERT, check_mesh, current_mesh


class RoutingAux(NamedTuple):
    aux_loss: jax.Array  # scalar, already weighted, added to the LM loss
    logprob_BT: jax.Array  # log-prob of the chosen expert under the RL-R policy (zeros otherwise)
    entropy_BT: jax.Array  # RL-R policy entropy per token (zeros otherwise)
    metrics: dict  # the routing metrics of the module docstring
    value_BT: jax.Array | None = None  # RL-R learned baseline per token (None unless rlr_baseline="learned")


def capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert: ceil(cf * tokens * K / E), at least 1 and at most ``n_tokens``."""
    T = check_int("n_tokens", n_tokens, min_value=1)
    E = check_int("router.n_experts", n_experts, min_value=1)
    K = check_int("router.top_k", top_k, min_value=1, max_value=E)
    cf = check_float("router.capacity_factor", capacity_factor, min_value=0.0, min_exclusive=True)
    return max(1, min(T, math.ceil(cf * T * K / E - 1e-9)))


def gelu(x):
    """The FFN nonlinearity (tanh-approximate GELU), shared by the dense FFN and every expert."""
    return jax.nn.gelu(x, approximate=True)


def fan_in_init(*fan_in_axes: int, scale: float = 1.0) -> hk.initializers.Initializer:
    """Truncated-normal init with std sqrt(scale / fan-in), the fan-in being the product of ``fan_in_axes``.

    A weight's fan-in is its contraction axis. Haiku's default for a tensor of more than two axes
    treats every leading axis as a convolution's receptive field (fan-in = prod(shape[:-1])), which
    would make each expert of ``w_in [E, D, F]`` sqrt(E) too small; naming the axes avoids it.
    """
    return hk.initializers.VarianceScaling(scale, "fan_in", "truncated_normal", fan_in_axes=fan_in_axes)


# ------------------------------------------------------------------------------ one queue per expert

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


def dispatch_group(x_TD, expert_idx_TK, capacity_: int, n_experts: int):
    """One group: slot ids [T, K] (E*C = dropped), kept [T, K] and the filled buffer [E, C, D]."""
    T, D = x_TD.shape
    C, E = capacity_, n_experts
    pos_TK = slot_positions(expert_idx_TK, E)
    kept_TK = pos_TK < C
    slot_TK = jnp.where(kept_TK, expert_idx_TK * C + pos_TK, E * C)
    token_S = jnp.full((E * C,), T, jnp.int32).at[slot_TK.reshape(-1)].set(
        jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32)[:, None], slot_TK.shape).reshape(-1), mode="drop")
    x_pad = jnp.concatenate([x_TD, jnp.zeros((1, D), x_TD.dtype)], axis=0)
    return slot_TK, kept_TK, x_pad[token_S].reshape(E, C, D)


def combine_group(y_ECD, slot_TK, kept_TK, gate_TK):
    """y_T = sum_k gate_k * kept_k * y[slot_k]: each token's expert outputs gathered back and weighted."""
    E, C, D = y_ECD.shape
    y_pad = jnp.concatenate([y_ECD.reshape(E * C, D), jnp.zeros((1, D), y_ECD.dtype)], axis=0)
    return jnp.einsum("tkd,tk->td", y_pad[slot_TK], (gate_TK * kept_TK).astype(y_ECD.dtype))


def run_experts(buf_GECD, w_in_EDF, w_out_EFD):
    """Every expert's FFN on its own slots of every group: [G, E, C, D] -> [G, E, C, D].

    The matmuls run expert-major ([E, G*C, D] x [E, D, F]): with the group axis leading, XLA's CPU
    backward of the batched einsum was 3-4x slower than this layout (``bench train`` and the note of
    the speed work); for G = 1 the swap is free.
    """
    G, E, C, D = buf_GECD.shape
    x_END = jnp.swapaxes(buf_GECD, 0, 1).reshape(E, G * C, D)
    h_ENF = gelu(jnp.einsum("end,edf->enf", x_END, w_in_EDF.astype(buf_GECD.dtype)))
    y_END = jnp.einsum("enf,efd->end", h_ENF, w_out_EFD.astype(buf_GECD.dtype))
    return jnp.swapaxes(y_END.reshape(E, G, C, D), 0, 1)


def routed_ffn_apply(x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK, capacity_: int):
    """Fast routed FFN: y_T = sum_k gate_k * FFN_{e_k}(x_T) over kept slots; also returns kept_TK.

    Tokens are written into an [E, C, D] buffer by a scatter of their slot ids (queue order from
    ``slot_positions``; over-capacity slots go to a dropped sentinel), experts run as one batched
    matmul, and a gather brings each slot's output back.
    """
    E = w_in_EDF.shape[0]
    slot_TK, kept_TK, buf_ECD = dispatch_group(x_TD, expert_idx_TK, capacity_, E)
    y_ECD = run_experts(buf_ECD[None], w_in_EDF, w_out_EFD)[0]
    return combine_group(y_ECD, slot_TK, kept_TK, gate_TK), kept_TK


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


# --------------------------------------------------------------- grouped and expert-parallel dispatch

def uses_all_to_all(mesh: Mesh | None, n_groups: int) -> bool:
    """True when ``mesh`` splits experts and every device holds whole dispatch groups."""
    return mesh is not None and mesh.shape[EXPERT] > 1 and n_groups % mesh.size == 0


def _grouped_local(x_GTD, w_in_EDF, w_out_EFD, idx_GTK, gate_GTK, capacity_: int, n_experts: int):
    slot, kept, buf = jax.vmap(lambda x, i: dispatch_group(x, i, capacity_, n_experts))(x_GTD, idx_GTK)
    y = run_experts(buf, w_in_EDF, w_out_EFD)
    return jax.vmap(combine_group)(y, slot, kept, gate_GTK), kept


def _grouped_all_to_all(x_GTD, w_in_EDF, w_out_EFD, idx_GTK, gate_GTK, capacity_: int, n_experts: int):
    """Per device: local groups in, local groups out; experts reached through two all_to_alls over 'expert'."""
    slot, kept, buf_GECD = jax.vmap(lambda x, i: dispatch_group(x, i, capacity_, n_experts))(x_GTD, idx_GTK)
    # [Gl, E, C, D] -> [n * Gl, El, C, D]: my experts' slots from every group of my expert row
    buf = jax.lax.all_to_all(buf_GECD, EXPERT, split_axis=1, concat_axis=0, tiled=True)
    y = run_experts(buf, w_in_EDF, w_out_EFD)
    y_GECD = jax.lax.all_to_all(y, EXPERT, split_axis=0, concat_axis=1, tiled=True)
    return jax.vmap(combine_group)(y_GECD, slot, kept, gate_GTK), kept


def grouped_ffn_apply(x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK, capacity_: int, n_groups: int,
                      mesh: Mesh | None = None):
    """Routed FFN over ``n_groups`` contiguous token groups, capacity ``capacity_`` per (group, expert).

    Returns (y [T, D], kept [T, K]). With ``uses_all_to_all(mesh, n_groups)`` the experts run where their
    weights live (``shard_map`` + all_to_all); otherwise one program that XLA partitions as it likes.
    """
    T, D = x_TD.shape
    K = expert_idx_TK.shape[1]
    E = w_in_EDF.shape[0]
    G = check_int("router.dispatch_groups", n_groups, min_value=1)
    if T % G:
        raise ValidationError("router.dispatch_groups", f"{T} tokens per batch do not split into {G} equal groups",
                              "choose dispatch_groups dividing batch_size x seq_len")
    if mesh is not None:
        check_mesh(mesh)
    shaped = (x_TD.reshape(G, T // G, D), w_in_EDF, w_out_EFD, expert_idx_TK.reshape(G, T // G, K),
              gate_TK.reshape(G, T // G, K))
    if uses_all_to_all(mesh, G):
        if E % mesh.shape[EXPERT]:
            raise ValidationError("mesh.expert", f"n_experts={E} is not divisible by the expert axis {mesh.shape[EXPERT]}",
                                  "choose an expert axis dividing E")
        tok, exp = P((DATA, EXPERT)), P(EXPERT)
        fn = jax.shard_map(lambda *a: _grouped_all_to_all(*a, capacity_, E), mesh=mesh,
                           in_specs=(tok, exp, exp, tok, tok), out_specs=(tok, tok))
        y, kept = fn(*shaped)
    else:
        y, kept = _grouped_local(*shaped, capacity_, E)
    return y.reshape(T, D), kept.reshape(T, K)


# ------------------------------------------------------------------------------------------ metrics

def routing_metrics(expert_idx_TK, kept_TK, gate_TK, n_experts: int, router_metrics: dict) -> dict:
    """One routed layer's metrics (module docstring): load and drops from the queues, the kept slots' mean
    gate, and the router's own ``router_entropy`` and ``argmax_agreement``."""
    missing = {"router_entropy", "argmax_agreement"} - set(router_metrics)
    if missing:
        raise ValidationError("router_metrics", f"missing {sorted(missing)}", "return them from the router")
    counts_E = jnp.bincount(expert_idx_TK.reshape(-1), length=n_experts).astype(jnp.float32)
    n = jnp.float32(expert_idx_TK.size)
    load_E = counts_E / n
    kept = kept_TK.astype(jnp.float32)
    n_kept = jnp.sum(kept)
    return {
        "load_E": load_E,
        "max_over_mean_load": jnp.max(load_E) * n_experts,
        "dropped_frac": 1.0 - n_kept / n,
        "mean_gate": jnp.sum(jnp.asarray(gate_TK, jnp.float32) * kept) / jnp.maximum(n_kept, 1.0),
        "router_entropy": jnp.asarray(router_metrics["router_entropy"], jnp.float32),
        "argmax_agreement": jnp.asarray(router_metrics["argmax_agreement"], jnp.float32),
    }


# ---------------------------------------------------------------------------------------- the blocks

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
        return gelu(x_BTD @ w_in.astype(x_BTD.dtype)) @ w_out.astype(x_BTD.dtype)


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
        if G == 1 and cf is None and current_mesh() is None:  # dropless evaluation, one device
            y_TD, kept_TK = dropless_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK)
        elif G == 1:  # one global queue (on a mesh XLA partitions it)
            y_TD, kept_TK = routed_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK, C)
        else:
            y_TD, kept_TK = grouped_ffn_apply(x_TD, w_in, w_out, out.expert_idx_TK, out.gate_TK, C, G,
                                              current_mesh())
        metrics = routing_metrics(out.expert_idx_TK, kept_TK, out.gate_TK, E, out.metrics)
        aux = RoutingAux(out.aux_loss, out.logprob_T.reshape(B, T), out.entropy_T.reshape(B, T), metrics, value_BT)
        return y_TD.reshape(B, T, D).astype(x_BTD.dtype), aux
