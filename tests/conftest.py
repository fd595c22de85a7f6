"""Shared fixtures: tiny configs and a synthetic token stream so model/train tests run in seconds."""

from __future__ import annotations

import os
import types

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np
import pytest

from routing_laws.config import ModelConfig, RouterConfig, TrainConfig


def tiny_model(router: str = "dense", experts: int = 1, **kw) -> ModelConfig:
    rc = RouterConfig(kind=router, n_experts=experts, **{k: v for k, v in kw.items() if k in RouterConfig.__dataclass_fields__})
    mk = {k: v for k, v in kw.items() if k in ModelConfig.__dataclass_fields__}
    base = dict(vocab_size=64, d_model=16, n_layers=2, n_heads=2, head_dim=8, seq_len=16)
    base.update(mk)
    return ModelConfig(router=rc, **base)


def synthetic_tokens(vocab: int = 64, n: int = 20_000, seed: int = 0) -> np.ndarray:
    """A learnable stream: a noisy order-1 Markov chain, so loss must fall well below log(vocab)."""
    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, vocab, size=vocab)
    out = np.empty(n, dtype=np.uint16)
    out[0] = 0
    noise = rng.random(n) < 0.1
    rand = rng.integers(0, vocab, size=n)
    for i in range(1, n):
        out[i] = rand[i] if noise[i] else nxt[out[i - 1]]
    return out


@pytest.fixture
def tiny_data():
    return types.SimpleNamespace(train=synthetic_tokens(seed=0), val=synthetic_tokens(n=4000, seed=0)[::-1].copy(),
                                 vocab_size=64, meta={"hash": "synthetic", "name": "markov"})


@pytest.fixture
def tiny_train():
    return TrainConfig(tokens=16 * 16 * 40, batch_size=16, learning_rate=1e-2, eval_tokens=16 * 16 * 4)
