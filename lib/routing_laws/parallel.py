"""Data- and expert-parallel training with JAX's SPMD machinery: a 2-d device mesh, shardings, multi-host start.

Shape glossary: B batch, T sequence (or tokens routed together, for router helpers), D d_model,
F d_ff, E experts, C expert capacity, S data shards.

Layout (GShard style, expressed as ``NamedSharding``s and left to XLA's SPMD partitioner):
- mesh axes ``('data', 'expert')``; ``make_mesh()`` puts every device on ``data``.
- batches ``[B, T+1]`` are split over *both* axes (``P(('data', 'expert'))``), so the dense parts
  (attention, dense FFNs, embeddings) never compute the same tokens twice;
- expert weights ``w_in [E, D, F]`` / ``w_out [E, F, D]`` (and their Adam moments) are split on E over
  ``expert``; every other parameter (routers, attention, LayerNorms, embeddings) is replicated;
- dispatch: with ``router.dispatch_groups`` a multiple of the device count, every device fills the
  capacity buffers of its own token groups and two explicit ``all_to_all``s over ``expert`` carry the
  slots to the devices holding their experts and back (``routing_laws.moe``); with one global
  queue (G = 1, the default) the ``[E, C, D]`` buffer follows its expert weights and XLA picks the
  collectives (it gathers the tokens to every expert shard).
Routing stays global: the routing decision, the capacity and S-BASE's Sinkhorn are computed over the
whole batch exactly as on one device (XLA inserts the cross-shard reductions), so a run's meaning
and loss trajectory do not depend on the mesh. ``routers.sbase_balance`` measures the per-shard alternative.

Multi-host: ``init_distributed()`` starts ``jax.distributed`` from ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; arrays are built with ``make_array_from_callback``
from data every process computes alike (batches are a pure function of (seed, step)).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from routing_laws.config import ModelConfig
from routing_laws.errors import ValidationError, check_int
from routing_laws.mesh import DATA, EXPERT, check_mesh, expert_parallel

EXPERT_WEIGHTS = ("w_in", "w_out")  # RoutedFFN parameters with a leading E axis (3-d); DenseFFN's are 2-d
ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


# ------------------------------------------------------------------------------------------- the mesh

def parse_mesh(text: str | None) -> tuple[int | None, int] | None:
    """'DATAxEXPERT' (e.g. '2x4') -> (2, 4); 'auto' -> (None, 1) (all devices on data); None -> None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValidationError("--mesh", f"expected DATAxEXPERT such as 2x4, got {text!r}")
    if text.strip().lower() == "auto":
        return None, 1
    parts = text.lower().split("x")
    try:
        data, expert = (int(p) for p in parts)
    except ValueError:
        raise ValidationError("--mesh", f"expected DATAxEXPERT such as 2x4 (or 'auto'), got {text!r}") from None
    if data < 1 or expert < 1:
        raise ValidationError("--mesh", f"axis sizes must be >= 1, got {text!r}")
    return data, expert


def make_mesh(data: int | None = None, expert: int = 1, *, devices=None) -> Mesh:
    """A ``('data', 'expert')`` mesh over ``devices`` (default: all, every process's); ``data=None`` uses all that remain."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if n == 0:
        raise ValidationError("devices", "no devices to build a mesh from")
    expert = check_int("mesh.expert", expert, min_value=1)
    if n % expert:
        raise ValidationError("mesh.expert", f"expert axis {expert} does not divide the {n} devices",
                              f"choose an expert axis among the divisors of {n}: {_divisors(n)}")
    if data is None:
        data = n // expert
    data = check_int("mesh.data", data, min_value=1)
    if data * expert != n:
        raise ValidationError("mesh", f"data x expert = {data} x {expert} = {data * expert} does not match the {n} devices",
                              f"use data x expert = {n} (e.g. {n // expert}x{expert}), or pass devices= a subset")
    axis_types = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh((data, expert), (DATA, EXPERT), axis_types=axis_types, devices=devices)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_fits(mesh: Mesh, model_cfg: ModelConfig, batch_size: int) -> None:
    """Raise if the model's experts or the batch cannot be split evenly over ``mesh``."""
    check_mesh(mesh)
    if not isinstance(model_cfg, ModelConfig):
        raise ValidationError("model_cfg", f"must be a ModelConfig, got {type(model_cfg).__name__}")
    n_exp, n_dev = mesh.shape[EXPERT], mesh.size
    E = model_cfg.router.n_experts
    if model_cfg.router.routed and E % n_exp:
        raise ValidationError("mesh.expert", f"n_experts={E} is not divisible by the expert axis {n_exp}",
                              f"choose an expert axis dividing {E} (e.g. {np.gcd(E, n_exp)})")
    B = check_int("train.batch_size", batch_size, min_value=1)
    if B % n_dev:
        raise ValidationError("train.batch_size", f"batch of {B} sequences cannot be split over {n_dev} devices "
                              f"(mesh {mesh.shape[DATA]}x{n_exp})", f"use a multiple of {n_dev}")


# -------------------------------------------------------------------------------------- shardings

