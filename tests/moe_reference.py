"""Slow, obvious references that the fast paths of ``routing_laws`` are tested against.

``routed_ffn_reference``: the routed FFN as a Python loop over experts (MaxText keeps its loop
reference in its MoE test the same way). ``sinkhorn_reference``: plain alternating row/column
normalisation of exp(z / tau) in numpy float64, sweep after sweep, with no early stop.
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


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def sinkhorn_reference(z_TE, temperatures) -> np.ndarray:
    """log of the plan after one sweep per temperature, in float64: each sweep makes every row of
    exp((z + u + v) / tau) sum to 1 (solve for u), then every column sum to T / E (solve for v); the
    potentials u, v are in logit units, so v carries over when tau changes. ``z_TE`` is already
    standardised. Returns (z + u + v) / tau at the last temperature, rows normalised last."""
    z = np.asarray(z_TE, np.float64)
    T, E = z.shape
    taus = [float(t) for t in temperatures]
    v = np.zeros(E)
    for tau in taus:
        u = -tau * _lse((z + v[None, :]) / tau, axis=1)
        v = tau * np.log(T / E) - tau * _lse((z + u[:, None]) / tau, axis=0)
    tau = taus[-1]
    u = -tau * _lse((z + v[None, :]) / tau, axis=1)
    return (z + u[:, None] + v[None, :]) / tau
