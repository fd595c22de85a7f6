"""``routing-laws book``: execute the chapters with papermill under a profile, then build the book."""

from __future__ import annotations

import argparse
import sys
import time

from routing_laws import book
from routing_laws.book import PROFILE_NAMES

HELP = "execute the chapters with papermill under a profile and build the Jupyter Book (_build/html)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="auto",
                        help="size of what chapters compute live: smoke (tests), cpu (make book), gpu, "
                             "auto = gpu if JAX sees a GPU/TPU else cpu (default: auto)")
    parser.add_argument("--only", action="append", metavar="CHAPTER",
                        help="execute only this chapter (name as in _toc.yml, e.g. 02_training); repeatable")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-build", action="store_true", help="execute the chapters, do not build the book")
    group.add_argument("--no-execute", action="store_true",
                       help="build from the already staged notebooks in book/executed/")


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if args.no_execute and args.only:
        log("book: warning: --only is ignored with --no-execute")
    staged = [] if args.no_execute else book.execute_chapters(args.profile, args.only, log=log)
    if args.no_build:
        print(f"executed {len(staged)} chapter(s) in {time.perf_counter() - t0:.1f} s")
        return 0
    index = book.build_book(log=log)
    print(f"{index} ({len(staged)} chapter(s) executed, profile {args.profile}, "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0
