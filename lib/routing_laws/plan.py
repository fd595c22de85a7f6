"""What runs will cost before they run: a grid's shapes, parameters, tokens and time; one step's memory.

The estimate is tokens / (tokens per second) + one compile per run (every run of a grid has its own
shape: size, router, E, K, R). Tokens per second come from one of two sources, and the printed plan
says which:

- measured: on an accelerator, ``measure_sizes`` trains a few steps of the dense model of every size
  of the grid on the current backend and times them (the first, compiling step timed apart);
- anchors: otherwise, the committed peer measurements on one H200 in
  ``data/bench/h200-peer-anchors-20261128.json`` (whole small LMs, bf16, routed every other layer).

- measured on a CPU (``measure_cpu``): the dense model of every size, and every (router, E) of the grid at
  one reference size, timed for a few steps each on this machine; the routed/dense ratio measured at the
  reference size is then applied at every size (raised to the number of routed layers over the
  reference's), instead of the H200 anchors' ratio, which says nothing about a CPU. The time is
  per process: for a grid sharded one process per core (``taskset``), it is core-seconds.

Either way, the dense rate at a run's dense-equivalent non-embedding size N is interpolated log-log
between the sizes known (extrapolated with the end slopes), and routed runs are slowed by the anchors'
routed/dense ratio at their E (interpolated in log E, extrapolated past E = 128 with the last slope),
raised to the number of routed layers over the anchors' every-other-layer count; K > 1 scales the time
by the forward FLOPs per token. The anchors are a plain-JAX peer: the plan assumes the project's step
runs at the peer's speed, and it assumes (does not measure) the compile time when it uses them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from routing_laws import model as model_lib
from routing_laws import train as train_lib
from routing_laws.config import ModelConfig, RouterConfig, TrainConfig, model_config
from routing_laws.errors import ValidationError, check_int
from routing_laws.io_utils import repo_root
from routing_laws.sweep import Grid, RunSpec

ANCHORS_FILE = repo_root() / "data" / "bench" / "h200-peer-anchors-20261128.json"
GPU_BUDGET_S = 8 * 60  # the gpu grid must fit this on one H200, compiles included


@dataclass(frozen=True)
class PlanRow:
    """One run of a plan: its shape, size, budget and estimated seconds (training + compile)."""

    run_id: str
    size: str
    router: str
    d_model: int
    n_layers: int
    experts: int
    top_k: int
    routing_frequency: float
    N: int  # dense-equivalent non-embedding parameters (the paper's N)
    P_non_embedding: int  # all non-embedding parameters, every expert counted
    tokens: int
    tokens_per_s: float
    train_s: float
    compile_s: float

    @property
    def total_s(self) -> float:
        return self.train_s + self.compile_s


def load_anchors(path: str | Path = ANCHORS_FILE) -> dict:
    """The committed peer throughputs (``rows`` of non-embedding params -> tokens/s per E), checked."""
    path = Path(path)
    try:
        anchors = json.loads(path.read_text(encoding="utf-8"))
        rows = anchors["rows"]
        for r in rows:
            if float(r["non_embedding_params"]) <= 0 or float(r["tokens_per_s"]["1"]) <= 0:
                raise ValueError("non-positive value")
        float(anchors["compile_s_assumed"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValidationError("anchors", f"{path} is not a readable anchors file ({e})",
                              "restore data/bench/h200-peer-anchors-20261128.json from git") from None
    return anchors


def _interp_loglog(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation of log y over log x, extrapolated with the end segments' slopes."""
    pts = sorted(zip(xs, ys))
    if len(pts) == 1:
        return pts[0][1]
    lx = math.log(x)
    k = 0
    while k < len(pts) - 2 and lx > math.log(pts[k + 1][0]):
        k += 1
    (x0, y0), (x1, y1) = pts[k], pts[k + 1]
    slope = (math.log(y1) - math.log(y0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + slope * (lx - math.log(x0)))


def routed_factor(experts: int, anchors: dict) -> float:
    """Routed / dense tokens per second at ``experts`` (mean over the anchor sizes; 1 at E = 1)."""
    if experts <= 1:
        return 1.0
    es = sorted({int(e) for r in anchors["rows"] for e in r["tokens_per_s"]})
    ratios = [sum(r["tokens_per_s"][str(e)] / r["tokens_per_s"]["1"] for r in anchors["rows"]) / len(anchors["rows"])
              for e in es]
    return min(1.0, _interp_loglog(experts, es, ratios))


def measure_sizes(grid: Grid, dataset, *, steps: int = 4) -> dict[str, tuple[float, float]]:
    """Time ``steps`` training steps of each size's dense model on the current backend:
    ``{size: (tokens per second without the first step, seconds of the first step and the evaluation)}``."""
    return {size: _measure(model_config(size, vocab_size=dataset.vocab_size, seq_len=grid.seq_len), grid, dataset,
                           steps, f"plan-{size}") for size in dict.fromkeys(s.size for s in grid.runs())}


@dataclass(frozen=True)
class RoutedRates:
    """Routed / dense tokens-per-second ratios measured at ``size`` (``measure_cpu``), per (router, E, K, R)."""

    size: str
    n_routed_layers: int  # routed layers of the reference model at R = 0.5
    ratios: dict  # (router, E) -> ratio at top-1, R = 0.5


def _measure(mcfg: ModelConfig, grid: Grid, dataset, steps: int, name: str) -> tuple[float, float]:
    B, T = grid.batch_size, grid.seq_len
    tcfg = TrainConfig(tokens=steps * B * T, batch_size=B, learning_rate=grid.learning_rate,
                       eval_every=steps, eval_tokens=B * T)
    rec = train_lib.train(mcfg, tcfg, dataset, progress=False, name=name)
    tps = float(rec["tokens_per_s"])
    return tps, max(0.0, float(rec["wall_s"]) - (steps - 1) * B * T / tps)


def measure_cpu(grid: Grid, dataset, *, steps: int = 6, ref_size: str | None = None
                ) -> tuple[dict[str, tuple[float, float]], RoutedRates]:
    """The measurements a CPU plan uses: ``measure_sizes`` for the dense model of every size, and the
    routed/dense ratio of every (router, E > 1) of the grid, top-1, R = 0.5, at ``ref_size`` (default: the
    grid's middle size; every router timed, since on a CPU S-BASE's Sinkhorn, RL-R's sampling and value
    head and HASH's lookup cost differently)."""
    if not isinstance(grid, Grid):
        raise ValidationError("grid", f"must be a Grid, got {type(grid).__name__}", "use sweep.get_grid(name)")
    steps = check_int("steps", steps, min_value=2)
    specs = grid.runs()
    sizes = list(dict.fromkeys(s.size for s in specs))
    ref = ref_size or sizes[len(sizes) // 2]
    if ref not in sizes:
        raise ValidationError("ref_size", f"{ref!r} is not a size of grid {grid.name}", "choose one of: " + ", ".join(sizes))
    dense = {}
    for size in sizes:
        dense[size] = _measure(model_config(size, vocab_size=dataset.vocab_size, seq_len=grid.seq_len), grid,
                               dataset, steps, f"plan-{size}")
    ratios = {}
    for router, E in dict.fromkeys((s.router, s.experts) for s in specs if s.router != "dense"):
        cfg = model_config(ref, vocab_size=dataset.vocab_size, seq_len=grid.seq_len,
                           router=RouterConfig(kind=router, n_experts=E))
        ratios[(router, E)] = _measure(cfg, grid, dataset, steps, f"plan-{ref}-{router}-E{E}")[0] / dense[ref][0]
    n_ref = len(model_config(ref, router=RouterConfig(kind="hash", n_experts=2)).routed_layers)
    return dense, RoutedRates(ref, n_ref, ratios)


def plan_grid(grid: Grid, *, vocab_size: int = 2048, anchors: dict | None = None,
              measured: dict[str, tuple[float, float]] | None = None,
              routed_rates: RoutedRates | None = None) -> list[PlanRow]:
    """One ``PlanRow`` per run of ``grid``, from ``measured`` rates (``measure_sizes``) or the anchors, and
    routed slow-downs from ``routed_rates`` (``measure_cpu``) where it has the run's (router, E)."""
    if not isinstance(grid, Grid):
        raise ValidationError("grid", f"must be a Grid, got {type(grid).__name__}", "use sweep.get_grid(name)")
    anchors = anchors or load_anchors()
    xs = [float(r["non_embedding_params"]) for r in anchors["rows"]]
    ys = [float(r["tokens_per_s"]["1"]) for r in anchors["rows"]]
    rows = []
    if routed_rates is not None and not isinstance(routed_rates, RoutedRates):
        raise ValidationError("routed_rates", f"must be a RoutedRates, got {type(routed_rates).__name__}",
                              "use plan.measure_cpu(grid, dataset)")
    for spec in grid.runs():
        rows.append(_plan_row(grid, spec, vocab_size, anchors, measured, xs, ys, routed_rates))
    return rows


def _plan_row(grid: Grid, spec: RunSpec, vocab_size: int, anchors: dict, measured, xs, ys,
              routed_rates: RoutedRates | None = None) -> PlanRow:
    router = spec.router_config()
    cfg = model_config(spec.size, vocab_size=vocab_size, seq_len=grid.seq_len, router=router)
    acct = model_lib.count_params(cfg)
    if measured is not None and spec.size in measured:
        dense_tps, compile_s = measured[spec.size]
    else:
        dense_tps, compile_s = _interp_loglog(acct.N, xs, ys), float(anchors["compile_s_assumed"])
    tps = dense_tps
    if router.routed:
        key = (spec.router, spec.experts)
        if routed_rates is not None and key in routed_rates.ratios:
            tps *= min(1.0, routed_rates.ratios[key]) ** (len(cfg.routed_layers) / routed_rates.n_routed_layers)
        else:
            tps *= routed_factor(spec.experts, anchors) ** (len(cfg.routed_layers) / (cfg.n_layers / 2))
        if spec.top_k > 1:
            k1 = model_lib.flops_per_token(cfg.replace(router=RouterConfig(
                kind=spec.router, n_experts=spec.experts, routing_frequency=spec.routing_frequency)))
            tps *= k1 / model_lib.flops_per_token(cfg)
    tokens = grid.train_config(spec.seed).tokens
    return PlanRow(spec.run_id, spec.size, spec.router, cfg.d_model, cfg.n_layers, spec.experts, spec.top_k,
                   spec.routing_frequency, acct.N, acct.P_non_embedding, tokens, tps, tokens / tps, compile_s)


def _si(x: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def format_plan(grid: Grid, rows: list[PlanRow], source: str) -> str:
    """The plan as a text table with the total (what ``routing-laws sweep --plan`` prints)."""
    lines = [f"plan of grid {grid.name}: {len(rows)} runs, batch {grid.batch_size} x {grid.seq_len} tokens",
             f"estimate source: {source}",
             f"{'run':44s} {'d':>5s} {'L':>3s} {'E':>4s} {'router':6s} {'N':>7s} {'P_ne':>7s} {'tokens':>7s} "
             f"{'tok/s':>7s} {'train s':>8s} {'compile s':>9s}"]
    for r in rows:
        lines.append(f"{r.run_id:44s} {r.d_model:5d} {r.n_layers:3d} {r.experts:4d} {r.router:6s} {_si(r.N):>7s} "
                     f"{_si(r.P_non_embedding):>7s} {_si(r.tokens):>7s} {_si(r.tokens_per_s):>7s} "
                     f"{r.train_s:8.1f} {r.compile_s:9.1f}")
    train_s, compile_s = sum(r.train_s for r in rows), sum(r.compile_s for r in rows)
    lines.append(f"total: {train_s + compile_s:.0f} s = {(train_s + compile_s) / 60:.1f} min = "
                 f"{(train_s + compile_s) / 3600:.1f} h "
                 f"({train_s:.0f} s training, {compile_s:.0f} s compiling), {_si(sum(r.tokens for r in rows))} tokens")
    return "\n".join(lines)


@contextlib.contextmanager
def one_core():
    """Pin this process to one of its cores for the block (then restore its cores); yields the core, or
    None where the OS cannot pin (no ``sched_setaffinity``) or only one core is visible anyway.

    A CPU plan's seconds are meant as core-seconds of the arrangement the sweep runs in, one process
    pinned per core; measured with every core visible, XLA splits each step over them and the plan
    came out 1.3x too fast (2026-12-01: 110k-L4 HASH E = 16 planned at 10.5k tokens/s, 7.6-8.2k measured
    in two pinned processes, train.train and the bare step alike)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    cores = os.sched_getaffinity(0)
    if len(cores) == 1:
        yield next(iter(cores))
        return
    core = min(cores)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, cores)


def cpu_plan(grid: Grid, dataset, *, steps: int = 6) -> tuple[list[PlanRow], str]:
    """The plan of ``grid`` on this CPU from ``measure_cpu`` (pinned to one core, ``one_core``) and the
    line that says where it comes from."""
    visible = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with one_core() as core:
        measured, rates = measure_cpu(grid, dataset, steps=steps)
    rows = plan_grid(grid, vocab_size=dataset.vocab_size, measured=measured, routed_rates=rates)
    how = (f"one process pinned to core {core} of {visible} visible" if core is not None
           else f"{visible} cores visible, not pinned (this OS cannot pin a process)")
    source = (f"measured on this CPU ({how}, load {os.getloadavg()[0]:.1f}): {steps} steps of each size's "
              f"dense model, and of every (router, E) at {rates.size}, first step and evaluation counted as "
              f"compile time; seconds are core-seconds of one process per core, as the sweep's shards run")
    return rows, source


def plan_summary(rows: list[PlanRow]) -> dict[str, Any]:
    """Totals and ranges of a plan, as checked by the tests and the gpu grid's sizing."""
    return {"runs": len(rows), "total_s": sum(r.total_s for r in rows),
            "N_min": min(r.N for r in rows), "N_max": max(r.N for r in rows),
            "E_max": max(r.experts for r in rows), "tokens_min": min(r.tokens for r in rows)}


def step_memory_bytes(model_cfg: ModelConfig, batch_size: int) -> int:
    """A rough upper estimate of one training step's memory: parameters, gradients and AdamW moments
    (16 bytes per parameter, every expert counted), plus float32 activations kept for the backward pass
    (about 24 D + 2 H T values per token and layer, and 3 V for the logits, their softmax and gradient).
    It is meant to refuse impossible requests (a batch of 1e9 sequences) before any work, not to plan
    memory to the byte."""
    batch_size = check_int("batch_size", batch_size, min_value=1)
    acct = model_lib.count_params(model_cfg)
    D, L, H, T, V = model_cfg.d_model, model_cfg.n_layers, model_cfg.n_heads, model_cfg.seq_len, model_cfg.vocab_size
    per_token = 4 * (L * (24 * D + 2 * H * T) + 3 * V)
    return 16 * acct.P + batch_size * T * per_token


def memory_limit_bytes() -> int | None:
    """Memory one step may use: the first device's limit on an accelerator, physical RAM on a CPU, or None."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
        except Exception:  # a backend without memory statistics
            stats = {}
        return int(stats["bytes_limit"]) if "bytes_limit" in stats else None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # a platform without sysconf
        return None


def check_step_memory(field: str, model_cfg: ModelConfig, batch_size: int) -> None:
    """Refuse, naming ``field``, a batch whose estimated step memory exceeds this machine's."""
    need, have = step_memory_bytes(model_cfg, batch_size), memory_limit_bytes()
    if have is not None and need > have:
        raise ValidationError(field, f"one training step of batch {batch_size} x {model_cfg.seq_len} tokens needs "
                              f"about {need / 2**30:,.1f} GiB, this machine has {have / 2**30:,.1f} GiB",
                              "use a smaller --batch-size or --seq-len")
