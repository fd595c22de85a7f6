"""routing_laws.run_tables: the sweep reader on synthetic runs.csv files, and the measured-grid table
against a direct lookup (the paper's raw runs are exercised in test_paper.py and the chapters)."""
import csv
import shutil

import numpy as np
import pytest

from routing_laws import io_utils, law_tables, laws, run_tables, tables
from routing_laws.errors import ValidationError

LAW = laws.RoutedLaw(-0.082, -0.108, 0.009, 1.104, 1.847, 314.478)


def _write_runs(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in ("F", "B") if any(c in r for r in rows)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run_id", "status", "technique", "size", "N", "E", "K", "R", *extra, "loss"])
        w.writeheader()
        w.writerows(rows)


def test_read_sweep_fits_a_synthetic_grid(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for n in (1e5, 2e5, 4e5, 8e5):
        rows.append({"run_id": f"d{n}", "status": "finished", "technique": "dense", "size": "x", "N": n, "E": 1,
                     "K": 1, "R": 0.5, "loss": float(laws.predict_loss(n, 1, LAW)) * (1 + 1e-4 * rng.normal())})
        for tech in ("sbase", "hash"):
            for e in (4, 16, 64, 256):
                rows.append({"run_id": f"{tech}{n}{e}", "status": "finished", "technique": tech, "size": "x", "N": n,
                             "E": e, "K": 1, "R": 0.5,
                             "loss": float(laws.predict_loss(n, e, LAW)) * (1 + 1e-4 * rng.normal())})
    rows.append({"run_id": "bad", "status": "failed", "technique": "rlr", "size": "x", "N": "", "E": 4, "K": 1,
                 "R": 0.5, "loss": ""})
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("smoke", "cpu"), root=tmp_path)
    assert sw.ok and set(sw.tables) == {"S-BASE", "HASH"} and sw.n_failed == 1 and "RL-R" in sw.message
    fits = law_tables.fit_laws(sw.tables, bootstrap=0)
    assert fits["S-BASE"].law.b + fits["S-BASE"].law.c * 6 == pytest.approx(LAW.b + LAW.c * 6, abs=0.01)
    t = law_tables.extrapolation_table(sw.tables)
    assert t.rows[0]["RMSE held-out"] < 0.005


def test_read_sweep_gives_eq2_every_run_of_a_router_variants_included(tmp_path):
    fb = laws.FBLaw(-0.06, -0.05, 0.004, 0.95)
    rng = np.random.default_rng(3)
    rows = []
    for n in (1e5, 2e5, 4e5):
        F = 4.0 * n
        for tech, e, k, R in [("dense", 1, 1, 0.5), ("sbase", 4, 1, 0.5), ("sbase", 16, 1, 0.5), ("sbase", 64, 1, 0.5),
                              ("sbase", 16, 2, 0.5), ("sbase", 16, 1, 1.0)]:
            FF = F * (1.25 if k == 2 else 1.0)
            B = 0.42 * (1 + (e - 1) * R * 0.3)
            loss = float(laws.predict_fb_loss(FF, B, fb)) * (1 + 1e-4 * rng.normal())
            rows.append({"run_id": f"{tech}{n}{e}{k}{R}", "status": "finished", "technique": tech, "size": "x",
                         "N": n, "E": e, "K": k, "R": R, "F": FF, "B": B, "loss": loss})
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert set(sw.fb_tables) == {"S-BASE"}  # no HASH or RL-R runs: dense alone is not a table
    F, B, L = sw.fb_tables["S-BASE"]
    assert F.size == 18 and np.isin(F, [4.0 * n * 1.25 for n in (1e5, 2e5, 4e5)]).sum() == 3  # K = 2 included
    assert sw.tables["S-BASE"][0].size == 12  # Eq. 1 keeps top-1, R = 0.5
    fit = laws.fit_fb_law(F, B, L)
    assert (fit.law.a, fit.law.b) == (pytest.approx(fb.a, abs=2e-3), pytest.approx(fb.b, abs=2e-2))
    # a runs.csv without F and B (cpu-v1's has them; older ones need not): no Eq. 2 tables, Eq. 1 still fits
    _write_runs(tmp_path / "old" / "runs.csv", [{k: v for k, v in r.items() if k not in ("F", "B")} for r in rows])
    old = run_tables.read_sweep(("old",), root=tmp_path)
    assert old.ok and old.fb_tables == {}


def test_read_sweep_says_what_to_run(tmp_path):
    _write_runs(tmp_path / "cpu" / "runs.csv", [{"run_id": "d", "status": "finished", "technique": "dense",
                                                 "size": "x", "N": 1e5, "E": 1, "K": 1, "R": 0.5, "loss": 3.0}])
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert not sw.ok and "routing-laws sweep --grid cpu" in sw.message and "model size" in sw.message
    assert not run_tables.read_sweep(("gpu",), root=tmp_path).ok


def test_read_sweep_waits_for_eight_cells(tmp_path):
    # 7 (N, E) cells per router fit 6 parameters but leave no room for bootstrap intervals: not ready.
    rows = [{"run_id": f"{t}{n}{e}", "status": "finished", "technique": t, "size": "x", "N": n, "E": e, "K": 1,
             "R": 0.5, "loss": float(laws.predict_loss(n, e, LAW))}
            for t, n, e in [("dense", 1e5, 1), ("sbase", 1e5, 4), ("sbase", 1e5, 16), ("sbase", 1e5, 64),
                            ("sbase", 2e5, 4), ("sbase", 2e5, 64), ("dense", 2e5, 1)]]
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert not sw.ok and "7 distinct (N, E) cells" in sw.message
    rows.append({**rows[2], "run_id": "s2e16", "N": 2e5, "loss": float(laws.predict_loss(2e5, 16, LAW))})
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert sw.ok and set(sw.tables) == {"S-BASE"}
    fits = law_tables.fit_laws(sw.tables, bootstrap=20)
    assert fits["S-BASE"].n_points == 8


def test_measured_grid_table_matches_a_direct_lookup():
    rng = np.random.default_rng(5)
    runs = [{"technique": "dense", "N": n, "E": 1, "loss": 4.0 + rng.random()} for n in (1e5, 2e5)]
    runs += [{"technique": t, "N": n, "E": e, "loss": 3.0 + rng.random()}
             for t in run_tables.ROUTERS for n in (1e5, 2e5) for e in (4, 16) if rng.random() < 0.8]
    runs.append({"technique": "S-BASE", "N": 4e5, "E": 64, "loss": 3.5})  # a size without dense: blank gain
    t = run_tables.measured_grid_table(runs)
    look = {(r["technique"], r["N"], r["E"]): r["loss"] for r in runs}
    assert len(t.rows) == len({(r["N"], r["E"]) for r in runs if r["E"] > 1})
    for row in t.rows:
        n = {tables.si(x): x for x in (1e5, 2e5, 4e5)}[row["N"]]
        got = {r: look[(r, n, row["E"])] for r in run_tables.ROUTERS if (r, n, row["E"]) in look}
        assert {r: row[r] for r in run_tables.ROUTERS if r in row} == got
        best = min(got, key=got.get)
        assert row["best"] == (best if len(got) == 3 else f"{best} (of {len(got)})")
        dense = look.get(("dense", n, 1))
        assert row["gain over dense"] == (None if dense is None else pytest.approx(dense - got[best]))
    assert "S-BASE (of 1)" in t.text() and "gain over dense" in t._repr_html_()
    with pytest.raises(ValidationError, match=r"runs\[0\]"):
        run_tables.measured_grid_table([{"technique": "HASH", "N": 1e5, "E": 4, "loss": float("nan")}])
    with pytest.raises(ValidationError, match="runs"):
        run_tables.measured_grid_table([])


def test_read_sweep_keeps_every_finished_run(tmp_path):
    rows = [{"run_id": "d", "status": "finished", "technique": "dense", "size": "x", "N": 1e5, "E": 1, "K": 1,
             "R": 0.5, "loss": 4.0},
            {"run_id": "h", "status": "finished", "technique": "hash", "size": "x", "N": 1e5, "E": 4, "K": 1,
             "R": 0.5, "loss": 3.9},
            {"run_id": "k2", "status": "finished", "technique": "sbase", "size": "x", "N": 1e5, "E": 4, "K": 2,
             "R": 0.5, "loss": 3.8}]
    rows += [{"run_id": f"s{n}{e}", "status": "finished", "technique": "sbase", "size": "x", "N": n, "E": e, "K": 1,
              "R": 0.5, "loss": float(laws.predict_loss(n, e, LAW))} for n in (1e5, 2e5) for e in (4, 16, 64, 256)]
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    sw = run_tables.read_sweep(("cpu",), root=tmp_path)
    assert sw.ok and set(sw.tables) == {"S-BASE"}
    assert len(sw.runs) == len(rows) - 1  # the K = 2 variant is not a main-grid run
    assert {"technique": "HASH", "N": 1e5, "E": 4, "loss": 3.9} in sw.runs



def test_our_runs_takes_v2_once_every_router_fits_else_v1_with_v2_so_far(tmp_path):
    """Until data/runs/cpu/ can be fitted for all three routers, the book's own runs are cpu-v1's, with the
    caveat and v2's finished runs beside them; then v2's."""
    src = io_utils.repo_root() / "data" / "runs" / "cpu-v1"
    shutil.copytree(src, tmp_path / "cpu-v1")
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "README.md").write_text("v2\n")
    got = run_tables.our_runs(tmp_path)
    assert got.grid == "cpu-v1" and got.caveat == run_tables.V1_CAVEAT and got.v2_so_far == ()
    assert "before the fixes" in got.caveat and len(got.finished) == 33 and got.sweep.ok
    rec = (src / "100k-dense-E1-K1-R0.5-s0.json").read_text()
    (tmp_path / "cpu" / "100k-dense-E1-K1-R0.5-s0.json").write_text(rec.replace('"status": "finished"',
                                                                               '"status": "failed", "reason": "x"'))
    failed = run_tables.our_runs(tmp_path)  # a failed run is not a finished one
    assert failed.grid == "cpu-v1" and failed.v2_so_far == () and failed.caveat == run_tables.V1_CAVEAT
    (tmp_path / "cpu" / "100k-dense-E1-K1-R0.5-s0.json").write_text(rec)
    one = run_tables.our_runs(tmp_path)  # one v2 run: measured beside v1, never fitted
    assert one.grid == "cpu-v1" and len(one.finished) == 33 and one.sweep.ok
    assert [r["run_id"] for r in one.v2_so_far] == ["100k-dense-E1-K1-R0.5-s0"]
    assert one.caveat.startswith(run_tables.V1_CAVEAT) and "1 of its 43 runs" in one.caveat
    # two of three routers fit-ready in v2: still v1 (no ranking of a v2 router against v1 ones)
    rows = [{"run_id": f"{t}{n}{e}", "status": "finished", "technique": t, "size": "x", "N": n, "E": e, "K": 1,
             "R": 0.5, "loss": float(laws.predict_loss(n, e, LAW))}
            for n in (1e5, 4e5) for t, es in (("dense", (1,)), ("sbase", (4, 16, 64)), ("hash", (4, 16, 64)))
            for e in es]
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    assert run_tables.our_runs(tmp_path).grid == "cpu-v1"
    rows += [{**r, "run_id": "r" + r["run_id"], "technique": "rlr"} for r in rows if r["technique"] == "sbase"]
    _write_runs(tmp_path / "cpu" / "runs.csv", rows)
    v2 = run_tables.our_runs(tmp_path)
    assert v2.grid == "cpu" and v2.caveat == "" and v2.v2_so_far == () and set(v2.sweep.tables) == {
        "S-BASE", "RL-R", "HASH"} and len(v2.finished) == 1
    with pytest.raises(ValidationError, match="root"):
        run_tables.our_runs(tmp_path / "nothing-here")


