"""Error types and small input validators shared by every module.

Every public function validates its input and raises ``ValidationError`` whose message names the
field and the fix; the CLI turns these into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
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
    """Return ``value`` as an int in range, or raise naming ``field``.

    Accepted: ints (numpy ints too), floats with no fractional part (``2.0``), and strings that parse as a
    whole number (``"2"``, ``"1e6"``). Refused: bools, ``2.5``, ``"2.5"``, ``inf``/``nan``, anything else.
    """
    if isinstance(value, bool):
        raise ValidationError(field, f"must be an integer, got {value!r}", "booleans are not numbers")
    if isinstance(value, str):
        try:
            dec = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            raise ValidationError(field, f"must be an integer, got {value!r}") from None
        if not dec.is_finite() or dec != dec.to_integral_value():
            raise ValidationError(field, f"must be a whole number, got {value!r}")
        value = int(dec)
    elif hasattr(value, "__index__"):
        value = int(value.__index__())
    elif isinstance(value, numbers.Real):
        if not math.isfinite(value) or value != int(value):
            raise ValidationError(field, f"must be a whole number, got {value!r}")
        value = int(value)
    else:
        raise ValidationError(field, f"must be an integer, got {type(value).__name__} {value!r}")
    shown = str(value) if len(str(value)) <= 20 else f"about 1e{len(str(abs(value))) - 1}"
    if min_value is not None and value < min_value:
        raise ValidationError(field, f"must be >= {min_value}, got {shown}")
    if max_value is not None and value > max_value:
        raise ValidationError(field, f"must be <= {max_value:,}, got {shown}")
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
    """Return ``value`` as a finite float in range, or raise naming ``field``.

    Accepted: ints, floats and strings that parse as a number (``"0.5"``); refused: bools, ``nan``,
    ``inf`` (also as strings and overflowing ones such as ``"1e400"``), anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValidationError(field, f"must be a number, got {value!r}")
    try:
        out = float(value.strip().replace("_", "") if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
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


def check_output_path(field: str, path: str | os.PathLike, *, is_dir: bool = False) -> Path:
    """Check, before any long work, that ``path`` can be written; return it as a ``Path``.

    A file output (``is_dir=False``) must not be an existing folder; a folder output (``is_dir=True``)
    must not be an existing file; no ancestor may be a file (``out.json/x.json`` is refused). Missing
    folders are fine (writers create them): the nearest existing folder is probed by creating and
    removing a temporary file in it, which catches read-only file systems and permissions alike. A full
    disk can still fail later, at write time, as a clear error (``write_error``).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValidationError(field, f"must be a path, got {path!r}")
    p = Path(path)
    if p.exists():
        if is_dir and not p.is_dir():
            raise ValidationError(field, f"{p} is a file, not a folder", "give a folder path")
        if not is_dir and p.is_dir():
            raise ValidationError(field, f"{p} is a folder", "give a file path inside it")
    folder = p if is_dir else p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValidationError(field, f"{p} lies under {folder}, which is a file", "choose a path under a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValidationError(field, f"cannot write {p}: {folder} is not writable ({e.strerror or e})",
                              "choose a writable location") from None
    return p


def write_error(field: str, path: str | os.PathLike, err: OSError) -> "RoutingLawsError":
    """A one-line error for a failed write (read-only disk, full disk, ...), naming the output and the cause."""
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}.get(err.errno, err.strerror or str(err))
    return RoutingLawsError(f"{field}: could not write {path}: {reason} (free space or choose another location)")


def check_choice(field: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    choices = list(choices)
    if value not in choices:
        raise ValidationError(field, f"unknown value {value!r}", "choose one of: " + ", ".join(map(str, choices)))
    return value
