"""Rows and tables of run records, for the scaling-law chapters: the paper's raw runs (main grid per
router, overview, training curves, per-evaluation-set refits) and our own sweep (``our_runs``,
``read_sweep``, ``measured_grid_table``, seeds, the measured ranking, and how it moves with the token budget:
``budget_rows``, ``pair_gap_rows``). Rows and tables of the laws themselves are in ``routing_laws.law_tables``.

Numpy only (records are read and validated by ``routing_laws.sweep``). Names: N dense non-embedding parameters, E experts, loss validation loss (nats/token);
K experts per token (top-k), R routing frequency.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from routing_laws import laws, paper, sweep
from routing_laws.config import ROUTER_LABELS, SIZES
from routing_laws.errors import ValidationError
from routing_laws.io_utils import repo_root
from routing_laws.tables import Table, si

SWEEP_TECHNIQUE = {k: v for k, v in ROUTER_LABELS.items() if k != "dense"}  # sweep router kind -> technique
ROUTERS = tuple(SWEEP_TECHNIQUE.values())  # ("S-BASE", "RL-R", "HASH")


# ----------------------------------------------------------------------------- the paper's raw runs
def main_grid_tables(runs, loss_column: str = "loss_validation") -> dict:
    """router -> (N, E, loss) of the paper's main grid (k = 1, R = 0.5, dense runs at E = 1)."""
    out = {}
    for r in ROUTERS:
        g = paper.main_grid(r, runs=runs, loss_column=loss_column)
        out[r] = (g["N"], g["E"], g["loss"])
    return out


def size_labels(runs) -> dict:
    """Dense N -> the paper's size label ('15M', ..., '1.3B'), ordered by N."""
    t = runs.final()
    pairs = sorted(set(zip(t["dense_parameter_count"].tolist(), t["model_size_label"].tolist())))
    return {float(n): str(lab) for n, lab in pairs}


def runs_overview(runs) -> Table:
    """Runs per router type and size label (final steps), with how many are main-grid (k = 1, R = 0.5)."""
    t = runs.final()
    rows = []
    for router in sorted(set(t["router_type"].tolist())):
        m = t["router_type"] == router
        main = m & (t["k"] == 1) & np.isclose(t["routing_frequency"], 0.5) & np.isclose(t["flop_increase"], 1.0)
        sizes = sorted(set(t["model_size_label"][m].tolist()), key=lambda s: float(s[:-1]) * (1e3 if s[-1] == "B" else 1))
        rows.append({"router": router, "runs": int(m.sum()), "main grid": int(main.sum()), "sizes": ", ".join(sizes),
                     "experts": ", ".join(str(e) for e in sorted(set(t["num_experts"][m].tolist())))})
    return Table(rows, ["router", "runs", "main grid", "sizes", "experts"])


def curve_rows(runs, hyper_ids: Iterable[int], min_step: int = 10_000) -> list[dict]:
    """{run, tokens, loss} training curves (validation loss) of the given runs from ``min_step`` on."""
    out = []
    for h in hyper_ids:
        t = runs.where(hyper_id=int(h))
        if not len(t):
            raise ValidationError("hyper_ids", f"no run with hyper_id {h}", "pick ids from the runs table")
        name = f"{t['model_size_label'][0]} {t['router_type'][0]} E={int(t['num_experts'][0])}"
        for s, l in sorted(zip(t["step"].tolist(), t["loss_validation"].tolist())):
            if s >= min_step and math.isfinite(l):
                out.append({"run": name, "tokens": float(s) * paper.TOKENS_PER_STEP, "loss": float(l)})
    return out


def pick_runs(runs, router: str, size: str, experts: Iterable[int]) -> list[int]:
    """hyper_ids of main-grid runs (k = 1, R = 0.5) of ``router`` (CSV spelling) at ``size`` with these E."""
    t = runs.final()
    out = []
    for e in experts:
        rt = "Dense" if e == 1 else router
        m = ((t["router_type"] == rt) & (t["model_size_label"] == size) & (t["num_experts"] == e) & (t["k"] == 1)
             & np.isclose(t["routing_frequency"], 0.5) & np.isclose(t["flop_increase"], 1.0))
        if m.any():
            out.append(int(t["hyper_id"][m][0]))
    return out


def eval_set_table(runs, *, title: str = "") -> Table:
    """Eq. 1 refitted (no bootstrap) on every evaluation set x router: coefficients, RMSE, N_cutoff."""
    rows = []
    for col in paper.LOSS_COLUMNS:
        for r, (N, E, L) in main_grid_tables(runs, col).items():
            fit = laws.fit_routed_law(N, E, L)
            rows.append({"evaluation set": col.removeprefix("loss_"), "router": r, "runs": fit.n_points,
                         **fit.law.as_dict(), "RMSE log10 L": fit.rmse, "N_cutoff": laws.cutoff_params(fit.law)})
    fmts = {"a": ".4f", "b": ".4f", "c": ".4f", "d": ".3f", "e_start": ".2f", "e_max": ".0f", "RMSE log10 L": ".4f",
            "N_cutoff": "si"}
    return Table(rows, ["evaluation set", "router", "runs", *laws.LAW_PARAMS, "RMSE log10 L", "N_cutoff"], fmts, title)


# ----------------------------------------------------------------------------- our sweep
@dataclass(frozen=True)
class SweepRuns:
    """Our finished sweep runs per router (dense E = 1 runs join every router); ``message`` explains gaps."""

    path: Path
    n_finished: int
    n_failed: int
    tables: dict  # router -> (N, E, loss) arrays
    message: str
    runs: tuple = ()  # every finished top-1, R = 0.5 run: {technique, N, E, loss} (fitted or not)
    # router -> (F, B, loss) for Eq. 2: dense and every finished run of the router, K and R variants
    # included (F forward FLOPs per token, B = P / F, P with embeddings: data/runs/cpu/README.md says why);
    # only routers with >= FB_MIN_RUNS such runs
    fb_tables: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.tables)


def _fit_ready(N: np.ndarray, E: np.ndarray) -> str:
    if np.unique(N).size < 2:
        return f"{np.unique(N).size} model size(s) (need >= 2)"
    if np.unique(E).size < 3:
        return f"{np.unique(E).size} expert count(s) incl. dense (need >= 3)"
    if len(set(zip(N.tolist(), E.tolist()))) < 8:
        return (f"{len(set(zip(N.tolist(), E.tolist())))} distinct (N, E) cells incl. dense "
                "(need >= 8: 6 parameters + 2 for bootstrap intervals)")
    return ""


