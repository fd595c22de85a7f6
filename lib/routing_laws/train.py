"""optax training loop for one run: fixed token budget, periodic validation, run record, resumable checkpoints.

A run is a pure function of (model config, train config, data): batch ``i`` and the routing RNG at
step ``i`` depend only on (seed, i), so a run interrupted and resumed from its checkpoint ends with
exactly the same parameters and losses as an uninterrupted one (on the same machine).

Compile once per shape: the jitted steps depend only on the model config, the compute dtype and the
optimizer's structure (``step_functions`` caches them); the learning rate of each step, the weight decay,
the clipping norm and the RNG key arrive as traced arguments (``StepInputs``), so runs of one shape with
other seeds, learning rates, schedules or step counts reuse one compiled step.

Checkpoints (``checkpoint`` module: arrays in ``.npz``, JSON header, content hash, never pickle) are written
every ``checkpoint_every`` steps, at ``stop_after_steps`` and at the end; see ``train`` for resuming.

Divergence rule (``Divergence``): a run is marked ``failed`` (with the reason and step in its record) when
a training window's mean loss or a validation loss is not finite, or when the training window's mean loss
is above ``max(2 x the first step's loss, ln V + 1)`` for ``DIVERGENCE_WINDOWS`` consecutive evaluation
windows or at the last one. At initialisation the loss is about ln V, so the limit is about 2 ln V: a
run there has lost everything it learned and more; a brief spike averages out within a window.

Shape glossary: B batch, T sequence, V vocabulary, L routed layers, E experts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm  # plain text bars: tqdm.auto warns in kernels without ipywidgets

from routing_laws import checkpoint
from routing_laws import data as data_lib
from routing_laws import model as model_lib
from routing_laws import parallel, routers
from routing_laws.config import ModelConfig, TrainConfig, model_from_dict, to_dict
from routing_laws.errors import RoutingLawsError, ValidationError, check_float, check_output_path
from routing_laws.io_utils import (atomic_write_json, git_commit, loads_strict, nonfinite_to_null,
                                  portable_path, provenance)

RECORD_VERSION = 1
STATUSES = ("finished", "partial", "failed")
# the commit of the code this process loaded (a sweep process keeps running its code while HEAD moves)
CODE_COMMIT = git_commit()
ROUTER_WEIGHTS = "w_router"
DIVERGENCE_WINDOWS = 2
DIVERGENCE_MARGIN = 1.0  # nats above ln V
PER_LAYER_METRICS = ("max_over_mean_load",)  # scalar router metrics kept per routed layer (others: layer mean)


def compute_dtype(train_cfg: TrainConfig):
    """bfloat16 on GPU/TPU, float32 on CPU (unless the config says otherwise)."""
    if train_cfg.compute_dtype == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return jnp.dtype(train_cfg.compute_dtype)


def schedule(train_cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up then cosine decay to ``final_lr_frac`` of the peak."""
    warmup = max(1, int(round(train_cfg.warmup_frac * total_steps)))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=train_cfg.learning_rate, warmup_steps=min(warmup, max(1, total_steps - 1)),
        decay_steps=max(total_steps, 2), end_value=train_cfg.learning_rate * train_cfg.final_lr_frac)


def adamw_clipped(learning_rate, weight_decay, clip_norm, router_lr_mult: float = 1.0) -> optax.GradientTransformation:
    """AdamW (decay on matrices only, not LayerNorm scales/offsets) after global-norm clipping.

    ``learning_rate``, ``weight_decay`` and ``clip_norm`` may be traced scalars (the training step passes
    them in) or, for ``learning_rate``, a schedule; the optimizer state's structure depends only on whether
    ``router_lr_mult`` is 1. ``router_lr_mult != 1``: the router weights (``w_router``) get that multiple of
    the learning rate and no weight decay (RL-R's default, see RouterConfig.rlr_router_lr_mult); clipping
    stays global.
    """
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    adamw = lambda lr, wd: optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=wd, mask=decay_mask)  # noqa: E731
    if router_lr_mult == 1.0:
        update = adamw(learning_rate, weight_decay)
    else:
        label = lambda params: hk.data_structures.map(  # noqa: E731
            lambda module, name, p: "router" if name == ROUTER_WEIGHTS else "rest", params)
        router_lr = ((lambda step: router_lr_mult * learning_rate(step)) if callable(learning_rate)
                     else router_lr_mult * learning_rate)
        update = optax.multi_transform({"router": adamw(router_lr, 0.0), "rest": adamw(learning_rate, weight_decay)},
                                       label)
    return optax.chain(optax.clip_by_global_norm(clip_norm), update)