def _spec_rec(router, E, loss, K=1, R=0.5, seed=0, **kw):
    from routing_laws.sweep import run_id
    r = _rec(run_id("110k-L4", router, E, K, R, seed), loss, **kw)
    r["spec"] = {"size": "110k-L4", "router": router, "experts": E, "top_k": K, "routing_frequency": R, "seed": seed}
    r["accounting"] = {"N": 111456}
    return r


def test_main_grid_rows_and_seed_means_in_the_measured_table():
    recs = [_spec_rec("dense", 1, 4.40), _spec_rec("dense", 1, 4.44, seed=1), _spec_rec("hash", 16, 4.20),
            _spec_rec("sbase", 16, 4.1, K=2), _spec_rec("sbase", 16, 4.0, R=1.0),
            _spec_rec("rlr", 16, 9.0, status="failed"), _spec_rec("sbase", 16, 4.25, dirty=True)]
    rows = run_tables.main_grid_rows(recs)
    assert sorted((r["technique"], r["E"], r["loss"]) for r in rows) == [
        ("HASH", 16, 4.20), ("dense", 1, 4.40), ("dense", 1, 4.44)]  # no K = 2, R = 1, failed or dirty run
    assert {r["N"] for r in rows} == {111456.0}
    t = run_tables.measured_grid_table(rows)
    assert len(t.rows) == 1 and t.rows[0]["dense"] == pytest.approx(4.42)  # the mean of the two seeds
    assert t.rows[0]["gain over dense"] == pytest.approx(0.22)
    with pytest.raises(ValidationError, match="records"):
        run_tables.main_grid_rows([{"status": "finished", "run_id": "x", "final_val_loss": 1.0, "spec": {}}])