FB_MIN_RUNS = 6  # Eq. 2 has 4 parameters; 2 spare runs for the bootstrap


def _fb_tables(finished: list[dict]) -> dict:
    """router -> (F, B, loss) arrays of dense plus every run of the router (any K, R), from runs.csv rows."""
    if not finished or not all(r.get("F") not in (None, "") and r.get("B") not in (None, "") for r in finished):
        return {}
    dense = [r for r in finished if r["technique"] == "dense"]
    out = {}
    for tech, router in SWEEP_TECHNIQUE.items():
        sel = dense + [r for r in finished if r["technique"] == tech]
        if len(sel) >= FB_MIN_RUNS and len({r["B"] for r in sel}) >= 2 and len({r["F"] for r in sel}) >= 2:
            out[router] = tuple(np.array([float(r[c]) for r in sel]) for c in ("F", "B", "loss"))
    return out


def read_sweep(profiles: Sequence[str] = ("cpu", "gpu", "smoke"), root: Path | None = None) -> SweepRuns:
    """The first of ``data/runs/<profile>/runs.csv`` with enough finished top-1, R = 0.5 runs to fit Eq. 1
    with E_hat per router; otherwise an empty result whose message says what is missing and what to run."""
    base = Path(root) if root is not None else repo_root() / "data" / "runs"
    notes = []
    for prof in profiles:
        path = base / prof / "runs.csv"
        shown = path.relative_to(repo_root()) if repo_root() in path.parents else path  # data/runs/cpu/runs.csv
        if not path.is_file():
            notes.append(f"{shown}: missing")
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        fin = [r for r in rows if r.get("status") == "finished" and r.get("loss") not in (None, "")]
        failed = sum(r.get("status") == "failed" for r in rows)
        main = [r for r in fin if int(float(r.get("K") or 1)) == 1 and math.isclose(float(r.get("R") or 0.5), 0.5)]
        dense = [r for r in main if r["technique"] == "dense"]
        tables, why = {}, []
        for tech, router in SWEEP_TECHNIQUE.items():
            sel = dense + [r for r in main if r["technique"] == tech]
            N = np.array([float(r["N"]) for r in sel])
            E = np.array([float(r["E"]) for r in sel])
            L = np.array([float(r["loss"]) for r in sel])
            gap = _fit_ready(N, E) if sel else "no runs"
            if gap:
                why.append(f"{router}: {gap}")
            else:
                tables[router] = (N, E, L)
        if tables:
            msg = f"{shown}: {len(fin)} finished, {failed} failed runs" + (f"; not fitted: {'; '.join(why)}" if why else "")
            runs = tuple({"technique": ROUTER_LABELS.get(r["technique"], r["technique"]), "N": float(r["N"]),
                          "E": int(float(r["E"])), "loss": float(r["loss"])} for r in main)
            return SweepRuns(path, len(fin), failed, tables, msg, runs, _fb_tables(fin))
        notes.append(f"{shown}: {len(fin)} finished, {failed} failed runs, not enough to fit ({'; '.join(why)})")
    return SweepRuns(base, 0, 0, {}, "no sweep with enough runs: " + " | ".join(notes)
                     + f". Run `routing-laws sweep --grid cpu` ({len(sweep.get_grid('cpu').runs())} runs of 16.8M tokens, resumable; `--plan` prints the estimated "
                     "cost, data/runs/cpu/README.md how to shard it over cores), then rebuild the book.")


def main_grid_rows(records: Iterable[Mapping]) -> list[dict]:
    """{technique, N, E, loss} of every clean finished top-1, R = 0.5 record (any seed, the grid's router
    settings included), the rows ``measured_grid_table`` takes: for a grid still being trained, whose
    ``read_sweep`` cannot fit it yet."""
    rows = []
    for r in _clean_finished(records, "records").values():
        s, a = r.get("spec") or {}, r.get("accounting") or {}
        try:
            if int(s.get("top_k", 1)) != 1 or not math.isclose(float(s.get("routing_frequency", 0.5)), 0.5):
                continue
            rows.append({"technique": ROUTER_LABELS.get(s["router"], s["router"]), "N": float(a["N"]),
                         "E": int(s["experts"]), "loss": float(r["final_val_loss"])})
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError("records", f"record {r.get('run_id')!r} has no usable spec or accounting ({e})",
                                  "use sweep.read_records(folder)[0]") from None
    return rows