def optimizer(train_cfg: TrainConfig, total_steps: int, router_lr_mult: float = 1.0) -> optax.GradientTransformation:
    """``adamw_clipped`` with ``train_cfg``'s schedule over ``total_steps`` built in (for use outside ``train``,
    whose step takes the learning rate as an argument instead)."""
    check_float("router_lr_mult", router_lr_mult, min_value=0.0, min_exclusive=True)
    return adamw_clipped(schedule(train_cfg, total_steps), train_cfg.weight_decay, train_cfg.clip_norm, router_lr_mult)


def _layer_metrics(auxes) -> dict:
    """Every router metric of the routed layers: ``x_E`` arrays stacked to ``x_LE``, per-layer names stacked
    to [L], other scalars averaged over layers (so new router metrics reach the records without code here)."""
    out = {}
    for key in auxes[0].metrics:
        vals = jnp.stack([jnp.asarray(aux.metrics[key], jnp.float32) for aux in auxes])
        if vals.ndim > 1:
            head, sep, shape = key.rpartition("_")
            out[f"{head}_L{shape}" if sep and shape.isupper() else key] = vals
        elif key in PER_LAYER_METRICS:
            out[key] = vals
        else:
            out[key] = jnp.mean(vals)
    return out


def make_loss_fn(model_cfg: ModelConfig, dtype) -> Callable:
    """loss(params, rng, batch_BT1, is_training) -> (total loss, metrics). Adds router aux losses and RL-R's
    REINFORCE term; metrics: lm_loss, and for routed models aux_loss and every router metric (``_layer_metrics``)."""
    net = model_lib.build(model_cfg)

    def loss_fn(params, rng, batch_BT1, is_training: bool):
        inputs_BT, targets_BT = batch_BT1[:, :-1], batch_BT1[:, 1:]
        if dtype != jnp.float32:
            params = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
        tok_logp_BT, auxes = net.apply(params, rng, inputs_BT, is_training=is_training, dtype=dtype, targets_BT=targets_BT)
        lm_loss = -tok_logp_BT.mean()
        total = lm_loss
        metrics: dict[str, Any] = {"lm_loss": lm_loss}
        if auxes:
            mask_BT = jnp.ones_like(tok_logp_BT)
            for aux in auxes:
                total = total + aux.aux_loss
            if model_cfg.router.kind == "rlr" and is_training:
                reward_BT = jax.lax.stop_gradient(tok_logp_BT)
                for aux in auxes:
                    total = total + routers.rlr_loss(aux.logprob_BT, reward_BT, mask_BT, aux.entropy_BT, model_cfg.router,
                                                     value_BT=aux.value_BT)
            metrics["aux_loss"] = sum(aux.aux_loss for aux in auxes)
            metrics.update(_layer_metrics(auxes))
        return total, metrics

    return loss_fn


# ------------------------------------------------------------------------------- compiled steps

class StepInputs(NamedTuple):
    """Everything run-specific a training step needs, as traced data (never baked into the compiled step)."""
    rng: jax.Array  # the step's routing/dropout key: fold_in(PRNGKey(seed), step)
    lr: jax.Array  # float32 learning rate of this step (schedule evaluated on the host)
    weight_decay: jax.Array
    clip_norm: jax.Array


class StepFns(NamedTuple):
    """The functions of one shape: ``*_fn`` plain (for ``parallel.shard_training``), the others jitted."""
    init: Callable  # (rng, inputs_BT) -> params
    opt_init: Callable  # params -> opt_state
    train_step_fn: Callable  # (params, opt_state, batch_BT1, StepInputs) -> (params, opt_state, metrics)
    eval_step_fn: Callable  # (params, batch_BT1) -> metrics
    train_step: Callable
    eval_step: Callable


