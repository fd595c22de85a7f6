"""Writes chapters/04_effective_params.ipynb (Effective Parameter Count, Figure 1c, an EPC calculator)."""
from routing_laws.book import new_notebook, write_notebook

cells = [
("md", """# Effective Parameter Count

**Overview.** How big a *dense* model is a routed model worth? The Effective Parameter Count (EPC)
N̄ answers with the law itself: it is the dense size with the same loss, L(N̄, 1) = L(N, E). With it,
routed and dense models of every size fall on one power law (the paper's Figure 1c). This chapter
computes EPCs from Table 3, redraws Figure 1c, gives a calculator that runs in the page, and tabulates
the EPC multiplier N̄ / N.

**What you need.** Nothing: everything here comes from the published coefficients in `data/paper/`."""),
("code", """import math
import numpy as np
from routing_laws import book, charts, explore, laws, paper

charts.enable_offline()
P = book.profile_params(profile)
T3 = paper.table3()                    # as printed
T3u = paper.table3(unrounded_c=True)   # c implied by the reported N_cutoff
DENSE = paper.dense_fit()              # the paper's dense power law L = (N_c / N)^alpha_N
print(f"profile {P['profile']}; paper's dense law: alpha_N = {DENSE['alpha_N']}, N_c = {DENSE['N_c']:.4g}")"""),
("md", """## The definition in closed form

With $\\alpha(x) = a + c \\log x$ and $\\hat E(1) = E_\\text{start}$, solving $L(\\bar N, 1) = L(N, E)$ in Eq. 1 gives

$$\\log \\bar N = \\frac{\\alpha(\\hat E) \\log N + b\\,(\\log \\hat E - \\log E_\\text{start})}{\\alpha(E_\\text{start})}.$$

The paper's example: a 5M model with 128 experts is worth a dense model of about 55M parameters."""),
("code", """# NBVAL_CHECK_OUTPUT
ex = paper.epc_example()
print(f"paper: N = {charts.si(ex['N'])}, E = {ex['E']:.0f} is worth a dense {charts.si(ex['dense_equivalent'])}")
for r in T3:
    a, b = laws.effective_params(ex["N"], ex["E"], T3[r]), laws.effective_params(ex["N"], ex["E"], T3u[r])
    print(f"{r:7s} EPC = {a / 1e6:.1f}M (Table 3 c), {b / 1e6:.1f}M (un-rounded c)")
assert 40e6 < laws.effective_params(ex["N"], ex["E"], T3["S-BASE"]) < 70e6  # "about 55M", within rounding"""),
("md", """The gap to 55M is the rounding of Table 3's three-decimal coefficients (research notes, section 4.5)."""),
("md", """## Figure 1c: routed and dense models on one power law

Every (N, E) model of the paper's grid, placed at its EPC on the x axis and its predicted loss on the
y axis, next to the paper's dense power law L = (N_c / N̄)^α_N. Hover a point for its N, E and
multiplier; click a router in the legend to highlight it."""),
("code", """SIZES = [15e6, 25e6, 55e6, 130e6, 370e6, 1.3e9]
E_PAPER = [2, 4, 8, 16, 32, 64, 128, 256, 512]
epc = explore.epc_rows(T3u, SIZES, E_PAPER)
pts = [{"router": r["router"], "epc": r["epc"], "loss": r["loss"], "N": r["N"], "E": r["E"],
        "EPC / N": r["multiplier"]} for r in epc]
dense_line = [{**row, "router": "dense power law (paper)", "epc": row["N"]}
              for row in explore.dense_power_law_rows(DENSE["alpha_N"], DENSE["N_c"], np.logspace(7, 11, 41))]
charts.points_lines_chart(pts, dense_line, x="epc", y="loss", color="router", tooltip=["N", "E", "EPC / N"],
                          x_title="EPC, dense-equivalent parameters (log scale)", y_title=charts.LOSS_TITLE,
                          color_title="router", title="Figure 1c: loss vs Effective Parameter Count")"""),
("code", """# NBVAL_CHECK_OUTPUT
# How close each router's own dense line (Eq. 1 at E = 1) is to the paper's dense power law.
for r, law in T3u.items():
    print(f"{r:7s} dense slope a + c log10 E_start = {laws.dense_slope(law):+.4f}   (paper's alpha_N: -{DENSE['alpha_N']})")"""),
("md", """## A calculator

Move the sliders: N (log scale), E (powers of two) and the router; tick the box to use the un-rounded
c. The chart computes the predicted loss and the EPC itself, in the browser, from the Table 3
coefficients passed as data (the book is static HTML, there is no Python behind it). The blue dot is
your routed model at N, the red diamond the dense model with the same loss, the dashed line the
router's dense law."""),
("code", """coef = explore.law_coefficient_rows(T3, paper.derived_c())
calc = charts.epc_calculator_chart(coef, N_default=5e6, E_default=128)
calc"""),
("md", """The chart's formulas are Vega expressions (`charts.LAW_EXPRESSIONS`). The cell below runs the very
expressions stored in the chart's specification, in Python, and compares them with the library's
`laws.effective_params` and `laws.predict_loss`:"""),
("code", """# NBVAL_CHECK_OUTPUT
spec = calc.to_dict()
print(f"{'router':7s} {'N':>6s} {'E':>4s} {'c':>10s} {'chart loss':>10s} {'chart EPC':>10s} {'library EPC':>11s}")
for r, N, E, unrounded in [("S-BASE", 5e6, 128, False), ("RL-R", 130e6, 64, False), ("HASH", 1.3e9, 8, True),
                           ("S-BASE", 1e10, 512, True)]:
    row = next(c for c in coef if c["router"] == r)
    out = explore.evaluate_chart(spec, "epc", row, {"log10_N": math.log10(N), "log2_E": math.log2(E),
                                                    "unrounded": unrounded})
    law = (T3u if unrounded else T3)[r]
    lib_epc, lib_loss = laws.effective_params(N, E, law), laws.predict_loss(N, E, law)
    assert abs(out["epc"] / lib_epc - 1) < 1e-9 and abs(out["loss"] / lib_loss - 1) < 1e-9
    print(f"{r:7s} {charts.si(N):>6s} {E:4d} {'un-rounded' if unrounded else 'Table 3':>10s} "
          f"{out['loss']:10.4f} {charts.si(out['epc']):>10s} {charts.si(lib_epc):>11s}")"""),
("md", """## EPC multipliers

N̄ / N for the paper's sizes at 64 and 512 experts (un-rounded c; compare research/paper.md section 5.4).
The multiplier shrinks with N: routing is worth most to small models."""),
("code", """# NBVAL_CHECK_OUTPUT
print(explore.epc_multiplier_table(T3u, [15e6, 130e6, 1.3e9], [64, 512], title="EPC / N, un-rounded c"))"""),
("code", """mult = [{"router": r["router"], "N": r["N"], "EPC / N": r["multiplier"]} for r in explore.epc_rows(T3u, np.logspace(7, 12, 26), [64])]
charts.xy_chart(mult, x="N", y="EPC / N", color="router", log_x=True, x_title="N, dense parameters (log scale)",
                y_title="EPC multiplier at E = 64 (x)", color_title="router", tooltip_formats={"EPC / N": ".2f"},
                title="The worth of 64 experts shrinks with N")"""),
("md", """## Summary

- The EPC is defined by the law: the dense size with the same predicted loss; a closed form follows
  from Eq. 1.
- Under Table 3, 5M parameters with 128 experts are worth a ~50M dense model (the paper says 55M).
- Routed models sit on the dense power law when placed at their EPC (Figure 1c).
- Multipliers fall with N: from ~6x at 15M to ~3x at 1.3B with 64 experts.

**Read next:** [Comparing routers](05_comparing_routers): which technique scales best, and where
routing stops paying off."""),
]
write_notebook(new_notebook(cells), "chapters/04_effective_params.ipynb")
