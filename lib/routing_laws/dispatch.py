"""Grouped dispatch for the routed FFN, and its expert-parallel form with explicit all-to-all (GShard style).

Shape glossary: G dispatch groups, T tokens (per group: Tg), D d_model, F d_ff, E experts (per expert
shard: El), C capacity per (group, expert), K experts per token, n devices on the expert axis.

``router.dispatch_groups = G`` splits the flattened batch into G equal, contiguous groups; each group has
its own capacity ``C = capacity(Tg, E, K, cf)`` and its own queues, so which tokens are dropped depends
only on the group. Routing itself (S-BASE's Sinkhorn included) stays over the whole batch. G = 1 is the
single global queue of ``moe.routed_ffn_apply``.

With G a multiple of the device count and a mesh whose expert axis is > 1 (``expert_parallel(mesh)``,
set by ``parallel.shard_training``), each device fills the [E, C, D] buffers of its own groups and an
``all_to_all`` over the expert axis hands every expert shard the slots for its experts:
[Gl, E, C, D] -> [Gl * n, El, C, D]; the experts run on local weights; a second all_to_all returns
the results. Traffic per device is O(cf * local tokens * D) instead of the O(all tokens * D) of the
gather that XLA's partitioner emits for the global queue. Both forms compute exactly the same numbers
(tests compare them with the one-device run and with the slow reference).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from routing_laws.errors import ValidationError, check_int
from routing_laws.parallel import DATA, EXPERT, check_mesh

_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("routing_laws_expert_mesh", default=None)


@contextlib.contextmanager
def expert_parallel(mesh: Mesh | None) -> Iterator[None]:
    """While tracing inside this block, routed layers with enough dispatch groups use all-to-all on ``mesh``."""
    if mesh is not None:
        check_mesh(mesh)
    token = _MESH.set(mesh)
    try:
        yield
    finally:
        _MESH.reset(token)


def current_mesh() -> Mesh | None:
    return _MESH.get()


def uses_all_to_all(mesh: Mesh | None, n_groups: int) -> bool:
    """True when ``mesh`` splits experts and every device holds whole dispatch groups."""
    return mesh is not None and mesh.shape[EXPERT] > 1 and n_groups % mesh.size == 0


def dispatch_group(x_TD, expert_idx_TK, capacity_: int, n_experts: int):
    """One group: slot ids [T, K] (E*C = dropped), kept [T, K] and the filled buffer [E, C, D]."""
    from routing_laws.moe import slot_positions

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
    E, C, D = y_ECD.shape
    y_pad = jnp.concatenate([y_ECD.reshape(E * C, D), jnp.zeros((1, D), y_ECD.dtype)], axis=0)
    return jnp.einsum("tkd,tk->td", y_pad[slot_TK], (gate_TK * kept_TK).astype(y_ECD.dtype))


def run_experts(buf_GECD, w_in_EDF, w_out_EFD):
    from routing_laws.moe import _gelu

    h = _gelu(jnp.einsum("gecd,edf->gecf", buf_GECD, w_in_EDF.astype(buf_GECD.dtype)))
    return jnp.einsum("gecf,efd->gecd", h, w_out_EFD.astype(buf_GECD.dtype))


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
