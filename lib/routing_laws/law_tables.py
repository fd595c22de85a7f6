"""Rows and tables of the laws and their fits, for the scaling-law chapters (03-06): tidy rows for
``routing_laws.charts`` / ``routing_laws.law_charts`` and printable ``Table`` objects of the
published law, of our fits beside Table 3, and of the (F, B) law. Rows and tables of run records
(the paper's raw runs, our sweep) are in ``routing_laws.run_tables``.

Pure numpy (no JAX, no pandas). Glossary: N dense non-embedding parameters, E experts, E_hat the
saturating transform of E, loss validation loss (nats/token), epc the Effective Parameter Count
(dense N with the same loss), F forward FLOPs per token, B = P / F, P total parameters. "Rows" are
lists of plain dicts (one per point); a ``Table`` renders as HTML in notebooks and as text in print.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from routing_laws import laws
from routing_laws.errors import ValidationError
from routing_laws.laws import RoutedLaw
from routing_laws.tables import Table, si

E_GRID = tuple(2 ** k for k in range(10))  # 1 .. 512, the paper's expert counts


# ----------------------------------------------------------------------------- rows of the published law
def law_rows(law: RoutedLaw, N_values: Iterable[float], E_values: Iterable[float] = E_GRID) -> list[dict]:
    """Eq. 1 predictions {N, E, loss} on a grid (Figure 1a's lines)."""
    N_v, E_v = np.asarray(list(N_values), float), np.asarray(list(E_values), float)
    return [{"N": float(n), "E": float(e), "loss": float(laws.predict_loss(n, e, law))} for n in N_v for e in E_v]


def ehat_rows(laws_by_router, E_values: Iterable[float] = E_GRID) -> list[dict]:
    """{router, E, E_hat} per router: the saturating transform of each fitted law."""
    out = []
    for r, law in laws.check_laws(laws_by_router).items():
        E_v = np.asarray(list(E_values), float)
        for e, eh in zip(E_v, np.atleast_1d(laws.saturating_experts(E_v, law.e_start, law.e_max))):
            out.append({"router": r, "E": float(e), "E_hat": float(eh)})
    return out


def iso_loss_rows(law: RoutedLaw, losses: Iterable[float], E_values: Iterable[float] = E_GRID) -> list[dict]:
    """{loss, E, N}: the N reaching each loss at each E (Figure 1b); unreachable points dropped."""
    E_v = np.asarray(list(E_values), float)
    out = []
    for loss in losses:
        N = np.atleast_1d(laws.iso_loss_curve(law, float(loss), E_v))
        out += [{"loss": float(loss), "E": float(e), "N": float(n)} for e, n in zip(E_v, N) if np.isfinite(n)]
    return out


def coefficient_table(laws_by_router, title: str = "", columns: Sequence[str] | None = None) -> Table:
    """One row per router: a, b, c, d, E_start, E_max, the dense slope and N_cutoff = 10^(-b/c);
    ``columns`` picks some of them (``router`` always first), e.g. when another table shows the rest."""
    rows = [{"router": r, **law.as_dict(), "dense slope": laws.dense_slope(law), "N_cutoff": laws.cutoff_params(law)}
            for r, law in laws.check_laws(laws_by_router).items()]
    fmts = {"a": ".4f", "b": ".4f", "c": ".5f", "d": ".4f", "e_start": ".4g", "e_max": ".5g",
            "dense slope": ".4f", "N_cutoff": "si"}
    every = [*laws.LAW_PARAMS, "dense slope", "N_cutoff"]
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ValidationError("columns", f"must be a list of column names, got {columns!r}")
        unknown = [c for c in columns if c not in every]
        if unknown:
            raise ValidationError("columns", f"unknown {unknown}", "choose from: " + ", ".join(every))
        every = [c for c in columns if c != "router"]
    return Table(rows, ["router", *every], fmts, title)


def cutoff_rows(rounded, unrounded, reported: Mapping[str, float]) -> list[dict]:
    """Per router: c as printed, c implied by the reported cutoff, 10^(-b/c) for both, the reported value."""
    rounded, unrounded = laws.check_laws(rounded), laws.check_laws(unrounded)
    return [{"router": r, "c (Table 3)": rounded[r].c, "c (un-rounded)": unrounded[r].c,
             "N_cutoff from Table 3 c": laws.cutoff_params(rounded[r]),
             "N_cutoff from un-rounded c": laws.cutoff_params(unrounded[r]),
             "reported N_cutoff": float(reported[r])} for r in rounded]


def cutoff_table(rounded, unrounded, reported: Mapping[str, float], title: str = "") -> Table:
    rows = cutoff_rows(rounded, unrounded, reported)
    fmts = {"c (Table 3)": ".3f", "c (un-rounded)": ".6f", "N_cutoff from Table 3 c": "si",
            "N_cutoff from un-rounded c": "si", "reported N_cutoff": "si"}
    return Table(rows, list(rows[0]), fmts, title)


def epc_rows(laws_by_router, N_values: Iterable[float], E_values: Iterable[float] = E_GRID) -> list[dict]:
    """{router, N, E, loss, epc, multiplier}: every (N, E) model and its dense equivalent."""
    out = []
    for r, law in laws.check_laws(laws_by_router).items():
        for n in N_values:
            for e in E_values:
                epc = float(laws.effective_params(float(n), float(e), law))
                out.append({"router": r, "N": float(n), "E": float(e), "loss": float(laws.predict_loss(n, e, law)),
                            "epc": epc, "multiplier": epc / float(n)})
    return out


def epc_multiplier_table(laws_by_router, N_values: Sequence[float], E_values: Sequence[float],
                         title: str = "") -> Table:
    """EPC / N per router (rows) and (N, E) (columns), as in research/paper.md section 5.4."""
    cols, rows = [], []
    for r, law in laws.check_laws(laws_by_router).items():
        row = {"router": r}
        for n in N_values:
            for e in E_values:
                key = f"{si(n)}, E={int(e)}"
                if key not in cols:
                    cols.append(key)
                row[key] = float(laws.effective_params(float(n), float(e), law)) / float(n)
        rows.append(row)
    return Table(rows, ["router", *cols], {c: ".1f" for c in cols}, title)


def dense_power_law_rows(alpha_N: float, N_c: float, N_values: Iterable[float]) -> list[dict]:
    """{N, loss} of L = (N_c / N)^alpha_N (the dense line of Figure 1c)."""
    return [{"N": float(n), "loss": float((N_c / n) ** alpha_N)} for n in N_values]


# ----------------------------------------------------------------------------- fits beside the paper
def fit_laws(tables: Mapping[str, tuple], *, bootstrap: int, seed: int = 0) -> dict:
    """router -> FitResult of Eq. 1 (with E_hat) on (N, E, loss) arrays."""
    return {r: laws.fit_routed_law(N, E, L, bootstrap=bootstrap, seed=seed) for r, (N, E, L) in tables.items()}


def fit_comparison_table(fits: Mapping, published: Mapping[str, RoutedLaw] | None = None,
                         unrounded_c: Mapping[str, float] | None = None, title: str = "") -> Table:
    """Per router and parameter: fit, 95% bootstrap interval, Table 3's value and whether it lies inside."""
    rows = []
    for r, fit in fits.items():
        for p in laws.LAW_PARAMS:
            lo, hi = fit.ci[p]
            row = {"router": r, "param": p, "fit": getattr(fit.law, p), "95% low": lo, "95% high": hi}
            if published and r in published:
                ref = unrounded_c[r] if (p == "c" and unrounded_c and r in unrounded_c) else getattr(published[r], p)
                row["Table 3"] = ref
                row["inside"] = "yes" if lo <= ref <= hi else ("no" if math.isfinite(lo) else "n/a")
            rows.append(row)
        rows.append({"router": r, "param": "RMSE log10 L", "fit": fit.rmse})
    cols = ["router", "param", "fit", "95% low", "95% high"] + (["Table 3", "inside"] if published else [])
    return Table(rows, cols, {c: ".4g" for c in ("fit", "95% low", "95% high", "Table 3")}, title)


def interval_rows(fits: Mapping, published: Mapping[str, RoutedLaw] | None = None,
                  params: Sequence[str] = ("a", "b", "c", "d")) -> list[dict]:
    """{router, param, fit, lo, hi[, paper]} for ``charts.interval_chart``."""
    out = []
    for r, fit in fits.items():
        for p in params:
            lo, hi = fit.ci[p]
            v = getattr(fit.law, p)
            row = {"router": r, "param": p, "fit": v, "lo": lo if math.isfinite(lo) else v,
                   "hi": hi if math.isfinite(hi) else v}
            if published and r in published:
                row["paper"] = getattr(published[r], p)
            out.append(row)
    return out


def residual_rows(N, E, loss, law: RoutedLaw, router: str = "") -> list[dict]:
    """{router, N, E, experts, loss, fitted, residual} with residual = log10 L - log10 L_fit."""
    N, E, loss = (np.asarray(x, float) for x in (N, E, loss))
    pred = np.atleast_1d(laws.predict_loss(N, E, law))
    return [{"router": router, "N": float(n), "E": float(e), "experts": f"E={int(e)}", "loss": float(l),
             "fitted": float(p), "residual": float(np.log10(l) - np.log10(p))}
            for n, e, l, p in zip(N, E, loss, pred)]


def ranking_rows(laws_by_router, N_values: Sequence[float], E: float = 64) -> list[dict]:
    """Per N: routers ordered by predicted loss at ``E`` experts (lower is better)."""
    lw = laws.check_laws(laws_by_router)
    out = []
    for n in N_values:
        pred = sorted((float(laws.predict_loss(n, E, law)), r) for r, law in lw.items())
        out.append({"N": si(n), "E": int(E), "ranking (best first)": " > ".join(r for _, r in pred),
                    **{f"L {r}": v for v, r in sorted(pred, key=lambda t: t[1])}})
    return out


def benefit_rows(laws_by_router, N_values: Iterable[float], E: float = 64) -> list[dict]:
    """{router, N, benefit}: the loss reduction of E experts over dense at size N, in % of the dense loss."""
    out = []
    for r, law in laws.check_laws(laws_by_router).items():
        for n in N_values:
            l1, le = float(laws.predict_loss(n, 1, law)), float(laws.predict_loss(n, E, law))
            out.append({"router": r, "N": float(n), "benefit": 100 * (l1 - le) / l1, "E": float(E)})
    return out


def extrapolation_table(tables: Mapping[str, tuple], title: str = "") -> Table:
    """Per router: fit without the largest N, predict it (``laws.extrapolation_check``), errors in log10 L."""
    rows = []
    for r, (N, E, L) in tables.items():
        try:
            ex = laws.extrapolation_check(N, E, L)
        except ValidationError as e:
            rows.append({"router": r, "held-out N": "n/a", "note": str(e)})
            continue
        rows.append({"router": r, "held-out N": si(ex.held_out_N), "train runs": ex.n_train, "test runs": ex.n_test,
                     "RMSE train": ex.rmse_train, "RMSE held-out": ex.rmse_test, "mean error": ex.mean_residual_test})
    cols = ["router", "held-out N", "train runs", "test runs", "RMSE train", "RMSE held-out", "mean error"]
    if any("note" in r for r in rows):
        cols.append("note")
    return Table(rows, cols, {"RMSE train": ".4f", "RMSE held-out": ".4f", "mean error": "+.4f"}, title)


# ----------------------------------------------------------------------------- the (F, B) law
def fb_fit_table(fits: Mapping, title: str = "") -> Table:
    """Eq. 2 (F, B) fits per router: a, b, c, d with 95% intervals, RMSE in log10 L."""
    rows = []
    for r, fit in fits.items():
        row = {"router": r, "runs": fit.n_points, "RMSE log10 L": fit.rmse}
        for p in ("a", "b", "c", "d"):
            lo, hi = fit.ci[p]
            row[p] = f"{fit.params[p]:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if math.isfinite(lo) else "")
        rows.append(row)
    return Table(rows, ["router", "runs", "a", "b", "c", "d", "RMSE log10 L"], {"RMSE log10 L": ".4f"}, title)


def fb_rows(table, fit) -> list[dict]:
    """{kind, size, label, F, B, loss, predicted} per run of an ``ablation_runs`` table under an FB fit."""
    pred = np.atleast_1d(laws.predict_fb_loss(table["F"], table["B"], fit.law))
    out = []
    for i in range(len(table)):
        k = str(table["kind"][i])
        lab = {"dense": "dense", "main": "R=0.5, k=1", "R": f"R={table['R'][i]:.3g}", "k": f"k={int(table['k'][i])}"}[k]
        if k == "dense" and float(table["flop_increase"][i]) > 1:
            lab = f"dense {table['flop_increase'][i]:g}x FLOPs"
        out.append({"kind": k, "variant": lab, "size": str(table["size"][i]), "E": float(table["E"][i]),
                    "F": float(table["F"][i]), "B": float(table["B"][i]), "loss": float(table["loss"][i]),
                    "predicted": float(pred[i])})
    return out