# ------------------------------------------------------------------ ablations
def _rec(run_id, loss, drop=0.0, status="finished", dirty=False):
    r = {"run_id": run_id, "status": status, "final_val_loss": loss, "train_curve": [{"dropped_frac": drop}]}
    if dirty:
        r["dirty_tree"] = True
    return r


def _by(rows, comparison, case, measure=None):
    got = [r for r in rows if r["comparison"] == comparison and r["case"].split(": ")[0] == case
           and (measure is None or r["measure"] == measure)]
    assert len(got) == 1, got
    return got[0]


def test_ablation_rows_compute_each_effect_and_leave_missing_runs_pending():
    from routing_laws.sweep import run_id
    new = [_rec(run_id("100k", "dense", 1), 4.30), _rec(run_id("100k", "hash", 64), 4.00),
           _rec(run_id("100k", "sbase", 16), 4.20), _rec(run_id("110k-L4", "dense", 1), 4.25),
           _rec(run_id("110k-L4", "sbase", 16), 4.05),
           _rec(run_id("110k-L4", "sbase", 64), 4.10),
           _rec(run_id("110k-L4", "sbase", 64, router_overrides=(("sbase_gate", "sigmoid"),)), 4.04),
           _rec(run_id("110k-L4", "sbase", 64, router_overrides=(("sbase_gate", "st"),)), 4.5, dirty=True)]
    old = [_rec(run_id("100k", "dense", 1), 4.40), _rec(run_id("100k", "hash", 64), 4.20)]
    rows = run_tables.ablation_rows(new, old)
    init_loss = _by(rows, "init", "HASH E=64 100k", "loss")
    assert init_loss["effect (nats)"] == pytest.approx(4.00 - 4.20) and init_loss["status"] == "done"
    init_gain = _by(rows, "init", "HASH E=64 100k", "gain")
    assert init_gain["baseline value"] == pytest.approx(-0.20) and init_gain["variant value"] == pytest.approx(-0.30)
    assert init_gain["effect (nats)"] == pytest.approx(-0.10)
    depth = _by(rows, "depth", "S-BASE E=16")
    assert depth["effect (nats)"] == pytest.approx((4.05 - 4.25) - (4.20 - 4.30))
    assert _by(rows, "depth", "S-BASE E=64")["status"] == "pending"  # no 100k S-BASE E=64 record
    assert _by(rows, "init", "S-BASE E=64 100k", "loss")["effect (nats)"] is None
    gates = [r for r in rows if r["comparison"] == "gate"]
    assert [r["variant"] for r in gates] == ["sigmoid", "st"]
    assert gates[0]["effect (nats)"] == pytest.approx(4.04 - 4.10)
    assert gates[1]["status"] == "pending"  # a dirty record never counts
    assert {r["comparison"] for r in rows} == {"init", "depth", "gate", "rlr"}
    assert len(run_tables.ablation_table(new, old).rows) == len(rows)


