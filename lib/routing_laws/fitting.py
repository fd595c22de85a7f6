"""Numerical engine of the scaling-law fits (pure numpy/scipy): the Huber objective, a batched damped
Gauss-Newton, an L-BFGS-B polish and bootstrap resampling. ``routing_laws.laws`` builds its fitters on it;
it knows nothing of the law's coefficients or result types.

Every fit minimises a *summed* Huber loss of log10-loss residuals. Summing (not averaging) matters:
with a mean, L-BFGS-B's relative stopping rule fires long before convergence (Epoch's Chinchilla
replication, anchors.md section D). We also divide residuals by delta, so the objective is O(n).

Optimiser: one scipy L-BFGS-B call per fit costs ~0.1-0.5 s on this 2-core CPU (measured), far
too slow for 1000 bootstrap resamples x 3 routers. So all resamples (or all starting points) are
solved *together* by a batched, damped Gauss-Newton on the Huber objective (curvature from the
points inside delta plus a small IRLS floor, Levenberg-Marquardt damping, a step is kept only if
the true objective falls, box bounds by freezing coordinates that press on them). The best of the starts is then polished
by L-BFGS-B with analytic gradients. Measured: 1000 resamples x 60 runs in ~1-3 s per router.

Shapes: n points (runs), P parameters, B resamples or starting points.
  X_nP design matrix of a linear model   y_n log10 loss   W_Bn row weights (bootstrap counts)
  t_Bn residuals / delta                 J_BnP d t / d theta
Saturating form (Eq. 1 with E-hat), internal parameters theta = (a, b_c, c, d_c, p, q):
  x_c = log10 N - x0 (centred for conditioning), p = log10 e_start, q = log10(e_max / e_start);
  box bounds p in [0, P_MAX], q in [Q_MIN, Q_MAX] are exactly 1 <= e_start < e_max.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import minimize

from routing_laws.errors import ValidationError

HUBER_DELTA = 1e-3
"""Huber threshold in log10 L: residuals beyond 0.001 (0.23 % in L) count linearly, not squared.
The runs scatter by ~0.003 around Eq. 1, so the fit is close to least absolute deviations and one
odd run cannot pull it; the same delta as Epoch's Chinchilla replication."""

