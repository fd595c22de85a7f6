"""One module per CLI subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``.

``int_arg`` and ``float_arg`` are the argparse types every command uses for numbers: they accept what
``errors.check_int`` / ``check_float`` accept (``1e6`` and ``1_000_000`` as whole numbers) and refuse
the rest (``1.5e0`` for an integer, ``1e400``, ``nan``) with argparse's one-line error naming the flag.
"""

from __future__ import annotations

import argparse
from typing import Callable

from routing_laws.errors import ValidationError, check_float, check_int


def int_arg(min_value: int | None = None, max_value: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers in [min_value, max_value]."""
    def parse(text: str) -> int:
        try:
            return check_int("value", text, min_value=min_value, max_value=max_value)
        except ValidationError as e:
            raise argparse.ArgumentTypeError(f"{e.problem}{f' ({e.fix})' if e.fix else ''}") from None
    parse.__name__ = "whole number"
    return parse


def float_arg(min_value: float | None = None, max_value: float | None = None, *,
              min_exclusive: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for finite numbers in range (``min_exclusive``: strictly above ``min_value``)."""
    def parse(text: str) -> float:
        try:
            return check_float("value", text, min_value=min_value, max_value=max_value, min_exclusive=min_exclusive)
        except ValidationError as e:
            raise argparse.ArgumentTypeError(e.problem) from None
    parse.__name__ = "number"
    return parse
