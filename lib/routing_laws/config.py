"""Typed, validated configurations: model shape, router, training, and the named size ladder.

Every dataclass validates itself in ``__post_init__`` (a bad field raises ``ValidationError`` naming
the field and the fix), so a config that exists is a config that can run.

Shape glossary used across the package: B batch, T sequence (time), D d_model, F d_ff = 4 D,
H heads, K head size ("kqv size" in the paper), V vocabulary, E experts, C expert capacity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from routing_laws.errors import ValidationError, check_choice, check_float, check_int

ROUTERS = ("dense", "sbase", "rlr", "hash")
RLR_BASELINES = ("learned", "batch")
SBASE_GATES = ("softmax", "sigmoid", "st")
"""Router names: ``dense`` (no routing, E = 1), ``sbase`` (Sinkhorn-BASE), ``rlr`` (REINFORCE), ``hash``."""
ROUTER_LABELS = {"dense": "dense", "sbase": "S-BASE", "rlr": "RL-R", "hash": "HASH"}
"""Display names (the paper's spelling) of the router kinds, shared by sweeps, tables and charts."""

# name -> (d_model, n_layers, n_heads, head_dim). Shape ratios follow the paper's own configurations
# (d_ff = 4 d_model, head sizes 32-128): see data/paper/SOURCES.md. The small rungs are ours, sized for CPUs.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "100k": (64, 2, 2, 32),
    "200k": (96, 2, 3, 32),
    "400k": (136, 2, 4, 34),  # N = 445,264: with 100k (98,944) the cpu grid spans 4.5x in N
    # v2 rungs (the cpu grid from its second version on): 4 layers each, so R = 0.5 routes two FFNs (layers
    # 2 and 4, i.e. indices 1 and 3), never only the last one; named by N (model.dense_params): 111,456 /
    # 197,760 / 444,096 non-embedding parameters, a 3.98x span; head_dim * n_heads = d_model as below
    "110k-L4": (48, 4, 2, 24),
    "200k-L4": (64, 4, 2, 32),
    "440k-L4": (96, 4, 3, 32),
    "800k": (128, 4, 4, 32),
    "1.6M": (192, 4, 6, 32),
    "3M": (256, 4, 8, 32),
    "6M": (256, 8, 8, 32),
    "12M": (384, 6, 6, 64),
    "25M": (512, 8, 8, 64),
    # the paper's configurations (Clark et al. 2022 raw runs), for accounting and GPU/TPU use
    "paper-15M": (512, 6, 8, 32),
    "paper-25M": (512, 8, 8, 64),
    "paper-55M": (640, 10, 12, 64),
    "paper-130M": (896, 12, 16, 64),
    "paper-370M": (1536, 12, 12, 128),
    "paper-1.3B": (2048, 24, 16, 128),
}