def test_ablation_rows_reject_what_is_not_a_list_of_records():
    with pytest.raises(ValidationError, match="records"):
        run_tables.ablation_rows("data/runs/ablations")
    with pytest.raises(ValidationError, match="v1_records"):
        run_tables.ablation_rows([], [3])


def test_rlr_choice_follows_the_rule_fixed_before_the_runs():
    from routing_laws.sweep import RLR_SETTINGS, run_id
    dense = {"110k-L4": 4.3, "200k-L4": 4.1}
    recs = [_rec(run_id(s, "dense", 1), v) for s, v in dense.items()]
    # default: lowest loss but one run drops 8 % at the end -> disqualified; bal0.1: qualifies;
    # bal0.1-lr3: qualifies with a higher mean loss
    plan = {RLR_SETTINGS[0]: (-0.2, 0.08), RLR_SETTINGS[1]: (-0.1, 0.01), RLR_SETTINGS[2]: (-0.05, 0.01)}
    for over, (delta, drop) in plan.items():
        for s in dense:
            for E in (16, 64):
                d = drop if (s, E) == ("200k-L4", 64) or over != RLR_SETTINGS[0] else 0.0
                recs.append(_rec(run_id(s, "rlr", E, router_overrides=over), dense[s] + delta, drop=d))
    setting, rows = run_tables.rlr_choice(recs)
    assert setting == "bal0.1"
    assert [r["qualifies"] for r in rows] == [False, True, True]
    # one run missing: no decision yet
    setting, rows = run_tables.rlr_choice(recs[:-1])
    assert setting is None and rows[2]["missing"] == 1
    # a run above dense disqualifies its setting
    worse = [dict(r, final_val_loss=5.0) if r["run_id"] == run_id("110k-L4", "rlr", 16, router_overrides=RLR_SETTINGS[1])
             else r for r in recs]
    assert run_tables.rlr_choice(worse)[0] == "bal0.1-lr3"
    # nobody passes everywhere: the most passing runs (bal0.1-lr3: 3 of 4 here), then the lowest loss
    none = [dict(r, final_val_loss=5.0) if r["run_id"] in (
        run_id("110k-L4", "rlr", 16, router_overrides=RLR_SETTINGS[1]),
        run_id("110k-L4", "rlr", 64, router_overrides=RLR_SETTINGS[1]),
        run_id("200k-L4", "rlr", 64, router_overrides=RLR_SETTINGS[2])) else r for r in recs]
    setting, rows = run_tables.rlr_choice(none)
    assert [r["passing"] for r in rows] == [3, 2, 3] and not any(r["qualifies"] for r in rows)
    assert setting == "default"  # 3 passing like bal0.1-lr3, lower mean loss


