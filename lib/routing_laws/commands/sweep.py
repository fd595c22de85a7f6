"""``routing-laws sweep``: run or resume a grid of runs; records land in data/runs/<profile>/."""

from __future__ import annotations

import argparse

HELP = "run (or resume) a grid of runs over size x experts x router; writes data/runs/<profile>/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="smoke", help="grid: smoke | cpu | gpu (default smoke)")
    p.add_argument("--only", nargs="*", default=None, help="run ids containing any of these strings (e.g. sbase 100k-)")
    p.add_argument("--shard", default=None, help="i/n: run every n-th run starting at i (split a grid over machines)")
    p.add_argument("--out", default=None, help="records folder (default data/runs/<profile>)")
    p.add_argument("--corpus", default=None, help="text file or folder (default: assembled corpus, else the sample)")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--list", action="store_true", help="list the selected runs and their status, run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--mesh", default=None, help="device mesh DATAxEXPERT (e.g. 2x4) or 'auto' (all devices on data); "
                   "default: one device. Multi-host: see the README's Scale-out section")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from routing_laws import sweep

    prof = sweep.get_profile(args.profile)
    shard = sweep.parse_shard(args.shard)
    out = Path(args.out) if args.out else sweep.runs_dir(prof.name)
    if args.list:
        for spec in sweep.select(prof.runs(), args.only, shard):
            path = out / f"{spec.run_id}.json"
            status = "missing"
            if path.exists():
                import json

                try:
                    status = json.loads(path.read_text()).get("status", "?")
                except (OSError, ValueError):
                    status = "corrupt"
            print(f"{spec.run_id:40s} {status}")
        return 0
    from routing_laws import parallel

    parallel.init_distributed()
    mesh_shape = parallel.parse_mesh(args.mesh)
    mesh = parallel.make_mesh(*mesh_shape) if mesh_shape is not None else None
    counts = sweep.run_sweep(prof, only=args.only, shard=shard, out_dir=out, corpus=args.corpus,
                             progress=not args.no_progress, retry_failed=args.retry_failed, mesh=mesh)
    _, problems = sweep.read_records(out)
    print(f"sweep {prof.name}: {counts['selected']} selected, {counts['finished']} trained, "
          f"{counts['skipped']} already recorded, {counts['failed']} failed -> {out / 'runs.csv'}")
    for p in problems:
        print(f"  ignored record {p}")
    return 1 if counts["failed"] else 0
