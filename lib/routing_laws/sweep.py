"""Resumable grids of runs (size x experts x router, plus R and K variants) -> data/runs/<grid>/.

Each finished (or failed) run writes one JSON record atomically; rerunning skips finished runs and
resumes interrupted ones from their checkpoint; ``shard=(i, n)`` runs every n-th run so several
machines can split one grid and merge by copying the records together. ``runs.csv`` summarises the
folder's valid records and is what ``routing-laws fit`` reads; it is rewritten after every run.

Records are validated, never trusted (``load_run_record``): a file that is not UTF-8, not strict
JSON, or fails the record schema is reported by name and never used. When the sweep meets such a
file for one of its runs, it moves it aside to ``<name>.json.bad-<UTC time>`` (kept for inspection,
invisible to every reader, which only read ``*.json``) and trains the run again.

Grids: ``cpu`` is the second version of our own grid (4-layer rungs, twice v1's tokens, second seeds; see
data/runs/cpu/README.md); ``cpu-v1`` is the first, frozen in data/runs/cpu-v1/ (``FROZEN_FOLDERS``) and
read with its old record version (``LEGACY_FOLDERS``); the ``ablate-*`` grids are paired comparisons
recorded together in data/runs/ablations/ (``Grid.folder``). A run may set a few router fields of its own
(``RunSpec.router_overrides``, names in ``OVERRIDE_CODES``); they are part of its run id
(``...-s0-gsigmoid``) and of its record's ``spec``.

Grid records come from clean commits: ``run_sweep`` refuses a working tree with changes to tracked
files (outside ``io_utils.OUTPUT_PATHS``, where the sweep writes its own records) unless
``allow_dirty=True``; records made that way carry ``"dirty_tree": true`` and are listed in ``runs.csv``
with status ``dirty``, so fits and tables leave them out.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm import tqdm  # plain text bars: tqdm.auto warns in kernels without ipywidgets

from routing_laws import data as data_lib
from routing_laws import io_utils
from routing_laws import train as train_lib
from routing_laws.config import ROUTER_LABELS, RouterConfig, TrainConfig, model_config, model_from_dict
from routing_laws.errors import RoutingLawsError, ValidationError, check_output_path, write_error

# a run id names a file: letters, digits, '.', '_', '-' only (no '/', no '..'), as run_id() makes them
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,159}")
RECORD_STATUSES = ("finished", "failed")


# router settings a grid may change per run, and the short code each adds to the run id (``-gsigmoid``)
OVERRIDE_CODES = {"sbase_gate": "g", "rlr_router_lr_mult": "lr", "rlr_balance_coef": "bal",
                  "rlr_entropy_coef": "ent"}


def override_suffix(overrides: Any) -> str:
    """``-gsigmoid-lr3`` style suffix of per-run router settings (sorted by name; empty without any)."""
    if not isinstance(overrides, (dict, tuple, list)):
        raise ValidationError("router_overrides", f"must be a mapping of router settings, got {overrides!r}")
    items = sorted(dict(overrides).items())
    for name, value in items:
        if name not in OVERRIDE_CODES:
            raise ValidationError("router_overrides", f"{name!r} cannot be set per run",
                                  "choose among: " + ", ".join(OVERRIDE_CODES))
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError(f"router_overrides.{name}", f"must be a text or a number, got {value!r}")
    return "".join(f"-{OVERRIDE_CODES[k]}{v:g}" if not isinstance(v, str) else f"-{OVERRIDE_CODES[k]}{v}"
                   for k, v in items)


def run_id(size: str, router: str, experts: int, top_k: int = 1, routing_frequency: float = 0.5, seed: int = 0,
           router_overrides: Any = ()) -> str:
    """The identity and file stem of a run, e.g. ``100k-sbase-E16-K1-R0.5-s0`` (used by sweeps and ``train``);
    per-run router settings add a suffix (``110k-L4-sbase-E64-K1-R0.5-s0-gsigmoid``)."""
    return f"{size}-{router}-E{experts}-K{top_k}-R{routing_frequency:g}-s{seed}" + override_suffix(router_overrides)


def is_safe_run_id(text: Any) -> bool:
    """True when ``text`` can name a record file inside a folder (no path separators, no '..')."""
    return isinstance(text, str) and RUN_ID_PATTERN.fullmatch(text) is not None and ".." not in text


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid; ``run_id`` is its file name and identity."""

    size: str
    router: str
    experts: int
    top_k: int = 1
    routing_frequency: float = 0.5
    seed: int = 0
    # (name, value) pairs of RouterConfig fields set for this run only (names in OVERRIDE_CODES); sorted
    router_overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        override_suffix(self.router_overrides)  # validates names and values
        object.__setattr__(self, "router_overrides", tuple(sorted(dict(self.router_overrides).items())))

    @property
    def run_id(self) -> str:
        return run_id(self.size, self.router, self.experts, self.top_k, self.routing_frequency, self.seed,
                      self.router_overrides)

    def router_config(self) -> RouterConfig:
        """The run's RouterConfig: the project's defaults, the spec's router shape, its overrides."""
        return RouterConfig(kind=self.router, n_experts=self.experts, top_k=self.top_k,
                            routing_frequency=self.routing_frequency, **dict(self.router_overrides))

    def to_json(self) -> dict:
        """The record's ``spec``: the fields, ``router_overrides`` as an object (present only when set)."""
        out = {k: getattr(self, k) for k in ("size", "router", "experts", "top_k", "routing_frequency", "seed")}
        if self.router_overrides:
            out["router_overrides"] = dict(self.router_overrides)
        return out