def test_the_v2_grid_trains_rl_r_with_the_setting_the_committed_ablation_chose():
    """sweep.GRIDS["cpu"].router_settings must be what rlr_choice picks from data/runs/ablations/: an edit
    of either (a retrained ablation, a hand-set v2 setting) without the other fails here."""
    from routing_laws import sweep
    recs, problems = sweep.read_records(sweep.runs_dir("ablate-rlr"))
    assert not problems
    setting, rows = run_tables.rlr_choice(recs)
    assert setting is not None, f"ablate-rlr runs missing: {rows}"
    grid = dict(sweep.get_grid("cpu").router_settings)
    assert (sweep.override_suffix(grid.get("rlr", ())).lstrip("-") or "default") == setting
    assert set(grid) <= {"rlr"}  # no other router's setting differs from RouterConfig's defaults


def test_rlr_choice_rejects_a_folder_name():
    with pytest.raises(ValidationError, match="records"):
        run_tables.rlr_choice("data/runs/ablations")


def _seeded(size, router, E, seed, loss, **over):
    from routing_laws.sweep import RunSpec
    spec = RunSpec(size, router, E, seed=seed, router_overrides=tuple(over.items()))
    return {**_rec(spec.run_id, loss), "spec": spec.to_json()}


def test_seed_spread_rows_pair_runs_that_differ_only_in_seed():
    recs = [_seeded("110k-L4", "dense", 1, 0, 4.30), _seeded("110k-L4", "dense", 1, 1, 4.34),
            _seeded("110k-L4", "sbase", 16, 0, 4.10), _seeded("110k-L4", "sbase", 16, 1, 4.11),
            _seeded("110k-L4", "sbase", 16, 2, 4.15),
            _seeded("110k-L4", "rlr", 16, 0, 4.2), _seeded("110k-L4", "rlr", 16, 1, 4.0, rlr_balance_coef=0.1),
            _seeded("440k-L4", "hash", 16, 0, 3.9)]
    rows = run_tables.seed_spread_rows(recs)
    # RL-R's two runs have different settings (not seeds of one run); HASH has one seed
    assert [(r["router"], r["seeds"]) for r in rows] == [("dense", 2), ("S-BASE", 3)]
    dn, sb = rows
    assert sb["range"] == pytest.approx(0.05) and sb["mean"] == pytest.approx((4.10 + 4.11 + 4.15) / 3)
    assert sb["std"] == pytest.approx(np.std([4.10, 4.11, 4.15], ddof=1))
    assert dn["losses"] == "4.3000 / 4.3400" and dn["range"] == pytest.approx(0.04)
    assert len(run_tables.seed_spread_table(recs).rows) == 2
    # a dirty seed never counts
    recs[1]["dirty_tree"] = True
    assert [r["router"] for r in run_tables.seed_spread_rows(recs)] == ["S-BASE"]


def test_seed_noise_vs_fit_puts_the_residual_beside_the_seed_std():
    rng = np.random.default_rng(0)
    N = np.repeat([1e5, 2e5, 4e5], 4)
    E = np.tile([1, 4, 16, 64], 3).astype(float)
    loss = np.asarray(laws.predict_loss(N, E, LAW)) + 0.01 * rng.normal(size=N.size)
    fit = laws.fit_routed_law(N, E, loss)
    recs = [_seeded("110k-L4", "dense", 1, 0, 4.30), _seeded("110k-L4", "dense", 1, 1, 4.34),
            _seeded("110k-L4", "sbase", 16, 0, 4.10), _seeded("110k-L4", "sbase", 16, 1, 4.12),
            _seeded("110k-L4", "hash", 16, 0, 4.0), _seeded("110k-L4", "hash", 16, 1, 4.5)]
    (row,) = run_tables.seed_noise_vs_fit(recs, {"S-BASE": (N, E, loss)}, {"S-BASE": fit})
    resid = loss - laws.predict_loss(N, E, fit.law)
    assert row["residual rms (nats)"] == pytest.approx(np.sqrt(np.mean(resid ** 2)))
    # pooled over S-BASE's and dense's seed pairs, not HASH's
    pooled = np.sqrt(np.mean([np.var([4.30, 4.34], ddof=1), np.var([4.10, 4.12], ddof=1)]))
    assert row["runs with 2+ seeds"] == 2 and row["seed std (nats)"] == pytest.approx(pooled)
    assert row["residual / seed std"] == pytest.approx(row["residual rms (nats)"] / pooled)
    (none,) = run_tables.seed_noise_vs_fit(recs[4:5], {"S-BASE": (N, E, loss)}, {"S-BASE": fit})
    assert none["seed std (nats)"] is None and none["residual / seed std"] is None
    with pytest.raises(ValidationError, match="tables"):
        run_tables.seed_noise_vs_fit(recs, {}, {"S-BASE": fit})
    with pytest.raises(ValidationError, match="fits"):
        run_tables.seed_noise_vs_fit(recs, {"S-BASE": (N, E, loss)}, {"S-BASE": 3})
    with pytest.raises(ValidationError, match="records"):
        run_tables.seed_spread_rows("data/runs/cpu")


