"""``routing-laws fit PATH.csv|clark``: fit Eq. 1 (with E-hat) per technique and print coefficients
with 95% bootstrap intervals, RMSE in log10 L, N_cutoff, the dense slope and a leave-largest-N-out
extrapolation error; beside the paper's Table 3 when the table is the paper's (``clark``).

A plain CSV needs one row per run with columns for N (``N``, ``dense_parameter_count``, ...), E
(``E``, ``num_experts``, ...) and the loss (``--loss-column``, default ``loss`` or
``loss_validation``); an optional ``technique``/``router`` column splits the fits, dense rows
(router ``dense`` or E = 1 without a router) joining every technique at E = 1. A run listed twice
(same technique, N, E and loss) is refused, not merged: counted twice it would narrow the intervals
(see ``load_tables`` for every check). ``--json``'s target is checked before any fitting. A Clark-format
file whose sha256 is not the published one is fitted with a warning line saying so.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from routing_laws import laws, paper
from routing_laws.errors import RoutingLawsError, ValidationError, check_int, check_output_path
from routing_laws.io_utils import atomic_write_json, nonfinite_to_null

HELP = "fit the routed scaling law (Eq. 1) to a CSV of runs, or to the paper's raw runs ('clark')"
N_ALIASES = ("N", "n_params", "dense_params", "dense_parameter_count", "non_embedding_params")
E_ALIASES = ("E", "experts", "n_experts", "num_experts")
LOSS_ALIASES = ("loss", "final_loss", "val_loss", "loss_validation")
TECH_ALIASES = ("technique", "router", "router_type", "kind")


def add_arguments(parser) -> None:
    parser.add_argument("path", metavar="PATH.csv|clark",
                        help="a CSV of runs, or 'clark' for the paper's raw runs (see load_runs)")
    parser.add_argument("--technique", action="append", metavar="NAME",
                        help="fit only this technique (S-BASE, RL-R, HASH or a value of the CSV's router "
                             "column); repeat for several; default all")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--loss-column", default=None,
                        help="loss column (default: loss / loss_validation; for clark any of "
                             + ", ".join(paper.LOSS_COLUMNS) + ")")
    parser.add_argument("--plain", action="store_true", help="no saturation: E-hat = E, fit a, b, c, d only")
    parser.add_argument("--json", metavar="OUT.json", help="also write the results as JSON (atomically)")


def _pick(header: list[str], aliases, what: str, given: str | None = None) -> str:
    if given is not None:
        if given not in header:
            raise ValidationError("--loss-column", f"no column {given!r} in the CSV", "columns: " + ", ".join(header))
        return given
    for a in aliases:
        if a in header:
            return a
    raise ValidationError(what, f"the CSV has no {what} column", "name one of: " + ", ".join(aliases))


def _read_csv(path: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header and ``(line number, row)`` pairs of a CSV of runs, or a ValidationError naming PATH and the
    fix: a folder, a missing or unreadable file, a binary or non-UTF-8 file, a header without rows, ragged
    rows. A UTF-8 byte-order mark is dropped (spreadsheets write one); blank lines are skipped."""
    p = Path(path)
    if p.is_dir():
        raise ValidationError("PATH", f"{path} is a directory", "pass the CSV file itself, e.g. data/runs/cpu/runs.csv")
    if not p.is_file():
        raise ValidationError("PATH", f"{path} does not exist", "pass a CSV of runs, or 'clark'")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValidationError("PATH", f"cannot read {path}: {e.strerror or e}", "check the file's permissions") from None
    if b"\x00" in data:
        raise ValidationError("PATH", f"{path} is a binary file, not a CSV", "pass a comma-separated text file of runs")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValidationError("PATH", f"{path} is not UTF-8 text (byte {e.start})", "save the CSV as UTF-8") from None
    try:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text))) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise ValidationError("PATH", f"{path} is not a readable CSV ({e})", "pass a comma-separated text file") from None
    if not rows:
        raise ValidationError("PATH", f"{path} is empty", "pass a CSV with a header and one row per run")
    header = [h.strip() for h in rows[0][1]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValidationError("PATH", f"{path} repeats the column(s) {', '.join(dup)} in its header",
                              "give every column a distinct name")
    if len(rows) == 1:
        raise ValidationError("PATH", f"{path} has a header but no rows", "add one row per run under the header")
    out = []
    for line, r in rows[1:]:
        if len(r) != len(header):
            raise ValidationError("PATH", f"{path} line {line} has {len(r)} fields, the header has {len(header)}",
                                  "fix that line: a missing or extra comma?")
        out.append((line, {h: v.strip() for h, v in zip(header, r)}))
    return header, out


def _values(rows: list[tuple[int, dict]], col: str, what: str) -> np.ndarray:
    """Column ``col`` as floats, checked per line: finite, and N > 0, E >= 1, loss > 0."""
    out = []
    for line, r in rows:
        v = r[col]
        try:
            x = float(v)
        except ValueError:
            raise ValidationError(col, f"line {line}: not a number: {v!r}", "fix or drop that row") from None
        if not math.isfinite(x):
            raise ValidationError(col, f"line {line}: {v!r} is not finite",
                                  "drop the runs that diverged or have no loss")
        if (what == "E" and x < 1) or (what != "E" and x <= 0):
            raise ValidationError(col, f"line {line}: {what} must be {'>= 1' if what == 'E' else '> 0'}, got {v!r}",
                                  {"N": "N is the dense parameter count, not its log",
                                   "E": "expert counts are >= 1; a dense model is E = 1",
                                   "loss": "losses are positive cross-entropies in nats, not log L"}[what])
        out.append(x)
    return np.array(out)


def _refuse_duplicates(path: str, lines: list[int], keys: list[tuple]) -> None:
    """A run listed twice would count twice and narrow the bootstrap intervals: refuse it, naming the lines."""
    first: dict[tuple, int] = {}
    for line, key in zip(lines, keys):
        if key in first:
            raise ValidationError("PATH", f"{path} lines {first[key]} and {line} are the same run: "
                                  "technique, N, E and loss all equal",
                                  "delete the repeated line: a run counted twice narrows the intervals")
        first[key] = line


def _clark_header(header: list[str]) -> bool:
    return "hyper_id" in header and "router_type" in header


def load_tables(path: str, loss_column: str | None) -> tuple[dict, bool]:
    """technique -> (N, E, loss, n_runs); and whether these are the paper's runs.

    Refused, with the field and the fix: a folder, a binary, non-UTF-8, empty or header-only file, ragged
    rows, non-numeric, non-finite or out-of-range N, E or loss, and the same run listed twice (rows equal
    in technique, N, E and loss). Rows sharing (technique, N, E) with different losses are kept as
    separate runs (repeat seeds).
    """
    if path != "clark":
        header, rows = _read_csv(path)
    if path == "clark" or _clark_header(header):
        runs = paper.load_runs(None if path == "clark" else path)
        col = loss_column or "loss_validation"
        out = {}
        for t in paper.TECHNIQUES:
            g = paper.main_grid(t, runs=runs, loss_column=col)
            out[t] = (g["N"], g["E"], g["loss"], int(g["n_runs"].sum()))
        return out, True
    if "status" in header:  # sweep summaries: failed runs have no loss
        rows = [(i, r) for i, r in rows if r["status"] == "finished"]
    if "K" in header and "R" in header:  # sweep summaries: Eq. 1 is fitted on the main grid (top-1, R = 0.5)
        rows = [(i, r) for i, r in rows if r["K"] in ("", "1") and r["R"] in ("", "0.5")]
    if not rows:
        raise ValidationError("PATH", f"{path} has no finished main-grid runs (K=1, R=0.5)",
                              "run a sweep first: make sweep PROFILE=cpu")
    cn, ce = _pick(header, N_ALIASES, "N"), _pick(header, E_ALIASES, "E")
    cl = _pick(header, LOSS_ALIASES, "loss", loss_column)
    ct = next((a for a in TECH_ALIASES if a in header), None)
    N, E, L = _values(rows, cn, "N"), _values(rows, ce, "E"), _values(rows, cl, "loss")
    tech = np.array([r[ct] if ct else "" for _, r in rows])
    _refuse_duplicates(path, [i for i, _ in rows], list(zip(tech.tolist(), N.tolist(), E.tolist(), L.tolist())))
    if ct is None:
        return {"all": (N, E, L, len(rows))}, False
    dense = np.char.lower(tech) == "dense"
    out = {}
    for t in sorted(set(tech[~dense].tolist())):
        m = (tech == t) | dense
        out[t] = (N[m], E[m], L[m], int(m.sum()))
    if not out:
        raise ValidationError(ct, "only dense runs: nothing routed to fit", "add runs with E > 1")
    return out, False


def _select(tables: dict, wanted, is_clark: bool) -> dict:
    if not wanted:
        return tables
    out = {}
    for w in wanted:
        key = w
        if key not in tables:  # accept any spelling of a known technique (sbase, S-Base, S-BASE ...)
            try:
                canon = paper.canonical_technique(w)
            except ValidationError:
                canon = None
            key = next((t for t in tables if canon is not None and _canon(t) == canon), w)
        if key not in tables:
            raise ValidationError("--technique", f"unknown technique {w!r}", "choose from: " + ", ".join(tables))
        out[key] = tables[key]
    return out


def _canon(name: str) -> str | None:
    try:
        return paper.canonical_technique(name)
    except ValidationError:
        return None


def _g(x: float) -> str:
    return "inf" if math.isinf(x) else ("nan" if math.isnan(x) else f"{x:.4g}")


def run(args) -> int:
    boot = check_int("--bootstrap", args.bootstrap, min_value=0, max_value=laws.MAX_BOOTSTRAP)
    seed = check_int("--seed", args.seed, min_value=0)
    json_out = check_output_path("--json", args.json) if args.json else None  # before any reading or fitting
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", paper.RunsChecksumWarning)
        tables, is_clark = load_tables(args.path, args.loss_column)
    checksum = [str(w.message) for w in caught if issubclass(w.category, paper.RunsChecksumWarning)]
    for msg in checksum:  # one plain line, not Python's two-line warning format
        print(f"warning: {msg}; the comparison with Table 3 below is not a check of the paper")
    tables = _select(tables, args.technique, is_clark)
    t3 = paper.table3() if is_clark else {}
    c_un = paper.derived_c() if is_clark else {}
    cuts = paper.reported_cutoffs() if is_clark else {}
    results, skipped, t0 = {}, {}, time.perf_counter()
    for tech, (N, E, L, n_runs) in tables.items():
        laws.validate_runs(N, E, L)  # bad data is an error even when other techniques could be fitted
    for tech, (N, E, L, n_runs) in tables.items():
        try:
            fit = laws.fit_routed_law(N, E, L, saturating=not args.plain, bootstrap=boot, seed=seed)
        except ValidationError as e:
            # A partial sweep: fit what can be fitted, say why the rest was not. A technique the user
            # asked for by name, or the only one there is, is an error.
            if args.technique or len(tables) == 1:
                raise ValidationError(e.field, f"{tech}: {e.problem}", e.fix) from None
            skipped[tech] = str(e)
            print(f"{tech}: not fitted ({n_runs} runs): {e}")
            continue
        law = fit.law
        cut, slope = laws.cutoff_params(law), laws.dense_slope(law)
        try:
            ex = laws.extrapolation_check(N, E, L, saturating=not args.plain)
        except (ValidationError, RoutingLawsError):
            ex = None
        print(f"{tech}: {fit.n_points} points from {n_runs} runs; summed Huber (delta {fit.huber_delta:g}) in log10 L; "
              f"{boot} bootstrap resamples" + (f" ({fit.n_unconverged} on the e_max->e_start ridge)" if boot else ""))
        names = laws.LAW_PARAMS if fit.saturating else laws.LAW_PARAMS[:4]
        print(f"  {'param':8s} {'fit':>11s}   {'95% interval':>25s}" + (f"   {'Table 3':>9s}" if tech in t3 else ""))
        for k in names:
            lo, hi = fit.ci[k]
            ref = ""
            if tech in t3:
                ref = f"   {getattr(t3[tech], k):>9.4g}" + (f" (un-rounded {c_un[tech]:.6f})" if k == "c" else "")
            print(f"  {k:8s} {getattr(law, k):>11.5g}   [{_g(lo):>10s}, {_g(hi):>10s}]{ref}")
        cut_ci = fit.ci_of(laws.cutoff_params) if boot else (math.nan, math.nan)
        print(f"  RMSE log10 L {fit.rmse:.5f}   dense slope a + c log10 e_start {slope:.4f}")
        print(f"  N_cutoff {_g(cut)} [{_g(cut_ci[0])}, {_g(cut_ci[1])}]"
              + (f"   (paper {_g(cuts[tech])})" if tech in cuts else ""))
        if ex is not None:
            print(f"  leave-largest-N-out: fit without N = {_g(ex.held_out_N)}, predict its {ex.n_test} runs: "
                  f"RMSE {ex.rmse_test:.5f} (train {ex.rmse_train:.5f}), mean error {ex.mean_residual_test:+.5f}")
        for w in fit.warnings:
            print(f"  warning: {w}")
        results[tech] = {**fit.to_dict(), "n_runs": n_runs, "n_cutoff": cut, "n_cutoff_ci": list(cut_ci),
                         "dense_slope": slope, "extrapolation_rmse": None if ex is None else ex.rmse_test}
    if not results:
        raise ValidationError("PATH", f"no technique in {args.path} can be fitted: "
                              + "; ".join(f"{t}: {why}" for t, why in skipped.items()),
                              "add runs (make sweep PROFILE=cpu), or pass --bootstrap 0 where only intervals fail")
    print(f"fitted {len(results)} technique(s) in {time.perf_counter() - t0:.1f} s"
          + (f"; not fitted: {', '.join(skipped)}" if skipped else ""))
    if json_out is not None:
        doc = {"source": args.path, "results": results, "not_fitted": skipped}
        if is_clark:
            doc["published_runs_file"] = not checksum  # sha256 equal to paper.RUNS_SHA256
        # no bootstrap (or a failed one) leaves NaN interval ends: null in strict JSON, not NaN
        atomic_write_json(json_out, nonfinite_to_null(doc)[0])
    return 0
