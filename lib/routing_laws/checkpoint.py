"""Checkpoints that cannot execute code or lie: arrays as ``.npy`` members of one zip (``.npz``), a JSON header.

Why this format: a checkpoint folder may be shared or copied from elsewhere, so loading one must never run
code. ``.npy`` read with ``allow_pickle=False`` holds plain numeric arrays only, and numpy ships with the
project; safetensors and orbax-checkpoint are not among its dependencies, and a one-file zip written
through ``io_utils.atomic_writer`` gives atomicity without orbax's folder protocol.

File layout (``checkpoint.npz``, readable with ``np.load(path, allow_pickle=False)``):

- ``header.json`` (the first member): ``format`` (``FORMAT``), ``version`` (``VERSION``), ``step``, the run's
  configuration ``fingerprint``, ``meta`` (JSON-ready bookkeeping: curves, timers), ``arrays``: one entry
  per array, in file order, ``{"tree", "path", "dtype", "shape", "member"}`` (the key path inside its
  named tree, e.g. ``params['lm/moe_1']['w_in']``), and ``sha256``;
- ``a0.npy``, ``a1.npy``, ...: the arrays.

``sha256`` hashes the header's canonical JSON (without the hash itself) followed by every array's bytes,
so an edited step, fingerprint or weight is detected. It guards against corruption and careless edits,
not against someone who recomputes the hash: it is a checksum, not a signature.

Loading reads and checks the header first (format, version, fingerprint, then each tree's key paths,
dtypes and shapes against the caller's template), before a single array is read; any mismatch raises
``RoutingLawsError`` naming the file, what differs, and the fix. A pickle checkpoint of older versions
(``checkpoint.pkl``) is refused unread.

Multi-host: ``host_copy`` gathers arrays spread over other processes' devices, so every process holds and
writes the whole state and a run resumes on any mesh.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils

from routing_laws.errors import RoutingLawsError, ValidationError
from routing_laws.io_utils import atomic_writer, dumps_strict, loads_strict, remove_stale_temps

FORMAT = "routing-laws-checkpoint"
VERSION = 1
FILE_NAME = "checkpoint.npz"
LEGACY_PICKLE_NAMES = ("checkpoint.pkl",)
HEADER = "header.json"
MAX_HEADER_BYTES = 64 << 20  # curves of a long run are kilobytes; refuse absurd headers before parsing
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")


class Checkpoint(NamedTuple):
    step: int
    trees: dict  # name -> pytree (the template's structure), or a flat {str: array} dict without template
    meta: dict


def path_in(run_dir: str | Path) -> Path:
    return Path(run_dir) / FILE_NAME


def host_copy(tree: Any) -> Any:
    """``tree`` with every array as a host numpy array; arrays spread over other processes' devices (multi-host
    expert sharding) are gathered with ``process_allgather`` first, so every process holds the whole state."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(one, tree)


def _flatten(tree: Any) -> list[tuple[str, np.ndarray]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), x) for p, x in leaves]


def _describe(name: str, leaves: list[tuple[str, Any]]) -> list[dict]:
    return [{"tree": name, "path": p, "dtype": np.dtype(x.dtype).name, "shape": list(np.shape(x))} for p, x in leaves]


def _canonical(header: dict) -> bytes:
    return dumps_strict({k: v for k, v in header.items() if k != "sha256"}, sort_keys=True,
                        separators=(",", ":")).encode("utf-8")


