"""``routing-laws bench layer|train``: time a routed FFN layer against the dense FFN of equal active FLOPs,
or the whole training step (forward, backward, AdamW) of dense and routed models."""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

import jax

from routing_laws import bench
from routing_laws.config import ROUTERS, SIZES
from routing_laws.commands import float_arg, int_arg
from routing_laws.errors import ValidationError, check_output_path
from routing_laws.io_utils import atomic_write_json, repo_root

HELP = "benchmark a routed FFN layer against the dense FFN (layer), or the full training step (train)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["layer", "train"],
                        help="layer: one FFN layer, forward+backward; train: the model's full training step")
    parser.add_argument("--e", type=int_arg(1, 4096), nargs="+", default=None,
                        help="expert counts (default: layer 8 64 256, train 16 64)")
    parser.add_argument("--d", type=int_arg(1, 65536), nargs="+", default=[256, 512, 1024], help="layer: d_model values (default 256 512 1024)")
    parser.add_argument("--tokens", type=int_arg(1, 1 << 22), default=None, help="layer: tokens per timed batch (default 512 on CPU, 16384 otherwise)")
    parser.add_argument("--capacity-factor", type=float_arg(0.0, 64.0, min_exclusive=True), default=1.25, help="layer: expert capacity factor (default 1.25)")
    parser.add_argument("--router", default="sbase", help="layer: sbase, rlr or hash (default sbase, Sinkhorn included)")
    parser.add_argument("--top-k", type=int_arg(1, 64), default=1, help="layer: experts per token (default 1)")
    parser.add_argument("--dtype", default=None, help="layer: float32 or bfloat16 (default float32 on CPU, bfloat16 otherwise)")
    parser.add_argument("--max-param-gb", type=float_arg(0.0, 1e4, min_exclusive=True), default=2.0, help="layer: skip rows whose expert weights x3 exceed this")
    parser.add_argument("--sizes", nargs="+", default=["100k"], help=f"train: model sizes, of {', '.join(SIZES)} (default 100k)")
    parser.add_argument("--routers", nargs="+", default=list(ROUTERS), help="train: routers (default all four)")
    parser.add_argument("--batch", type=int_arg(1, 1 << 16), default=32, help="train: sequences per step (default 32)")
    parser.add_argument("--steps", type=int_arg(1, 1_000_000), default=50, help="train: timed steps per repeat (default 50)")
    parser.add_argument("--repeats", type=int_arg(1, 1000), default=None, help="timed repeats, median reported (default: layer 5, train 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke-test setting (layer: E 8 64, d 64 128, 256 tokens; train: 10 steps, 2 repeats)")
    parser.add_argument("--out", default=None, help="output JSON (default data/bench/<what>-<backend>-<date>.json)")


def _log(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    backend = jax.default_backend()
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d")
    default_out = repo_root() / "data" / "bench" / (f"train-{backend}-{date}.json" if args.what == "train"
                                                     else f"layer-{backend}-{args.router}-{date}.json")
    out = check_output_path("--out", args.out or default_out)  # before any timing
    if args.what == "train":
        experts = args.e or [16, 64]
        steps, repeats = (10, 2) if args.quick else (args.steps, args.repeats or 3)
        result = bench.train_bench(args.sizes, experts, args.routers, batch_size=args.batch, steps=steps,
                                   repeats=repeats, log=_log)
        atomic_write_json(out, result)
        print(bench.format_train_table(result))
        print(f"wrote {out}")
        return 0
    experts, d_models, tokens = args.e or [8, 64, 256], args.d, args.tokens
    if args.quick:
        experts, d_models, tokens = [8, 64], [64, 128], tokens or 256
    tokens = tokens or (512 if backend == "cpu" else 16384)
    dtype = args.dtype or ("float32" if backend == "cpu" else "bfloat16")
    if any(e < 1 for e in experts):
        raise ValidationError("--e", f"expert counts must be >= 1, got {experts}")
    result = bench.layer_bench(experts, d_models, tokens=tokens, capacity_factor=args.capacity_factor,
                               router=args.router, top_k=args.top_k, dtype=dtype, repeats=args.repeats or 5,
                               max_param_bytes=args.max_param_gb * 1e9, log=_log)
    atomic_write_json(out, result)
    print(bench.format_table(result))
    print(f"wrote {out}")
    return 0
