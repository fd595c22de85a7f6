"""The paper's numbers (read from ``data/paper/*.csv``, one source of truth) and its raw runs.

Published values: ``table3()``, ``dense_fit()``, ``reported_cutoffs()``, ``derived_c()``,
``epc_example()``; every CSV row carries ``source`` and ``confidence`` (see data/paper/SOURCES.md).

Raw runs (Clark et al.'s 223 training runs, ../shared/data/SOURCE.md; never committed):
``load_runs(path=None)`` looks in ``path``, then $ROUTING_LAWS_CLARK_RUNS, then the git-ignored
cache ``<repo>/.cache/clark2022_moe_runs.csv``, then downloads the public copy. The sha256 of the file
read is compared with the published one whatever the source: a differing file given by path or
variable is read with a ``RunsChecksumWarning``; a differing cache or download is never used.
``runs_or_reason()`` returns ``(runs, "")`` or ``(None, how to get them)`` for chapters that skip.
``main_grid()`` and ``ablation_runs()`` select final losses; ``paper_*`` reproduce the accounting
columns. Column names: N dense non-embedding parameters, E experts, R routing frequency, k experts
per token, P total parameters, F forward FLOPs per token, B = P / F. Pure numpy; no pandas.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import urllib.request
import warnings
from pathlib import Path

import numpy as np

from routing_laws.errors import RoutingLawsError, ValidationError, check_choice
from routing_laws.io_utils import atomic_write_bytes, repo_root
from routing_laws.laws import RoutedLaw

TECHNIQUES = ("S-BASE", "RL-R", "HASH")
CSV_ROUTER = {"S-BASE": "S-Base", "RL-R": "RL-R", "HASH": "Hash", "DENSE": "Dense"}
_ALIASES = {"sbase": "S-BASE", "s-base": "S-BASE", "rlr": "RL-R", "rl-r": "RL-R", "hash": "HASH", "dense": "DENSE"}

RUNS_ENV = "ROUTING_LAWS_CLARK_RUNS"
RUNS_URL = ("https://raw.githubusercontent.com/linhaowei1/SLD/bf7e8e332a1de86805373d565d460ebd1edfbf87/"
            "data/moe_scaling_law/data.csv")
RUNS_SHA256 = "a93902c7cc30ff44e8aac701ee3a8ffec33be3417a85abefa88f7d4c8a50973d"
TOKENS_PER_STEP = 2 ** 19  # 2048 context x 256 sequences: flops_per_step / 2^19 = FLOPs per token
LOSS_COLUMNS = ("loss_validation", "loss_c4", "loss_curation_corpus", "loss_lambada", "loss_pile",
                "loss_wikitext103")
_STR_COLUMNS = ("router_type", "model_size_label")
_INT_COLUMNS = ("hyper_id", "step", "num_experts", "d_model", "num_blocks", "num_heads", "kqv_size", "k", "seed")
_FLOAT_COLUMNS = ("flop_increase", "routing_frequency", "total_parameter_count", "dense_parameter_count",
                  "flops_per_step")
DUPLICATED_SBASE_25M = ((28, 67), (47, 56), (49, 57), (54, 66))
"""S-Base 25M ablation configurations that appear twice with different losses (a distinguishing
hyperparameter is missing from the data). ``ablation_runs`` keeps both by default (each is a real
run) or drops all eight with ``duplicates="drop"``; none of them is in the main grid."""


def canonical_technique(name: str) -> str:
    """'sbase', 'S-Base', 'S-BASE' -> 'S-BASE' (also RL-R, HASH, DENSE)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key.upper())
    return check_choice("technique", key, TECHNIQUES + ("DENSE",))


# ----------------------------------------------------------------------------- published numbers
def paper_dir() -> Path:
    return repo_root() / "data" / "paper"