@dataclass(frozen=True)
class Grid:
    """A named grid of runs plus the shared training settings of all its runs (same budget and data order)."""

    name: str
    sizes: tuple[str, ...]
    experts: tuple[int, ...]
    routers: tuple[str, ...]
    tokens: int
    batch_size: int = 32
    seq_len: int = 128
    learning_rate: float = 3e-3
    variants: tuple[tuple[str, str, int, int, float], ...] = ()  # (size, router, E, K, R) extra runs for the (F, B) law
    # second (third, ...) seeds: every (size, router, E) of seed_runs (top-1, R = 0.5) again with each of
    # extra_seeds (run ids end in -s1, ...), so comparisons have a seed spread beside them
    seed_runs: tuple[tuple[str, str, int], ...] = ()
    extra_seeds: tuple[int, ...] = ()
    extra_runs: tuple[RunSpec, ...] = ()  # any further runs (ablations: per-run router settings)
    folder: str | None = None  # records folder under data/runs/ (default: the grid's name)
    # (router, overrides): router settings given to every run of that router the grid makes from sizes,
    # variants and seed_runs (not extra_runs); their run ids carry the suffix (``-bal0.1``), so a record
    # says which setting trained it
    router_settings: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def __post_init__(self) -> None:
        for router, overrides in self.router_settings:  # a misspelt router would be ignored silently
            if router not in self.routers:
                raise ValidationError(f"grid {self.name}: router_settings", f"names {router!r}, not a router of "
                                      "this grid", "choose among: " + ", ".join(self.routers))
            override_suffix(overrides)  # validates names and values

    def runs(self) -> list[RunSpec]:
        out = []
        for size in self.sizes:
            out.append(RunSpec(size, "dense", 1))
            for router in self.routers:
                out.extend(RunSpec(size, router, e) for e in self.experts if e > 1)
        out.extend(RunSpec(s, r, e, k, rf) for s, r, e, k, rf in self.variants)
        out.extend(RunSpec(s, r, e, seed=seed) for seed in self.extra_seeds for s, r, e in self.seed_runs)
        settings = dict(self.router_settings)
        out = [dataclasses.replace(r, router_overrides=settings[r.router]) if r.router in settings else r
               for r in out]
        out.extend(self.extra_runs)
        return out

    def train_config(self, seed: int = 0) -> TrainConfig:
        return TrainConfig(tokens=self.tokens, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           seed=seed, checkpoint_every=50)