def measured_grid_table(runs: Iterable[Mapping], title: str = "") -> Table:
    """Measured losses side by side: a row per (N, E > 1) with dense at that N and each router's loss,
    the best router among those measured and its gain over dense (nats). Empty cells are runs not (yet) done.
    A cell run with several seeds shows their mean (``seed_spread_table`` gives the spread)."""
    cells: dict = {}
    for i, r in enumerate(runs):
        try:
            tech, N, E, loss = str(r["technique"]), float(r["N"]), int(r["E"]), float(r["loss"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"runs[{i}]", f"needs technique, N, E and a numeric loss, got {dict(r)!r}",
                                  "pass SweepRuns.runs from read_sweep") from None
        if not (N > 0 and E >= 1 and math.isfinite(loss)):
            raise ValidationError(f"runs[{i}]", f"N > 0, E >= 1 and a finite loss required, got N={N}, E={E}, loss={loss}")
        cells.setdefault((N, E, "dense" if E == 1 else tech), []).append(loss)
    cells = {k: float(np.mean(v)) for k, v in cells.items()}
    if not cells:
        raise ValidationError("runs", "no runs to tabulate", "pass SweepRuns.runs of a sweep with finished runs")
    Ns = sorted({n for n, _, _ in cells})
    Es = sorted({e for _, e, _ in cells if e > 1})
    rows = []
    for n in Ns:
        dense = cells.get((n, 1, "dense"))
        for e in Es:
            got = {t: cells[(n, e, t)] for t in ROUTERS if (n, e, t) in cells}
            if not got:
                continue
            best = min(got, key=got.get)
            rows.append({"N": si(n), "E": e, "dense": dense, **got,
                         "best": best + ("" if len(got) == len(ROUTERS) else f" (of {len(got)})"),
                         "gain over dense": None if dense is None else dense - got[best]})
    fmt = {c: ".4f" for c in ("dense", *ROUTERS, "gain over dense")}
    return Table(rows, ["N", "E", "dense", *ROUTERS, "best", "gain over dense"], fmt, title)


V1_CAVEAT = ("These are the v1 cpu grid's records (data/runs/cpu-v1/): trained before the fixes, with the expert "
             "and q/k/v initialisation that counted fan-in over E * D (experts sqrt(E) too small at init), "
             "2-layer models whose only routed FFN is the last one, and 19-85 tokens per parameter. "
             "They are shown until the v2 grid (data/runs/cpu/) can be fitted for every router; do not read "
             "them as a test of the paper.")


@dataclass(frozen=True)
class OurRuns:
    """Our own cpu grid's records: v2 (``data/runs/cpu``) once Eq. 1 can be fitted to it for every router,
    else v1 (``cpu-v1``), with v2's finished records so far in ``v2_so_far``."""

    grid: str  # "cpu" (v2) or "cpu-v1"
    folder: Path
    records: tuple  # every valid record of the folder (finished and failed)
    problems: tuple  # one line per invalid file (never used)
    caveat: str  # "" for v2; V1_CAVEAT (and v2's progress) for the v1 fallback
    sweep: SweepRuns  # read_sweep of that folder: the fit-ready tables, or why not
    v2_so_far: tuple = ()  # with the v1 fallback: v2's finished clean records (shown as measured, not fitted)

    @property
    def finished(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "finished" and not r.get("dirty_tree")]


def our_runs(root: Path | None = None) -> OurRuns:
    """The records the book shows as ours: the v2 ``cpu`` grid's once ``read_sweep`` can fit Eq. 1 to it
    for every router (two sizes, three expert counts, eight (N, E) cells each), otherwise the frozen v1
    records of ``cpu-v1`` with ``V1_CAVEAT`` and v2's finished records so far in ``v2_so_far``.

    Why all three routers and not the first run: the v2 grid trains over several sittings, and a book
    whose fits and ranking switch router by router, or to a single rung that no law can be fitted to,
    would compare a v2 router with v1 ones. ``root`` is the ``data/runs`` folder (default: the repository's)."""
    if root is not None and not isinstance(root, (str, Path)):
        raise ValidationError("root", f"must be a folder path, got {type(root).__name__}", "pass data/runs or None")
    base = Path(root) if root is not None else repo_root() / "data" / "runs"
    if root is not None and not base.is_dir():
        raise ValidationError("root", f"{base} is not a folder", "pass the data/runs folder")
    v2_dir = base / "cpu"
    v2_recs, v2_problems = sweep.read_records(v2_dir) if v2_dir.is_dir() else ([], [])
    v2_done = list(_clean_finished(v2_recs, "records").values())
    if v2_done:
        v2_sweep = read_sweep(("cpu",), root=base)
        if set(v2_sweep.tables) == set(SWEEP_TECHNIQUE.values()):
            return OurRuns("cpu", v2_dir, tuple(v2_recs), tuple(v2_problems), "", v2_sweep)
    n_v2 = len(sweep.get_grid("cpu").runs())
    caveat = V1_CAVEAT + (f" The v2 grid has {len(v2_done)} of its {n_v2} runs so far, shown as measured"
                          " beside these." if v2_done else "")
    v1_dir = base / "cpu-v1"
    if v1_dir.is_dir():
        recs, problems = sweep.read_records(v1_dir)
        return OurRuns("cpu-v1", v1_dir, tuple(recs), tuple(problems), caveat,
                       read_sweep(("cpu-v1",), root=base), tuple(v2_done))
    return OurRuns("cpu-v1", v1_dir, (), (), caveat + " (none found either)", read_sweep(("cpu-v1",), root=base),
                   tuple(v2_done))


# ------------------------------------------------------------------ the ablations behind the v2 design
ABLATION_MEASURES = {"loss": "loss", "gain": "loss - dense"}  # dense: the dense run of the same size


def _clean_finished(records: Iterable[Mapping], what: str) -> dict[str, Mapping]:
    """run_id -> record, of the finished records not made from a dirty tree (``what`` names the argument)."""
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise ValidationError(what, f"must be a list of run records, got {type(records).__name__}",
                              "use sweep.read_records(folder)[0]")
    out = {}
    for r in records:
        if not isinstance(r, Mapping):
            raise ValidationError(what, f"every record must be a dict, got {type(r).__name__}",
                                  "use sweep.read_records(folder)[0]")
        if r.get("status") == "finished" and not r.get("dirty_tree") and isinstance(r.get("run_id"), str):
            out[r["run_id"]] = r
    return out


def _final_losses(records: Iterable[Mapping], what: str) -> dict[str, float]:
    """run_id -> final validation loss of ``_clean_finished(records, what)``."""
    return {k: float(r["final_val_loss"]) for k, r in _clean_finished(records, what).items()}


def _effect_row(comparison: str, case: str, measure: str, base: str, variant: str,
                base_value: float | None, variant_value: float | None) -> dict:
    done = base_value is not None and variant_value is not None
    return {"comparison": comparison, "case": f"{case}: {ABLATION_MEASURES[measure]}", "measure": measure,
            "baseline": base, "variant": variant, "baseline value": base_value, "variant value": variant_value,
            "effect (nats)": variant_value - base_value if done else None, "status": "done" if done else "pending"}


def ablation_rows(records: Iterable[Mapping], v1_records: Iterable[Mapping] = ()) -> list[dict]:
    """One row per paired comparison of the ``ablate-*`` grids (``sweep.ABLATIONS``), effect = variant -
    baseline in nats (negative: the variant's loss is lower, or its gain over dense larger):

    * init: fixed initialisation (``records``) vs the v1 record of the same run id (``v1_records``),
      on the loss and on the gain over the dense run of the same initialisation;
    * depth: the gain over dense of two routed FFNs (110k-L4) vs one (100k, the last FFN), per router and E;
      also the HASH - S-BASE gap at each depth (variant 4 layers, baseline 2 layers);
    * gate: each S-BASE gate vs the default softmax gate (110k-L4, E = 64);
    * rlr: each RL-R setting vs the default, per size and E, on the gain over dense.

    A row whose runs are not all recorded has status 'pending' and no effect.
    """
    new, old = _final_losses(records, "records"), _final_losses(v1_records, "v1_records")
    rid = sweep.run_id

    def gain(losses: dict, size: str, router: str, E: int, **over) -> float | None:
        a, d = losses.get(rid(size, router, E, **over)), losses.get(rid(size, "dense", 1))
        return None if a is None or d is None else a - d

    rows = [_effect_row("init", "dense 100k", "loss", "v1 init", "fixed init",
                        old.get(rid("100k", "dense", 1)), new.get(rid("100k", "dense", 1)))]
    for router in ("sbase", "hash"):
        r_id, lab = rid("100k", router, 64), f"{ROUTER_LABELS[router]} E=64 100k"
        rows.append(_effect_row("init", lab, "loss", "v1 init", "fixed init", old.get(r_id), new.get(r_id)))
        rows.append(_effect_row("init", lab, "gain", "v1 init", "fixed init", gain(old, "100k", router, 64),
                                gain(new, "100k", router, 64)))
    for router in ("sbase", "hash"):
        for E in (16, 64):
            rows.append(_effect_row("depth", f"{ROUTER_LABELS[router]} E={E}", "gain", "1 routed (100k)",
                                    "2 routed (110k-L4)", gain(new, "100k", router, E),
                                    gain(new, "110k-L4", router, E)))
    for E in (16, 64):
        gaps = []
        for size in ("100k", "110k-L4"):
            h, s = new.get(rid(size, "hash", E)), new.get(rid(size, "sbase", E))
            gaps.append(None if h is None or s is None else h - s)
        row = _effect_row("depth", f"HASH - S-BASE E={E}", "loss", "1 routed (100k)",
                          "2 routed (110k-L4)", *gaps)
        rows.append(row)
    base_gate = new.get(rid("110k-L4", "sbase", 64))
    for g in sweep.SBASE_GATE_ABLATION[1:]:
        rows.append(_effect_row("gate", "S-BASE E=64 110k-L4", "loss", "softmax", g, base_gate,
                                new.get(rid("110k-L4", "sbase", 64, router_overrides=(("sbase_gate", g),)))))
    for over in sweep.RLR_SETTINGS[1:]:
        name = sweep.override_suffix(over).lstrip("-")
        for size in ("110k-L4", "200k-L4"):
            for E in (16, 64):
                rows.append(_effect_row("rlr", f"RL-R E={E} {size}", "gain", "default", name,
                                        gain(new, size, "rlr", E), gain(new, size, "rlr", E, router_overrides=over)))
    return rows


def ablation_table(records: Iterable[Mapping], v1_records: Iterable[Mapping] = (), title: str = "") -> Table:
    """``ablation_rows`` as a Table (losses and effects in nats, 4 decimals; a pending row's effect is blank)."""
    cols = ["comparison", "case", "baseline", "variant", "baseline value", "variant value", "effect (nats)"]
    return Table(ablation_rows(records, v1_records), cols, {c: ".4f" for c in cols[4:]}, title)


def rlr_choice(records: Iterable[Mapping]) -> tuple[str | None, list[dict]]:
    """The RL-R setting the v2 grid uses, by the rule fixed before the runs (data/runs/ablations/README.md):
    a run passes when it ends with training drops under 5 % (last logged window) and a final loss below
    dense of its size; among the settings of ``sweep.RLR_SETTINGS`` whose four runs (110k-L4 and 200k-L4,
    E = 16 and 64) all pass, the lowest mean loss. If no setting passes in all four, the fallback: the
    most passing runs, then the lowest mean loss (its row says ``qualifies`` False, so the book can say
    the bar was not met). Returns (setting name, or None while any run is missing; a row per setting)."""
    recs = _clean_finished(records, "records")
    rows = []
    for over in sweep.RLR_SETTINGS:
        name = sweep.override_suffix(over).lstrip("-") or "default"
        losses, passing, missing = [], 0, 0
        for size in ("110k-L4", "200k-L4"):
            dense = recs.get(sweep.run_id(size, "dense", 1))
            for E in (16, 64):
                r = recs.get(sweep.run_id(size, "rlr", E, router_overrides=over))
                if r is None or dense is None:
                    missing += 1
                    continue
                drop = ((r.get("train_curve") or [{}])[-1]).get("dropped_frac")
                losses.append(r["final_val_loss"])
                passing += drop is not None and drop < 0.05 and r["final_val_loss"] < dense["final_val_loss"]
        rows.append({"setting": name, "runs": len(losses), "missing": missing, "passing": passing,
                     "qualifies": passing == 4,
                     "mean loss": float(np.mean(losses)) if losses else None})
    if any(r["missing"] for r in rows):
        return None, rows
    return min(rows, key=lambda r: (-r["passing"], r["mean loss"]))["setting"], rows


# ------------------------------------------------------------------ seed spreads beside the comparisons
def seed_groups(records: Iterable[Mapping]) -> dict[tuple, dict[int, float]]:
    """(size, router, E, K, R, overrides) -> {seed: final loss} over the clean finished records: the runs
    that differ only in their seed (initialisation, data order, RL-R's sampling)."""
    groups: dict[tuple, dict[int, float]] = {}
    for r in _clean_finished(records, "records").values():
        s = r.get("spec") or {}
        try:
            key = (str(s["size"]), str(s["router"]), int(s["experts"]), int(s.get("top_k", 1)),
                   float(s.get("routing_frequency", 0.5)), sweep.override_suffix(s.get("router_overrides") or {}))
            groups.setdefault(key, {})[int(s.get("seed", 0))] = float(r["final_val_loss"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError("records", f"record {r.get('run_id')!r} has no usable spec ({e})",
                                  "use sweep.read_records(folder)[0]") from None
    return groups


def seed_spread_rows(records: Iterable[Mapping]) -> list[dict]:
    """A row per run trained with >= 2 seeds: its losses, their mean and range (max - min, nats) and the
    sample standard deviation (nats). The range is what a comparison of two single-seed runs can move by."""
    rows = []
    order = {s: i for i, s in enumerate(SIZES)}
    routers = {r: i for i, r in enumerate(ROUTER_LABELS)}  # dense first
    for (size, router, E, K, R, over), by_seed in sorted(seed_groups(records).items(), key=lambda kv: (
            order.get(kv[0][0], len(order)), kv[0][0], routers.get(kv[0][1], len(routers)), *kv[0][1:])):
        if len(by_seed) < 2:
            continue
        v = np.array([by_seed[k] for k in sorted(by_seed)])
        rows.append({"size": size, "router": ROUTER_LABELS.get(router, router), "E": E, "K": K, "R": R,
                     "overrides": over.lstrip("-"), "seeds": len(v),
                     "losses": " / ".join(f"{x:.4f}" for x in v), "mean": float(v.mean()),
                     "range": float(v.max() - v.min()), "std": float(v.std(ddof=1))})
    return rows


def seed_spread_table(records: Iterable[Mapping], title: str = "") -> Table:
    """``seed_spread_rows`` as a Table (nats, 4 decimals)."""
    cols = ["size", "router", "E", "seeds", "losses", "mean", "range", "std"]
    return Table(seed_spread_rows(records), cols, {c: ".4f" for c in ("mean", "range", "std")}, title)


def seed_noise_vs_fit(records: Iterable[Mapping], tables: Mapping[str, tuple],
                      fits: Mapping[str, laws.FitResult]) -> list[dict]:
    """Per fitted router: the law's residual RMS beside the seed noise, both in nats, so a reader sees
    whether the misfit is larger than what re-running with another seed moves (ratio near 1 or below:
    the law fits to within seed noise; well above: the law's form misses something).

    ``tables``: router -> (N, E, loss) of the fit (``SweepRuns.tables``); residual = loss - Eq. 1's
    prediction. Seed std: pooled over every run with >= 2 seeds of that router or of dense
    (``pooled_seed_std``); None, and no ratio, while no run has two seeds.
    """
    if not isinstance(fits, Mapping) or not isinstance(tables, Mapping):
        raise ValidationError("fits" if not isinstance(fits, Mapping) else "tables",
                              "must map router -> fit (or -> (N, E, loss))",
                              "pass {router: laws.fit_routed_law(...)} and SweepRuns.tables")
    records = list(records)
    out = []
    for router, fit in fits.items():
        if not isinstance(fit, laws.FitResult):
            raise ValidationError(f"fits[{router!r}]", f"must be a laws.FitResult, got {type(fit).__name__}",
                                  "pass the result of laws.fit_routed_law")
        if router not in tables:
            raise ValidationError("tables", f"has no runs of {router!r}, which fits has", "pass SweepRuns.tables")
        N, E, loss = laws.validate_runs(*tables[router])
        resid = loss - np.asarray(laws.predict_loss(N, E, fit.law), dtype=float)
        kind = next((k for k, v in ROUTER_LABELS.items() if v == router), router)
        seed_std, n_seeded = pooled_seed_std(records, kinds=(kind, "dense"))
        rms = float(np.sqrt(np.mean(resid ** 2)))
        out.append({"router": router, "runs fitted": int(N.size), "residual rms (nats)": rms,
                    "runs with 2+ seeds": n_seeded, "seed std (nats)": seed_std,
                    "residual / seed std": rms / seed_std if seed_std else None})
    return out


def pooled_seed_std(records: Iterable[Mapping], kinds: Iterable[str] | None = None) -> tuple[float | None, int]:
    """(pooled sample std of the final loss over every run trained with >= 2 seeds, in nats; how many such
    runs). The pooled variance weights each run's sample variance by its degrees of freedom (seeds - 1),
    the textbook estimator of one shared noise level; for seed pairs alone it is the plain mean of their
    variances. (None, 0) while no run has two seeds.
    ``kinds`` (router kinds such as ``("sbase", "dense")``) keeps only those runs; None keeps all."""
    if kinds is not None:
        if not isinstance(kinds, str):
            kinds = tuple(kinds)
        if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
            raise ValidationError("kinds", f"must be a sequence of router kinds, got {kinds!r}",
                                  'pass e.g. ("sbase", "dense"), or None for every run')
    groups = [np.array(list(v.values()), dtype=float) for key, v in seed_groups(records).items()
              if len(v) >= 2 and (kinds is None or key[1] in kinds)]
    if not groups:
        return None, 0
    dof = sum(g.size - 1 for g in groups)
    pooled_var = sum(float(np.var(g, ddof=1)) * (g.size - 1) for g in groups) / dof
    return float(np.sqrt(pooled_var)), len(groups)


def measured_ranking_rows(records: Iterable[Mapping], min_z: float = 2.0) -> list[dict]:
    """The routers ranked by measured final loss at every (size, E > 1) of the main grid (top-1, R = 0.5)
    where two or more routers finished, with the seed spread beside it: is the order more than noise?

    A router's loss is the mean over its seeds. For the closest pair of neighbours in the order, the gap
    (nats) is divided by its standard error under the pooled seed std s (``pooled_seed_std``):
    s * sqrt(1/n_a + 1/n_b) for n_a and n_b seeds; the order counts as resolved where every neighbouring
    gap is at least ``min_z`` standard errors. With no run trained twice, z and resolved are None (a
    single-seed ranking cannot say). Router settings of the grid (``-bal0.1``) count as the router; two
    settings of one router in the same cell are refused (pass one grid's records)."""
    if not (isinstance(min_z, (int, float)) and not isinstance(min_z, bool) and math.isfinite(min_z) and min_z > 0):
        raise ValidationError("min_z", f"must be a positive number of standard errors, got {min_z!r}", "use 2")
    groups = seed_groups(records)
    s, _ = pooled_seed_std(records)
    cells: dict[tuple[str, int], dict[str, dict[int, float]]] = {}
    for (size, router, E, K, R, over), by_seed in groups.items():
        if router == "dense" or K != 1 or not math.isclose(R, 0.5):
            continue
        label = ROUTER_LABELS.get(router, router)
        cell = cells.setdefault((size, E), {})
        if label in cell:
            raise ValidationError("records", f"{label} at {size} E={E} has two router settings",
                                  "pass the records of one grid (sweep.read_records(folder)[0])")
        cell[label] = by_seed
    order = {n: i for i, n in enumerate(SIZES)}
    rows = []
    for (size, E), by_router in sorted(cells.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])):
        if len(by_router) < 2:
            continue
        means = sorted((float(np.mean(list(v.values()))), r, len(v)) for r, v in by_router.items())
        gaps = [(b[0] - a[0], a, b) for a, b in zip(means, means[1:])]
        gap, a, b = min(gaps, key=lambda g: g[0])
        z = None if s is None or s == 0 else gap / (s * math.sqrt(1 / a[2] + 1 / b[2]))
        rows.append({"size": size, "E": E, "ranking (best first)": " > ".join(r for _, r, _ in means),
                     **{f"L {r}": m for m, r, _ in sorted(means, key=lambda t: ROUTERS.index(t[1])
                                                          if t[1] in ROUTERS else len(ROUTERS))},
                     "seeds": " / ".join(f"{r} {n}" for _, r, n in means if n > 1) or "1 each",
                     "closest pair": f"{a[1]} - {b[1]}", "gap (nats)": gap,
                     "gap / std error": z, "resolved": None if z is None else bool(z >= min_z)})
    return rows


def measured_ranking_table(records: Iterable[Mapping], title: str = "") -> Table:
    """``measured_ranking_rows`` as a Table (losses and gaps in nats)."""
    rows = measured_ranking_rows(records)
    cols = ["size", "E", "ranking (best first)", *(f"L {r}" for r in ROUTERS if any(f"L {r}" in x for x in rows)),
            "seeds", "closest pair", "gap (nats)", "gap / std error", "resolved"]
    fmt = {c: ".4f" for c in cols if c.startswith("L ") or c == "gap (nats)"}
    fmt["gap / std error"] = ".1f"
    return Table(rows, cols, fmt, title)


def gain_trend_rows(records: Iterable[Mapping], laws_by_router: Mapping[str, laws.RoutedLaw] | None = None,
                    min_z: float = 2.0) -> list[dict]:
    """Does routing's gain over dense shrink as N grows, as the paper's c > 0 says? A row per (router, E > 1)
    of the main grid (top-1, R = 0.5) measured with dense at two or more sizes: the gain in nats at the
    smallest and largest, and the slope of the log10 gain G = log10 L_dense - log10 L_E against log10 N
    (least squares over the sizes), beside the slope Eq. 1 predicts with ``laws_by_router`` (default: the
    paper's Table 3): dG / dlog10 N = -c (log10 Ê(E) - log10 Ê(1)), which is free of a and d and so
    comparable across our much smaller N.

    Losses are seed means. ``z`` is the slope over its standard error under the pooled seed std
    (``pooled_seed_std``; a loss's log10 std taken as s / (L ln 10)); None while no run has two seeds.
    ``shrinks`` is whether the measured slope is negative; ``as paper`` whether its sign is the paper's;
    ``resolved`` whether |z| >= ``min_z`` (the sign is more than seed noise; None without seeds).
    This is a check of one coefficient's sign and size before the grid can be fitted, not a fit."""
    if not (isinstance(min_z, (int, float)) and not isinstance(min_z, bool) and math.isfinite(min_z) and min_z > 0):
        raise ValidationError("min_z", f"must be a positive number of standard errors, got {min_z!r}", "use 2")
    law_map = paper.table3() if laws_by_router is None else laws.check_laws(laws_by_router)
    recs = list(_clean_finished(records, "records").values())
    sizes_N: dict[str, float] = {}
    for r in recs:
        try:
            sizes_N[str(r["spec"]["size"])] = float(r["accounting"]["N"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError("records", f"record {r.get('run_id')!r} has no usable spec or accounting ({e})",
                                  "use sweep.read_records(folder)[0]") from None
    groups = {k: v for k, v in seed_groups(recs).items() if k[3] == 1 and math.isclose(k[4], 0.5)}
    s, _ = pooled_seed_std(recs)
    dense = {k[0]: v for k, v in groups.items() if k[1] == "dense"}
    rows = []
    for router in SWEEP_TECHNIQUE:
        label = ROUTER_LABELS[router]
        Es = sorted({k[2] for k in groups if k[1] == router})
        for E in Es:
            cells = [(size, dense[size], by_seed) for (size, rt, e, *_), by_seed in groups.items()
                     if rt == router and e == E and size in dense]
            if len({c[0] for c in cells}) != len(cells):
                raise ValidationError("records", f"{label} E={E} has two router settings at one size",
                                      "pass the records of one grid (sweep.read_records(folder)[0])")
            if len(cells) < 2:
                continue
            cells.sort(key=lambda c: sizes_N[c[0]])
            x = np.log10([sizes_N[c[0]] for c in cells])
            Ld = np.array([np.mean(list(c[1].values())) for c in cells])
            Le = np.array([np.mean(list(c[2].values())) for c in cells])
            G = np.log10(Ld) - np.log10(Le)
            dx = x - x.mean()
            slope = float(dx @ (G - G.mean()) / (dx @ dx))
            z = None
            if s:
                var_G = (s / math.log(10)) ** 2 * np.array(
                    [1 / (Ld[i] ** 2 * len(c[1])) + 1 / (Le[i] ** 2 * len(c[2])) for i, c in enumerate(cells)])
                z = slope / math.sqrt(float((dx ** 2) @ var_G) / float(dx @ dx) ** 2)
            law = law_map.get(label)
            pred = None if law is None else -law.c * float(
                np.log10(laws.saturating_experts(float(E), law.e_start, law.e_max))
                - np.log10(laws.saturating_experts(1.0, law.e_start, law.e_max)))
            rows.append({"router": label, "E": E, "sizes": " -> ".join(c[0] for c in cells),
                         "gain smallest (nats)": float(Ld[0] - Le[0]), "gain largest (nats)": float(Ld[-1] - Le[-1]),
                         "slope dG/dlog10 N": slope, "paper slope": pred, "z": z,
                         "resolved": None if z is None else bool(abs(z) >= min_z), "shrinks": slope < 0,
                         "as paper": None if pred is None else bool((slope < 0) == (pred < 0))})
    return rows


def gain_trend_table(records: Iterable[Mapping], title: str = "") -> Table:
    """``gain_trend_rows`` as a Table (gains in nats, slopes in log10 L per decade of N)."""
    rows = gain_trend_rows(records)
    cols = ["router", "E", "sizes", "gain smallest (nats)", "gain largest (nats)", "slope dG/dlog10 N",
            "paper slope", "z", "resolved", "shrinks", "as paper"]
    fmt = {"gain smallest (nats)": ".4f", "gain largest (nats)": ".4f", "slope dG/dlog10 N": ".4f",
           "paper slope": ".4f", "z": ".1f"}
    return Table(rows, cols, fmt, title)


def _router_pair(first: str, second: str) -> tuple[str, str]:
    """The router kinds of two distinct routed techniques named by label ("HASH", "S-BASE"), validated."""
    kinds = {v: k for k, v in SWEEP_TECHNIQUE.items()}
    for name, r in (("first", first), ("second", second)):
        if r not in kinds:
            raise ValidationError(name, f"must be a routed technique, got {r!r}", f"use one of {list(ROUTERS)}")
    if first == second:
        raise ValidationError("second", f"must differ from first ({first!r})", "compare two routers")
    return kinds[first], kinds[second]


def _main_curves(records: Iterable[Mapping]) -> dict[tuple[str, str, int], dict[int, dict[int, tuple[int, float]]]]:
    """(size, router kind, E) -> {seed: {step: (tokens, validation loss)}} for the main-grid runs (top-1,
    R = 0.5, the grid's own router setting) among the clean finished records."""
    out: dict[tuple[str, str, int], dict[int, dict[int, tuple[int, float]]]] = {}
    for r in _clean_finished(records, "records").values():
        s = r.get("spec") or {}
        try:
            if int(s.get("top_k", 1)) != 1 or not math.isclose(float(s.get("routing_frequency", 0.5)), 0.5):
                continue
            key = (str(s["size"]), str(s["router"]), int(s["experts"]))
            curve = {int(p["step"]): (int(p["tokens"]), float(p["val_loss"])) for p in r["curve"]}
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError("records", f"record {r.get('run_id')!r} has no usable spec or curve ({e})",
                                  "use sweep.read_records(folder)[0]") from None
        seeds = out.setdefault(key, {})
        seed = int(s.get("seed", 0))
        if seed in seeds:
            raise ValidationError("records", f"{key[1]} at {key[0]} E={key[2]} seed {seed} has two router settings",
                                  "pass the records of one grid (sweep.read_records(folder)[0])")
        seeds[seed] = curve
    return out


def pair_gap_rows(records: Iterable[Mapping], first: str = "HASH", second: str = "S-BASE") -> list[dict]:
    """How the loss gap between two routers moves during training: a row per (size, E) where both
    finished in the main grid (top-1, R = 0.5) and per evaluation step every one of their seeds logged,
    with ``gap (nats)`` = L_first - L_second (seed means; negative: ``first`` is ahead).

    Why: a final loss is one point of a curve. A router that leads early (HASH's fixed token-id split
    needs no router to learn) and loses ground later could be overtaken with more tokens, the paper's
    regime (its runs see 100-8,700 tokens per parameter, v2's 38-150); the direction of the gap late in
    training hints which way a longer budget would move the final ranking (``budget_rows`` measures it)."""
    kind_first, kind_second = _router_pair(first, second)
    curves = _main_curves(records)
    order = {n: i for i, n in enumerate(SIZES)}
    rows = []
    for (size, kind, E), a_seeds in sorted(curves.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])):
        if kind != kind_first or (size, kind_second, E) not in curves:
            continue
        b_seeds = curves[(size, kind_second, E)]
        every = list(a_seeds.values()) + list(b_seeds.values())
        steps = sorted(set.intersection(*(set(c) for c in every)))
        for step in steps:
            la = float(np.mean([c[step][1] for c in a_seeds.values()]))
            lb = float(np.mean([c[step][1] for c in b_seeds.values()]))
            rows.append({"size": size, "E": E, "step": step, "tokens": every[0][step][0],
                         f"L {first}": la, f"L {second}": lb, "gap (nats)": la - lb,
                         "seeds": f"{first} {len(a_seeds)} / {second} {len(b_seeds)}"})
    return rows


def pair_gap_summary_rows(records: Iterable[Mapping], first: str = "HASH", second: str = "S-BASE") -> list[dict]:
    """``pair_gap_rows`` read per (size, E): the gap at the first evaluation, at the one nearest half the
    final tokens and at the end, its change over the second half (end - half; positive: ``first``
    losing ground), who leads at the end, and the tokens of the last evaluation at which the leader
    changed (None: one leader throughout)."""
    rows = pair_gap_rows(records, first, second)
    out = []
    for (size, E) in dict.fromkeys((r["size"], r["E"]) for r in rows):
        cur = [r for r in rows if r["size"] == size and r["E"] == E]
        end = cur[-1]
        half = min(cur, key=lambda r: abs(r["tokens"] - end["tokens"] / 2))
        signs = [r["gap (nats)"] < 0 for r in cur]
        changes = [cur[i]["tokens"] for i in range(1, len(cur)) if signs[i] != signs[i - 1]]
        out.append({"size": size, "E": E, "seeds": end["seeds"], "gap first eval": cur[0]["gap (nats)"],
                    "gap at half": half["gap (nats)"], "gap at end": end["gap (nats)"],
                    "change over 2nd half": end["gap (nats)"] - half["gap (nats)"],
                    "ahead at end": first if end["gap (nats)"] < 0 else second,
                    "last lead change (tokens)": changes[-1] if changes else None})
    return out


def pair_gap_table(records: Iterable[Mapping], first: str = "HASH", second: str = "S-BASE", title: str = "") -> Table:
    """``pair_gap_summary_rows`` as a Table (gaps in nats, L_first - L_second)."""
    rows = pair_gap_summary_rows(records, first, second)
    cols = ["size", "E", "seeds", "gap first eval", "gap at half", "gap at end", "change over 2nd half",
            "ahead at end", "last lead change (tokens)"]
    fmt = {c: "+.4f" for c in cols if c.startswith("gap") or c.startswith("change")}
    fmt["last lead change (tokens)"] = ",d"
    return Table(rows, cols, fmt, title)


# train-config keys two runs of one budget comparison may differ in: the budget itself, the seed (seeds are
# averaged) and how often a run was checkpointed (which does not change what it trains)
_BUDGET_KEYS = ("tokens", "total_steps", "seed", "checkpoint_every")


def budget_rows(short_records: Iterable[Mapping], long_records: Iterable[Mapping]) -> list[dict]:
    """The same runs trained for two budgets: a row per main-grid (size, router, E) finished in both record
    sets (top-1, R = 0.5, the same router setting; seed means), with the final loss at each budget and the
    gain over the dense run of the same size and budget, in nats.

    Why: HASH's lead in our grid could be a short-budget effect (chapter 5). Runs that differ only in
    their token budget, each with its own full learning-rate schedule, answer that directly, where the
    middle of a longer run's curve cannot (its learning rate has not decayed yet). A pair whose model or
    training configuration differs in anything but the tokens is refused."""
    def by_key(records, what):
        out: dict[tuple, list[Mapping]] = {}
        for r in _clean_finished(records, what).values():
            s = r.get("spec") or {}
            try:
                if int(s.get("top_k", 1)) != 1 or not math.isclose(float(s.get("routing_frequency", 0.5)), 0.5):
                    continue
                key = (str(s["size"]), str(s["router"]), int(s["experts"]),
                       sweep.override_suffix(s.get("router_overrides") or {}))
                float(r["train"]["tokens"]), dict(r["model"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValidationError(what, f"record {r.get('run_id')!r} has no usable spec, train or model ({e})",
                                      "use sweep.read_records(folder)[0]") from None
            out.setdefault(key, []).append(r)
        return out

    short, long_ = by_key(short_records, "short_records"), by_key(long_records, "long_records")
    order = {n: i for i, n in enumerate(SIZES)}
    kinds = {k: i for i, k in enumerate(ROUTER_LABELS)}  # dense first, then the routers in the book's order
    common = sorted(set(short) & set(long_), key=lambda k: (order.get(k[0], len(order)), k[0],
                                                             kinds.get(k[1], len(kinds)), k[1:]))

    def mean_loss(rs):
        return float(np.mean([float(r["final_val_loss"]) for r in rs]))

    rows = []
    for key in common:
        size, kind, E, over = key
        a, b = short[key][0], long_[key][0]

        def design(r):
            return r["model"], {k: v for k, v in r["train"].items() if k not in _BUDGET_KEYS}
        for r in short[key] + long_[key]:
            if design(r) != design(a):
                raise ValidationError("long_records", f"{r.get('run_id')} differs from {a.get('run_id')} in more "
                                      "than the tokens and seed (model or train config)", "compare runs of one design")
        tokens_a = {int(r["train"]["tokens"]) for r in short[key]}
        tokens_b = {int(r["train"]["tokens"]) for r in long_[key]}
        if len(tokens_a) > 1 or len(tokens_b) > 1:
            raise ValidationError("long_records", f"{size} {kind} E={E} has seeds trained for different budgets",
                                  "pass one budget per record set")
        t_a, t_b = tokens_a.pop(), tokens_b.pop()
        if t_b <= t_a:
            raise ValidationError("long_records", f"{b.get('run_id')} has {t_b} tokens, not more than the short "
                                  f"run's {t_a}", "pass the shorter budget first")
        dense = (size, "dense", 1, "")
        la, lb = mean_loss(short[key]), mean_loss(long_[key])
        ga = mean_loss(short[dense]) - la if dense in short and kind != "dense" else None
        gb = mean_loss(long_[dense]) - lb if dense in long_ and kind != "dense" else None
        rows.append({"size": size, "router": ROUTER_LABELS.get(kind, kind) + over, "E": E,
                     "tokens short": t_a, "tokens long": t_b,
                     "seeds": f"{len(short[key])} / {len(long_[key])}", "L short": la, "L long": lb,
                     "gain short": ga, "gain long": gb,
                     "gain change": None if ga is None or gb is None else gb - ga})
    return rows


def budget_table(short_records: Iterable[Mapping], long_records: Iterable[Mapping], title: str = "") -> Table:
    """``budget_rows`` as a Table (losses and gains over dense in nats)."""
    rows = budget_rows(short_records, long_records)
    cols = ["size", "router", "E", "tokens short", "tokens long", "seeds", "L short", "L long", "gain short",
            "gain long", "gain change"]
    fmt = {c: ".4f" for c in cols[6:]}
    fmt.update({"tokens short": "si", "tokens long": "si", "gain change": "+.4f"})
    return Table(rows, cols, fmt, title)


def budget_pair_rows(short_records: Iterable[Mapping], long_records: Iterable[Mapping], first: str = "HASH",
                     second: str = "S-BASE") -> list[dict]:
    """From ``budget_rows``: the gap L_first - L_second (nats; negative: ``first`` ahead) at each budget per
    (size, E) where both routers ran at both, its change with the longer budget, and that change over its
    standard error under the pooled seed std of ``long_records`` (``pooled_seed_std``; None without seeds)."""
    _router_pair(first, second)
    long_list = list(long_records)
    rows = budget_rows(short_records, long_list)
    s, _ = pooled_seed_std(long_list)
    cell = {(r["size"], r["router"], r["E"]): r for r in rows}
    out = []
    for (size, router, E), ra in cell.items():
        rb = cell.get((size, second, E))
        if router != first or rb is None:
            continue
        n = [int(x) for r in (ra, rb) for x in r["seeds"].split(" / ")]
        change = (ra["L long"] - rb["L long"]) - (ra["L short"] - rb["L short"])
        out.append({"size": size, "E": E, "tokens": f"{si(ra['tokens short'])} -> {si(ra['tokens long'])}",
                    "gap short": ra["L short"] - rb["L short"], "gap long": ra["L long"] - rb["L long"],
                    "change": change,
                    "change / std error": None if not s else change / (s * math.sqrt(sum(1 / k for k in n)))})
    return out


def budget_pair_table(short_records: Iterable[Mapping], long_records: Iterable[Mapping], first: str = "HASH",
                      second: str = "S-BASE", title: str = "") -> Table:
    """``budget_pair_rows`` as a Table (gaps L_first - L_second in nats)."""
    rows = budget_pair_rows(short_records, long_records, first, second)
    cols = ["size", "E", "tokens", "gap short", "gap long", "change", "change / std error"]
    return Table(rows, cols, {"gap short": "+.4f", "gap long": "+.4f", "change": "+.4f",
                              "change / std error": "+.1f"}, title)