@functools.lru_cache(maxsize=16)
def step_functions(model_cfg: ModelConfig, dtype_name: str, router_lr_mult: float) -> StepFns:
    """The (cached) jitted init, train and eval steps of a model config: one compilation per shape."""
    dtype = jnp.dtype(dtype_name)
    loss_fn = make_loss_fn(model_cfg, dtype)
    net = model_lib.build(model_cfg)
    structure = adamw_clipped(0.0, 0.0, 1.0, router_lr_mult)  # only the state's structure is used

    def train_step(params, opt_state, batch_BT1, inputs: StepInputs):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, inputs.rng, batch_BT1, True)
        opt = adamw_clipped(inputs.lr, inputs.weight_decay, inputs.clip_norm, router_lr_mult)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))

    def eval_step(params, batch_BT1):
        return loss_fn(params, jax.random.PRNGKey(0), batch_BT1, False)[1]

    init = jax.jit(lambda rng, x_BT: net.init(rng, x_BT, is_training=True))
    return StepFns(init, jax.jit(structure.init), train_step, eval_step, jax.jit(train_step), jax.jit(eval_step))


@functools.lru_cache(maxsize=8)
def batched_train_step(model_cfg: ModelConfig, dtype_name: str, router_lr_mult: float) -> Callable:
    """The training step of ``step_functions`` vmapped over a leading runs axis R of every argument
    (params, opt_state, batch [R, B, T+1], StepInputs of [R] arrays): several runs of one shape (seeds,
    learning rates, schedules) advance in one call, each exactly as it would alone (to float tolerance)."""
    return jax.jit(jax.vmap(step_functions(model_cfg, dtype_name, router_lr_mult).train_step_fn))


def stack_runs(trees: list) -> Any:
    """The per-run pytrees (params, opt states, StepInputs) stacked on a new leading runs axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


# ---------------------------------------------------------------------------------- the run plan

@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run will do, fixed before any work: sizes, steps, schedule, fingerprint."""
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    total_steps: int
    eval_every: int
    dtype_name: str
    router_lr_mult: float
    lrs: np.ndarray  # float32 [total_steps]: the learning rate of each step
    fingerprint: dict

    @property
    def tokens_per_step(self) -> int:
        return self.train_cfg.batch_size * self.model_cfg.seq_len

    def batch(self, dataset, step: int) -> np.ndarray:
        """int32 [B, T+1]: the training batch of ``step`` (a pure function of the seed and the step)."""
        t = self.train_cfg
        return data_lib.train_batch(dataset.train, step, t.batch_size, self.model_cfg.seq_len, t.seed)

    def checkpoint_due(self, step: int) -> bool:
        every = self.train_cfg.checkpoint_every
        return bool(every) and step % every == 0

    def inputs(self, base_rng: jax.Array, step: int) -> StepInputs:
        t = self.train_cfg
        return StepInputs(jax.random.fold_in(base_rng, step), jnp.asarray(self.lrs[step]),
                          jnp.asarray(t.weight_decay, jnp.float32), jnp.asarray(t.clip_norm, jnp.float32))


def fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig, dataset) -> dict:
    """What a checkpoint must match to be resumed: both configs and the data's content hashes (not paths)."""
    return {"model": to_dict(model_cfg), "train": to_dict(train_cfg),
            "data": [dataset.meta.get(k) for k in ("hash", "corpus_hash", "tokenizer_hash")]}