def test_pooled_seed_std_weights_each_run_by_its_degrees_of_freedom():
    """A run with three seeds counts for two degrees of freedom, a pair for one: the pooled variance is
    the sum of squared deviations from each run's own mean over the total degrees of freedom."""
    pair, triple = [4.50, 4.52], [4.20, 4.30, 4.26]
    recs = ([_spec_rec("dense", 1, x, seed=i) for i, x in enumerate(pair)]
            + [_spec_rec("hash", 16, x, seed=i) for i, x in enumerate(triple)])
    ss = sum((x - np.mean(g)) ** 2 for g in (pair, triple) for x in g)
    s, n = run_tables.pooled_seed_std(recs)
    assert n == 2 and s == pytest.approx(np.sqrt(ss / ((2 - 1) + (3 - 1))))
    assert s != pytest.approx(np.sqrt(np.mean([np.var(pair, ddof=1), np.var(triple, ddof=1)])))
    assert run_tables.pooled_seed_std(recs, kinds=["hash"])[0] == pytest.approx(np.std(triple, ddof=1))


def test_measured_ranking_orders_routers_and_weighs_the_closest_gap_by_seed_noise():
    recs = [_spec_rec("dense", 1, 4.50), _spec_rec("dense", 1, 4.52, seed=1),
            _spec_rec("hash", 16, 4.20), _spec_rec("hash", 16, 4.22, seed=1),
            _spec_rec("sbase", 16, 4.25), _spec_rec("rlr", 16, 4.40), _spec_rec("sbase", 64, 4.1),
            _spec_rec("sbase", 4, 4.3, K=2)]
    s, n = run_tables.pooled_seed_std(recs)
    assert n == 2 and s == pytest.approx(np.sqrt(np.mean([np.var([4.50, 4.52], ddof=1), np.var([4.20, 4.22], ddof=1)])))
    s_hash, n_hash = run_tables.pooled_seed_std(recs, kinds=["hash"])
    assert n_hash == 1 and s_hash == pytest.approx(np.std([4.20, 4.22], ddof=1))
    assert run_tables.pooled_seed_std(recs, kinds=["rlr"]) == (None, 0)
    with pytest.raises(ValidationError, match="kinds"):
        run_tables.pooled_seed_std(recs, kinds="hash")  # a string would filter by its letters
    rows = run_tables.measured_ranking_rows(recs)
    assert len(rows) == 1  # E = 64 has one router, the K = 2 run is not main grid
    r = rows[0]
    assert r["ranking (best first)"] == "HASH > S-BASE > RL-R" and r["L HASH"] == pytest.approx(4.21)
    assert r["closest pair"] == "HASH - S-BASE" and r["gap (nats)"] == pytest.approx(0.04)
    z = 0.04 / (s * np.sqrt(1 / 2 + 1))  # HASH has two seeds, S-BASE one
    assert r["gap / std error"] == pytest.approx(z) and r["resolved"] is bool(z >= 2) and r["seeds"] == "HASH 2"
    assert run_tables.measured_ranking_rows(recs, min_z=100)[0]["resolved"] is False
    one_seed = [x for x in recs if x["spec"]["seed"] == 0]
    assert run_tables.measured_ranking_rows(one_seed)[0]["resolved"] is None  # one seed cannot say
    assert "HASH > S-BASE > RL-R" in run_tables.measured_ranking_table(recs).text()
    two = recs + [dict(_spec_rec("rlr", 16, 4.3), run_id="x-bal0.1",
                       spec={**_spec_rec("rlr", 16, 4.3)["spec"], "router_overrides": {"rlr_balance_coef": 0.1}})]
    with pytest.raises(ValidationError, match="two router settings"):
        run_tables.measured_ranking_rows(two)
    with pytest.raises(ValidationError, match="min_z"):
        run_tables.measured_ranking_rows(recs, min_z=0)


