"""Writes chapters/03_unified_law.ipynb (the unified scaling law, Eq. 1 with E-hat)."""
from routing_laws.book import new_notebook, write_notebook

cells = [
("md", """# The unified scaling law

**Overview.** Clark et al. fit one law to every model of a routing technique: the validation loss is
*bilinear* in log N (dense parameters) and log Ê (a saturating transform of the expert count E). This
chapter writes the law down, draws the paper's published coefficients (Table 3) as the paper's
Figure 1a (loss vs E for each N) and 1b (iso-loss curves), plots Ê, and then fits the same law to
our own sweep per router, with residuals, bootstrap intervals and an extrapolation check.

**What you need.** The published part needs nothing (the coefficients ship in `data/paper/`). The
fit of our runs needs a finished sweep in `data/runs/<profile>/runs.csv`; without it the page says
which command to run. Bootstrap resamples come from the book profile."""),
("code", """import numpy as np
from routing_laws import book, charts, explore, laws, paper

charts.enable_offline()
P = book.profile_params(profile)
T3 = paper.table3()                       # the coefficients as printed
T3u = paper.table3(unrounded_c=True)      # c implied by the reported N_cutoff (see chapter 5)
print(f"profile {P['profile']}: {P['bootstrap']} bootstrap resamples per fit")"""),
("md", """## Eq. 1 and the saturating Ê

All logs are base 10. For a technique with coefficients $a, b, c, d$:

$$\\log L(N, E) = a \\log N + b \\log \\hat E + c \\log N \\log \\hat E + d,$$

$$\\frac{1}{\\hat E} = \\frac{1}{E - 1 + \\left(\\frac{1}{E_\\text{start}} - \\frac{1}{E_\\text{max}}\\right)^{-1}} + \\frac{1}{E_\\text{max}}.$$

- $a < 0$: bigger models are better; $b < 0$: more experts are better.
- $c > 0$ is the interaction: the benefit of experts, $\\partial \\log L / \\partial \\log \\hat E = b + c \\log N$,
  shrinks as N grows and vanishes at $N_\\text{cutoff} = 10^{-b/c}$.
- Ê replaces E: $\\hat E(1) = E_\\text{start}$ (a dense model is not at $\\log E = 0$), $\\hat E \\approx E$ in the
  middle, and $\\hat E \\to E_\\text{max}$ as E grows: a few experts help less than $\\log E$ says, very
  many saturate.

Table 3 of the paper, with the dense slope $a + c \\log E_\\text{start}$ and $N_\\text{cutoff}$ it implies:"""),
("code", """explore.coefficient_table(T3, title="Table 3 (as printed)")"""),
("code", """# NBVAL_CHECK_OUTPUT
# E-hat at the ends of the paper's range: E-hat(1) = E_start, and E-hat(512) approaching E_max.
for r, law in T3.items():
    e1, e512 = laws.saturating_experts([1.0, 512.0], law.e_start, law.e_max)
    assert abs(e1 - law.e_start) < 1e-9 and e512 < law.e_max
    print(f"{r:7s} E-hat(1) = {e1:.3f}  E-hat(64) = {laws.saturating_experts(64.0, law.e_start, law.e_max):.2f}  "
          f"E-hat(512) = {e512:.1f}  (E_max {law.e_max:.1f})")"""),
("code", """E_fine = 2 ** np.linspace(0, 11, 45)
charts.xy_chart(explore.ehat_rows(T3, E_fine), x="E", y="E_hat", color="router", log_x=True, log_y=True,
                x_title="experts E (count, log scale)", y_title="E-hat (effective expert count, log scale)",
                color_title="router", title="Ê vs E (click the legend to highlight a router)")"""),
("md", """HASH starts high (E_start ≈ 4.2): hashing tokens to 2-4 experts barely helps. All three saturate
at a few hundred experts."""),
("md", """## Figure 1a from the published law

Loss vs E for each model size, on log-log axes. Dots are the law at the paper's expert counts, lines
the law in between; pick a router from the dropdown, click a size in the legend to highlight it."""),
("code", """SIZES = [15e6, 25e6, 55e6, 130e6, 370e6, 1.3e9]
pts, lns = [], []
for r, law in T3.items():
    for n in SIZES:
        lab = charts.si(n)
        pts += [{**row, "router": r, "size": lab} for row in explore.law_rows(law, [n])]
        lns += [{**row, "router": r, "size": lab} for row in explore.law_rows(law, [n], E_fine[E_fine <= 512])]
charts.points_lines_chart(pts, lns, x="E", y="loss", color="size", select="router", select_title="router",
                          color_order=[charts.si(n) for n in SIZES], x_title="experts E (count, log scale)", y_title=charts.LOSS_TITLE, color_title="N (parameters)",
                          title="Figure 1a: the law of Table 3")"""),
("md", """The lines fan in: the log-slope in E is steep for small models and flat for large ones
(the interaction term c)."""),
("md", """## Figure 1b: iso-loss curves

Each curve holds the loss fixed and asks how large a dense backbone N is needed at each E: moving
right along a curve trades parameters in the backbone for experts (S-BASE, Table 3)."""),
("code", """iso = explore.iso_loss_rows(T3["S-BASE"], [2.2, 2.4, 2.6, 2.8, 3.0], E_fine[E_fine <= 512])
charts.iso_loss_chart(iso, title="Figure 1b: iso-loss curves, S-BASE (Table 3)")"""),
("code", """# NBVAL_CHECK_OUTPUT
# Dense N needed for loss 2.6 at E = 1 and E = 64 (S-BASE, Table 3).
n1, n64 = laws.iso_loss_curve(T3["S-BASE"], 2.6, [1.0, 64.0])
print(f"loss 2.6: dense N = {charts.si(n1)}, with 64 experts N = {charts.si(n64)} ({n1 / n64:.1f}x smaller)")"""),
("md", """## The law fitted to our runs

`explore.read_sweep` looks for `data/runs/<profile>/runs.csv` (this profile first, then `cpu`, `gpu`)
with enough finished runs to identify all six parameters per router (the dense E = 1 runs join every
router). The fit is summed Huber in log10 L with a grid of starts; intervals are 95% percentile
bootstrap over runs."""),
("code", """sweep = explore.read_sweep(tuple(dict.fromkeys([P["profile"], "cpu", "gpu"])))
HAVE_SWEEP = sweep.ok
print(sweep.message)
if not HAVE_SWEEP:
    print("To fill this section: `make sweep PROFILE=cpu` (or `routing-laws sweep --profile cpu`), then rebuild the book.")"""),
("code", """if HAVE_SWEEP:
    fits = explore.fit_laws(sweep.tables, bootstrap=P["bootstrap"], seed=0)
    display(explore.fit_comparison_table(fits, title="Eq. 1 fitted to our runs (Table 3 for reference: other data, other scale)"))
    display(explore.coefficient_table({r: f.law for r, f in fits.items()}, title="our fits: dense slope and N_cutoff"))
else:
    print("skipped: no sweep to fit")"""),
("code", """if HAVE_SWEEP:
    pts, lns = [], []
    for r, (N, E, L) in sweep.tables.items():
        pts += [{"router": r, "size": charts.si(n), "N": n, "E": e, "loss": l} for n, e, l in zip(N, E, L)]
        for n in np.unique(N):
            lns += [{**row, "router": r, "size": charts.si(n)}
                    for row in explore.law_rows(fits[r].law, [n], E_fine[E_fine <= E.max()])]
    display(charts.points_lines_chart(pts, lns, x="E", y="loss", color="size", select="router", select_title="router",
                                      color_order=[charts.si(n) for n in sorted({p["N"] for p in pts})], x_title="experts E (count, log scale)", y_title=charts.LOSS_TITLE,
                                      color_title="N (parameters)", title="Our runs (dots) and the fitted law (lines)"))
else:
    print("skipped: no sweep to fit")"""),
("code", """if HAVE_SWEEP:
    res = [row for r, (N, E, L) in sweep.tables.items() for row in explore.residual_rows(N, E, L, fits[r].law, r)]
    display(charts.xy_chart(res, x="N", y="residual", color="router", mark="point", log_x=True,
                            x_title="N, dense parameters (log scale)", y_title="residual log10 L - log10 L_fit (dex)",
                            title="Residuals of the fit (click the legend)"))
    display(charts.interval_chart(explore.interval_rows(fits), title="Fitted coefficients with 95% intervals"))
else:
    print("skipped: no sweep to fit")"""),
("md", """**Extrapolation check.** Fit without the largest model size, predict it: the error on the held-out
size is what a scaling law is for."""),
("code", """if HAVE_SWEEP:
    display(explore.extrapolation_table(sweep.tables, title="leave the largest N out (errors in log10 L)"))
else:
    print("skipped: no sweep to fit")"""),
("md", """## Summary

- Eq. 1 is a plane in (log N, log Ê) with a twist c; Ê encodes that a few experts help little and
  that experts saturate at a few hundred.
- With Table 3's coefficients, more experts always help at these sizes, but less and less as N grows.
- Our own sweep is fitted with the same code and the same estimator as the paper's raw runs
  (chapter 6), so the two can be compared parameter by parameter.

**Read next:** [Effective Parameter Count](04_effective_params) turns the law into "how big a dense
model is this routed model worth?"."""),
]
write_notebook(new_notebook(cells), "chapters/03_unified_law.ipynb")
