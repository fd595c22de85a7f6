"""``routing-laws`` command line: one subcommand per module in ``routing_laws.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors the project raises on purpose (``RoutingLawsError``) print one line and exit 2, no traceback; an
unforeseen operating-system error (full disk, read-only file system) prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from routing_laws.errors import RoutingLawsError

COMMANDS = ("train", "sweep", "fit", "bench", "book", "corpus")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.exit(2, f"routing-laws: error: {message} (see '{self.prog} --help')\n")


def _load(name: str):
    try:
        return importlib.import_module(f"routing_laws.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"routing_laws.commands.{name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="routing-laws", description="Routed language models and their scaling laws (Clark et al. 2022).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except RoutingLawsError as e:
        print(f"routing-laws {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"routing-laws {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # a write or read the command did not foresee (full disk, read-only, ...): one line
        where = f" {e.filename}" if e.filename else ""
        print(f"routing-laws {args.command}: error:{where} {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
