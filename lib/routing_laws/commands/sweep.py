"""``routing-laws sweep``: plan, run or resume a grid of runs; records land in data/runs/<grid>/.

The grid is chosen with ``--grid`` (``routing_laws.sweep.GRIDS``); ``--profile`` belongs to
``routing-laws book`` (how much the chapters compute) and is refused here with a hint, so that the
one word does not name two different things. Exit status: 0 when every selected run is finished,
1 when any selected run is recorded as failed or could not be recorded (on every re-run too), 2 for
bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

from routing_laws import data as data_lib
from routing_laws import parallel, plan, sweep
from routing_laws.errors import ValidationError, check_output_path

HELP = "run (or resume, or --plan) a grid of runs over size x experts x router; writes data/runs/<grid>/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="smoke", help=f"grid of runs: {' | '.join(sweep.GRIDS)} (default smoke)")
    p.add_argument("--profile", dest="profile_alias", default=None, help=argparse.SUPPRESS)
    p.add_argument("--only", nargs="*", action="extend", default=None,
                   help="run ids containing any of these strings (e.g. sbase 100k-; repeated flags add up)")
    p.add_argument("--shard", default=None, help="i/n: run every n-th run starting at i (split a grid over machines)")
    p.add_argument("--out", default=None, help="records folder (default data/runs/<grid>)")
    p.add_argument("--corpus", default=None, help="text file or folder (default: assembled corpus, else the sample)")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--allow-dirty", action="store_true",
                   help="run although tracked files have uncommitted changes; its records are flagged "
                        "dirty_tree and listed with status 'dirty' in runs.csv (left out of fits)")
    p.add_argument("--list", action="store_true", help="list the selected runs and their record status, run nothing")
    p.add_argument("--plan", action="store_true",
                   help="print each run's shape, parameters, tokens and estimated time, and the total; run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--mesh", default=None, help="device mesh DATAxEXPERT (e.g. 2x4) or 'auto' (all devices on data); "
                   "default: one device. Multi-host: see the README's Scale-out section")


def _plan(grid: sweep.Grid, corpus: str | None) -> str:
    """The grid's plan: measured on this machine's accelerator; for the gpu grid on a CPU-only machine
    from the committed H200 anchors; for the CPU grids measured on this CPU (``plan.cpu_plan``)."""
    backend = jax.default_backend()
    if backend == "cpu" and grid.name != "gpu":
        rows, source = plan.cpu_plan(grid, data_lib.get_dataset(corpus))
    elif backend == "cpu":
        source = (f"no accelerator (JAX backend cpu): measured H200 throughputs of a plain-JAX peer from "
                  f"{plan.ANCHORS_FILE.relative_to(plan.ANCHORS_FILE.parents[2])} (../shared/research/gpu-anchors.md), "
                  f"compile time assumed, not measured")
        rows = plan.plan_grid(grid, vocab_size=data_lib.load_tokenizer().vocab_size)
    else:
        dataset = data_lib.get_dataset(corpus)
        measured = plan.measure_sizes(grid, dataset)
        source = (f"measured on this {jax.devices()[0].device_kind} ({backend}): 4 training steps of each size's "
                  f"dense model, first step and evaluation counted as compile time")
        rows = plan.plan_grid(grid, vocab_size=dataset.vocab_size, measured=measured)
    return plan.format_plan(grid, rows, source)


def run(args: argparse.Namespace) -> int:
    if args.profile_alias is not None:
        raise ValidationError("--profile", "sweep takes --grid NAME (--profile is the book's: how much the chapters "
                              "compute)", f"use: routing-laws sweep --grid {args.profile_alias}")
    grid = sweep.get_grid(args.grid)
    shard = sweep.parse_shard(args.shard)
    if args.corpus is not None:
        data_lib.resolve_corpus(args.corpus)  # a missing corpus is refused before anything else
    if args.plan:
        print(_plan(grid, args.corpus))
        return 0
    out = check_output_path("--out", Path(args.out) if args.out else sweep.runs_dir(grid.name), is_dir=True)
    if args.list:
        for spec in sweep.select(grid.runs(), args.only, shard):
            print(f"{spec.run_id:40s} {sweep.record_status(out / f'{spec.run_id}.json')}")
        return 0
    parallel.init_distributed()
    mesh_shape = parallel.parse_mesh(args.mesh)
    mesh = parallel.make_mesh(*mesh_shape) if mesh_shape is not None else None
    counts = sweep.run_sweep(grid, only=args.only, shard=shard, out_dir=out, corpus=args.corpus,
                             progress=not args.no_progress, retry_failed=args.retry_failed, mesh=mesh,
                             allow_dirty=args.allow_dirty)
    _, problems = sweep.read_records(out)
    print(f"sweep {grid.name}: {counts['selected']} selected, {counts['finished']} trained, "
          f"{counts['skipped']} already recorded, {counts['failed']} failed now, "
          f"{counts['failed_total']} failed in all -> {out / 'runs.csv'}")
    if counts["set_aside"]:
        print(f"  {counts['set_aside']} invalid record(s) moved aside (*.json.bad-*) and trained again")
    if counts["unwritten"]:
        print(f"  {counts['unwritten']} record(s) could not be written (see the errors above)")
    for p in problems:
        print(f"  ignored invalid file {p}")
    if counts["failed_total"]:
        print("  failed runs: see 'reason' in their records; rerun them with --retry-failed")
        return 1
    return 0