P_MAX = 3.0  # e_start <= 1000
Q_MIN, Q_MAX = 1e-6, 7.0  # e_max / e_start in (1, 1e7]; at 1e7, read "no saturation seen"
START_GRID_E_START = (1.0, 1.5, 2.5, 4.0, 7.0)
START_GRID_RATIO = (3.0, 10.0, 30.0, 100.0, 1e3, 1e5)
OUTER_CURVATURE = 1e-3  # Gauss-Newton weight of residuals beyond delta: Huber's (zero) plus a small
# IRLS floor that keeps the system nonsingular; 7x fewer steps than pure IRLS (psi(t)/t) here.
LBFGS_OPTIONS = dict(maxiter=3000, maxcor=20, ftol=1e-13, gtol=1e-9)


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Elementwise Huber loss: r^2/2 inside |r| <= delta, delta(|r| - delta/2) outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def rho_psi(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-threshold Huber value and derivative of t = r / delta."""
    a = np.abs(t)
    return np.where(a <= 1.0, 0.5 * t * t, a - 0.5), np.clip(t, -1.0, 1.0)


def sat_log_experts(E, p, q, grad: bool = False):
    """log10 E-hat for e_start = 10^p, e_max = 10^(p+q) (broadcasting), optionally with d/dp, d/dq.

    Uses s = 1/e_start - 1/e_max and gs = (E - 1) s + 1, so it stays finite as e_max -> e_start
    (s -> 0) and as e_max -> infinity.
    """
    u = 10.0 ** (-np.asarray(p, float))
    v = 10.0 ** (-(np.asarray(p, float) + q))
    s = u - v
    gs = (E - 1.0) * s + 1.0
    h = s / gs + v  # = 1 / E-hat
    z = -np.log10(h)
    if not grad:
        return z
    k = 1.0 / (gs * gs)
    return z, (u * k + v * (1.0 - k)) / h, v * (1.0 - k) / h


# ----------------------------------------------------------------------------- models
class Model:
    """A fittable model: batched residuals/Jacobian, a scalar objective for L-BFGS-B, bounds, starts."""

    def __init__(self, resid: Callable, objective: Callable, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray):
        self.resid, self.objective, self.lo, self.hi, self.starts = resid, objective, lo, hi, starts

    @property
    def bounds(self):
        return [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in zip(self.lo, self.hi)]


def _wls(X, y, w):
    sw = np.sqrt(w)
    return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]


def sat_design(xc, z):
    return np.stack([xc, z, xc * z, np.ones_like(xc)], axis=-1)


def saturating_model(xc, E, y, delta=HUBER_DELTA) -> Model:
    """Eq. 1 with E-hat in internal coordinates (see module docstring)."""

    def resid(th_BP):
        a, b, c, d, p, q = (th_BP[:, i:i + 1] for i in range(6))
        z, zp, zq = sat_log_experts(E[None, :], p, q, grad=True)
        sz = b + c * xc
        r = a * xc + sz * z + d - y
        J = np.stack([np.broadcast_to(xc, r.shape), z, xc * z, np.ones_like(r), sz * zp, sz * zq], axis=-1)
        return r / delta, J / delta

    def objective(th, w):
        a, b, c, d, p, q = th
        z, zp, zq = sat_log_experts(E, p, q, grad=True)
        sz = b + c * xc
        rho, psi = rho_psi((a * xc + sz * z + d - y) / delta)
        g = w * psi / delta
        gz = g * sz
        return float(w @ rho), np.array([g @ xc, g @ z, (g * xc) @ z, g.sum(), gz @ zp, gz @ zq])

    starts = []
    for es in START_GRID_E_START:
        for ratio in START_GRID_RATIO:
            p, q = np.log10(es), np.log10(ratio)
            lin = _wls(sat_design(xc, sat_log_experts(E, p, q)), y, np.ones_like(y))
            starts.append(np.concatenate([lin, [p, q]]))
    lo = np.array([-np.inf] * 4 + [0.0, Q_MIN])
    hi = np.array([np.inf] * 4 + [P_MAX, Q_MAX])
    return Model(resid, objective, lo, hi, np.array(starts))


def linear_model(X, y, delta=HUBER_DELTA) -> Model:
    """A model linear in its parameters, X theta ~ y (convex under the Huber loss)."""

    def resid(th_BP):
        t = (th_BP @ X.T - y) / delta
        return t, np.broadcast_to(X / delta, t.shape + (X.shape[1],)).copy()

    def objective(th, w):
        rho, psi = rho_psi((X @ th - y) / delta)
        return float(w @ rho), X.T @ (w * psi / delta)

    P = X.shape[1]
    start = _wls(X, y, np.ones_like(y))[None, :]
    return Model(resid, objective, np.full(P, -np.inf), np.full(P, np.inf), start)


# ----------------------------------------------------------------------------- solvers
def batched_gauss_newton(model: Model, th0_BP, W_Bn, max_iter: int = 3000, rtol: float = 1e-10):
    """Minimise sum_i W_bi rho(t_bi) for every row b at once; returns theta_BP, f_B, converged_B."""
    th = np.array(th0_BP, float, copy=True)
    B, P = th.shape
    t, J = model.resid(th)
    f = (W_Bn * rho_psi(t)[0]).sum(1)
    lam = np.full(B, 1e-4)
    conv = np.zeros(B, bool)
    eye = np.eye(P)
    idx = np.arange(B)
    for _ in range(max_iter):
        if idx.size == 0:
            break
        ti, Ji, Wi, thi, fi, lami = t[idx], J[idx], W_Bn[idx], th[idx], f[idx], lam[idx]
        at = np.abs(ti)
        omega = np.where(at <= 1.0, 1.0, OUTER_CURVATURE / np.maximum(at, 1e-300))
        g = np.einsum("bn,bnk->bk", Wi * np.clip(ti, -1.0, 1.0), Ji)
        H = np.einsum("bn,bnk,bnl->bkl", Wi * omega, Ji, Ji)
        free = ~(((thi <= model.lo) & (g > 0)) | ((thi >= model.hi) & (g < 0)))
        H = H * free[:, :, None] * free[:, None, :] + eye * (~free)[:, :, None]
        diag = np.diagonal(H, axis1=1, axis2=2)
        A = H + lami[:, None, None] * eye * diag[:, None, :] + 1e-12 * eye
        step = -np.linalg.solve(A, (g * free)[..., None])[..., 0]
        thn = np.clip(thi + step, model.lo, model.hi)
        tn, Jn = model.resid(thn)
        fn = (Wi * rho_psi(tn)[0]).sum(1)
        acc = fn < fi
        ai = idx[acc]
        th[ai], t[ai], J[ai], f[ai] = thn[acc], tn[acc], Jn[acc], fn[acc]
        lam[idx] = np.where(acc, np.maximum(lami / 3.0, 1e-9), np.minimum(lami * 4.0, 1e9))
        done = (acc & (fi - fn <= rtol * (1.0 + fn))) | (lam[idx] >= 1e9)
        conv[idx[done & acc]] = True
        conv[idx[done & ~acc]] = True  # no further descent possible at any damping
        idx = idx[~done]
    return th, f, conv


def lbfgs_polish(model: Model, th, w):
    """One L-BFGS-B run with analytic gradients from ``th``; returns (theta, objective)."""
    res = minimize(model.objective, th, args=(w,), jac=True, method="L-BFGS-B", bounds=model.bounds,
                   options=LBFGS_OPTIONS)
    return res.x, float(res.fun)


def fit_point(model: Model, w_n):
    """Point estimate: all starts solved together, then the best one polished by L-BFGS-B."""
    W = np.broadcast_to(w_n, (len(model.starts), len(w_n))).copy()
    th, f, _ = batched_gauss_newton(model, model.starts, W)
    best = int(np.argmin(f))
    th_p, f_p = lbfgs_polish(model, th[best], w_n)
    return (th_p, f_p) if f_p <= f[best] else (th[best], float(f[best]))


def fit_bootstrap(model: Model, th_hat, counts_Bn, max_iter: int = 500):
    """Refit every resample together, warm-started at the point estimate: (theta_BP, converged_B).

    Resamples still moving after ``max_iter`` steps are left where they are and counted: on this
    data they slide along a flat ridge (e_max -> e_start with b, c growing) whose objective changes
    by < 1e-5; polishing each with L-BFGS-B would cost ~0.2 s apiece for no change in the loss.
    """
    B = counts_Bn.shape[0]
    th, _, conv = batched_gauss_newton(model, np.tile(th_hat, (B, 1)), counts_Bn, max_iter=max_iter)
    return th, conv


def bootstrap_counts(n: int, n_boot: int, seed: int, ok: Callable | None = None, max_tries: int = 100) -> np.ndarray:
    """Resample rows with replacement: counts_Bn, each row summing to n.

    ``ok(mask_n) -> bool`` rejects resamples on which the model is not identifiable (e.g. a single
    expert count); those are redrawn, up to ``max_tries`` times each.
    """
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    if ok is not None:
        for i in range(n_boot):
            for _ in range(max_tries):
                if ok(counts[i] > 0):
                    break
                counts[i] = rng.multinomial(n, np.full(n, 1.0 / n))
            else:
                raise ValidationError("bootstrap", f"no identifiable resample in {max_tries} draws of {n} runs",
                                      "pass bootstrap=0, or add runs at more (N, E) cells")
    return counts.astype(float)


def percentile_ci(samples, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the finite samples ((nan, nan) when there are none)."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))
