"""Haiku decoder-only transformer LM with routed FFNs, and its exact parameter / FLOP accounting.

Shape glossary: B batch, T time (sequence), D d_model, F d_ff = 4 D, H heads, K head size,
V vocabulary, E experts, L layers.

Architecture (pre-LayerNorm): token + learned position embeddings -> L x [x + Attn(LN(x));
x + FFN(LN(x))] -> LN -> logits with the token embedding tied as output matrix. Attention has no
biases, FFNs have no biases and d_ff = 4 D, as in the paper's configurations. FFN ``i`` is routed
when ``i in cfg.routed_layers`` (every 1/R-th layer).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp

from routing_laws import lm_head
from routing_laws.config import ModelConfig
from routing_laws.moe import DenseFFN, RoutedFFN, fan_in_init


class CausalSelfAttention(hk.Module):
    """Multi-head causal self-attention, no biases; softmax in float32."""

    def __init__(self, n_heads: int, head_dim: int, name: str | None = None):
        super().__init__(name=name)
        self.n_heads, self.head_dim = n_heads, head_dim

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        B, T, D = x_BTD.shape
        H, K = self.n_heads, self.head_dim
        w_qkv = hk.get_parameter("w_qkv", (D, 3, H, K), init=fan_in_init(0)).astype(x_BTD.dtype)  # contracts D
        w_o = hk.get_parameter("w_o", (H, K, D), init=fan_in_init(0, 1)).astype(x_BTD.dtype)  # contracts H * K
        q_BTHK, k_BTHK, v_BTHK = jnp.split(jnp.einsum("btd,dshk->sbthk", x_BTD, w_qkv), 3, axis=0)
        q_BTHK, k_BTHK, v_BTHK = q_BTHK[0], k_BTHK[0], v_BTHK[0]
        scores_BHTS = jnp.einsum("bthk,bshk->bhts", q_BTHK, k_BTHK).astype(jnp.float32) / math.sqrt(K)
        causal_TS = jnp.tril(jnp.ones((T, T), dtype=bool))
        scores_BHTS = jnp.where(causal_TS, scores_BHTS, -1e30)
        probs_BHTS = jax.nn.softmax(scores_BHTS, axis=-1).astype(x_BTD.dtype)
        out_BTHK = jnp.einsum("bhts,bshk->bthk", probs_BHTS, v_BTHK)
        return jnp.einsum("bthk,hkd->btd", out_BTHK, w_o)


def _layer_norm(name: str) -> hk.LayerNorm:
    return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name=name)


class LM(hk.Module):
    """The routed transformer LM. ``__call__`` returns (logits_BTV float32, [RoutingAux per routed layer])."""

    def __init__(self, cfg: ModelConfig, name: str | None = "lm"):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, token_ids_BT: jax.Array, *, is_training: bool, dtype=jnp.float32, targets_BT=None):
        """(logits_BTV, auxes); with ``targets_BT``, (log p(target)_BT, auxes) without the full logits on CPU."""
        cfg = self.cfg
        B, T = token_ids_BT.shape
        if T > cfg.seq_len:
            raise ValueError(f"sequence length {T} exceeds model.seq_len={cfg.seq_len}")
        embed = hk.Embed(cfg.vocab_size, cfg.d_model, w_init=hk.initializers.TruncatedNormal(0.02), name="embed")
        pos_TD = hk.get_parameter("pos_embed", (cfg.seq_len, cfg.d_model), init=hk.initializers.TruncatedNormal(0.02))
        x_BTD = (embed(token_ids_BT) + pos_TD[:T]).astype(dtype)
        routed = set(cfg.routed_layers)
        auxes = []
        for i in range(cfg.n_layers):
            h_BTD = _layer_norm(f"ln_attn_{i}")(x_BTD)
            x_BTD = x_BTD + CausalSelfAttention(cfg.n_heads, cfg.head_dim, name=f"attn_{i}")(h_BTD)
            h_BTD = _layer_norm(f"ln_ffn_{i}")(x_BTD)
            if i in routed:
                y_BTD, aux = RoutedFFN(cfg, name=f"moe_{i}")(h_BTD, token_ids_BT, is_training=is_training)
                auxes.append(aux)
            else:
                y_BTD = DenseFFN(cfg.d_ff, name=f"ffn_{i}")(h_BTD)
            x_BTD = x_BTD + y_BTD.astype(dtype)
        x_BTD = _layer_norm("ln_final")(x_BTD)
        if targets_BT is not None:
            w_VD = embed.embeddings.astype(dtype)
            return lm_head.token_logprob(x_BTD.reshape(B * T, -1), w_VD, targets_BT.reshape(-1)).reshape(B, T), auxes
        # a 2-D matmul, not a 3-D einsum: XLA:CPU ran this product and its gradient 2.3x faster in isolation
        logits_BTV = (x_BTD.reshape(B * T, -1) @ embed.embeddings.astype(dtype).T).reshape(B, T, -1).astype(jnp.float32)
        return logits_BTV, auxes


def build(cfg: ModelConfig) -> hk.Transformed:
    """``hk.transform`` of the LM: ``init(rng, tokens_BT, is_training)``, ``apply(params, rng, tokens_BT, is_training)``."""

    def forward(token_ids_BT, is_training: bool = False, dtype=jnp.float32, targets_BT=None):
        return LM(cfg)(token_ids_BT, is_training=is_training, dtype=dtype, targets_BT=targets_BT)

    return hk.transform(forward)


# ---------------------------------------------------------------- accounting

class Accounting(NamedTuple):
    """Counts for one configuration (all exact integers except B)."""

    N: int  # non-embedding parameters of the dense base model (the paper's N)
    P: int  # all parameters, every expert and router counted, embeddings included
    P_non_embedding: int  # P without token and position embeddings
    F: int  # forward FLOPs per token, routing included (see flops_per_token)
    B: float  # parameter utilisation ratio P / F (the paper's Eq. 2)
    E: int
    n_routed_layers: int


def dense_params(cfg: ModelConfig) -> int:
    """N: per layer Q,K,V,O (4 D H K) + FFN (8 D^2, no biases) + two LayerNorms (4 D); plus final LayerNorm (2 D)."""
    D, HK = cfg.d_model, cfg.n_heads * cfg.head_dim
    return cfg.n_layers * (4 * D * HK + 8 * D * D + 4 * D) + 2 * D


def _router_params(cfg: ModelConfig) -> int:
    """Router weights per routed layer: D x E logits, plus RL-R's learned-baseline value head (D + 1)."""
    rc = cfg.router
    if rc.kind not in ("sbase", "rlr"):
        return 0
    value_head = cfg.d_model + 1 if rc.has_value_head else 0
    return cfg.d_model * rc.n_experts + value_head


