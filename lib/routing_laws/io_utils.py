"""Atomic file writes, strict JSON and small provenance helpers: nothing the project writes is ever left
half-written, and no file it writes holds NaN or Infinity (which are not JSON)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import glob
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from routing_laws.errors import RoutingLawsError, ValidationError


def _write_error(path: Path, e: OSError) -> RoutingLawsError:
    why = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        why += " (the disk is full: free space or write elsewhere)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why += " (the folder is not writable: choose another output path)"
    return RoutingLawsError(f"cannot write {path}: {why}")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it is flushed, fsynced and renamed onto
    ``path`` (so readers see the old file or the whole new one, never a part), on an error it is removed.

    Temp files are named ``.<name>.<random>.tmp``; a process killed mid-write leaves one behind, which
    ``remove_stale_temps`` deletes. Write errors (read-only folder, full disk) raise ``RoutingLawsError``
    naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed ``atomic_writer(path)`` left beside ``path``; returns what was removed.
    Call it only when no other process is writing ``path``."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (``atomic_writer``)."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json_tree(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples and paths turned into plain JSON values (dicts, lists, ...)."""
    if isinstance(obj, dict):
        return {str(k): to_json_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_tree(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray, Path)):
        return to_json_tree(_json_default(obj))
    return obj


def nonfinite_to_null(obj: Any, where: str = "") -> tuple[Any, list[str]]:
    """(``obj`` with every NaN/Infinity replaced by None, the key paths replaced), so it is strict JSON."""
    obj = to_json_tree(obj)
    found: list[str] = []

    def walk(x, at):
        if isinstance(x, dict):
            return {k: walk(v, f"{at}.{k}" if at else k) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v, f"{at}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, float) and not math.isfinite(x):
            found.append(at)
            return None
        return x

    return walk(obj, where), found


def dumps_strict(obj: Any, **kw: Any) -> str:
    """JSON text of ``obj``; NaN and Infinity are refused (strict JSON), naming where they are."""
    try:
        return json.dumps(obj, allow_nan=False, default=_json_default, **kw)
    except ValueError as e:
        _, where = nonfinite_to_null(obj)
        if where:
            raise RoutingLawsError(f"refusing to write NaN/Infinity (not JSON) at {', '.join(where[:5])}") from None
        raise RoutingLawsError(f"cannot encode as JSON: {e}") from None


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (no NaN/Infinity: ``RoutingLawsError`` naming where), atomically."""
    try:
        text = dumps_strict(obj, indent=2, sort_keys=True)
    except RoutingLawsError as e:
        raise RoutingLawsError(f"{path}: {e}") from None
    return atomic_write_text(path, text + "\n")


def loads_strict(text: str | bytes) -> Any:
    """Parse strict JSON: NaN, Infinity and -Infinity are refused (``ValueError``)."""
    def refuse(name):
        raise ValueError(f"non-finite number {name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def portable_path(path: str | os.PathLike | None, root: Path | None = None) -> str | None:
    """A path as a record stores it: relative to the repository root (POSIX separators) when it lies under
    it, otherwise ``<outside>/<file name>``: a record never carries the machine's folder layout (the content
    hashes beside a path identify the file)."""
    if path is None:
        return None
    root = (root or repo_root()).resolve()
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(root).as_posix()
    except ValueError:
        return f"<outside>/{p.name}"


REPO_URL = "https://github.com/routing-laws/routing-laws"  # where the project is published (clone, Colab links)
ROOT_ENV = "ROUTING_LAWS_ROOT"  # points a plain (non-editable) install at a clone's folder


def repo_root(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding the project's ``data/``: ``$ROUTING_LAWS_ROOT`` when set, else the checkout the
    package was installed from (two levels above ``lib/routing_laws``).

    A non-editable install (``pip install git+...``) ships code only and has no ``data/`` beside the
    package: this says so and how to fix it, instead of failing later on a missing file.
    """
    env = os.environ if environ is None else environ
    forced = env.get(ROOT_ENV, "").strip()
    root = Path(forced).expanduser().resolve() if forced else Path(__file__).resolve().parents[2]
    if not (root / "data" / "paper").is_dir():
        where = f"${ROOT_ENV}={forced}" if forced else f"the installed package's folder {root}"
        raise ValidationError(ROOT_ENV if forced else "routing_laws install",
                              f"{where} has no data/paper (a non-editable install ships code only)",
                              f"clone the repository ({REPO_URL}), `pip install -e` the clone, "
                              f"or set {ROOT_ENV} to a clone")
    return root


OUTPUT_PATHS = ("data/runs",)
"""Where the project's own runs write (records, ``runs.csv`` summaries): changes there are results, not code,
so they do not make a tree dirty. Without this, the first run of a sweep rewrites the tracked ``runs.csv``
and every later ``run_sweep`` in the same checkout refuses to start."""


def git_commit(root: Path | None = None) -> str:
    """The current commit hash (with ``-dirty`` if tracked files outside ``OUTPUT_PATHS`` have changes), or
    ``unknown``."""
    root = root or repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){p}" for p in OUTPUT_PATHS)], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and widest x86 vector extension (``avx512f``, ``avx2``, ``sse4_2``) from
    ``/proc/cpuinfo`` (or the given text), empty where unreadable. Recorded because XLA compiles CPU kernels
    for the instruction set it finds: one run id is bit-identical on one machine, not across CPU kinds."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return {}
    if not isinstance(cpuinfo, str):
        raise ValidationError("cpuinfo", f"must be text or None, got {type(cpuinfo).__name__}",
                              "pass the contents of /proc/cpuinfo, or None to read it")
    info: dict = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "cpu_model" not in info:
            info["cpu_model"] = value.strip()
        elif key == "flags" and "cpu_simd" not in info:
            flags = set(value.split())
            info["cpu_simd"] = next((f for f in ("avx512f", "avx2", "sse4_2") if f in flags), "other")
    return info


def provenance(code_commit: str | None = None) -> dict:
    """Where and when a result was produced: commit, machine, Python and JAX versions, UTC date.

    ``code_commit``: the commit of the code a long-lived process loaded (``train.CODE_COMMIT``); the
    checkout's HEAD may have moved since, and is then recorded as ``head_commit`` beside it.
    """
    head = git_commit()
    info = {
        "commit": code_commit or head,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.node(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **cpu_identity(),
    }
    if code_commit and code_commit != head:
        info["head_commit"] = head
    try:
        import jax

        info["jax"] = jax.__version__
        info["device"] = str(jax.devices()[0].device_kind)
        info["backend"] = jax.default_backend()
        info["device_count"] = jax.device_count()
    except Exception:  # jax missing or broken: provenance still useful for pure-numpy results
        pass
    return info