def read_table(name: str) -> list[dict]:
    """Rows of ``data/paper/<name>.csv`` as dicts of strings (with their source and confidence)."""
    path = paper_dir() / f"{name}.csv"
    if not path.is_file():
        raise RoutingLawsError(f"{path} is missing: the paper's numbers live in data/paper/ (see SOURCES.md)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table3(*, unrounded_c: bool = False) -> dict[str, RoutedLaw]:
    """Table 3's Eq. 1 laws per technique; ``unrounded_c`` swaps in the c implied by the cutoffs."""
    c_fix = derived_c() if unrounded_c else {}
    return {r["technique"]: RoutedLaw(float(r["a"]), float(r["b"]), c_fix.get(r["technique"], float(r["c"])),
                                      float(r["d"]), float(r["e_start"]), float(r["e_max"]))
            for r in read_table("table3")}


def dense_fit() -> dict[str, float]:
    """The paper's dense power law: {'alpha_N': 0.078, 'N_c': 3.568e13}."""
    return {r["quantity"]: float(r["value"]) for r in read_table("dense_fit")}


def reported_cutoffs() -> dict[str, float]:
    """Reported N_cutoff per technique (parameters, at 130B tokens)."""
    return {r["technique"]: float(r["n_cutoff"]) for r in read_table("cutoffs")}


def derived_c() -> dict[str, float]:
    """Un-rounded c implied by the reported cutoffs (derived by us, labelled so in the CSV)."""
    return {r["technique"]: float(r["c"]) for r in read_table("derived_c")}


def epc_example() -> dict[str, float]:
    """The EPC example: {'N': 5e6, 'E': 128, 'dense_equivalent': 55e6}."""
    r = read_table("epc_example")[0]
    return {k: float(r[k]) for k in ("N", "E", "dense_equivalent")}


# ----------------------------------------------------------------------------- accounting
def _n_routed(n_layers: int, R: float) -> int:
    return int(round(R * n_layers))


def paper_dense_params(d_model: int, n_layers: int, n_heads: int, kqv: int) -> int:
    """Dense non-embedding N: per layer Q, K, V, O and a relative-position key (5 d H k), FFN
    8 d^2 (d_ff = 4 d, no biases), two LayerNorms with scale and offset (4 d)."""
    d = d_model
    return n_layers * (5 * d * n_heads * kqv + 8 * d * d + 4 * d)


def paper_total_params(d_model: int, n_layers: int, n_heads: int, kqv: int, E: int = 1, R: float = 0.5, *,
                       router: str = "S-BASE", flop_increase: int = 1) -> int:
    """Total P: N plus, per routed layer, (E - 1) extra FFNs and a d x E router; RL-R adds a d -> d/8
    layer with bias (inferred from the counts: presumably its baseline); FLOP-matched dense baselines
    (flop_increase f) add, per routed layer, (f - 1) FFNs and f d (as a routed layer with E = f)."""
    d, nr, tech = d_model, _n_routed(n_layers, R), canonical_technique(router)
    p = paper_dense_params(d, n_layers, n_heads, kqv)
    if E > 1:
        p += nr * ((E - 1) * 8 * d * d + E * d)
        if tech == "RL-R":
            p += nr * (d * (d // 8) + d // 8)
    if flop_increase > 1:
        p += nr * ((flop_increase - 1) * 8 * d * d + flop_increase * d)
    return p


def paper_flops_per_token(d_model: int, n_layers: int, n_heads: int, kqv: int, E: int = 1, R: float = 0.5, *,
                          k: int = 1, router: str = "S-BASE", flop_increase: int = 1) -> int:
    """Forward FLOPs per token (= flops_per_step / 2^19): 2N, attention over a 2048 context, the
    32,000-word output layer; per routed layer 2 d E for the router and 16 d^2 per extra active expert."""
    d, nr, tech = d_model, _n_routed(n_layers, R), canonical_technique(router)
    f = (2 * paper_dense_params(d, n_layers, n_heads, kqv) + 12288 * n_layers * n_heads * kqv
         + 6144 * n_layers * n_heads + 2 * 32000 * d + 2 * n_layers * d)
    if E > 1:
        f += nr * (2 * E * d + (k - 1) * 16 * d * d)
        if tech == "RL-R":
            f += 2 * nr * (d * (d // 8) + d // 8)
    if flop_increase > 1:
        f += nr * ((flop_increase - 1) * 16 * d * d + 2 * flop_increase * d)
    return f


# ----------------------------------------------------------------------------- the run table
class RunTable:
    """A tidy table: one numpy array per column, all the same length (one row per run and step)."""

    source: str = ""  # where load_runs read it ("" for a derived table)
    sha256: str = ""  # of the file read; compare with RUNS_SHA256 (see ``sha256_ok``)

    def __init__(self, columns: dict):
        self._cols = {k: np.asarray(v) for k, v in columns.items()}
        lengths = {v.shape[0] for v in self._cols.values()}
        if len(lengths) > 1:
            raise ValidationError("columns", f"have different lengths {sorted(lengths)}", "pass equal-length arrays")

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

    @property
    def sha256_ok(self) -> bool:
        """True when this table was read from the published runs file, byte for byte."""
        return self.sha256 == RUNS_SHA256

    def __len__(self) -> int:
        return next(iter(self._cols.values())).shape[0] if self._cols else 0

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cols:
            raise ValidationError("column", f"no column {name!r}", "choose one of: " + ", ".join(self._cols))
        return self._cols[name]

    def __contains__(self, name: str) -> bool:
        return name in self._cols

    def filter(self, mask) -> "RunTable":
        mask = np.asarray(mask)
        return RunTable({k: v[mask] for k, v in self._cols.items()})

    def where(self, **equals) -> "RunTable":
        """Rows whose columns equal the given values (floats compared with a relative 1e-9)."""
        mask = np.ones(len(self), bool)
        for k, v in equals.items():
            col = self[k]
            mask &= np.isclose(col, v, rtol=1e-9, atol=0) if col.dtype.kind == "f" else col == v
        return self.filter(mask)

    def final(self, loss_column: str | None = None) -> "RunTable":
        """The last logged step of every run (249k for most; 248k and 250k for two); with
        ``loss_column``, the last step at which that loss is recorded (a few cells are empty)."""
        t = self if loss_column is None else self.filter(np.isfinite(self[loss_column]))
        return t._last()

    def _last(self) -> "RunTable":
        order = np.lexsort((self["step"], self["hyper_id"]))
        ids = self["hyper_id"][order]
        last = np.r_[ids[1:] != ids[:-1], True]
        return self.filter(order[last])

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(self.columns)
        w.writerows(zip(*(self._cols[c].tolist() for c in self.columns)))
        return out.getvalue()


class RunsChecksumWarning(UserWarning):
    """The raw-run CSV read is not byte-for-byte the published one (its sha256 differs from RUNS_SHA256)."""


def _bad_csv(field: str, where: str, problem: str) -> ValidationError:
    return ValidationError(field, f"{where} {problem}",
                           f"pass the unmodified clark2022_moe_runs.csv, sha256 {RUNS_SHA256[:12]}..., from {RUNS_URL}")


def _parse_runs(data: bytes, where: str, field: str = "path") -> RunTable:
    """The runs CSV's bytes as a RunTable, or a ValidationError (naming ``field``, the file's source, and
    the line) for a binary file, ragged rows, a header without rows, or a cell of the wrong type."""
    if b"\x00" in data:
        raise _bad_csv(field, where, "is a binary file, not a CSV")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is tolerated
    except UnicodeDecodeError as e:
        raise _bad_csv(field, where, f"is not UTF-8 text (byte {e.start})") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise _bad_csv(field, where, f"is not a readable CSV ({e})") from None
    if not rows:
        raise _bad_csv(field, where, "is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    missing = [c for c in _INT_COLUMNS + _STR_COLUMNS + LOSS_COLUMNS + _FLOAT_COLUMNS if c not in header]
    if missing:
        raise _bad_csv(field, where, f"is not the Clark runs CSV: missing columns {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise _bad_csv(field, where, "repeats a column name in its header")
    body = [r for r in body if r]  # csv gives [] for a blank line
    if not body:
        raise _bad_csv(field, where, "has a header but no rows")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise _bad_csv(field, where, f"line {i + 2} has {len(r)} fields, the header has {len(header)}")
    cols = {}
    for j, name in enumerate(header):
        vals = [r[j].strip() for r in body]
        if name in _STR_COLUMNS:
            cols[name] = np.array(vals, dtype=str)
            continue
        out = []
        for i, v in enumerate(vals):
            try:
                x = float(v) if v else math.nan
            except ValueError:
                raise _bad_csv(field, where, f"line {i + 2}, column {name}: not a number: {v!r}") from None
            if name in _INT_COLUMNS and not (math.isfinite(x) and x == int(x)):
                raise _bad_csv(field, where, f"line {i + 2}, column {name}: not an integer: {v!r}")
            if name in LOSS_COLUMNS and (x < 0 or math.isinf(x)):
                raise _bad_csv(field, where, f"line {i + 2}, column {name}: a loss must be finite and >= 0, got {v!r}")
            out.append(x)
        cols[name] = np.array(out, dtype=np.int64) if name in _INT_COLUMNS else np.array(out, dtype=float)
    return RunTable(cols)


def cache_path() -> Path:
    return repo_root() / ".cache" / "clark2022_moe_runs.csv"


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (fixed https URL)
        return r.read()


def _how_to_get(reason: str) -> str:
    return (f"the paper's raw runs (clark2022_moe_runs.csv) are not available ({reason}). Get them by one of: "
            f"set {RUNS_ENV}=/path/to/clark2022_moe_runs.csv (in this workspace ../shared/data/clark2022_moe_runs.csv); "
            f"or download {RUNS_URL} and save it as {cache_path()} (sha256 {RUNS_SHA256}); "
            f"or pass the path explicitly (load_runs(path) / routing-laws fit PATH.csv)")


def _given(path) -> tuple[Path, str] | None:
    """The file named by ``path`` or $ROUTING_LAWS_CLARK_RUNS, with the field that named it, or None."""
    for p, what in ((path, "path"), (os.environ.get(RUNS_ENV) or None, RUNS_ENV)):
        if p is None:
            continue
        if not isinstance(p, (str, os.PathLike)):
            raise ValidationError(what, f"must be a file path, got {type(p).__name__}", "pass a str or Path")
        p = Path(p).expanduser()
        if p.is_dir():
            raise ValidationError(what, f"{p} is a directory", "name the CSV file itself, e.g. "
                                  f"{p / 'clark2022_moe_runs.csv'}")
        if not p.is_file():
            raise RoutingLawsError(_how_to_get(f"{what} points to {p}, which does not exist"))
        return p, what
    return None


def find_runs(path=None, *, download: bool = True, timeout: float = 10.0) -> Path:
    """Where the runs CSV is: ``path``, $ROUTING_LAWS_CLARK_RUNS, the cache, or a fresh download.

    A given file (path or variable) is used whatever its content (``load_runs`` checks it); the cache is
    used only when its sha256 is the published one (a stale or damaged cache is downloaded again); a
    download is saved to the cache only when its sha256 matches.
    """
    given = _given(path)
    if given is not None:
        return given[0]
    cache = cache_path()
    cache_note = ""
    if cache.is_file():
        digest = hashlib.sha256(cache.read_bytes()).hexdigest()
        if digest == RUNS_SHA256:
            return cache
        cache_note = f"; the cache at {cache} has sha256 {digest[:12]}..., not the published file's, so it was not used"
    if not download:
        raise RoutingLawsError(_how_to_get(f"no {RUNS_ENV} and no valid cache at {cache}{cache_note}"))
    try:
        data = _download(RUNS_URL, timeout)
    except Exception as e:  # offline, DNS, HTTP error: all mean the same to the user
        raise RoutingLawsError(_how_to_get(f"download failed: {type(e).__name__}: {e}{cache_note}")) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != RUNS_SHA256:
        raise RoutingLawsError(_how_to_get(f"downloaded file has sha256 {digest}, expected {RUNS_SHA256}"))
    atomic_write_bytes(cache, data)
    return cache


def load_runs(path=None, *, download: bool = True) -> RunTable:
    """The paper's runs, one row per run and logged step (see the module docstring for the search).

    The file's sha256 is compared with the published one whatever its source. A file given by ``path``
    or $ROUTING_LAWS_CLARK_RUNS that differs is still read (a subset or an edited copy is a legitimate
    thing to fit) but raises a ``RunsChecksumWarning`` saying so, and the table's ``sha256_ok`` is False,
    so nothing printed beside Table 3 can silently come from a doctored copy.
    """
    given = _given(path)
    p, field = given if given is not None else (find_runs(None, download=download), "cache")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValidationError(field, f"cannot read {p}: {e.strerror or e}", "check the file's permissions") from None
    table = _parse_runs(data, str(p), field)
    digest = hashlib.sha256(data).hexdigest()
    table.source, table.sha256 = str(p), digest
    if digest != RUNS_SHA256:
        warnings.warn(f"{p} (from {field}) has sha256 {digest[:12]}..., not the published runs file's "
                      f"{RUNS_SHA256[:12]}...: results from it are not the paper's runs", RunsChecksumWarning,
                      stacklevel=2)
    return table


def runs_or_reason(path=None, *, download: bool = True) -> tuple[RunTable | None, str]:
    """``(runs, "")`` when the paper's raw runs load, else ``(None, message)``: for chapters that skip
    the sections needing them. The message is one paragraph: why they are missing and how to get them.
    Only the loader's own errors are caught; a programming error still raises."""
    try:
        return load_runs(path, download=download), ""
    except RoutingLawsError as e:
        return None, f"The sections that need the paper's raw runs are skipped: {e}."


def _loss_column(name: str) -> str:
    return check_choice("loss_column", name, LOSS_COLUMNS)


def _with_accounting(t: RunTable, loss_column: str) -> dict:
    F = t["flops_per_step"] / TOKENS_PER_STEP
    return {"hyper_id": t["hyper_id"], "router": t["router_type"], "size": t["model_size_label"],
            "N": t["dense_parameter_count"], "E": t["num_experts"].astype(float), "R": t["routing_frequency"],
            "k": t["k"], "flop_increase": t["flop_increase"], "P": t["total_parameter_count"], "F": F,
            "B": t["total_parameter_count"] / F, "loss": t[loss_column]}


def main_grid(router: str, *, runs: RunTable | None = None, loss_column: str = "loss_validation") -> RunTable:
    """Final losses of the main grid (k = 1, R = 0.5, no FLOP increase) for one router, with the dense
    runs at E = 1 (they serve every router). Runs sharing (N, E) are averaged in L: only the 130M
    dense model (seeds 1-3). Columns N, E, loss, P, F, B, size, n_runs, hyper_ids."""
    tech = canonical_technique(router)
    if tech == "DENSE":
        raise ValidationError("router", "the main grid is per routed technique", "choose S-BASE, RL-R or HASH")
    loss_column = _loss_column(loss_column)
    t = (runs if runs is not None else load_runs()).final(loss_column)
    keep = (np.isin(t["router_type"], [CSV_ROUTER[tech], "Dense"]) & (t["k"] == 1)
            & np.isclose(t["routing_frequency"], 0.5) & np.isclose(t["flop_increase"], 1.0))
    c = _with_accounting(t.filter(keep), loss_column)
    keys = sorted(set(zip(c["N"].tolist(), c["E"].tolist())))
    out = {k: [] for k in ("N", "E", "loss", "P", "F", "B", "size", "n_runs", "hyper_ids")}
    for n, e in keys:
        m = (c["N"] == n) & (c["E"] == e)
        for col in ("N", "E", "P", "F", "B"):
            out[col].append(c[col][m][0])
        out["loss"].append(float(c["loss"][m].mean()))
        out["size"].append(c["size"][m][0])
        out["n_runs"].append(int(m.sum()))
        out["hyper_ids"].append("+".join(map(str, sorted(c["hyper_id"][m].tolist()))))
    return RunTable({k: np.array(v) for k, v in out.items()})


def ablation_runs(router: str = "S-BASE", *, runs: RunTable | None = None, loss_column: str = "loss_validation",
                  duplicates: str = "keep") -> RunTable:
    """Final losses at the ablation sizes (25M, 370M): every run of ``router`` there (any R, any k,
    the main-grid R = 0.5 runs included) and the dense baselines (incl. 2x / 4x FLOP ones). One row
    per run; ``kind`` is 'R', 'k', 'main' or 'dense'. ``duplicates``: see DUPLICATED_SBASE_25M."""
    tech = canonical_technique(router)
    loss_column = _loss_column(loss_column)
    check_choice("duplicates", duplicates, ("keep", "drop"))
    t = (runs if runs is not None else load_runs()).final(loss_column)
    varied = (t["router_type"] != "Dense") & ((t["k"] > 1) | ~np.isclose(t["routing_frequency"], 0.5))
    sizes = np.unique(t["model_size_label"][varied])
    keep = np.isin(t["model_size_label"], sizes) & np.isin(t["router_type"], [CSV_ROUTER[tech], "Dense"])
    if duplicates == "drop":
        keep &= ~np.isin(t["hyper_id"], np.array(DUPLICATED_SBASE_25M).ravel())
    c = _with_accounting(t.filter(keep), loss_column)
    kind = np.where(c["router"] == "Dense", "dense",
                    np.where(c["k"] > 1, "k", np.where(np.isclose(c["R"], 0.5), "main", "R")))
    return RunTable({**c, "kind": kind})