def test_gain_trend_recovers_the_slope_of_the_law_that_made_the_losses():
    """Losses made by Eq. 1 at three sizes: the measured slope of the log10 gain is the law's -c (log10 Ê(E)
    - log10 Ê(1)) exactly, its sign is reported, and seeds give it a z."""
    law = laws.RoutedLaw(a=-0.08, b=-0.05, c=0.01, d=1.2, e_start=1.8, e_max=300.0)
    Ns = {"110k-L4": 111_456, "200k-L4": 198_656, "440k-L4": 445_440}

    def rec(size, router, E, seed=0, bump=0.0):
        r = _seeded(size, router, E, seed, float(laws.predict_loss(Ns[size], E, law)) + bump)
        return {**r, "accounting": {"N": Ns[size]}}
    recs = [rec(s, "dense", 1) for s in Ns] + [rec(s, "hash", 16) for s in Ns] + [rec("110k-L4", "sbase", 16)]
    (row,) = run_tables.gain_trend_rows(recs, {"HASH": law})  # S-BASE has one size: no trend
    expected = -law.c * (np.log10(laws.saturating_experts(16.0, 1.8, 300.0))
                         - np.log10(laws.saturating_experts(1.0, 1.8, 300.0)))
    assert row["router"] == "HASH" and row["sizes"] == "110k-L4 -> 200k-L4 -> 440k-L4"
    assert row["slope dG/dlog10 N"] == pytest.approx(expected, rel=1e-9) and row["paper slope"] == pytest.approx(expected)
    assert row["shrinks"] is True and row["as paper"] is True and row["z"] is None  # no seeds: no z
    assert row["resolved"] is None
    ld, le = (laws.predict_loss(Ns["110k-L4"], e, law) for e in (1, 16))
    assert row["gain smallest (nats)"] == pytest.approx(ld - le)
    seeded = recs + [rec("110k-L4", "dense", 1, seed=1, bump=0.02)]
    (row2,) = run_tables.gain_trend_rows(seeded, {"HASH": law})
    assert row2["z"] is not None and row2["z"] < 0 and row2["slope dG/dlog10 N"] != row["slope dG/dlog10 N"]
    assert row2["resolved"] is bool(abs(row2["z"]) >= 2)
    assert run_tables.gain_trend_rows(seeded, {"HASH": law}, min_z=abs(row2["z"]) * 2)[0]["resolved"] is False
    with pytest.raises(ValidationError, match="min_z"):
        run_tables.gain_trend_rows(recs, min_z=0)
    assert run_tables.gain_trend_rows(recs, {"S-BASE": law})[0]["paper slope"] is None  # no law for HASH
    assert "HASH" in run_tables.gain_trend_table(recs).text()  # Table 3 by default
    two = recs + [rec("110k-L4", "hash", 16) | {"run_id": "x-bal", "spec": {
        **rec("110k-L4", "hash", 16)["spec"], "router_overrides": {"rlr_balance_coef": 0.1}}}]
    with pytest.raises(ValidationError, match="two router settings"):
        run_tables.gain_trend_rows(two)
    with pytest.raises(ValidationError, match="laws"):
        run_tables.gain_trend_rows(recs, {"HASH": 3})


def _curved(router, E, seed, losses, size="110k-L4", **kw):
    r = _spec_rec(router, E, losses[-1], seed=seed, **kw)
    r["spec"]["size"] = size
    r["curve"] = [{"step": 100 * (i + 1), "tokens": 4096 * 100 * (i + 1), "val_loss": v} for i, v in enumerate(losses)]
    return r


def test_pair_gap_follows_the_seed_mean_gap_along_training_and_finds_the_lead_change():
    recs = [_curved("hash", 16, 0, [5.0, 4.6, 4.4, 4.3]), _curved("hash", 16, 1, [5.2, 4.6, 4.4, 4.32]),
            _curved("sbase", 16, 0, [5.3, 4.7, 4.38, 4.2]),
            _curved("sbase", 64, 0, [5.0, 4.5, 4.2, 4.0]),  # no HASH at E = 64: no rows
            _curved("hash", 4, 0, [5.0, 4.8], K=2), _curved("sbase", 4, 0, [5.1, 4.9], K=2),  # not main grid
            _curved("dense", 1, 0, [5.5, 5.0, 4.8, 4.7])]
    rows = run_tables.pair_gap_rows(recs)
    assert [(r["size"], r["E"], r["step"]) for r in rows] == [("110k-L4", 16, s) for s in (100, 200, 300, 400)]
    expect = np.mean([[5.0, 4.6, 4.4, 4.3], [5.2, 4.6, 4.4, 4.32]], axis=0) - np.array([5.3, 4.7, 4.38, 4.2])
    assert [r["gap (nats)"] for r in rows] == pytest.approx(list(expect))
    assert rows[0]["seeds"] == "HASH 2 / S-BASE 1" and rows[2]["tokens"] == 4096 * 300
    (s,) = run_tables.pair_gap_summary_rows(recs)
    assert s["gap first eval"] == pytest.approx(expect[0]) and s["gap at end"] == pytest.approx(expect[3])
    assert s["gap at half"] == pytest.approx(expect[1])  # step 200 is half of 400's tokens
    assert s["change over 2nd half"] == pytest.approx(expect[3] - expect[1])
    assert s["ahead at end"] == "S-BASE" and s["last lead change (tokens)"] == 4096 * 300
    # a seed that logged fewer steps limits the rows to the steps every seed has
    short = recs + [_curved("sbase", 16, 1, [5.3, 4.7])]
    assert [r["step"] for r in run_tables.pair_gap_rows(short)] == [100, 200]
    # the other pair of routers, and one leader throughout
    (rl,) = run_tables.pair_gap_summary_rows(recs + [_curved("rlr", 16, 0, [5.4, 4.9, 4.6, 4.5])], "RL-R", "S-BASE")
    assert rl["ahead at end"] == "S-BASE" and rl["last lead change (tokens)"] is None
    assert "S-BASE" in run_tables.pair_gap_table(recs).text()
    with pytest.raises(ValidationError, match="first"):
        run_tables.pair_gap_rows(recs, "dense")
    with pytest.raises(ValidationError, match="second"):
        run_tables.pair_gap_rows(recs, "HASH", "HASH")
    with pytest.raises(ValidationError, match="second"):
        run_tables.pair_gap_rows(recs, "HASH", "sbase")
    broken = [dict(recs[0], curve=[{"step": 1}])]
    with pytest.raises(ValidationError, match="curve"):
        run_tables.pair_gap_rows(broken)


