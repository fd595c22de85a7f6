"""optax training loop for one run: fixed token budget, periodic validation, run record, resumable checkpoints.

A run is a pure function of (model config, train config, data): batch ``i`` and the routing RNG at
step ``i`` depend only on (seed, i), so a run interrupted and resumed from its checkpoint ends with
exactly the same parameters and losses as an uninterrupted one (on the same machine).

Shape glossary: B batch, T sequence, V vocabulary.
"""

from __future__ import annotations

import math
import pickle
import time
from pathlib import Path
from typing import Any, Callable

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from routing_laws import data as data_lib
from routing_laws import model as model_lib
from routing_laws import routers
from routing_laws.config import ModelConfig, TrainConfig, model_from_dict, to_dict
from routing_laws.errors import RoutingLawsError, ValidationError, check_float
from routing_laws.io_utils import atomic_write_bytes, atomic_write_json, git_commit, provenance

RECORD_VERSION = 1
# the commit of the code this process loaded (a sweep process keeps running its code while HEAD moves)
CODE_COMMIT = git_commit()


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


ROUTER_WEIGHTS = "w_router"


def optimizer(train_cfg: TrainConfig, total_steps: int, router_lr_mult: float = 1.0) -> optax.GradientTransformation:
    """AdamW (decay on matrices only, not LayerNorm scales/offsets) after global-norm clipping.

    ``router_lr_mult != 1``: the router weights (``w_router``) get that multiple of the learning rate and no
    weight decay (RL-R's default, see RouterConfig.rlr_router_lr_mult); clipping stays global.
    """
    check_float("router_lr_mult", router_lr_mult, min_value=0.0, min_exclusive=True)
    sched = schedule(train_cfg, total_steps)
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    adamw = lambda lr, wd: optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=wd, mask=decay_mask)  # noqa: E731
    if router_lr_mult == 1.0:
        update = adamw(sched, train_cfg.weight_decay)
    else:
        label = lambda params: hk.data_structures.map(  # noqa: E731
            lambda module, name, p: "router" if name == ROUTER_WEIGHTS else "rest", params)
        update = optax.multi_transform({"router": adamw(lambda step: router_lr_mult * sched(step), 0.0),
                                        "rest": adamw(sched, train_cfg.weight_decay)}, label)
    return optax.chain(optax.clip_by_global_norm(train_cfg.clip_norm), update)


def make_loss_fn(model_cfg: ModelConfig, dtype) -> Callable:
    """loss(params, rng, batch_BT1, is_training) -> (total loss, metrics). Adds router aux losses and RL-R's REINFORCE term."""
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
            metrics["dropped_frac"] = jnp.mean(jnp.stack([aux.metrics["dropped_frac"] for aux in auxes]))
            metrics["load_LE"] = jnp.stack([aux.metrics["load_E"] for aux in auxes])
            metrics["router_entropy"] = jnp.mean(jnp.stack([aux.metrics["router_entropy"] for aux in auxes]))
            metrics["max_over_mean_load"] = jnp.stack([aux.metrics["max_over_mean_load"] for aux in auxes])
        return total, metrics

    return loss_fn


def _checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoint.pkl"


