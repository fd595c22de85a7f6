"""``routing-laws bench layer``: time a routed FFN layer against the dense FFN of equal active FLOPs."""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from routing_laws.errors import ValidationError

HELP = "benchmark a routed FFN layer (forward+backward) against the dense FFN of equal active FLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["layer"], help="what to benchmark (layer: one FFN layer)")
    parser.add_argument("--e", type=int, nargs="+", default=[8, 64, 256], help="expert counts (default 8 64 256)")
    parser.add_argument("--d", type=int, nargs="+", default=[256, 512, 1024], help="d_model values (default 256 512 1024)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per timed batch (default 512 on CPU, 16384 otherwise)")
    parser.add_argument("--capacity-factor", type=float, default=1.25, help="expert capacity factor (default 1.25)")
    parser.add_argument("--router", default="sbase", help="sbase, rlr or hash (default sbase, Sinkhorn included)")
    parser.add_argument("--top-k", type=int, default=1, help="experts per token (default 1)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default float32 on CPU, bfloat16 otherwise)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats, median reported (default 5)")
    parser.add_argument("--max-param-gb", type=float, default=2.0, help="skip rows whose expert weights x3 exceed this")
    parser.add_argument("--quick", action="store_true", help="tiny grid for a smoke test (E 8 64, d 64 128, 256 tokens)")
    parser.add_argument("--out", default=None, help="output JSON (default data/bench/layer-<backend>-<date>.json)")


def run(args: argparse.Namespace) -> int:
    import jax

    from routing_laws import bench
    from routing_laws.io_utils import atomic_write_json, repo_root

    backend = jax.default_backend()
    experts, d_models, tokens = args.e, args.d, args.tokens
    if args.quick:
        experts, d_models, tokens = [8, 64], [64, 128], tokens or 256
    tokens = tokens or (512 if backend == "cpu" else 16384)
    dtype = args.dtype or ("float32" if backend == "cpu" else "bfloat16")
    if any(e < 1 for e in experts):
        raise ValidationError("--e", f"expert counts must be >= 1, got {experts}")
    result = bench.layer_bench(experts, d_models, tokens=tokens, capacity_factor=args.capacity_factor,
                               router=args.router, top_k=args.top_k, dtype=dtype, repeats=args.repeats,
                               max_param_bytes=args.max_param_gb * 1e9, log=lambda s: print(s, flush=True))
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d")
    out = Path(args.out) if args.out else repo_root() / "data" / "bench" / f"layer-{backend}-{args.router}-{date}.json"
    atomic_write_json(out, result)
    print(bench.format_table(result))
    print(f"wrote {out}")
    return 0