def _budget(router, E, loss, tokens, seed=0, **kw):
    r = _spec_rec(router, E, loss, seed=seed, **kw)
    r["train"] = {"tokens": tokens, "learning_rate": 3e-3, "total_steps": tokens // 4096, "seed": seed}
    r["model"] = {"d_model": 64, "n_layers": 4}
    return r


def test_budget_rows_pair_runs_that_differ_only_in_tokens_and_give_the_gap_change():
    short = [_budget("dense", 1, 4.45, 8_000), _budget("sbase", 16, 4.34, 8_000), _budget("hash", 16, 4.26, 8_000),
             _budget("rlr", 64, 4.5, 8_000), _budget("sbase", 16, 4.0, 8_000, K=2)]
    long_ = [_budget("dense", 1, 4.19, 16_000), _budget("dense", 1, 4.18, 16_000, seed=1),
             _budget("sbase", 16, 3.99, 16_000), _budget("sbase", 16, 4.03, 16_000, seed=1),
             _budget("hash", 16, 3.95, 16_000), _budget("hash", 64, 3.8, 16_000)]
    rows = run_tables.budget_rows(short, long_)
    assert [(r["router"], r["E"]) for r in rows] == [("dense", 1), ("S-BASE", 16), ("HASH", 16)]  # both budgets only
    dn, sb, hs = rows
    assert dn["gain short"] is None and dn["L long"] == pytest.approx(4.185) and dn["seeds"] == "1 / 2"
    assert sb["L long"] == pytest.approx(4.01) and sb["gain short"] == pytest.approx(0.11)
    assert sb["gain long"] == pytest.approx(0.175) and sb["gain change"] == pytest.approx(0.065)
    assert sb["tokens short"] == 8_000 and sb["tokens long"] == 16_000
    (p,) = run_tables.budget_pair_rows(short, long_)
    assert p["gap short"] == pytest.approx(4.26 - 4.34) and p["gap long"] == pytest.approx(3.95 - 4.01)
    assert p["change"] == pytest.approx(0.02)
    s, _ = run_tables.pooled_seed_std(long_)
    assert p["change / std error"] == pytest.approx(0.02 / (s * np.sqrt(1 + 1 + 1 + 1 / 2)))
    assert run_tables.budget_pair_rows(short, long_, "HASH", "RL-R") == []  # RL-R has no E = 16
    assert "HASH" in run_tables.budget_table(short, long_).text()
    assert "+0.0200" in run_tables.budget_pair_table(short, long_).text()
    with pytest.raises(ValidationError, match="long_records"):
        run_tables.budget_rows(long_, short)  # the shorter budget goes first
    changed = long_[:2] + [dict(long_[2], model={"d_model": 96, "n_layers": 4})]
    with pytest.raises(ValidationError, match="more than the tokens"):
        run_tables.budget_rows(short, changed)
    relr = long_[:3] + [dict(long_[3], train={**long_[3]["train"], "learning_rate": 1e-3})]
    with pytest.raises(ValidationError, match="more than the tokens"):  # a seed with another learning rate
        run_tables.budget_rows(short, relr)
    mixed = long_[:3] + [_budget("sbase", 16, 4.03, 12_000, seed=1)]
    with pytest.raises(ValidationError, match="different budgets"):
        run_tables.budget_rows(short, mixed)
    with pytest.raises(ValidationError, match="short_records"):
        run_tables.budget_rows([dict(short[0], train=None)], long_)
    with pytest.raises(ValidationError, match="first"):
        run_tables.budget_pair_rows(short, long_, "dense")
