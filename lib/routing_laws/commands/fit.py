"""``routing-laws fit PATH.csv|clark``: fit Eq. 1 (with E-hat) per technique and print coefficients
with 95% bootstrap intervals, RMSE in log10 L, N_cutoff, the dense slope and a leave-largest-N-out
extrapolation error; beside the paper's Table 3 when the table is the paper's (``clark``).

A plain CSV needs one row per run with columns for N (``N``, ``dense_parameter_count``, ...), E
(``E``, ``num_experts``, ...) and the loss (``--loss-column``, default ``loss`` or
``loss_validation``); an optional ``technique``/``router`` column splits the fits, dense rows
(router ``dense`` or E = 1 without a router) joining every technique at E = 1.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np

from routing_laws import laws, paper
from routing_laws.errors import RoutingLawsError, ValidationError, check_int
from routing_laws.io_utils import atomic_write_json

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


def _is_clark(path: Path) -> bool:
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    return "hyper_id" in header and "router_type" in header


def load_tables(path: str, loss_column: str | None) -> tuple[dict, bool]:
    """technique -> (N, E, loss, n_runs); and whether these are the paper's runs."""
    if path == "clark" or (Path(path).is_file() and _is_clark(Path(path))):
        runs = paper.load_runs(None if path == "clark" else path)
        col = loss_column or "loss_validation"
        out = {}
        for t in paper.TECHNIQUES:
            g = paper.main_grid(t, runs=runs, loss_column=col)
            out[t] = (g["N"], g["E"], g["loss"], int(g["n_runs"].sum()))
        return out, True
    p = Path(path)
    if not p.is_file():
        raise ValidationError("PATH", f"{path} does not exist", "pass a CSV of runs, or 'clark'")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValidationError("PATH", f"{path} has no rows", "pass a CSV with a header and one row per run")
    header = list(rows[0])
    if "status" in header:  # sweep summaries: failed runs have no loss
        rows = [r for r in rows if r["status"].strip() == "finished"]
    if "K" in header and "R" in header:  # sweep summaries: Eq. 1 is fitted on the main grid (top-1, R = 0.5)
        rows = [r for r in rows if r["K"].strip() in ("", "1") and r["R"].strip() in ("", "0.5")]
    if not rows:
        raise ValidationError("PATH", f"{path} has no finished main-grid runs (K=1, R=0.5)",
                              "run a sweep first: make sweep PROFILE=cpu")
    cn, ce = _pick(header, N_ALIASES, "N"), _pick(header, E_ALIASES, "E")
    cl = _pick(header, LOSS_ALIASES, "loss", loss_column)
    ct = next((a for a in TECH_ALIASES if a in header), None)

    def num(r, c):
        try:
            return float(r[c])
        except ValueError:
            raise ValidationError(c, f"not a number: {r[c]!r}", "fix or drop that row") from None

    N, E, L = (np.array([num(r, c) for r in rows]) for c in (cn, ce, cl))
    if ct is None:
        return {"all": (N, E, L, len(rows))}, False
    tech = np.array([r[ct].strip() for r in rows])
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
    boot = check_int("--bootstrap", args.bootstrap, min_value=0)
    seed = check_int("--seed", args.seed, min_value=0)
    tables, is_clark = load_tables(args.path, args.loss_column)
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
    if args.json:
        atomic_write_json(args.json, {"source": args.path, "results": results, "not_fitted": skipped})
    return 0