def count_params(cfg: ModelConfig) -> Accounting:
    """Exact N, P, F, B for ``cfg`` (tests check these against the real parameter tree)."""
    D, E = cfg.d_model, cfg.router.n_experts
    n_routed = len(cfg.routed_layers)
    N = dense_params(cfg)
    extra = n_routed * ((E - 1) * 8 * D * D + _router_params(cfg))
    p_ne = N + extra
    P = p_ne + cfg.vocab_size * D + cfg.seq_len * D
    F = flops_per_token(cfg)
    return Accounting(N=N, P=P, P_non_embedding=p_ne, F=F, B=P / F, E=E, n_routed_layers=n_routed)


def flops_per_token(cfg: ModelConfig) -> int:
    """Forward FLOPs per token: 2 x active non-embedding weights + attention over the full context
    (QK^T and AV: 4 T H K per layer) + router (2 D E per routed layer) + tied unembedding (2 D V).

    Like the paper's accounting it counts the whole context for every token (no causal halving);
    LayerNorm, softmax and GELU are left out (each under 1% at these sizes).
    """
    D, HK, T, L = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.seq_len, cfg.n_layers
    n_routed = len(cfg.routed_layers)
    active = dense_params(cfg) + n_routed * (cfg.router.top_k - 1) * 8 * D * D
    return 2 * active + 4 * L * T * HK + 2 * n_routed * _router_params(cfg) + 2 * D * cfg.vocab_size