ROUTED = ("sbase", "rlr", "hash")
V2_SIZES = ("110k-L4", "200k-L4", "440k-L4")
ABLATION_TOKENS = 8_388_608  # 2048 steps of 32 x 128, v1's budget, so the init ablation pairs with cpu-v1's records
# RL-R settings tried at two sizes and E in {16, 64}: the default (router lr x10, balance 0.01, entropy
# 0.01), a 10x stronger balance term (v1's RL-R dropped 56-69 % of tokens at 400k E = 64: collapsed
# routing), and the stronger balance with a slower router (x3: a router that moves less per step
# collapses less)
RLR_SETTINGS: tuple[tuple[tuple[str, Any], ...], ...] = (
    (), (("rlr_balance_coef", 0.1),), (("rlr_balance_coef", 0.1), ("rlr_router_lr_mult", 3.0)))
SBASE_GATE_ABLATION = ("softmax", "sigmoid", "st")


def _ablation(name: str, runs: Iterable[RunSpec]) -> Grid:
    """A paired-comparison grid of ``runs`` at ABLATION_TOKENS, recorded in data/runs/ablations/."""
    return Grid(name, (), (), (), tokens=ABLATION_TOKENS, extra_runs=tuple(runs), folder="ablations")


ABLATIONS: dict[str, Grid] = {
    # the same two runs as cpu-v1's 100k E = 64 records, trained with the fixed initialisation
    "ablate-init": _ablation("ablate-init", [RunSpec("100k", r, 64) for r in ("sbase", "hash")]),
    # one routed FFN (2 layers, the last) vs two (4 layers, layers 2 and 4) at similar N, dense beside each
    "ablate-depth": _ablation("ablate-depth", [RunSpec(s, "dense", 1) for s in ("100k", "110k-L4")] + [
        RunSpec(s, r, e) for s in ("100k", "110k-L4") for r in ("sbase", "hash") for e in (16, 64)]),
    # S-BASE's gate at E = 64 (softmax is the default: its run id has no suffix)
    "ablate-gate": _ablation("ablate-gate", [RunSpec("110k-L4", "sbase", 64, router_overrides=(
        () if g == "softmax" else (("sbase_gate", g),))) for g in SBASE_GATE_ABLATION]),
    "ablate-rlr": _ablation("ablate-rlr", [RunSpec(s, "dense", 1) for s in ("110k-L4", "200k-L4")] + [
        RunSpec(s, "rlr", e, router_overrides=o) for o in RLR_SETTINGS for s in ("110k-L4", "200k-L4")
        for e in (16, 64)]),
}

