"""routing_laws.laws: the law's algebra against direct formulas, the fast fitter against slow
references, recovery of known laws with intervals that cover at about their nominal rate, and errors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.optimize import minimize

from routing_laws import fitting, laws
from routing_laws.errors import ValidationError
from routing_laws.laws import RoutedLaw

SIZES = np.array([16.5e6, 27.3e6, 57.4e6, 132e6, 368e6, 1309e6])
EXPERTS = 2.0 ** np.arange(10)  # 1 .. 512
TRUE = RoutedLaw(-0.084, -0.126, 0.0108, 1.126, 2.4, 275.0)


def grid(law=TRUE, sigma=0.003, seed=0, sizes=SIZES, experts=EXPERTS):
    N, E = (a.ravel() for a in np.meshgrid(sizes, experts, indexing="ij"))
    noise = np.random.default_rng(seed).normal(0, sigma, N.size)
    return N, E, laws.predict_loss(N, E, law) * 10.0 ** noise


def direct_ehat(E, es, em):
    return 1.0 / (1.0 / (E - 1.0 + 1.0 / (1.0 / es - 1.0 / em)) + 1.0 / em)


# ----------------------------------------------------------------------------- algebra
def test_saturating_experts_matches_the_formula_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(50):
        es = 1 + rng.exponential(3)
        em = es * (1 + rng.exponential(100))
        E = 1 + rng.exponential(100, size=20)
        np.testing.assert_allclose(laws.saturating_experts(E, es, em), direct_ehat(E, es, em), rtol=1e-10)
    assert laws.saturating_experts(1, 1.847, 314.478) == pytest.approx(1.847)
    assert laws.saturating_experts(1e12, 1.847, 314.478) == pytest.approx(314.478, rel=1e-6)
    np.testing.assert_allclose(laws.saturating_experts(EXPERTS, 1.0, math.inf), EXPERTS)


def test_log_ehat_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    E = np.array([1.0, 2, 8, 64, 512])
    for _ in range(20):
        p, q, h = rng.uniform(0, 1), rng.uniform(0.05, 4), 1e-6
        z, zp, zq = fitting.sat_log_experts(E, p, q, grad=True)
        np.testing.assert_allclose(zp, (fitting.sat_log_experts(E, p + h, q) - fitting.sat_log_experts(E, p - h, q)) / (2 * h), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(zq, (fitting.sat_log_experts(E, p, q + h) - fitting.sat_log_experts(E, p, q - h)) / (2 * h), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(z, np.log10(direct_ehat(E, 10 ** p, 10 ** (p + q))), rtol=1e-12)


def test_objective_gradient_and_jacobian_match_finite_differences():
    N, E, L = grid(seed=3)
    x = np.log10(N)
    xc, y = x - x.mean(), np.log10(L)
    model = fitting.saturating_model(xc, E, y)
    rng = np.random.default_rng(3)
    w = rng.integers(0, 3, size=y.size).astype(float)
    th = np.array([-0.08, -0.2, 0.011, 0.35, 0.3, 2.1])
    f, g = model.objective(th, w)
    t, J = model.resid(th[None, :])
    # the summed objective is sum w huber(r) / delta^2
    r = t[0] * fitting.HUBER_DELTA
    assert f == pytest.approx((w * fitting.huber(r)).sum() / fitting.HUBER_DELTA ** 2, rel=1e-10)
    for k in range(6):
        h = np.zeros(6)
        h[k] = 1e-7
        fd = (model.objective(th + h, w)[0] - model.objective(th - h, w)[0]) / 2e-7
        assert g[k] == pytest.approx(fd, rel=1e-4, abs=1e-3)
        tj = (model.resid((th + h)[None, :])[0] - model.resid((th - h)[None, :])[0]) / 2e-7
        np.testing.assert_allclose(J[0, :, k], tj[0], rtol=1e-4, atol=1e-3)


def test_predict_loss_effective_params_cutoff_and_iso_loss_agree():
    rng = np.random.default_rng(4)
    N = 10 ** rng.uniform(6, 10, 30)
    E = 2.0 ** rng.integers(0, 10, 30)
    x, z = np.log10(N), np.log10(direct_ehat(E, TRUE.e_start, TRUE.e_max))
    direct = 10 ** (TRUE.a * x + TRUE.b * z + TRUE.c * x * z + TRUE.d)
    np.testing.assert_allclose(laws.predict_loss(N, E, TRUE), direct, rtol=1e-12)
    assert isinstance(laws.predict_loss(1e8, 8, TRUE), float)
    nbar = laws.effective_params(N, E, TRUE)
    np.testing.assert_allclose(laws.predict_loss(nbar, 1, TRUE), laws.predict_loss(N, E, TRUE), rtol=1e-10)
    np.testing.assert_allclose(laws.effective_params(N, np.ones_like(N), TRUE), N, rtol=1e-10)
    cut = laws.cutoff_params(TRUE)
    dlogl = [np.log10(laws.predict_loss(cut, e * 1.001, TRUE) / laws.predict_loss(cut, e, TRUE)) for e in (4, 64, 512)]
    np.testing.assert_allclose(dlogl, 0, atol=1e-12)
    assert laws.predict_loss(cut * 10, 512, TRUE) > laws.predict_loss(cut * 10, 1, TRUE)  # beyond it, experts hurt
    assert laws.cutoff_params(RoutedLaw(-0.08, -0.1, 0.0, 1.1)) == math.inf
    Ns = laws.iso_loss_curve(TRUE, 2.5, EXPERTS)
    np.testing.assert_allclose(laws.predict_loss(Ns, EXPERTS, TRUE), 2.5, rtol=1e-10)
    assert np.all(np.diff(Ns) < 0)  # more experts, smaller model for the same loss
    assert laws.dense_slope(TRUE) == pytest.approx(TRUE.a + TRUE.c * math.log10(TRUE.e_start))


# ----------------------------------------------------------------------------- fitter vs references
def _reference_fit(N, E, L):
    """Slow obvious reference: Nelder-Mead on the direct formula from a 3 x 4 grid of (e_start, e_max)."""
    x, y = np.log10(N), np.log10(L)

    def obj(th):
        a, b, c, d, les, lem = th
        if lem <= les:
            return 1e9
        z = np.log10(direct_ehat(E, 10 ** les, 10 ** lem))
        return fitting.huber(a * x + b * z + c * x * z + d - y).sum() / fitting.HUBER_DELTA ** 2

    best = math.inf
    for les in (0.0, 0.4, 0.8):
        for lem in les + np.array([0.5, 1.5, 2.5, 4.0]):
            z = np.log10(direct_ehat(E, 10 ** les, 10 ** lem))
            lin = np.linalg.lstsq(np.stack([x, z, x * z, np.ones_like(x)], 1), y, rcond=None)[0]
            res = minimize(obj, np.r_[lin, les, lem], method="Nelder-Mead",
                           options=dict(maxiter=20000, maxfev=20000, xatol=1e-10, fatol=1e-10))
            best = min(best, res.fun)
    return best


def test_fast_fit_reaches_the_slow_reference_optimum():
    for seed in (5,):
        N, E, L = grid(seed=seed, sizes=SIZES[::2], experts=EXPERTS[::2])
        fit = laws.fit_routed_law(N, E, L)
        ours = fitting.huber(fit.residuals).sum() / fitting.HUBER_DELTA ** 2
        assert ours <= _reference_fit(N, E, L) * (1 + 1e-6) + 1e-6


def test_batched_bootstrap_matches_per_resample_lbfgs():
    N, E, L = grid(seed=7)
    x = np.log10(N)
    model = fitting.saturating_model(x - x.mean(), E, np.log10(L))
    th_hat, _ = fitting.fit_point(model, np.ones(N.size))
    counts = fitting.bootstrap_counts(N.size, 3, seed=1)
    th_b, conv = fitting.fit_bootstrap(model, th_hat, counts)
    assert conv.all()
    for i in range(3):
        f_fast = model.objective(th_b[i], counts[i])[0]
        f_ref = min(fitting.lbfgs_polish(model, s, counts[i])[1] for s in (th_hat, model.starts[20]))
        assert f_fast <= f_ref + 1e-6 * (1 + f_ref)


# ----------------------------------------------------------------------------- recovery and coverage
@pytest.mark.parametrize("saturating", [True, False])
def test_recovers_a_known_law_within_its_intervals(saturating):
    law = TRUE if saturating else RoutedLaw(-0.08, -0.07, 0.004, 1.1)
    N, E, L = grid(law, seed=11)
    fit = laws.fit_routed_law(N, E, L, saturating=saturating, bootstrap=300, seed=1)
    names = laws.LAW_PARAMS if saturating else laws.LAW_PARAMS[:4]
    for k in names:
        lo, hi = fit.ci[k]
        assert lo <= getattr(law, k) <= hi, (k, getattr(law, k), fit.ci[k])
    assert fit.rmse == pytest.approx(0.003, rel=0.3) and fit.n_points == N.size and fit.n_bootstrap == 300
    assert laws.cutoff_params(law) == pytest.approx(laws.cutoff_params(fit.law), rel=3)  # order of magnitude
    lo, hi = fit.ci_of(laws.cutoff_params)
    assert lo <= laws.cutoff_params(law) <= hi


def test_plain_intervals_cover_at_about_their_nominal_rate():
    law = RoutedLaw(-0.08, -0.07, 0.004, 1.1)
    hits = np.zeros(4)
    draws = 40
    for s in range(draws):
        N, E, L = grid(law, seed=100 + s)
        ci = laws.fit_routed_law(N, E, L, saturating=False, bootstrap=100, seed=s).ci
        hits += [ci[k][0] <= getattr(law, k) <= ci[k][1] for k in "abcd"]
    assert np.all(hits / draws >= 0.8), hits / draws  # nominal 0.95; 40 draws, 100 resamples each


@pytest.mark.slow
def test_saturating_intervals_cover_at_about_their_nominal_rate():
    hits = np.zeros(6)
    draws = 40
    for s in range(draws):
        N, E, L = grid(seed=200 + s)
        ci = laws.fit_routed_law(N, E, L, bootstrap=100, seed=s).ci
        hits += [ci[k][0] <= getattr(TRUE, k) <= ci[k][1] for k in laws.LAW_PARAMS]
    assert np.all(hits / draws >= 0.8), hits / draws


@pytest.mark.slow
def test_benchmark_1000_resamples_3_techniques_60_runs_under_30s():
    t0 = time.perf_counter()
    for s, law in enumerate([TRUE, RoutedLaw(-0.083, -0.129, 0.0118, 1.114, 2.0, 480.0),
                             RoutedLaw(-0.089, -0.147, 0.0135, 1.173, 4.7, 380.0)]):
        laws.fit_routed_law(*grid(law, seed=s), bootstrap=1000, seed=s)
    assert time.perf_counter() - t0 <= 30.0


def test_bootstrap_is_deterministic_per_seed():
    N, E, L = grid(seed=12)
    a = laws.fit_routed_law(N, E, L, bootstrap=30, seed=3)
    b = laws.fit_routed_law(N, E, L, bootstrap=30, seed=3)
    assert a.ci == b.ci
    assert all(math.isnan(v) for v in laws.fit_routed_law(N, E, L).ci["a"])


def test_dense_and_fb_laws_recover_known_coefficients():
    rng = np.random.default_rng(13)
    N = SIZES.repeat(2)
    L = (3.568e13 / N) ** 0.078 * 10 ** rng.normal(0, 0.002, N.size)
    alpha, n_c = fit = laws.fit_dense_law(N, L, bootstrap=200)
    assert fit.ci["alpha_N"][0] <= 0.078 <= fit.ci["alpha_N"][1] and alpha == pytest.approx(0.078, abs=0.005)
    assert fit.ci["N_c"][0] <= 3.568e13 <= fit.ci["N_c"][1] and math.log10(n_c) == pytest.approx(13.55, abs=0.5)
    law = laws.FBLaw(-0.085, -0.13, 0.012, 1.14)
    F = 10 ** rng.uniform(7.5, 9.5, 50)
    B = 10 ** rng.uniform(-0.3, 2.5, 50)
    loss = laws.predict_fb_loss(F, B, law) * 10 ** rng.normal(0, 0.003, 50)
    fb = laws.fit_fb_law(F, B, loss, bootstrap=200)
    for k in "abcd":
        assert fb.ci[k][0] <= getattr(law, k) <= fb.ci[k][1], k
    assert fb.rmse < 0.005


def test_separable_slopes_show_the_interaction_exactly_on_a_plain_law():
    law = RoutedLaw(-0.08, -0.1, 0.009, 1.1)
    N, E, L = grid(law, sigma=0.0)
    per_n = laws.fit_per_size_slopes(N, E, L)
    np.testing.assert_allclose(per_n.slopes, law.b + law.c * np.log10(per_n.keys), atol=1e-10)
    assert (per_n.trend_slope, per_n.trend_intercept) == pytest.approx((law.c, law.b), abs=1e-9)
    assert per_n.zero_crossing == pytest.approx(laws.cutoff_params(law), rel=1e-6)
    per_e = laws.fit_per_expert_slopes(N, E, L)
    assert (per_e.trend_slope, per_e.trend_intercept) == pytest.approx((law.c, law.a), abs=1e-9)
    sat = laws.fit_per_size_slopes(*grid(TRUE, sigma=0.0), law=TRUE)
    np.testing.assert_allclose(sat.slopes, TRUE.b + TRUE.c * np.log10(sat.keys), atol=1e-10)


def test_extrapolation_check_is_exact_on_noise_free_data_and_holds_out_the_largest():
    N, E, L = grid(sigma=0.0)
    ex = laws.extrapolation_check(N, E, L)
    assert ex.held_out_N == SIZES.max() and ex.n_test == len(EXPERTS) and ex.n_train == N.size - len(EXPERTS)
    assert ex.rmse_test < 1e-4
    ex_noisy = laws.extrapolation_check(*grid(seed=14))
    assert ex_noisy.rmse_test > ex.rmse_test


# ----------------------------------------------------------------------------- errors
N0, E0, L0 = grid(seed=15)


@pytest.mark.parametrize("kw,field,phrase", [
    (dict(loss=np.r_[np.nan, L0[1:]]), "loss", "NaN"),
    (dict(N=np.r_[np.inf, N0[1:]]), "N", "non-finite"),
    (dict(loss=np.r_[0.0, L0[1:]]), "loss", "> 0"),
    (dict(N=np.r_[-5.0, N0[1:]]), "N", "> 0"),
    (dict(E=np.r_[0.5, E0[1:]]), "E", ">= 1"),
    (dict(E=E0[:-1]), "E", "values but N has"),
    (dict(N=N0[::13], E=E0[::13], loss=L0[::13]), "N", "cannot determine the 6 parameters"),
    (dict(E=np.full_like(E0, 8.0)), "E", "E_start and E_max are not identifiable"),
    (dict(E=np.where(E0 > 1, 8.0, 1.0)), "E", "E_start and E_max are not identifiable"),
    (dict(N=np.full_like(N0, 1e8)), "N", "not identifiable"),
    (dict(bootstrap=-1), "bootstrap", ">= 0"),
    (dict(saturating="no"), "saturating", "True or False"),
    (dict(saturating=1), "saturating", "True or False"),
    (dict(saturating=None), "saturating", "True or False"),
])
def test_bad_input_names_the_field_and_the_fix(kw, field, phrase):
    args = dict(N=N0, E=E0, loss=L0)
    args.update(kw)
    with pytest.raises(ValidationError) as e:
        laws.fit_routed_law(args.pop("N"), args.pop("E"), args.pop("loss"), **args)
    assert e.value.field == field and phrase in str(e.value) and "(" in str(e.value)


def test_bad_laws_and_other_inputs_are_rejected():
    with pytest.raises(ValidationError, match="e_max"):
        RoutedLaw(-0.08, -0.1, 0.01, 1.1, 5.0, 4.0)
    with pytest.raises(ValidationError, match="e_start"):
        RoutedLaw(-0.08, -0.1, 0.01, 1.1, 0.5, 4.0)
    with pytest.raises(ValidationError, match="law.c"):
        RoutedLaw(-0.08, -0.1, float("nan"), 1.1)
    with pytest.raises(ValidationError, match="law"):
        laws.predict_loss(1e8, 8, (1, 2, 3))
    with pytest.raises(ValidationError, match="dense slope"):
        laws.effective_params(1e8, 8, RoutedLaw(0.01, -0.1, 0.0, 1.0))
    with pytest.raises(ValidationError, match="single E value|not identifiable"):
        laws.fit_routed_law(N0, np.full_like(E0, 4.0), L0, saturating=False)
    with pytest.raises(ValidationError) as e:
        laws.fit_dense_law([1e7, 1e8], [3.0])
    assert e.value.field == "loss"
    with pytest.raises(ValidationError) as e:
        laws.fit_fb_law([1e8] * 5, [1, 2, 3, 4, 5], [3, 3, 3, 3, 3])
    assert e.value.field == "F"
    with pytest.raises(ValidationError) as e:
        laws.extrapolation_check(N0[E0 > 0][:20], E0[:20], L0[:20])
    assert e.value.field == "N"
    with pytest.raises(ValidationError) as e:
        laws.extrapolation_check(N0, E0, L0, saturating="no")
    assert e.value.field == "saturating"


def test_bootstrap_needs_two_runs_more_than_parameters():
    # The cpu sweep's shape when it first had 2 sizes: dense + E 4/16/64 at one N, E 4/64 (+16) at another.
    N = np.array([1e5, 1e5, 1e5, 1e5, 2.2e5, 2.2e5, 2.2e5, 2.2e5])
    E = np.array([1, 4, 16, 64, 4, 64, 16, 1.0])
    L = laws.predict_loss(N, E, TRUE) * 10.0 ** np.random.default_rng(3).normal(0, 0.002, N.size)
    for n in (6, 7):
        with pytest.raises(ValidationError) as e:
            laws.fit_routed_law(N[:n], E[:n], L[:n], bootstrap=20)
        assert e.value.field == "bootstrap" and f"{n} distinct runs" in str(e.value) and "bootstrap=0" in str(e.value)
        assert math.isfinite(laws.fit_routed_law(N[:n], E[:n], L[:n]).law.a)  # the point fit still works
    fit = laws.fit_routed_law(N, E, L, bootstrap=50)
    lo, hi = fit.ci["a"]
    assert lo < hi  # resamples differ, so the interval has a width
    with pytest.raises(ValidationError) as e:
        fitting.bootstrap_counts(3, 5, seed=0, ok=lambda mask: False, max_tries=4)
    assert e.value.field == "bootstrap"


def test_fit_warnings_flag_a_degenerate_fit_and_a_capped_e_max():
    # A well-posed law over 1..512 experts raises no flag; its recovered fit raises none either.
    assert laws.fit_warnings(TRUE, EXPERTS) == ()
    N, E, L = grid(seed=3)
    assert laws.fit_routed_law(N, E, L).warnings == ()
    # e_start beyond every E: E^ barely moves, the law is near-linear in E.
    deg = RoutedLaw(4.76, 8.44, -1.6, -24.5, 1000.0, 1e10)
    w = laws.fit_warnings(deg, [1, 4, 16, 64])
    assert len(w) == 2 and w[0].startswith("degenerate") and "1e+03" not in w[0] and "1000" in w[0]
    assert "no saturation" in w[1]
    assert laws.fit_warnings(RoutedLaw(-0.08, -0.1, 0.01, 1.1, 2.0, 2e7), [1, 4, 16, 64]) == (
        laws.fit_warnings(RoutedLaw(-0.08, -0.1, 0.01, 1.1, 2.0, 2e7), [1, 64]))
    assert "no saturation" in laws.fit_warnings(RoutedLaw(-0.08, -0.1, 0.01, 1.1, 2.0, 2e7), [1, 64])[0]
    # Data whose E effect is linear in E (not in log E) drive the fit to the degenerate corner, and it says so.
    Nd = np.repeat([1e5, 2e5, 4e5], 4)
    Ed = np.tile([1.0, 4.0, 16.0, 64.0], 3)
    Ld = 4.3 * (Nd / 1e5) ** -0.05 * (1 + 0.002 * (Ed - 1))
    fit = laws.fit_routed_law(Nd, Ed, Ld)
    assert fit.law.e_start > 64 and fit.warnings and fit.warnings[0].startswith("degenerate") and fit.degenerate
    assert not laws.fit_routed_law(N, E, L).degenerate
    assert fit.to_dict()["warnings"] == list(fit.warnings)
    assert laws.fit_warnings(RoutedLaw(-0.08, -0.1, 0.01, 1.1), [1, 4]) == ()  # plain law: no E^
    (low,) = laws.fit_warnings(RoutedLaw(-0.08, -0.1, 0.01, 1.1, 1.0, 1.85), [1, 4, 16, 64])
    assert low.startswith("e_start at its lower bound 1") and "1.85" in low
    assert laws.fit_warnings(RoutedLaw(-0.08, -0.1, 0.01, 1.1, 1.01, 300.0), [1, 4, 16, 64]) == ()
    # Data whose routed runs all gain the same over dense drive e_start to its lower bound, and it says so.
    Lf = 4.3 * (Nd / 1e5) ** -0.05 * np.where(Ed > 1, 0.97, 1.0)
    assert any(w.startswith("e_start at its lower bound") for w in laws.fit_routed_law(Nd, Ed, Lf).warnings)
    with pytest.raises(ValidationError, match="law"):
        laws.fit_warnings("not a law", [1, 4])
    with pytest.raises(ValidationError, match="E"):
        laws.fit_warnings(TRUE, [0.5, 4])
