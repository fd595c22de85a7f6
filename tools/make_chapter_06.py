"""Writes chapters/06_paper_runs.ipynb (the paper's own runs: every figure and table from the raw data)."""
from routing_laws.book import new_notebook, write_notebook

SKIP = 'print("skipped: the raw runs are not available (see the top of the page)")'

cells = [
("md", """# The paper's own runs

**Overview.** The per-run training curves of Clark et al.'s models are public
(`clark2022_moe_runs.csv`: 223 runs, six sizes from 15M to 1.3B, three routers, E up to 512, six
evaluation sets). This chapter recomputes the paper from them: Figure 1 (a, b, c) from the data,
Table 3 refitted beside the published one with intervals, training curves, the routing-frequency and
k ablations under the (F, B) law, the law on the five other evaluation sets, N_cutoff from rounded
and un-rounded c, EPC multipliers, and an explorer of the published law.

**What you need.** The runs file. `paper.load_runs()` looks at `$ROUTING_LAWS_CLARK_RUNS`, then the
cache `.cache/clark2022_moe_runs.csv`, then downloads the public copy (sha256-checked). When none
works the page prints how to get it and skips the sections that need it."""),
("code", """import numpy as np
from routing_laws import book, charts, explore, laws, paper
from routing_laws.errors import RoutingLawsError

charts.enable_offline()
P = book.profile_params(profile)
T3, T3u = paper.table3(), paper.table3(unrounded_c=True)
try:
    runs = paper.load_runs()
    print(f"loaded {len(runs):,} logged points of {len(runs.final())} runs")
except RoutingLawsError as e:
    runs = None
    print("The paper's raw runs are not available here; the sections that need them are skipped.")
    print(e)
HAVE_RUNS = runs is not None"""),
("md", """## The runs

One row per run (its last logged step, ~131B tokens). The main grid is top-1 routing of every other
layer (R = 0.5); the other runs are ablations."""),
("code", """if HAVE_RUNS:
    display(explore.runs_overview(runs))
    grid = explore.main_grid_tables(runs)
    LABEL = explore.size_labels(runs)
    fits = explore.fit_laws(grid, bootstrap=P["bootstrap"], seed=0)
else:
    """ + SKIP),
("md", """## Figure 1a from the data

Final validation loss vs E, one colour per size; lines are the law refitted to these runs. Pick a
router from the dropdown, click sizes in the legend."""),
("code", """E_fine = 2 ** np.linspace(0, 9, 37)
if HAVE_RUNS:
    pts, lns = [], []
    for r, (N, E, L) in grid.items():
        pts += [{"router": r, "size": LABEL[n], "N": n, "E": e, "loss": l} for n, e, l in zip(N, E, L)]
        for n in np.unique(N):
            lns += [{**row, "router": r, "size": LABEL[n]} for row in explore.law_rows(fits[r].law, [n], E_fine)]
    display(charts.points_lines_chart(pts, lns, x="E", y="loss", color="size", select="router", select_title="router",
                                      color_order=list(LABEL.values()), tooltip=["N"],
                                      x_title="experts E (count, log scale)", y_title=charts.LOSS_TITLE,
                                      color_title="N (parameters)", title="Figure 1a: runs (dots) and refitted Eq. 1"))
else:
    """ + SKIP),
("md", """## Figure 1b: iso-loss curves with the runs

The refitted S-BASE law's iso-loss curves, with the measured models as diamonds."""),
("code", """if HAVE_RUNS:
    N, E, L = grid["S-BASE"]
    iso = explore.iso_loss_rows(fits["S-BASE"].law, [2.2, 2.4, 2.6, 2.8, 3.0], E_fine)
    display(charts.iso_loss_chart(iso, points=[{"N": n, "E": e} for n, e in zip(N, E)],
                                  title="Figure 1b: iso-loss curves, S-BASE refit"))
else:
    """ + SKIP),
("md", """## Figure 1c: every run at its Effective Parameter Count

Each run is placed at its EPC under its router's refitted law; the line is a dense power law fitted
to the dense runs alone."""),
("code", """if HAVE_RUNS:
    dN, dE, dL = grid["S-BASE"]
    dense = laws.fit_dense_law(dN[dE == 1], dL[dE == 1])
    pts = [{"router": r, "epc": float(laws.effective_params(n, e, fits[r].law)), "loss": l, "N": n, "E": e}
           for r, (N, E, L) in grid.items() for n, e, l in zip(N, E, L) if e > 1]
    pts += [{"router": "dense", "epc": n, "loss": l, "N": n, "E": 1.0} for n, l in zip(dN[dE == 1], dL[dE == 1])]
    line = [{**row, "router": "dense fit", "epc": row["N"]}
            for row in explore.dense_power_law_rows(dense.alpha_N, dense.N_c, np.logspace(7.1, 10.6, 30))]
    display(charts.points_lines_chart(pts, line, x="epc", y="loss", color="router", tooltip=["N", "E"],
                                      x_title="EPC, dense-equivalent parameters (log scale)", y_title=charts.LOSS_TITLE,
                                      color_title="router", title="Figure 1c: runs at their EPC"))
    print(f"dense runs: alpha_N = {dense.alpha_N:.4f}, N_c = {dense.N_c:.3g} (paper: 0.078, 3.568e13)")
else:
    """ + SKIP),
("md", """## Table 3 refitted

Same data, our estimator (summed Huber in log10 L, equal weight per run, bootstrap over runs). How
Clark et al. weighted or excluded points is not known, so both are shown; the c column compares with
the un-rounded c."""),
("code", """if HAVE_RUNS:
    display(explore.fit_comparison_table(fits, T3, paper.derived_c(), title="refit vs Table 3"))
    display(charts.interval_chart(explore.interval_rows(fits, T3u), title="refit (dots, 95% bars) vs Table 3 (diamonds)"))
else:
    """ + SKIP),
("code", """# NBVAL_CHECK_OUTPUT
if HAVE_RUNS:
    for r, fit in fits.items():
        pub = np.log10(grid[r][2]) - np.log10(laws.predict_loss(grid[r][0], grid[r][1], T3u[r]))
        print(f"{r:7s} {fit.n_points} points: refit RMSE {fit.rmse:.4f}, Table 3 (un-rounded c) RMSE "
              f"{np.sqrt(np.mean(pub ** 2)):.4f} (log10 L)")
else:
    print("skipped: no raw runs")"""),
("md", """## Training curves

Validation loss during training for the 130M models, dense and S-BASE with 8, 64 and 512 experts
(and HASH 64 for contrast). Click a run in the legend; drag to zoom the x axis."""),
("code", """if HAVE_RUNS:
    ids = explore.pick_runs(runs, "S-Base", "130M", [1, 8, 64, 512]) + explore.pick_runs(runs, "Hash", "130M", [64])
    display(charts.loss_curve_chart(explore.curve_rows(runs, ids), title="130M models: validation loss while training"))
else:
    """ + SKIP),
("md", """## The R and k ablations under the (F, B) law

Eq. 2, fitted per router to every run at the ablation sizes (25M and 370M)."""),
("code", """if HAVE_RUNS:
    fb_fits, fb_pts = {}, []
    for r in ("S-BASE", "HASH"):
        ab = paper.ablation_runs(r, runs=runs)
        fb_fits[r] = laws.fit_fb_law(ab["F"], ab["B"], ab["loss"], bootstrap=P["bootstrap"], seed=0)
        fb_pts += [{**row, "router": r} for row in explore.fb_rows(ab, fb_fits[r])]
    display(explore.fb_fit_table(fb_fits, title="Eq. 2 (F, B) fits with 95% intervals"))
    display(charts.points_lines_chart(
        fb_pts, None, x="B", y="loss", color="variant", select="router", select_title="router",
        tooltip=["size", "E", "predicted"], x_title="B = P / F, parameters per FLOP (log scale)",
        y_title=charts.LOSS_TITLE, color_title="variant", title="Ablation runs in (F, B): loss vs B (pick a router)"))
else:
    """ + SKIP),
("md", """## The law on the other evaluation sets

Eq. 1 refitted (point estimates) on each of the six evaluation sets. The shape holds everywhere;
the coefficients, and with them N_cutoff, depend on the data the loss is measured on."""),
("code", """if HAVE_RUNS:
    display(explore.eval_set_table(runs, title="Eq. 1 per evaluation set and router"))
else:
    """ + SKIP),
("md", """## N_cutoff, rounded vs un-rounded c"""),
("code", """# NBVAL_CHECK_OUTPUT
print(explore.cutoff_table(T3, T3u, paper.reported_cutoffs()))
if HAVE_RUNS:
    for r, fit in fits.items():
        print(f"refit {r:7s} c = {fit.law.c:.5f}, N_cutoff = {charts.si(laws.cutoff_params(fit.law))}")"""),
("md", """## EPC multipliers

EPC / N at 64 and 512 experts: Table 3 (un-rounded c) and the refit."""),
("code", """# NBVAL_CHECK_OUTPUT
print(explore.epc_multiplier_table(T3u, [15e6, 130e6, 1.3e9], [64, 512], title="Table 3, un-rounded c"))
if HAVE_RUNS:
    print(explore.epc_multiplier_table({r: f.law for r, f in fits.items()}, [15e6, 130e6, 1.3e9], [64, 512],
                                       title="refit of the raw runs"))"""),
("md", """## Explorer of the published law

Loss vs E for the three routers at the N of the slider, computed in the page from Table 3; tick the
box for the un-rounded c. This chart needs no data file."""),
("code", """charts.law_explorer_chart(explore.law_coefficient_rows(T3, paper.derived_c()), N_default=1.3e9)"""),
("md", """## Summary

- The raw runs reproduce Figure 1: log-linear in E with a slope that flattens with N, and routed
  runs collapse onto the dense power law at their EPC.
- A refit with our estimator lands within the bootstrap intervals of Table 3; E_start and E_max are
  weakly identified.
- Training curves show the routing gain early and keep it; R and k variants fit one (F, B) law.
- The law's shape holds on all six evaluation sets; N_cutoff depends on the set and on the rounding of c.

**Read next:** back to [the unified law](03_unified_law) to fit the same law to our own runs."""),
]
write_notebook(new_notebook(cells), "chapters/06_paper_runs.ipynb")