GRIDS: dict[str, Grid] = {
    "smoke": Grid("smoke", ("100k",), (1, 4), ROUTED, tokens=131_072, batch_size=16,
                  variants=(("100k", "sbase", 4, 2, 0.5),)),
    # v2: 4-layer rungs (two routed FFNs at R = 0.5), 16,777,216 tokens per run (4096 steps of 32 x 128,
    # twice v1), the (F, B) variants at 200k-L4 S-BASE E = 16 (R = 0.25: one routed FFN of 4, R = 1, K = 2),
    # and seed 1 for dense and E = 16 of every router at the smallest and the largest rung (41 runs as
    # designed), then two checks added after 30 records (data/runs/cpu/README.md, "Status"): seed 1 of the
    # 200k-L4 dense run, which sat 0.063 nats above its neighbours' line, and seed 2 of 440k-L4 HASH E = 16,
    # whose two seeds differed by 0.114 nats (the other pairs 0.001-0.031)
    "cpu": Grid("cpu", V2_SIZES, (1, 4, 16, 64), ROUTED, tokens=16_777_216,
                variants=(("200k-L4", "sbase", 16, 1, 0.25), ("200k-L4", "sbase", 16, 1, 1.0),
                          ("200k-L4", "sbase", 16, 2, 0.5)),
                seed_runs=tuple((s, r, e) for s in (V2_SIZES[0], V2_SIZES[-1])
                                for r, e in (("dense", 1), ("sbase", 16), ("rlr", 16), ("hash", 16))),
                extra_seeds=(1,),
                extra_runs=(RunSpec("200k-L4", "dense", 1, seed=1), RunSpec("440k-L4", "hash", 16, seed=2))),
    # v1 (frozen; its records are in data/runs/cpu-v1/, see LEGACY_FOLDERS): 2-layer rungs, 8.4M tokens
    "cpu-v1": Grid("cpu-v1", ("100k", "200k", "400k"), (1, 4, 16, 64), ROUTED, tokens=8_388_608,
                   variants=(("200k", "sbase", 16, 2, 0.5), ("200k", "sbase", 16, 1, 1.0),
                             ("200k", "hash", 16, 1, 1.0))),
    # one size, E = 16, every router: does each router beat dense at one budget?
    "routers": Grid("routers", ("100k",), (16,), ROUTED, tokens=8_388_608),
    # sized by `routing-laws sweep --grid gpu --plan` to fit 8 minutes of one H200 (see routing_laws.plan)
    # 153 steps of 256 x 512 = 20.05M tokens per run, 41 runs, N = 1.8M-6.3M (P up to 541M at E = 256)
    "gpu": Grid("gpu", ("1.6M", "3M", "6M"), (1, 4, 16, 64, 256), ROUTED,
                tokens=153 * 256 * 512, batch_size=256, seq_len=512, learning_rate=2e-3,
                variants=(("3M", "sbase", 64, 2, 0.5), ("3M", "sbase", 64, 1, 1.0))),
    **ABLATIONS,
}
# folders of frozen records made by earlier code (record_version 1, the initialisation that counted an
# expert's fan-in as E * D): read for the book as they are, never trained into
LEGACY_FOLDERS: dict[str, tuple[int, ...]] = {"cpu-v1": (1,), "routers": (1,)}
FROZEN_FOLDERS = ("cpu-v1",)  # no sweep writes here (the v1 grid's records, kept as they were)

SUMMARY_FIELDS = ("run_id", "status", "technique", "size", "N", "E", "K", "R", "overrides", "P", "F", "B", "tokens", "loss",
                  "tokens_per_s", "wall_s", "dropped_frac", "reason")