def plan_run(model_cfg: ModelConfig, train_cfg: TrainConfig, dataset) -> Plan:
    """Validate the arguments of ``train`` (named errors before any work) and fix the run's plan."""
    if not isinstance(model_cfg, ModelConfig):
        raise ValidationError("model_cfg", f"must be a ModelConfig, got {type(model_cfg).__name__}")
    if not isinstance(train_cfg, TrainConfig):
        raise ValidationError("train_cfg", f"must be a TrainConfig, got {type(train_cfg).__name__}")
    for attr in ("train", "val", "vocab_size", "meta"):
        if not hasattr(dataset, attr):
            raise ValidationError("dataset", f"has no {attr!r}", "pass data.get_dataset(...) or a TokenData")
    if dataset.vocab_size != model_cfg.vocab_size:
        raise ValidationError("model.vocab_size", f"model has {model_cfg.vocab_size} but the tokenizer has "
                              f"{dataset.vocab_size}", f"set vocab_size={dataset.vocab_size} or use a matching tokenizer")
    T, B = model_cfg.seq_len, train_cfg.batch_size
    G = model_cfg.router.dispatch_groups
    if model_cfg.router.routed and (B * T) % G:
        raise ValidationError("router.dispatch_groups", f"a batch of {B} x {T} = {B * T} tokens does not split into "
                              f"{G} equal dispatch groups", "choose dispatch_groups dividing batch_size x seq_len")
    total_steps = max(1, math.ceil(train_cfg.tokens / (B * T)))
    rc = model_cfg.router
    lrs = np.asarray(schedule(train_cfg, total_steps)(np.arange(total_steps)), np.float32)
    return Plan(model_cfg, train_cfg, total_steps, train_cfg.eval_every or max(1, total_steps // 10),
                jnp.dtype(compute_dtype(train_cfg)).name, float(rc.rlr_router_lr_mult if rc.kind == "rlr" else 1.0),
                lrs, fingerprint(model_cfg, train_cfg, dataset))


# ------------------------------------------------------------------------------ state of a run

@dataclasses.dataclass
class RunState:
    """Everything a checkpoint holds: the arrays, the curves so far, and the bookkeeping of the loop."""
    step: int
    params: Any
    opt_state: Any
    curve: list = dataclasses.field(default_factory=list)  # validation points
    train_curve: list = dataclasses.field(default_factory=list)  # training-window points with diagnostics
    window: list = dataclasses.field(default_factory=list)  # per-step metrics since the last evaluation
    elapsed_s: float = 0.0
    train_tokens_timed: int = 0
    train_time_s: float = 0.0
    initial_loss: float | None = None  # the first step's training loss (divergence rule)
    over_limit: int = 0  # consecutive windows above the divergence limit
    failure: dict | None = None  # {"reason", "step"} once the run has diverged

    META = ("curve", "train_curve", "elapsed_s", "train_tokens_timed", "train_time_s", "initial_loss", "over_limit")


def _stack_window(window: list[dict]) -> dict:
    host = checkpoint.host_copy(window)
    return {k: np.stack([np.asarray(m[k]) for m in host]) for k in host[0]} if host else {}


def save_state(run_dir: Path, plan: Plan, state: RunState) -> Path:
    """Checkpoint ``state`` (every process writes the same whole state, so shared and local disks both work)."""
    host = checkpoint.host_copy({"params": state.params, "opt_state": state.opt_state})
    meta, _ = nonfinite_to_null({k: getattr(state, k) for k in RunState.META})
    return checkpoint.save(checkpoint.path_in(run_dir), step=state.step, fingerprint=plan.fingerprint,
                           trees=dict(host, window=_stack_window(state.window)), meta=meta)


def init_or_resume(fns: StepFns, plan: Plan, dataset, run_dir: Path | None) -> tuple[RunState, int | None]:
    """A fresh state (step 0), or the one in ``run_dir``'s checkpoint; also returns the step resumed from."""
    t, B, T = plan.train_cfg, plan.train_cfg.batch_size, plan.model_cfg.seq_len
    # a whole batch, so that any dispatch_groups valid for training is valid here too
    init_batch_BT = jnp.asarray(data_lib.train_batch(dataset.train, 0, B, T, t.seed))[:, :-1]
    init_rng = jax.random.fold_in(jax.random.PRNGKey(t.seed), 10**9)
    found = checkpoint.find(run_dir) if run_dir is not None else None
    if found is None:
        params = fns.init(init_rng, init_batch_BT)
        return RunState(step=0, params=params, opt_state=fns.opt_init(params)), None
    params_shape = jax.eval_shape(fns.init, init_rng, init_batch_BT)
    ck = checkpoint.load(found, fingerprint=plan.fingerprint, templates={
        "params": params_shape, "opt_state": jax.eval_shape(fns.opt_init, params_shape), "window": None})
    win = ck.trees["window"]
    n = len(next(iter(win.values()))) if win else 0
    meta = {k: ck.meta[k] for k in RunState.META if k in ck.meta}
    state = RunState(step=ck.step, params=ck.trees["params"], opt_state=ck.trees["opt_state"],
                     window=[{k: v[i] for k, v in win.items()} for i in range(n)], **meta)
    return state, ck.step


def place(fns: StepFns, state: RunState, plan: Plan, mesh) -> tuple[Callable, Callable, Callable]:
    """(train_step, eval_step, to_batch): the cached jitted steps on one device, or, with a ``mesh``, steps
    sharded over it (``state``'s arrays are placed there; checkpoints hold host arrays, so a run resumes on
    any mesh)."""
    if mesh is None:
        return fns.train_step, fns.eval_step, jnp.asarray
    state.params, state.opt_state, train_step, eval_step, to_batch = parallel.shard_training(
        mesh, plan.model_cfg, plan.train_cfg.batch_size, state.params, state.opt_state, fns.train_step_fn,
        fns.eval_step_fn)
    return train_step, eval_step, to_batch


# --------------------------------------------------------------------------- evaluation windows

def _mean_metrics(ms: list[dict]) -> dict:
    """{key: mean over the list} (floats, or nested lists for per-layer/per-expert arrays)."""
    out = {}
    for key in ms[0]:
        m = np.mean([np.asarray(x[key], np.float64) for x in ms], axis=0)
        out[key] = float(m) if m.ndim == 0 else m.tolist()
    return out


def make_evaluator(eval_step: Callable, to_batch: Callable, plan: Plan, dataset) -> Callable[[Any], dict]:
    """evaluate(params) -> {"val_loss", every router metric} on the fixed validation batches."""
    B, T = plan.train_cfg.batch_size, plan.model_cfg.seq_len
    batches = data_lib.eval_batches(dataset.val, B, T, plan.train_cfg.eval_tokens)

    def evaluate(params) -> dict:
        ms = _mean_metrics([jax.device_get(eval_step(params, to_batch(b))) for b in batches])
        return {"val_loss": ms.pop("lm_loss"), **{k: v for k, v in ms.items() if k not in ("loss", "aux_loss")}}

    return evaluate


class Divergence:
    """The divergence rule of the module docstring; ``check`` returns the failure reason or None."""

    def __init__(self, vocab_size: int, state: RunState):
        self.floor, self.state = math.log(vocab_size) + DIVERGENCE_MARGIN, state

    def limit(self) -> float:
        return max(2.0 * self.state.initial_loss, self.floor)

    def check(self, train_loss: float, val_loss: float | None, last: bool) -> str | None:
        s = self.state
        if not math.isfinite(train_loss):
            return f"training loss is {train_loss} (not finite)"
        if val_loss is not None and not math.isfinite(val_loss):
            return f"validation loss is {val_loss} (not finite)"
        s.over_limit = s.over_limit + 1 if train_loss > self.limit() else 0
        if s.over_limit >= DIVERGENCE_WINDOWS or (last and s.over_limit):
            return (f"training loss {train_loss:.4g} above the divergence limit {self.limit():.4g} "
                    f"(2 x initial {s.initial_loss:.4g} or ln V + {DIVERGENCE_MARGIN:g}) for {s.over_limit} window(s)")
        return None


class Throughput:
    """Training tokens per second, leaving out the first step after a (re)start (it compiles)."""

    def __init__(self):
        self.compiled, self.t0, self.tokens = False, time.perf_counter(), 0

    def stepped(self, params, tokens: int) -> None:
        if not self.compiled:
            jax.block_until_ready(params)
            self.compiled, self.t0, self.tokens = True, time.perf_counter(), 0
        else:
            self.tokens += tokens

    def take(self, state: RunState) -> float:
        """Add the window's tokens and seconds to ``state``; returns the window's tokens/s."""
        secs = time.perf_counter() - self.t0
        state.train_tokens_timed += self.tokens
        state.train_time_s += secs
        tps = self.tokens / max(secs, 1e-9)
        self.t0, self.tokens = time.perf_counter(), 0
        return tps


def end_window(state: RunState, plan: Plan, evaluate: Callable, divergence: Divergence, clock: Throughput,
               bar) -> dict | None:
    """Close a training window: its curve point (mean training diagnostics), the validation loss, the
    divergence check. Returns the evaluation (None if training diverged before evaluating)."""
    ms = _mean_metrics(jax.device_get(state.window))
    tps = clock.take(state)
    train_loss = ms.pop("lm_loss")
    point = {"step": state.step, "tokens": state.step * plan.tokens_per_step, "train_loss": train_loss, **ms}
    ev = evaluate(state.params) if math.isfinite(train_loss) else None
    val = None if ev is None else ev["val_loss"]
    reason = divergence.check(train_loss, val, last=state.step == plan.total_steps)
    state.train_curve.append(nonfinite_to_null(point)[0])
    if ev is not None:
        state.curve.append(nonfinite_to_null({"step": state.step, "tokens": point["tokens"], "val_loss": val})[0])
    if reason is not None:
        state.failure = {"reason": f"diverged at step {state.step}: {reason}", "step": state.step}
    state.window = []
    bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val:.3f}" if val is not None else "-", tok_s=f"{tps:,.0f}")
    return ev


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def progress_bar(total_steps: int, start: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    return tqdm(total=total_steps, initial=start, desc=desc, unit="step", dynamic_ncols=True, leave=True)


# ------------------------------------------------------------------------------------- records

def build_record(plan: Plan, state: RunState, dataset, *, name: str | None, final: dict | None,
                 resumed_from: int | None, started: dict) -> dict:
    """The run record: strict JSON (any NaN/Infinity left becomes null, listed in ``nonfinite_fields``), paths
    relative to the repository, status ``finished``, ``partial`` or ``failed`` (with ``failure``)."""
    status = "failed" if state.failure else ("finished" if state.step >= plan.total_steps else "partial")
    final = final or {}
    record = {
        "record_version": RECORD_VERSION,
        "name": name,
        "status": status,
        "failure": state.failure,
        "model": to_dict(plan.model_cfg),
        "train": to_dict(plan.train_cfg),
        "data": {k: portable_path(v) if k.endswith("_path") and isinstance(v, str) else v
                 for k, v in dataset.meta.items()},
        "accounting": model_lib.count_params(plan.model_cfg)._asdict(),
        "steps": state.step,
        "total_steps": plan.total_steps,
        "tokens": state.step * plan.tokens_per_step,
        "curve": state.curve,
        "train_curve": state.train_curve,
        "final_val_loss": final.get("val_loss"),
        "routing": {k: v for k, v in final.items() if k != "val_loss"},
        "tokens_per_s": state.train_tokens_timed / state.train_time_s if state.train_time_s > 0 else None,
        "wall_s": state.elapsed_s,
        "resumed_from_step": resumed_from,
        "provenance": started,
    }
    record, nonfinite = nonfinite_to_null(record)
    if nonfinite:
        record["nonfinite_fields"] = nonfinite
    return record


# --------------------------------------------------------------------------------------- train

def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    dataset: "data_lib.TokenData",
    *,
    run_dir: str | Path | None = None,
    record_path: str | Path | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
    name: str | None = None,
    mesh: "jax.sharding.Mesh | None" = None,
) -> dict:
    """Train one model on ``train_cfg.tokens`` tokens and return its run record (also written to ``record_path``).

    ``run_dir`` holds the checkpoint, written every ``train_cfg.checkpoint_every`` steps (0: none on the
    way), when stopping early and at the end: an interrupted run restarted with the same arguments resumes
    from it and ends exactly as an uninterrupted one. A checkpoint of another configuration, one that fails
    its content hash or structure check, or an old pickle checkpoint is refused with ``RoutingLawsError``
    (never used, never unpickled). ``stop_after_steps`` stops early (to test resumption) and returns a
    partial record. ``mesh`` (``parallel.make_mesh``) shards the batch and the experts; None: one device.
    A diverging run (module docstring) stops at the evaluation that detects it, status ``failed``.
    """
    plan = plan_run(model_cfg, train_cfg, dataset)
    run_dir = check_output_path("run_dir", Path(run_dir) / checkpoint.FILE_NAME).parent if run_dir is not None else None
    if record_path is not None:
        check_output_path("record_path", record_path)
    started = provenance(CODE_COMMIT)  # the code that trains, even if HEAD moved since this process started
    fns = step_functions(model_cfg, plan.dtype_name, plan.router_lr_mult)
    state, resumed_from = init_or_resume(fns, plan, dataset, run_dir)
    train_step, eval_step, to_batch = place(fns, state, plan, mesh)
    evaluate = make_evaluator(eval_step, to_batch, plan, dataset)
    divergence, clock = Divergence(model_cfg.vocab_size, state), Throughput()
    base_rng, t_start, elapsed0, last_eval = jax.random.PRNGKey(train_cfg.seed), time.perf_counter(), state.elapsed_s, None
    last_stop = plan.total_steps if stop_after_steps is None else min(plan.total_steps, stop_after_steps)
    bar = progress_bar(plan.total_steps, state.step, progress, name or "train")
    while state.step < last_stop and state.failure is None:
        batch = to_batch(plan.batch(dataset, state.step))
        state.params, state.opt_state, m = train_step(state.params, state.opt_state, batch,
                                                      plan.inputs(base_rng, state.step))
        if state.initial_loss is None:
            state.initial_loss = float(jax.device_get(m["lm_loss"]))
        state.step += 1
        state.window.append(m)
        clock.stepped(state.params, plan.tokens_per_step)
        if state.step % plan.eval_every == 0 or state.step == plan.total_steps:
            last_eval = end_window(state, plan, evaluate, divergence, clock, bar)
        state.elapsed_s = elapsed0 + time.perf_counter() - t_start
        if run_dir is not None and state.failure is None and plan.checkpoint_due(state.step) and state.step < last_stop:
            save_state(run_dir, plan, state)
        bar.update(1)
    bar.close()
    if run_dir is not None and state.failure is None:  # where it stopped: early, or finished
        save_state(run_dir, plan, state)
    if state.failure is None and (last_eval is None or state.step != plan.total_steps):
        last_eval = evaluate(state.params)
    record = build_record(plan, state, dataset, name=name, final=last_eval if state.failure is None else None,
                          resumed_from=resumed_from, started=started)
    if record_path is not None:
        atomic_write_json(record_path, record)
    return record


def load_record(path: str | Path) -> dict:
    """Read a run record, checking it is one of ours: UTF-8 strict JSON (no NaN), this record version, a known
    status, a finite final loss when finished (raises RoutingLawsError naming the file otherwise)."""
    path = Path(path)
    try:
        rec = loads_strict(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RoutingLawsError(f"run record {path} is unreadable: {e}") from None
    if not isinstance(rec, dict) or rec.get("record_version") != RECORD_VERSION or "final_val_loss" not in rec:
        raise RoutingLawsError(f"{path} is not a routing-laws run record (version {RECORD_VERSION})")
    if rec.get("status") not in STATUSES:
        raise RoutingLawsError(f"run record {path} has status {rec.get('status')!r}, not one of {', '.join(STATUSES)}")
    loss = rec["final_val_loss"]
    if rec["status"] == "finished" and (isinstance(loss, bool) or not isinstance(loss, (int, float))
                                        or not math.isfinite(loss) or loss < 0):
        raise RoutingLawsError(f"run record {path} is finished but its final_val_loss is {loss!r}")
    try:
        model_from_dict(rec["model"])  # validates
    except (TypeError, ValueError, KeyError) as e:
        raise RoutingLawsError(f"run record {path} has an invalid model config: {e}") from None
    return rec