def save(path: str | Path, *, step: int, fingerprint: dict, trees: dict[str, Any], meta: dict) -> Path:
    """Write a checkpoint of ``trees`` (name -> pytree of host arrays) atomically to ``path``.

    ``fingerprint`` and ``meta`` must be JSON-ready (strict: no NaN). Leaves are converted with
    ``np.asarray``; object or unknown dtypes are refused.
    """
    path = Path(path)
    if not isinstance(trees, dict) or not all(isinstance(k, str) for k in trees):
        raise ValidationError("trees", "must be a dict of named pytrees", "e.g. {'params': params}")
    entries, arrays = [], []
    for name, tree in trees.items():
        leaves = [(p, np.asarray(x, order="C")) for p, x in _flatten(tree)]
        for p, x in leaves:
            if x.dtype.name not in DTYPES:
                raise ValidationError(f"trees[{name!r}]{p}", f"dtype {x.dtype} cannot be checkpointed",
                                      f"use one of {', '.join(DTYPES)}")
        entries += _describe(name, leaves)
        arrays += [x for _, x in leaves]
    for i, e in enumerate(entries):
        e["member"] = f"a{i}.npy"
    header = {"format": FORMAT, "version": VERSION, "step": int(step), "fingerprint": fingerprint,
              "meta": meta, "arrays": entries}
    digest = hashlib.sha256(_canonical(header))
    for x in arrays:
        digest.update(x.tobytes())
    header["sha256"] = digest.hexdigest()
    header_bytes = dumps_strict(header, sort_keys=True).encode("utf-8")
    with atomic_writer(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(HEADER, header_bytes)
        for e, x in zip(entries, arrays):
            with zf.open(e["member"], "w", force_zip64=True) as m:
                np.lib.format.write_array(m, x, allow_pickle=False)
    return path


def _bad(path: Path, problem: str) -> RoutingLawsError:
    return RoutingLawsError(f"checkpoint {path} {problem}; it was not used. Delete it to restart the run "
                            "from step 0, or point --run-dir elsewhere")


def read_header(path: str | Path) -> dict:
    """The checked header of the checkpoint at ``path`` (no array is read)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_header(path, zf)
    except (OSError, zipfile.BadZipFile) as e:
        raise _bad(path, f"is unreadable ({e})") from None


def _read_header(path: Path, zf: zipfile.ZipFile) -> dict:
    try:
        info = zf.getinfo(HEADER)
    except KeyError:
        raise _bad(path, "has no header.json: not a routing-laws checkpoint") from None
    if info.file_size > MAX_HEADER_BYTES:
        raise _bad(path, f"has a {info.file_size:,}-byte header (limit {MAX_HEADER_BYTES:,})")
    try:
        header = loads_strict(zf.read(HEADER).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(path, f"has a corrupt header ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(path, "is not a routing-laws checkpoint")
    if header.get("version") != VERSION:
        raise _bad(path, f"has format version {header.get('version')!r}; this code reads version {VERSION}")
    need = {"step": int, "fingerprint": dict, "meta": dict, "arrays": list, "sha256": str}
    for key, typ in need.items():
        if not isinstance(header.get(key), typ) or (typ is int and isinstance(header[key], bool)):
            raise _bad(path, f"has a header whose {key!r} is missing or not a {typ.__name__}")
    for e in header["arrays"]:
        ok = (isinstance(e, dict) and isinstance(e.get("tree"), str) and isinstance(e.get("path"), str)
              and e.get("dtype") in DTYPES and isinstance(e.get("shape"), list)
              and all(isinstance(n, int) and n >= 0 for n in e["shape"]) and isinstance(e.get("member"), str))
        if not ok:
            raise _bad(path, f"has a malformed array entry {str(e)[:200]}")
    return header


def _canonical_fingerprint(fingerprint: dict) -> Any:
    return loads_strict(dumps_strict(fingerprint, sort_keys=True))


def _check_structure(path: Path, header: dict, templates: dict[str, Any]) -> None:
    names = {e["tree"] for e in header["arrays"]}
    unknown = names - set(templates)
    if unknown:
        raise _bad(path, f"holds trees {sorted(unknown)} this code does not expect")
    for name, template in templates.items():
        if template is None:
            continue
        want = [(d["path"], d["dtype"], d["shape"]) for d in _describe(name, _flatten(template))]
        have = [(e["path"], e["dtype"], e["shape"]) for e in header["arrays"] if e["tree"] == name]
        if want != have:
            diff = next((f"{w} vs {h}" for w, h in zip(want, have) if w != h),
                        f"{len(want)} arrays expected, {len(have)} stored")
            raise _bad(path, f"does not match this model's {name} (first difference: expected vs stored {diff})")


def load(path: str | Path, *, fingerprint: dict, templates: dict[str, Any]) -> Checkpoint:
    """Read the checkpoint at ``path`` for a run with ``fingerprint``.

    ``templates``: name -> a pytree with the expected structure (its leaves give key paths, dtypes and
    shapes, e.g. from ``jax.eval_shape``), or None for a flat ``{str: array}`` tree restored as it is stored.
    Checks, in order and before any array is read: the header (format, version, fields), the fingerprint,
    the trees' structure; then reads every array with ``allow_pickle=False`` and checks the content hash.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            header = _read_header(path, zf)
            if _canonical_fingerprint(fingerprint) != header["fingerprint"]:
                raise RoutingLawsError(f"checkpoint {path} belongs to a different configuration; "
                                       "delete it or choose another --run-dir")
            _check_structure(path, header, templates)
            digest = hashlib.sha256(_canonical(header))
            by_tree: dict[str, list] = {name: [] for name in templates}
            for e in header["arrays"]:
                with zf.open(e["member"]) as m:
                    x = np.lib.format.read_array(io.BufferedReader(m), allow_pickle=False)
                if x.dtype.name != e["dtype"] or list(x.shape) != e["shape"]:
                    raise _bad(path, f"member {e['member']} is {x.dtype}{list(x.shape)}, its header says "
                               f"{e['dtype']}{e['shape']}")
                digest.update(np.asarray(x, order="C").tobytes())
                by_tree[e["tree"]].append((e["path"], x))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise _bad(path, f"is unreadable ({type(e).__name__}: {e})") from None
    if digest.hexdigest() != header["sha256"]:
        raise _bad(path, "fails its content hash (its arrays or header were changed after it was written)")
    trees = {}
    for name, template in templates.items():
        leaves = by_tree[name]
        if template is None:
            trees[name] = {p.removeprefix("['").removesuffix("']"): x for p, x in leaves}
        else:
            treedef = jax.tree_util.tree_structure(template)
            trees[name] = jax.tree_util.tree_unflatten(treedef, [x for _, x in leaves])
    return Checkpoint(header["step"], trees, header["meta"])


def find(run_dir: str | Path) -> Path | None:
    """The checkpoint in ``run_dir`` (None if there is none), after deleting temp files of a killed write.

    Refuses (``RoutingLawsError``) a pickle checkpoint of older versions without reading it: unpickling
    can run arbitrary code.
    """
    run_dir = Path(run_dir)
    for name in LEGACY_PICKLE_NAMES:
        if (run_dir / name).exists():
            raise RoutingLawsError(
                f"{run_dir / name} is a pickle checkpoint of an older version; pickles can run code when loaded, "
                "so it is never read. Delete it (the run restarts from step 0) or point --run-dir elsewhere")
    path = path_in(run_dir)
    remove_stale_temps(path)
    return path if path.exists() else None
