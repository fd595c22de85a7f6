"""The slow, obvious routed FFN that the fast paths of ``routing_laws.moe`` are tested against.

``routed_ffn_reference`` is the routed FFN as a Python loop over experts (MaxText keeps its loop
reference beside its MoE test the same way). The Sinkhorn reference lives in test_routers.py.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from routing_laws import moe


def routed_ffn_reference(x_TD, w_in_EDF, w_out_EFD, expert_idx_TK, gate_TK, capacity_: int):
    """A Python loop over experts fills each queue (choice-major, then token order) up to capacity; then
    every expert runs on every token and a [E, T] weight keeps the kept slots. Needs concrete indices;
    differentiable in x, weights and gates. Returns (y [T, D], kept [T, K])."""
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
    out_ETD = jnp.einsum("etf,efd->etd", moe.gelu(jnp.einsum("td,edf->etf", x_TD, w_in_EDF)), w_out_EFD)
    return jnp.einsum("etd,et->td", out_ETD, weight_ET), jnp.asarray(kept)