def is_expert_weight(path, leaf) -> bool:
    """True for a RoutedFFN expert weight (or its optimizer moment): key w_in/w_out with 3 dims [E, ., .]."""
    last = path[-1] if path else None
    key = getattr(last, "key", getattr(last, "name", None))
    return key in EXPERT_WEIGHTS and getattr(leaf, "ndim", 0) == 3


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(check_mesh(mesh), P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches [B, ...] split on B over every device (data and expert axes together)."""
    return NamedSharding(check_mesh(mesh), P((DATA, EXPERT)))


def param_shardings(tree: Any, mesh: Mesh) -> Any:
    """Shardings for a parameter tree, or any tree mirroring it (optimizer state): expert weights' E axis
    over ``expert``, everything else replicated. Raises if an E is not divisible by the expert axis."""
    check_mesh(mesh)
    n_exp = mesh.shape[EXPERT]

    def rule(path, leaf):
        if is_expert_weight(path, leaf):
            if leaf.shape[0] % n_exp:
                raise ValidationError("mesh.expert", f"{jax.tree_util.keystr(path)} has E={leaf.shape[0]} experts, "
                                      f"not divisible by the expert axis {n_exp}", "choose an expert axis dividing E")
            return NamedSharding(mesh, P(EXPERT))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(rule, tree)


def put(tree: Any, shardings: Any) -> Any:
    """Place host (or single-device) arrays onto ``shardings``; multi-host safe when every process holds the same values."""

    def one(x, sharding):
        x = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(one, tree, shardings)


def put_batch(batch_BT, mesh: Mesh) -> jax.Array:
    """A host batch [B, T] as a global array split over every device of ``mesh``."""
    batch_BT = np.asarray(batch_BT)
    if batch_BT.ndim < 1 or batch_BT.shape[0] % mesh.size:
        raise ValidationError("batch", f"leading dim of shape {batch_BT.shape} is not divisible by {mesh.size} devices",
                              f"use a batch size that is a multiple of {mesh.size}")
    return put(batch_BT, batch_sharding(mesh))


def shard_training(mesh: Mesh, model_cfg: ModelConfig, batch_size: int, params, opt_state,
                   train_step: Callable, eval_step: Callable):
    """Place (params, opt_state) on ``mesh`` and jit the steps with explicit in/out shardings.

    ``train_step(params, opt_state, batch, rng) -> (params, opt_state, metrics)``,
    ``eval_step(params, batch) -> metrics``. Returns (params, opt_state, train_step, eval_step, to_batch).
    """
    check_fits(mesh, model_cfg, batch_size)
    p_sh, o_sh = param_shardings(params, mesh), param_shardings(opt_state, mesh)
    p_leaves, p_def = jax.tree_util.tree_flatten(p_sh)
    o_leaves, o_def = jax.tree_util.tree_flatten(o_sh)
    step, evals = _sharded_jits(mesh, train_step, eval_step, p_def, tuple(p_leaves), o_def, tuple(o_leaves))
    return put(params, p_sh), put(opt_state, o_sh), step, evals, lambda b: put_batch(b, mesh)


@functools.lru_cache(maxsize=16)
def _sharded_jits(mesh: Mesh, train_step: Callable, eval_step: Callable, p_def, p_leaves: tuple, o_def,
                  o_leaves: tuple) -> tuple[Callable, Callable]:
    """The jitted, sharded (train, eval) steps, cached on the mesh, the step functions and the shardings:
    runs of one shape on one mesh (``train.step_functions`` returns the same functions for them) reuse one
    compilation instead of building fresh jits per run."""
    p_sh, o_sh = jax.tree_util.tree_unflatten(p_def, p_leaves), jax.tree_util.tree_unflatten(o_def, o_leaves)
    rep, b_sh = replicated(mesh), batch_sharding(mesh)
    step = jax.jit(traced_on(mesh, train_step), in_shardings=(p_sh, o_sh, b_sh, rep), out_shardings=(p_sh, o_sh, rep))
    evals = jax.jit(traced_on(mesh, eval_step), in_shardings=(p_sh, b_sh), out_shardings=rep)
    return step, evals


def traced_on(mesh: Mesh, fn: Callable) -> Callable:
    """``fn`` traced with ``mesh`` as the expert-parallel mesh, so routed layers may use all-to-all dispatch."""
    check_mesh(mesh)

    @functools.wraps(fn)  # keeps the step's name (compile logs, compile counts)
    def wrapped(*args):
        with expert_parallel(mesh):
            return fn(*args)

    return wrapped


def describe(tree: Any) -> dict[str, list]:
    """{leaf path: its partition spec as a list of mesh axes per dimension} of a placed tree (reports, tests)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(p): list(x.sharding.spec) for p, x in flat}


# ------------------------------------------------------------------------------------- multi-host

def init_distributed(env: Mapping[str, str] | None = None) -> bool:
    """Start ``jax.distributed`` from JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
    JAX_PROCESS_ID. Returns False (single host, nothing done) when none is set; raises if only some are."""
    env = os.environ if env is None else env
    given = {k: env.get(k) for k in ENV_VARS if env.get(k)}
    if not given:
        return False
    missing = [k for k in ENV_VARS if k not in given]
    if missing:
        raise ValidationError("environment", f"multi-host start needs all of {', '.join(ENV_VARS)}; missing "
                              f"{', '.join(missing)}", "set all three on every host, or none for one host")
    addr = given["JAX_COORDINATOR_ADDRESS"]
    if ":" not in addr:
        raise ValidationError("JAX_COORDINATOR_ADDRESS", f"expected host:port, got {addr!r}", "e.g. 10.0.0.1:1234")
    try:
        n, pid = int(given["JAX_NUM_PROCESSES"]), int(given["JAX_PROCESS_ID"])
    except ValueError:
        raise ValidationError("JAX_NUM_PROCESSES", "JAX_NUM_PROCESSES and JAX_PROCESS_ID must be whole numbers") from None
    if n < 1 or not 0 <= pid < n:
        raise ValidationError("JAX_PROCESS_ID", f"need 0 <= JAX_PROCESS_ID < JAX_NUM_PROCESSES, got {pid} of {n}")
    jax.distributed.initialize(coordinator_address=addr, num_processes=n, process_id=pid)
    return True
