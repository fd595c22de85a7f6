"""Error types and small input validators shared by every module.

Every public function validates its input and raises ``ValidationError`` whose message names the
field and the fix; the CLI turns these into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class RoutingLawsError(Exception):
    """Base class of every error the project raises on purpose (the CLI prints it without traceback)."""


class ValidationError(RoutingLawsError, ValueError):
    """Bad input: the message names the field and says how to fix it."""

    def __init__(self, field: str, problem: str, fix: str = ""):
        self.field, self.problem, self.fix = field, problem, fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


def check_int(field: str, value: Any, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """Return ``value`` as int, or raise naming ``field`` if it is not an integer in range."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValidationError(field, f"must be an integer, got {value!r}")
    value = int(value.__index__())
    if min_value is not None and value < min_value:
        raise ValidationError(field, f"must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValidationError(field, f"must be <= {max_value}, got {value}")
    return value


def check_float(
    field: str,
    value: Any,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
) -> float:
    """Return ``value`` as a finite float in range, or raise naming ``field``."""
    if isinstance(value, bool):
        raise ValidationError(field, f"must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValidationError(field, f"must be finite, got {value!r}")
    if min_value is not None and (out < min_value or (min_exclusive and out == min_value)):
        op = ">" if min_exclusive else ">="
        raise ValidationError(field, f"must be {op} {min_value}, got {out}")
    if max_value is not None and (out > max_value or (max_exclusive and out == max_value)):
        op = "<" if max_exclusive else "<="
        raise ValidationError(field, f"must be {op} {max_value}, got {out}")
    return out


def check_choice(field: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    choices = list(choices)
    if value not in choices:
        raise ValidationError(field, f"unknown value {value!r}", "choose one of: " + ", ".join(map(str, choices)))
    return value