@dataclass(frozen=True)
class RouterConfig:
    """How tokens are routed. Defaults are this project's documented choices (see book, 'Routing networks')."""

    kind: str = "dense"
    n_experts: int = 1
    top_k: int = 1
    routing_frequency: float = 0.5  # R: fraction of FFN layers that are routed
    capacity_factor: float = 2.0  # the paper used 2.0 in every experiment (MegaBlocks paper)
    # at evaluation: None = no token is dropped (each token's output then depends on its own sequence
    # only, not on how many other tokens of the batch picked the same expert); a number = that factor
    eval_capacity_factor: float | None = None
    # G: the batch's tokens are split into G equal contiguous groups, each with its own capacity and queues
    # (1 = one global queue). Expert-parallel meshes use all-to-all dispatch when G is a multiple of the
    # device count (see routing_laws.moe); routing itself is always over the whole batch.
    dispatch_groups: int = 1
    # S-BASE
    sinkhorn_iters: int = 100  # at most this many log-space sweeps, annealed over min(half, 10); training stops
    # once every expert's share is within routers.SINKHORN_TOL of 1/E
    sinkhorn_temperature: float = 0.05  # relative to the standardised logits (see routers.standardize_logits)
    sbase_balanced_eval: bool = False  # False: plain argmax at evaluation (causal); True: balance eval batch too
    # the weight of the chosen expert's output (routers.sbase_route), the router's only gradient path:
    # "softmax" = softmax(logits)[e] (the default, most likely the paper's, ~1/E at init); "sigmoid" =
    # sigmoid(logits[e]) (BASE layers, Lewis et al. 2021; ~0.5 at init whatever E); "st" =
    # 1 + p - stop_gradient(p) with p = softmax(logits)[e] (value 1, the softmax's gradient: a straight-through gate)
    sbase_gate: str = "softmax"
    # RL-R
    rlr_entropy_coef: float = 0.01
    rlr_balance_coef: float = 0.01
    rlr_loss_coef: float = 1.0
    # baseline subtracted from the reward: "learned" = leave-one-out position mean plus a per-layer linear
    # value head on the (stop-gradient) router input, fitted by MSE; "batch" = the leave-one-out mean only
    rlr_baseline: str = "learned"
    rlr_value_coef: float = 1.0  # weight of the value head's MSE loss
    # policy = softmax(logits / temperature); < 1 sharpens the policy and speeds the router's learning
    # (with Adam, like a larger router learning rate), so routing is consistent enough for experts to specialise
    rlr_temperature: float = 1.0
    # the router's weights learn this many times faster than the rest, without weight decay: the REINFORCE
    # signal is weak, and a router that moves at the body's pace stays near uniform (random routing)
    rlr_router_lr_mult: float = 10.0
    # True: the REINFORCE, entropy and balance terms train the router's weights only (no gradient into the
    # router's input); the transformer body then learns from the LM loss alone, not from a noisy estimator
    rlr_detach_input: bool = True
    # HASH
    hash_seed: int = 0

    def __post_init__(self) -> None:
        check_choice("router.kind", self.kind, ROUTERS)
        _set(self, "n_experts", check_int("router.n_experts", self.n_experts, min_value=1, max_value=4096))
        _set(self, "top_k", check_int("router.top_k", self.top_k, min_value=1))
        if self.top_k > self.n_experts:
            raise ValidationError(
                "router.top_k", f"K={self.top_k} exceeds n_experts={self.n_experts}", "use top_k <= n_experts"
            )
        _set(self, "routing_frequency", check_float("router.routing_frequency", self.routing_frequency,
                                                    min_value=0.0, max_value=1.0, min_exclusive=True))
        _set(self, "capacity_factor", check_float("router.capacity_factor", self.capacity_factor,
                                                  min_value=0.0, min_exclusive=True))
        if self.eval_capacity_factor is not None:
            _set(self, "eval_capacity_factor", check_float("router.eval_capacity_factor", self.eval_capacity_factor,
                                                           min_value=0.0, min_exclusive=True))
        _set(self, "dispatch_groups", check_int("router.dispatch_groups", self.dispatch_groups, min_value=1))
        _set(self, "sinkhorn_iters", check_int("router.sinkhorn_iters", self.sinkhorn_iters, min_value=0))
        _set(self, "sinkhorn_temperature", check_float("router.sinkhorn_temperature", self.sinkhorn_temperature,
                                                       min_value=0.0, min_exclusive=True))
        _set(self, "rlr_entropy_coef", check_float("router.rlr_entropy_coef", self.rlr_entropy_coef, min_value=0.0))
        _set(self, "rlr_balance_coef", check_float("router.rlr_balance_coef", self.rlr_balance_coef, min_value=0.0))
        _set(self, "rlr_loss_coef", check_float("router.rlr_loss_coef", self.rlr_loss_coef, min_value=0.0))
        check_choice("router.rlr_baseline", self.rlr_baseline, RLR_BASELINES)
        check_choice("router.sbase_gate", self.sbase_gate, SBASE_GATES)
        _set(self, "rlr_value_coef", check_float("router.rlr_value_coef", self.rlr_value_coef, min_value=0.0))
        _set(self, "rlr_temperature", check_float("router.rlr_temperature", self.rlr_temperature,
                                                  min_value=0.0, min_exclusive=True))
        _set(self, "rlr_router_lr_mult", check_float("router.rlr_router_lr_mult", self.rlr_router_lr_mult,
                                                     min_value=0.0, min_exclusive=True))
        for name in ("rlr_detach_input", "sbase_balanced_eval"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"router.{name}", f"must be true or false, got {getattr(self, name)!r}")
        _set(self, "hash_seed", check_int("router.hash_seed", self.hash_seed, min_value=0, max_value=2**31 - 1))
        if self.kind == "dense" and self.n_experts != 1:
            raise ValidationError("router.n_experts", f"router 'dense' needs n_experts=1, got {self.n_experts}",
                                  "pick a routed router (sbase, rlr, hash) or set n_experts=1")
        if self.kind != "dense" and self.top_k > 1 and self.kind != "sbase":
            raise ValidationError("router.top_k", f"top_k={self.top_k} is only implemented for 'sbase'",
                                  "use top_k=1 with rlr and hash")

    @property
    def has_value_head(self) -> bool:
        """True when RL-R learns its per-token baseline (a D + 1 value head per routed layer)."""
        return self.kind == "rlr" and self.rlr_baseline == "learned"

    @property
    def routed(self) -> bool:
        """True when the model has routed layers (any router but dense; E = 1 routed is allowed)."""
        return self.kind != "dense"


@dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer shape. ``d_ff = 4 d_model``, FFNs have no biases (as in the paper)."""

    vocab_size: int = 2048
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    head_dim: int = 32
    seq_len: int = 128
    router: RouterConfig = field(default_factory=RouterConfig)

    def __post_init__(self) -> None:
        _set(self, "vocab_size", check_int("model.vocab_size", self.vocab_size, min_value=2, max_value=65535))
        _set(self, "d_model", check_int("model.d_model", self.d_model, min_value=1))
        _set(self, "n_layers", check_int("model.n_layers", self.n_layers, min_value=1))
        _set(self, "n_heads", check_int("model.n_heads", self.n_heads, min_value=1))
        _set(self, "head_dim", check_int("model.head_dim", self.head_dim, min_value=1))
        _set(self, "seq_len", check_int("model.seq_len", self.seq_len, min_value=2))
        if not isinstance(self.router, RouterConfig):
            raise ValidationError("model.router", f"must be a RouterConfig, got {type(self.router).__name__}")
        self.routed_layers  # validates routing_frequency * n_layers

    @property
    def d_ff(self) -> int:
        return 4 * self.d_model

    @property
    def routed_layers(self) -> tuple[int, ...]:
        """Indices of routed FFN layers: every (1/R)-th layer, counting from the end of each stride.

        R = 0.5 with 4 layers routes layers 1 and 3 (as in the paper's "every other layer").
        """
        if not self.router.routed:
            return ()
        n = self.router.routing_frequency * self.n_layers
        if abs(n - round(n)) > 1e-9 or round(n) < 1:
            raise ValidationError(
                "router.routing_frequency",
                f"R={self.router.routing_frequency} x n_layers={self.n_layers} = {n:g} is not a whole number >= 1",
                "choose R so that R * n_layers is a whole number of routed layers",
            )
        n = int(round(n))
        if self.n_layers % n:
            raise ValidationError(
                "router.routing_frequency",
                f"{n} routed layers cannot be spaced evenly over {self.n_layers} layers",
                "choose R = 1/m with m dividing n_layers",
            )
        stride = self.n_layers // n
        return tuple(i for i in range(self.n_layers) if (i + 1) % stride == 0)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _set(cfg: Any, name: str, value: Any) -> None:
    """Store a validated, type-coerced field on a frozen dataclass (``"0.5"`` -> 0.5, ``2.0`` -> 2)."""
    object.__setattr__(cfg, name, value)


# bounds that keep a run's arithmetic in range: optax counts steps in int32, and a token budget this
# large would take centuries on any machine this project targets
MAX_TOKENS = 10**13
MAX_STEPS = 2**31 - 1


def model_config(size: str, *, vocab_size: int = 2048, seq_len: int = 128, router: RouterConfig | None = None) -> ModelConfig:
    """Build the ``ModelConfig`` of a named size from ``SIZES``."""
    if size not in SIZES:
        raise ValidationError("size", f"unknown size {size!r}", "choose one of: " + ", ".join(SIZES))
    d, layers, heads, head_dim = SIZES[size]
    return ModelConfig(vocab_size=vocab_size, d_model=d, n_layers=layers, n_heads=heads, head_dim=head_dim,
                       seq_len=seq_len, router=router or RouterConfig())


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping for one run; ``tokens`` is the fixed budget (as in the paper)."""

    tokens: int = 1_000_000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_frac: float = 0.02
    final_lr_frac: float = 0.1  # cosine decays to this fraction of the peak
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0
    eval_every: int = 0  # steps between validation evaluations; 0 = about 10 per run
    eval_tokens: int = 65_536
    checkpoint_every: int = 0  # steps between checkpoints; 0 = no periodic checkpoints
    compute_dtype: str = "auto"  # auto: bfloat16 on GPU/TPU, float32 on CPU

    def __post_init__(self) -> None:
        _set(self, "tokens", check_int("train.tokens", self.tokens, min_value=1, max_value=MAX_TOKENS))
        _set(self, "batch_size", check_int("train.batch_size", self.batch_size, min_value=1))
        _set(self, "learning_rate", check_float("train.learning_rate", self.learning_rate,
                                                min_value=0.0, min_exclusive=True))
        _set(self, "warmup_frac", check_float("train.warmup_frac", self.warmup_frac, min_value=0.0, max_value=1.0))
        _set(self, "final_lr_frac", check_float("train.final_lr_frac", self.final_lr_frac,
                                                min_value=0.0, max_value=1.0))
        _set(self, "weight_decay", check_float("train.weight_decay", self.weight_decay, min_value=0.0))
        _set(self, "clip_norm", check_float("train.clip_norm", self.clip_norm, min_value=0.0, min_exclusive=True))
        _set(self, "seed", check_int("train.seed", self.seed, min_value=0, max_value=2**31 - 1))
        _set(self, "eval_every", check_int("train.eval_every", self.eval_every, min_value=0))
        _set(self, "eval_tokens", check_int("train.eval_tokens", self.eval_tokens, min_value=1))
        _set(self, "checkpoint_every", check_int("train.checkpoint_every", self.checkpoint_every, min_value=0))
        check_choice("train.compute_dtype", self.compute_dtype, ("auto", "float32", "bfloat16"))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(cfg)


def model_from_dict(d: dict) -> ModelConfig:
    """Inverse of ``to_dict`` for ``ModelConfig`` (used when resuming from a run record)."""
    d = dict(d)
    d["router"] = RouterConfig(**d.get("router", {}))
    return ModelConfig(**d)