def get_grid(name: str) -> Grid:
    """The grid called ``name`` in ``GRIDS``."""
    if name not in GRIDS:
        raise ValidationError("--grid", f"unknown sweep grid {name!r}", "choose one of: " + ", ".join(GRIDS))
    return GRIDS[name]


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValidationError("--shard", f"expected i/n such as 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValidationError("--shard", f"need 0 <= i < n, got {i}/{n}")
    return i, n


def select(runs: list[RunSpec], only: Iterable[str] | None = None, shard: tuple[int, int] = (0, 1)) -> list[RunSpec]:
    """Filter by ``only`` (substrings of run ids, e.g. 'sbase' or '100k-') and take shard i of n."""
    only = [o for o in (only or []) if o]
    if only:
        runs = [r for r in runs if any(o in r.run_id for o in only)]
        if not runs:
            raise ValidationError("--only", f"{only} matches no run of this grid", "check the run ids with --list")
    i, n = shard
    return [r for k, r in enumerate(runs) if k % n == i]


def runs_dir(grid: str, root: Path | None = None) -> Path:
    """The records folder of a grid: ``data/runs/<folder>``, the grid's ``folder`` or else its name (or under ``root``)."""
    g = GRIDS.get(grid)
    return (root or io_utils.repo_root() / "data" / "runs") / (g.folder if g is not None and g.folder else grid)


# ----------------------------------------------------------------------------- records
class RecordError(RoutingLawsError):
    """A file in a records folder that is not a valid run record (the message starts with its name)."""


def _strict_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON number {name}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_record(rec: Any, stem: str, legacy_versions: tuple[int, ...] = ()) -> dict:
    """Check that ``rec`` is a run record for the file ``<stem>.json``; return it or raise ``RecordError``.

    Schema: a JSON object with ``run_id`` (== ``stem``, a safe id), ``status`` in {finished, failed} and
    ``spec`` ({size, router, experts, top_k, routing_frequency, seed} whose ``run_id()`` is the run id).
    A failed record adds ``reason`` (text). A finished record adds ``record_version``, a valid ``model``
    config matching the spec, ``final_val_loss`` (finite), ``tokens`` (int > 0), ``accounting`` (N, P, F
    ints > 0, B number), ``curve`` (list of {tokens, val_loss} with finite losses), ``wall_s`` (finite)
    and ``tokens_per_s`` (finite or null). ``spec.router_overrides`` (optional object) is part of the run id
    and must match the model's router. ``legacy_versions``: further record versions accepted (the frozen
    records of ``LEGACY_FOLDERS``, read through ``read_records``).
    """
    def bad(problem: str) -> RecordError:
        return RecordError(f"{stem}.json: {problem}")

    if not isinstance(rec, dict):
        raise bad(f"is a JSON {type(rec).__name__}, not a run record object")
    rid = rec.get("run_id")
    if not is_safe_run_id(rid):
        raise bad(f"run_id {rid!r} is not a safe run id (letters, digits, '.', '_', '-')")
    if rid != stem:
        raise bad(f"holds run {rid!r}, not {stem!r}")
    if rec.get("status") not in RECORD_STATUSES:
        raise bad(f"unknown status {rec.get('status')!r} (expected one of {', '.join(RECORD_STATUSES)})")
    spec = rec.get("spec")
    keys = {"size": str, "router": str, "experts": int, "top_k": int, "routing_frequency": float, "seed": int}
    if not isinstance(spec, dict) or set(keys) - set(spec):
        raise bad(f"spec must hold {', '.join(keys)}")
    for k, t in keys.items():
        ok = isinstance(spec[k], str) if t is str else _is_int(spec[k]) if t is int else _is_num(spec[k])
        if not ok:
            raise bad(f"spec.{k} = {spec[k]!r} is not a {t.__name__}")
    overrides = spec.get("router_overrides", {})
    try:
        want = run_id(**{k: spec[k] for k in keys}, router_overrides=overrides)
    except ValidationError as e:
        raise bad(f"spec.router_overrides: {e}") from None
    if want != rid:
        raise bad(f"spec {want!r} does not match the run id")
    if rec["status"] == "failed":
        if not isinstance(rec.get("reason"), str):
            raise bad("a failed record needs a text 'reason'")
        return rec
    if rec.get("record_version") != train_lib.RECORD_VERSION and rec.get("record_version") not in legacy_versions:
        raise bad(f"record_version {rec.get('record_version')!r} is not {train_lib.RECORD_VERSION}")
    try:
        model = model_from_dict(rec["model"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad(f"model config is invalid: {e}") from None
    r = model.router
    if (r.kind, r.n_experts, r.top_k) != (spec["router"], spec["experts"], spec["top_k"]) or (
            r.routed and not math.isclose(r.routing_frequency, spec["routing_frequency"])) or any(
            getattr(r, k) != v for k, v in dict(overrides).items()):
        raise bad("model config does not match the spec")
    if not _is_num(rec.get("final_val_loss")):
        raise bad(f"final_val_loss {rec.get('final_val_loss')!r} is not a finite number")
    if not _is_int(rec.get("tokens")) or rec["tokens"] <= 0:
        raise bad(f"tokens {rec.get('tokens')!r} is not a positive integer")
    acct = rec.get("accounting")
    if not isinstance(acct, dict) or not all(_is_int(acct.get(k)) and acct[k] > 0 for k in ("N", "P", "F")) \
            or not _is_num(acct.get("B")):
        raise bad("accounting must hold positive integers N, P, F and a number B")
    curve = rec.get("curve")
    if not isinstance(curve, list) or not all(isinstance(p, dict) and _is_num(p.get("val_loss"))
                                              and _is_num(p.get("tokens")) for p in curve):
        raise bad("curve must be a list of {tokens, val_loss} points with finite numbers")
    if not _is_num(rec.get("wall_s")) or not (rec.get("tokens_per_s") is None or _is_num(rec["tokens_per_s"])):
        raise bad("wall_s must be a finite number and tokens_per_s a finite number or null")
    return rec


def load_run_record(path: str | Path, legacy_versions: tuple[int, ...] | None = None) -> dict:
    """Read and validate one run record (strict UTF-8, strict JSON: no NaN; ``validate_record``); the
    record versions accepted besides the current one are ``legacy_versions``, by default those of
    ``LEGACY_FOLDERS`` for the file's folder (none elsewhere)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RecordError(f"{path.name}: unreadable ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path.name}: not UTF-8 text (byte {e.start})") from None
    try:
        rec = json.loads(text, parse_constant=_strict_constant)
    except ValueError as e:
        raise RecordError(f"{path.name}: not valid JSON ({e})") from None
    if legacy_versions is None:
        legacy_versions = LEGACY_FOLDERS.get(path.parent.name, ())
    return validate_record(rec, path.stem, legacy_versions)


def read_records(folder: Path) -> tuple[list[dict], list[str]]:
    """All valid run records in ``folder`` and one problem line per invalid file (reported, never used)."""
    records, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            records.append(load_run_record(path))
        except RecordError as e:
            problems.append(str(e))
    return records, problems


def record_status(path: Path) -> str:
    """``missing``, ``finished``, ``failed``, or ``invalid`` for the record file at ``path`` (as a sweep
    sees it: a legacy record version is ``invalid``, so the current code trains the run again)."""
    if not path.exists():
        return "missing"
    try:
        return load_run_record(path, legacy_versions=())["status"]
    except RecordError:
        return "invalid"


def set_aside(path: Path) -> Path:
    """Rename an invalid record to ``<name>.bad-<UTC time>`` (no reader looks at it) and return the new path."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = path.with_name(f"{path.name}.bad-{stamp}")
    k = 1
    while dest.exists():
        dest, k = path.with_name(f"{path.name}.bad-{stamp}-{k}"), k + 1
    try:
        path.rename(dest)
    except OSError as e:
        raise write_error("--out", dest, e) from None
    return dest


def summary_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        spec = r.get("spec", {})
        row = {"run_id": r.get("run_id"), "status": "dirty" if r.get("dirty_tree") else r.get("status"),
               "technique": spec.get("router"), "size": spec.get("size"), "E": spec.get("experts"), "K": spec.get("top_k"),
               "R": spec.get("routing_frequency"), "reason": r.get("reason", ""),
               # per-run router settings as in the run id ('gsigmoid', 'bal0.1-lr3'); empty for the defaults
               "overrides": override_suffix(spec.get("router_overrides") or {}).lstrip("-")}
        if r.get("status") == "finished":  # dirty ones too: numbers shown, status 'dirty' keeps them out of fits
            a = r["accounting"]
            row.update(N=a["N"], P=a["P"], F=a["F"], B=a["B"], tokens=r["tokens"], loss=r["final_val_loss"],
                       tokens_per_s=r["tokens_per_s"], wall_s=r["wall_s"],
                       dropped_frac=(r.get("routing") or {}).get("dropped_frac", ""))
        rows.append(row)
    return rows


def run_label(rec: dict) -> str:
    """'S-BASE E=16' style label of a finished record (router, and E for routed runs)."""
    spec = rec.get("spec") or {}
    router = spec.get("router", rec.get("model", {}).get("router", {}).get("kind", "?"))
    E = spec.get("experts", 1)
    return ROUTER_LABELS.get(router, router) + ("" if router == "dense" else f" E={E}")


def _finished_records(records: list[dict]) -> list[dict]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValidationError("records", "must be a list of run records (dicts)", "use read_records(folder)")
    return [r for r in records if r.get("status") == "finished" and not r.get("dirty_tree")]


def comparison_rows(records: list[dict]) -> list[dict]:
    """One row per finished run: final validation loss, its difference to the dense run of the same size
    (None without one), the training drops (capacity factor) of the last logged window and the largest of
    any window, and the evaluation routing metrics; ``router`` (label) and ``E`` are there for grouping."""
    fin = _finished_records(records)
    dense = {(r.get("spec") or {}).get("size"): r["final_val_loss"] for r in fin
             if (r.get("spec") or {}).get("router") == "dense"}
    rows = []
    for r in sorted(fin, key=lambda r: r["final_val_loss"]):
        routing, size = r.get("routing") or {}, (r.get("spec") or {}).get("size")
        curve = r.get("train_curve") or [{}]
        drops = [p["dropped_frac"] for p in curve if p.get("dropped_frac") is not None]
        spec = r.get("spec") or {}
        rows.append({"run": run_label(r), "router": ROUTER_LABELS.get(spec.get("router"), spec.get("router")),
                     "size": size, "E": spec.get("experts", 1), "tokens": r["tokens"], "val_loss": r["final_val_loss"],
                     "vs_dense": r["final_val_loss"] - dense[size] if size in dense else None,
                     "train_dropped": curve[-1].get("dropped_frac"), "train_dropped_max": max(drops) if drops else None,
                     "eval_max_over_mean_load": max(routing["max_over_mean_load"]) if routing.get("max_over_mean_load") else None,
                     # HASH has no router (its recorded entropy is 0 by construction)
                     "router_entropy": None if (r.get("spec") or {}).get("router") == "hash" else routing.get("router_entropy")})
    return rows


def curve_rows(records: list[dict]) -> list[dict]:
    """Validation curves of the finished runs as {run, tokens, loss} rows (charts.loss_curve_chart)."""
    return [{"run": run_label(r), "tokens": p["tokens"], "loss": p["val_loss"]}
            for r in _finished_records(records) for p in r.get("curve", [])]


def write_summary(folder: Path) -> Path:
    """Rewrite ``folder/runs.csv`` from the folder's valid records (invalid files are left out)."""
    records, _ = read_records(folder)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in sorted(summary_rows(records), key=lambda x: x["run_id"] or ""):
        w.writerow(row)
    return io_utils.atomic_write_text(Path(folder) / "runs.csv", buf.getvalue())


def check_clean_tree(allow_dirty: bool) -> bool:
    """True when the checkout has uncommitted changes to tracked files (the sweep's own outputs in
    ``io_utils.OUTPUT_PATHS`` aside); raise unless ``allow_dirty``."""
    dirty = io_utils.git_commit().endswith("-dirty")
    if dirty and not allow_dirty:
        raise ValidationError("--allow-dirty", "the working tree has uncommitted changes to tracked files, and "
                              "grid records must name the commit that made them",
                              "commit or stash the changes, or pass --allow-dirty (such records are flagged "
                              "'dirty_tree' and left out of runs.csv fits)")
    return dirty


def _train_one(grid: Grid, spec: RunSpec, dataset, out: Path, progress: bool, mesh, dirty: bool) -> dict:
    """Train one run and return its record: finished, or failed with the reason (the grid goes on)."""
    t0 = time.perf_counter()
    base = {"run_id": spec.run_id, "spec": spec.to_json(), "grid": grid.name}
    if dirty:
        base["dirty_tree"] = True
    try:
        router = spec.router_config()
        mcfg = model_config(spec.size, vocab_size=dataset.vocab_size, seq_len=grid.seq_len, router=router)
        rec = train_lib.train(mcfg, grid.train_config(spec.seed), dataset, run_dir=out / ".checkpoints" / spec.run_id,
                              progress=progress, name=spec.run_id, mesh=mesh)
        rec.update(base)
        if rec.get("status") != "finished":  # e.g. a diverged run the training loop marked failed
            rec["status"] = "failed"
            failure = rec.get("failure") if isinstance(rec.get("failure"), dict) else {}
            rec["reason"] = str(rec.get("reason") or failure.get("reason") or "training did not finish")
        return rec
    except KeyboardInterrupt:
        raise
    except Exception as e:  # record the failure (divergence, OOM, bad config, full disk) and go on
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        return {**base, "status": "failed", "reason": reason, "wall_s": time.perf_counter() - t0,
                "traceback": traceback.format_exc()[-4000:], "provenance": io_utils.provenance()}


def _try_write(write: Callable[[], Any], path: Path, what: str, log: Callable[[str], None]) -> bool:
    """Run ``write``; on a write error (full or read-only disk) log one line and return False."""
    try:
        write()
        return True
    except (OSError, RoutingLawsError) as e:
        log(f"sweep: {what}: {e if isinstance(e, RoutingLawsError) else write_error('--out', path, e)}")
        return False


def run_sweep(grid: str | Grid, *, only: Iterable[str] | None = None, shard: tuple[int, int] = (0, 1),
              out_dir: Path | None = None, corpus: str | None = None, progress: bool = True,
              retry_failed: bool = False, mesh=None, allow_dirty: bool = False,
              log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) every selected run of ``grid``; returns counts.

    ``selected``; ``finished`` / ``failed``: trained now; ``skipped``: already recorded; ``set_aside``:
    invalid records moved aside and re-trained; ``unwritten``: records a write error (full or read-only
    disk) kept from the folder; ``failed_total``: selected runs whose record is failed after the sweep,
    plus the unwritten ones (the CLI exits non-zero when it is not 0, on every re-run too).
    ``mesh`` (``parallel.make_mesh``) is passed to every run's ``train``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    g = get_grid(grid) if isinstance(grid, str) else grid
    if not isinstance(g, Grid):
        raise ValidationError("grid", f"must be a grid name or a Grid, got {type(grid).__name__}",
                              "choose one of: " + ", ".join(GRIDS))
    out = check_output_path("--out", Path(out_dir) if out_dir is not None else runs_dir(g.name), is_dir=True)
    if out.name in FROZEN_FOLDERS:
        raise ValidationError("--out", f"{out} holds frozen records of earlier code", "write to another folder")
    todo = select(g.runs(), only, shard)
    dirty = check_clean_tree(allow_dirty)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error("--out", out, e) from None
    dataset = data_lib.get_dataset(corpus)
    counts = {"selected": len(todo), "finished": 0, "skipped": 0, "failed": 0, "set_aside": 0, "unwritten": 0}
    bar = tqdm(total=len(todo), desc=f"sweep {g.name}", unit="run", position=0) if progress else None
    for spec in todo:
        path = out / f"{spec.run_id}.json"
        status = record_status(path)
        if status == "invalid":
            try:
                load_run_record(path)
            except RecordError as e:
                log(f"sweep: invalid record {e}; moved to {set_aside(path).name}, training the run again")
            counts["set_aside"] += 1
        elif status == "finished" or (status == "failed" and not retry_failed):
            counts["skipped"] += 1
            if bar is not None:
                bar.update(1)
            continue
        rec = _train_one(g, spec, dataset, out, progress, mesh, dirty)
        counts[rec["status"]] += 1
        if not _try_write(lambda: io_utils.atomic_write_json(path, rec), path,
                          f"{spec.run_id} ({rec['status']}) could not be recorded", log):
            counts["unwritten"] += 1
        elif not _try_write(lambda: write_summary(out), out / "runs.csv", "runs.csv could not be rewritten", log):
            counts["unwritten"] += 1
        if rec["status"] == "finished":
            shutil.rmtree(out / ".checkpoints" / spec.run_id, ignore_errors=True)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not _try_write(lambda: write_summary(out), out / "runs.csv", "runs.csv could not be rewritten", log):
        counts["unwritten"] += 1
    counts["failed_total"] = sum(record_status(out / f"{s.run_id}.json") == "failed" for s in todo) + counts["unwritten"]
    return counts