def host_copy(tree: Any) -> Any:
    """``tree`` with every array as a host numpy array; arrays spread over other processes' devices (multi-host
    expert sharding) are gathered with ``process_allgather`` first, so every process holds the whole state."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree_util.tree_map(one, tree)


def _save_checkpoint(run_dir: Path, state: dict) -> None:
    # every process writes the same whole state (atomically), so resuming works on shared and local disks
    atomic_write_bytes(_checkpoint_path(run_dir), pickle.dumps(host_copy(state), protocol=4))


def _load_checkpoint(run_dir: Path, fingerprint: dict) -> dict | None:
    path = _checkpoint_path(run_dir)
    if not path.exists():
        return None
    try:
        state = pickle.loads(path.read_bytes())
    except Exception as e:  # corrupt checkpoint: say so, never use silently
        raise RoutingLawsError(f"checkpoint {path} is unreadable ({e}); delete it to restart the run") from None
    if state.get("fingerprint") != fingerprint:
        raise RoutingLawsError(f"checkpoint {path} belongs to a different configuration; "
                               "delete it or choose another --run-dir")
    return state


def _progress(total_steps: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True, leave=True)


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

    ``run_dir`` holds the checkpoint: an interrupted run restarted with the same arguments resumes from it.
    ``stop_after_steps`` stops early (to test resumption) and returns a partial record.
    ``mesh`` (``parallel.make_mesh``) shards the batch and the experts over devices; None: one device.
    """
    if not isinstance(model_cfg, ModelConfig):
        raise ValidationError("model_cfg", f"must be a ModelConfig, got {type(model_cfg).__name__}")
    if not isinstance(train_cfg, TrainConfig):
        raise ValidationError("train_cfg", f"must be a TrainConfig, got {type(train_cfg).__name__}")
    if dataset.vocab_size != model_cfg.vocab_size:
        raise ValidationError("model.vocab_size", f"model has {model_cfg.vocab_size} but the tokenizer has "
                              f"{dataset.vocab_size}", f"set vocab_size={dataset.vocab_size} or use a matching tokenizer")
    T, B = model_cfg.seq_len, train_cfg.batch_size
    G = model_cfg.router.dispatch_groups
    if model_cfg.router.routed and (B * T) % G:
        raise ValidationError("router.dispatch_groups", f"a batch of {B} x {T} = {B * T} tokens does not split into "
                              f"{G} equal dispatch groups", "choose dispatch_groups dividing batch_size x seq_len")
    total_steps = max(1, math.ceil(train_cfg.tokens / (B * T)))
    eval_every = train_cfg.eval_every or max(1, total_steps // 10)
    dtype = compute_dtype(train_cfg)
    acct = model_lib.count_params(model_cfg)
    started = provenance(CODE_COMMIT)  # the code that trains, even if HEAD moved since this process started
    fingerprint = {"model": to_dict(model_cfg), "train": to_dict(train_cfg), "data": [dataset.meta.get(k) for k in ("hash", "corpus_hash", "tokenizer_hash")]}

    loss_fn = make_loss_fn(model_cfg, dtype)
    rc = model_cfg.router
    opt = optimizer(train_cfg, total_steps, rc.rlr_router_lr_mult if rc.kind == "rlr" else 1.0)
    net = model_lib.build(model_cfg)

    def train_step(params, opt_state, batch, rng):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rng, batch, True)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return params, opt_state, metrics

    def eval_step(params, batch):
        _, metrics = loss_fn(params, jax.random.PRNGKey(0), batch, False)
        return metrics

    eval_set = data_lib.eval_batches(dataset.val, B, T, train_cfg.eval_tokens)

    def evaluate(params) -> dict:
        ms = [jax.device_get(eval_step(params, to_batch(b))) for b in eval_set]
        out = {"val_loss": float(np.mean([m["lm_loss"] for m in ms]))}
        if "load_LE" in ms[0]:
            out["load_LE"] = np.mean([m["load_LE"] for m in ms], axis=0).tolist()
            out["dropped_frac"] = float(np.mean([m["dropped_frac"] for m in ms]))
            out["router_entropy"] = float(np.mean([m["router_entropy"] for m in ms]))
            out["max_over_mean_load"] = np.mean([m["max_over_mean_load"] for m in ms], axis=0).tolist()
        return out

    run_dir = Path(run_dir) if run_dir is not None else None
    base_rng = jax.random.PRNGKey(train_cfg.seed)
    state = _load_checkpoint(run_dir, fingerprint) if run_dir is not None else None
    if state is None:
        # a whole batch, so that any dispatch_groups valid for training is valid here too
        init_batch = jnp.asarray(data_lib.train_batch(dataset.train, 0, B, T, train_cfg.seed))[:, :-1]
        params = jax.jit(lambda r, x: net.init(r, x, is_training=True))(jax.random.fold_in(base_rng, 10**9), init_batch)
        state = {"fingerprint": fingerprint, "step": 0, "params": params, "opt_state": opt.init(params),
                 "curve": [], "train_curve": [], "elapsed_s": 0.0, "train_tokens_timed": 0, "train_time_s": 0.0,
                 "window": []}
        resumed_from = None
    else:
        resumed_from = state["step"]
    params, opt_state = state["params"], state["opt_state"]
    if mesh is None:
        train_step, eval_step, to_batch = jax.jit(train_step), jax.jit(eval_step), jnp.asarray
    else:  # checkpoints hold host arrays, so a run may resume on any mesh
        from routing_laws import parallel

        params, opt_state, train_step, eval_step, to_batch = parallel.shard_training(
            mesh, model_cfg, B, params, opt_state, train_step, eval_step)
    step = state["step"]
    bar = _progress(total_steps, progress, name or "train")
    if bar is not None:
        bar.update(step)
    t_start = time.perf_counter()
    t_window, tok_window = time.perf_counter(), 0
    window: list[dict] = list(state.get("window", []))  # metrics of steps since the last evaluation
    compiled, last_eval = False, None
    last_stop = total_steps if stop_after_steps is None else min(total_steps, stop_after_steps)
    while step < last_stop:
        batch = to_batch(data_lib.train_batch(dataset.train, step, B, T, train_cfg.seed))
        params, opt_state, m = train_step(params, opt_state, batch, jax.random.fold_in(base_rng, step))
        step += 1
        window.append(m)
        if not compiled:  # leave the compiling first step out of the throughput
            jax.block_until_ready(params)
            compiled, t_window, tok_window = True, time.perf_counter(), 0
        else:
            tok_window += B * T
        if step % eval_every == 0 or step == total_steps:
            ms = jax.device_get(window)
            elapsed = time.perf_counter() - t_window
            state["train_tokens_timed"] += tok_window
            state["train_time_s"] += elapsed
            train_loss = float(np.mean([x["lm_loss"] for x in ms]))
            if not math.isfinite(train_loss):
                raise RoutingLawsError(f"training diverged at step {step} (loss {train_loss}); "
                                       "lower --lr or check the data")
            point = {"step": step, "tokens": step * B * T, "train_loss": train_loss}
            if "dropped_frac" in ms[0]:
                point["dropped_frac"] = float(np.mean([x["dropped_frac"] for x in ms]))
            state["train_curve"].append(point)
            ev = last_eval = evaluate(params)
            state["curve"].append({"step": step, "tokens": step * B * T, "val_loss": ev["val_loss"]})
            if bar is not None:
                tps = tok_window / max(elapsed, 1e-9)
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{ev['val_loss']:.3f}", tok_s=f"{tps:,.0f}")
            window, tok_window, t_window = [], 0, time.perf_counter()
            state.update(step=step, params=params, opt_state=opt_state, window=[])
            if run_dir is not None and train_cfg.checkpoint_every and step % train_cfg.checkpoint_every < eval_every:
                state["elapsed_s"] += time.perf_counter() - t_start
                t_start = time.perf_counter()
                _save_checkpoint(run_dir, state)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    state.update(step=step, params=params, opt_state=opt_state, window=jax.device_get(window))
    state["elapsed_s"] += time.perf_counter() - t_start
    if run_dir is not None and stop_after_steps is not None and step < total_steps:
        _save_checkpoint(run_dir, state)
    final = last_eval if (last_eval is not None and step == total_steps) else evaluate(params)
    tokens_per_s = state["train_tokens_timed"] / state["train_time_s"] if state["train_time_s"] > 0 else float("nan")
    record = {
        "record_version": RECORD_VERSION,
        "name": name,
        "status": "finished" if step >= total_steps else "partial",
        "model": to_dict(model_cfg),
        "train": to_dict(train_cfg),
        "data": dataset.meta,
        "accounting": acct._asdict(),
        "steps": step,
        "total_steps": total_steps,
        "tokens": step * B * T,
        "curve": state["curve"],
        "train_curve": state["train_curve"],
        "final_val_loss": final["val_loss"],
        "routing": {k: v for k, v in final.items() if k != "val_loss"},
        "tokens_per_s": tokens_per_s,
        "wall_s": state["elapsed_s"],
        "resumed_from_step": resumed_from,
        "provenance": started,
    }
    if record_path is not None:
        atomic_write_json(record_path, record)
    if run_dir is not None and record["status"] == "finished":
        _save_checkpoint(run_dir, state)
    return record


def load_record(path: str | Path) -> dict:
    """Read a run record, checking it is one of ours (raises RoutingLawsError for a corrupt or foreign file)."""
    import json

    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RoutingLawsError(f"run record {path} is unreadable: {e}") from None
    if not isinstance(rec, dict) or rec.get("record_version") != RECORD_VERSION or "final_val_loss" not in rec:
        raise RoutingLawsError(f"{path} is not a routing-laws run record (version {RECORD_VERSION})")
    model_from_dict(rec["model"])  # validates
    return rec
