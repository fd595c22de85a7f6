"""Scaling laws of routed language models (Clark et al. 2022): Eq. 1 with the saturating E-hat,
Eq. 2 in (F, B), the dense power law, Effective Parameter Count, N_cutoff, iso-loss curves, the fit
result types and the fitters.

Pure numpy/scipy: it fits a table of (N, E, loss), never a JAX model. All logs are base 10.

    log10 L(N, E) = a log10 N + b log10 E^ + c log10 N log10 E^ + d                  (Eq. 1)
    1/E^ = 1 / (E - 1 + (1/e_start - 1/e_max)^-1) + 1/e_max      (E^(1) = e_start, E^ -> e_max)
    log10 L(F, B) = a log10 F + b log10 B + c log10 F log10 B + d,  B = P / F        (Eq. 2)

Fitting (numerical engine in ``routing_laws.fitting``): summed Huber loss (delta = 1e-3 in log10 L)
of log10 residuals, every run weighted equally, a grid of starts, L-BFGS-B polish, 95%
percentile-bootstrap intervals by resampling runs. Names: N dense (non-embedding) parameters, E
experts, L loss, F FLOPs per token, P total parameters, B = P / F, n points; arrays are 1-D of length n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from routing_laws import fitting
from routing_laws.errors import ValidationError

LAW_PARAMS = ("a", "b", "c", "d", "e_start", "e_max")


@dataclass(frozen=True)
class RoutedLaw:
    """Eq. 1 coefficients. ``e_start=1, e_max=inf`` is the plain (non-saturating) form, E^ = E."""

    a: float
    b: float
    c: float
    d: float
    e_start: float = 1.0
    e_max: float = math.inf

    def __post_init__(self):
        for name in ("a", "b", "c", "d"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValidationError(f"law.{name}", f"must be a finite number, got {v!r}")
        _check_sat("law", self.e_start, self.e_max)

    @property
    def saturating(self) -> bool:
        return not (self.e_start == 1.0 and math.isinf(self.e_max))

    def as_dict(self) -> dict:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class FBLaw:
    """Eq. 2 coefficients: log10 L = a log10 F + b log10 B + c log10 F log10 B + d."""

    a: float
    b: float
    c: float
    d: float


def _check_sat(where: str, e_start, e_max) -> None:
    try:
        es, em = float(e_start), float(e_max)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}.e_start", f"e_start/e_max must be numbers, got {e_start!r}, {e_max!r}") from None
    if not math.isfinite(es) or es < 1.0:
        raise ValidationError(f"{where}.e_start", f"must be finite and >= 1, got {e_start!r}", "E^(1) = e_start >= 1")
    if math.isnan(em) or em <= es:
        raise ValidationError(f"{where}.e_max", f"must be > e_start = {es:g}, got {e_max!r}",
                              "use e_max=inf for no saturation")


def _array(field_: str, x, *, positive: bool = False, min_value: float | None = None, fix: str = "") -> np.ndarray:
    """``x`` as a finite 1-D float array, or a ValidationError naming ``field_`` and the fix."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(field_, "must be numbers", fix or "pass a list or 1-D array of numbers") from None
    if a.ndim > 1:
        raise ValidationError(field_, f"must be 1-D, got shape {a.shape}", "flatten it")
    a = np.atleast_1d(a)
    if a.size == 0:
        raise ValidationError(field_, "is empty", "pass at least one value")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(field_, f"{int(bad.sum())} non-finite value(s) (NaN or inf), first at index {i}: {a[i]}",
                              fix or "drop the runs that diverged or have no loss")
    if positive and (a <= 0).any():
        i = int(np.flatnonzero(a <= 0)[0])
        raise ValidationError(field_, f"must be > 0, got {a[i]} at index {i}", fix or "pass raw values, not logs")
    if min_value is not None and (a < min_value).any():
        i = int(np.flatnonzero(a < min_value)[0])
        raise ValidationError(field_, f"must be >= {min_value:g}, got {a[i]} at index {i}", fix)
    return a


def _check_law(law, cls=RoutedLaw):
    if not isinstance(law, cls):
        raise ValidationError("law", f"must be a {cls.__name__}, got {type(law).__name__}",
                              f"build one with {cls.__name__}(...) or take .law of a fit result")
    return law


def check_laws(laws_by_router) -> dict:
    """A non-empty ``{router: RoutedLaw}`` mapping (e.g. ``paper.table3()``) as a plain dict, or a
    ValidationError naming the bad entry. Row and table builders that take several laws call it."""
    if not isinstance(laws_by_router, Mapping) or not laws_by_router:
        raise ValidationError("laws", "must be a non-empty dict router -> RoutedLaw", "e.g. paper.table3()")
    for k, v in laws_by_router.items():
        if not isinstance(v, RoutedLaw):
            raise ValidationError(f"laws[{k!r}]", f"must be a RoutedLaw, got {type(v).__name__}",
                                  "build one with RoutedLaw(...) or take .law of a fit result")
    return dict(laws_by_router)


def _out(a: np.ndarray, like) -> np.ndarray | float:
    return float(a[0]) if np.ndim(like) == 0 else a


_E_FIX = "expert counts are >= 1; a dense model is E = 1"
_L_FIX = "losses are positive cross-entropies in nats; pass L, not log L"
_N_FIX = "N is the dense (non-embedding) parameter count, not log10 N"


# ----------------------------------------------------------------------------- the law
def saturating_experts(E, e_start: float, e_max: float):
    """E^ (Clark et al.'s saturating transform): E^(1) = e_start, ~E for 1 << E << e_max, -> e_max."""
    E_n = _array("E", E, min_value=1.0, fix=_E_FIX)
    _check_sat("saturating_experts", e_start, e_max)
    s = 1.0 / e_start - 1.0 / e_max
    return _out(1.0 / (s / ((E_n - 1.0) * s + 1.0) + 1.0 / e_max), E)


def _logs(N, E, law: RoutedLaw):
    N_n = _array("N", N, positive=True, fix=_N_FIX)
    E_n = _array("E", E, min_value=1.0, fix=_E_FIX)
    if N_n.size != E_n.size and N_n.size != 1 and E_n.size != 1:
        raise ValidationError("E", f"has {E_n.size} values but N has {N_n.size}", "pass one E per N, or a scalar")
    return np.log10(N_n), np.log10(saturating_experts(E_n, law.e_start, law.e_max))


def predict_loss(N, E, law: RoutedLaw):
    """L(N, E) from Eq. 1 (vectorised; scalars in, float out)."""
    x, z = _logs(N, E, _check_law(law))
    out = 10.0 ** (law.a * x + law.b * z + law.c * x * z + law.d)
    return _out(out, N) if np.ndim(E) == 0 else out


def dense_slope(law: RoutedLaw) -> float:
    """d log10 L / d log10 N of the dense model (E = 1, E^ = e_start): a + c log10 e_start."""
    return _check_law(law).a + law.c * math.log10(law.e_start)


def effective_params(N, E, law: RoutedLaw):
    """Effective Parameter Count N-bar: the dense size with the same loss, L(N-bar, 1) = L(N, E)."""
    slope = dense_slope(law)
    if slope >= 0:
        raise ValidationError("law", f"dense slope a + c log10 e_start = {slope:.4g} is not negative",
                              "the EPC needs a law whose dense loss falls with N")
    x, z = _logs(N, E, law)
    z1 = math.log10(law.e_start)
    log_l = law.a * x + law.b * z + law.c * x * z + law.d
    out = 10.0 ** ((log_l - law.b * z1 - law.d) / slope)
    return _out(out, N) if np.ndim(E) == 0 else out


def cutoff_params(law: RoutedLaw) -> float:
    """N_cutoff = 10^(-b/c): beyond it d log L / d log E^ = b + c log10 N > 0, more experts stop
    helping. ``inf`` when c <= 0 (the benefit of experts never shrinks with N)."""
    _check_law(law)
    if law.c <= 0:
        return math.inf
    with np.errstate(over="ignore"):
        return float(np.power(10.0, -law.b / law.c))


def iso_loss_curve(law: RoutedLaw, loss: float, E_values):
    """The N that reaches ``loss`` at each E in ``E_values`` (nan where the law never gets there)."""
    _check_law(law)
    log_l = math.log10(_array("loss", [loss], positive=True, fix=_L_FIX)[0])
    E_n = _array("E_values", E_values, min_value=1.0, fix=_E_FIX)
    z = np.log10(saturating_experts(E_n, law.e_start, law.e_max))
    slope = law.a + law.c * z
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(slope < 0, 10.0 ** ((log_l - law.b * z - law.d) / slope), np.nan)
    return _out(out, E_values)


def predict_fb_loss(F, B, law: FBLaw):
    """L(F, B) from Eq. 2 (F FLOPs per token, B = P / F)."""
    _check_law(law, FBLaw)
    f = np.log10(_array("F", F, positive=True))
    b = np.log10(_array("B", B, positive=True))
    out = 10.0 ** (law.a * f + law.b * b + law.c * f * b + law.d)
    return _out(out, F) if np.ndim(B) == 0 else out


# ----------------------------------------------------------------------------- fit results
@dataclass(frozen=True)
class FitResult:
    """A fitted law with 95% percentile-bootstrap intervals (``ci`` is (nan, nan) without bootstrap).

    ``residuals`` are log10 L_observed - log10 L_fit per point; ``samples[name]`` holds the bootstrap
    values of each parameter (empty without bootstrap); ``n_unconverged`` counts resamples still
    drifting along the flat e_max -> e_start ridge when the solver stopped (kept in the intervals).
    ``warnings`` say when the point fit is degenerate or sits on a bound (see ``fit_warnings``).
    """

    law: RoutedLaw
    ci: dict
    rmse: float
    n_points: int
    residuals: np.ndarray
    n_bootstrap: int = 0
    samples: dict = field(default_factory=dict, repr=False)
    n_unconverged: int = 0
    saturating: bool = True
    huber_delta: float = fitting.HUBER_DELTA
    warnings: tuple = ()

    @property
    def degenerate(self) -> bool:
        """True when E^ barely moves over the runs, so a, b, c, d are not individually meaningful."""
        return any(w.startswith("degenerate") for w in self.warnings)

    def bootstrap_laws(self) -> list[RoutedLaw]:
        if not self.n_bootstrap:
            return []
        cols = [self.samples[k] for k in LAW_PARAMS]
        return [RoutedLaw(*map(float, row)) for row in zip(*cols)]

    def ci_of(self, fn: Callable[[RoutedLaw], float], level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of any derived quantity, e.g. ``fit.ci_of(cutoff_params)``."""
        return fitting.percentile_ci([fn(law) for law in self.bootstrap_laws()], level)

    def to_dict(self) -> dict:
        return {"law": self.law.as_dict(), "ci": {k: list(v) for k, v in self.ci.items()}, "rmse": self.rmse,
                "n_points": self.n_points, "n_bootstrap": self.n_bootstrap,
                "n_unconverged": self.n_unconverged, "saturating": self.saturating,
                "huber_delta": self.huber_delta, "warnings": list(self.warnings)}


@dataclass(frozen=True)
class LinearFit:
    """A fitted linear-in-log law (dense power law or Eq. 2) with bootstrap intervals."""

    params: dict
    ci: dict
    rmse: float
    n_points: int
    residuals: np.ndarray
    n_bootstrap: int = 0
    samples: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class DenseFit(LinearFit):
    """L = (N_c / N)^alpha_N; unpacks as ``alpha_N, N_c = fit_dense_law(N, loss)``."""

    @property
    def alpha_N(self) -> float:
        return self.params["alpha_N"]

    @property
    def N_c(self) -> float:
        return self.params["N_c"]

    def __iter__(self):
        return iter((self.alpha_N, self.N_c))


@dataclass(frozen=True)
class FBFit(LinearFit):
    """Eq. 2 fit; ``.law`` is an FBLaw."""

    @property
    def law(self) -> FBLaw:
        return FBLaw(**{k: self.params[k] for k in ("a", "b", "c", "d")})


@dataclass(frozen=True)
class SlopeFit:
    """Separable fits: one least-squares line per group (``by`` = "E" or "N"), then a line through
    the slopes against log10 of the group key. A non-zero ``trend_slope`` is the interaction c."""

    by: str
    keys: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    n_points: np.ndarray
    trend_slope: float
    trend_intercept: float

    @property
    def zero_crossing(self) -> float:
        """The key where the fitted slope reaches zero (for ``by="N"``: a separable N_cutoff)."""
        if not self.trend_slope > 0:
            return math.inf
        with np.errstate(over="ignore"):
            return float(np.power(10.0, -self.trend_intercept / self.trend_slope))


@dataclass(frozen=True)
class ExtrapolationCheck:
    """Fit without the largest N, predict it: how far the law extrapolates one size up (log10 L)."""

    held_out_N: float
    law: RoutedLaw
    n_train: int
    n_test: int
    rmse_train: float
    rmse_test: float
    mean_residual_test: float
    residuals_test: np.ndarray


# ----------------------------------------------------------------------------- fitters
def _inputs(N, E, loss):
    N_n = _array("N", N, positive=True, fix=_N_FIX)
    E_n = _array("E", E, min_value=1.0, fix=_E_FIX)
    L_n = _array("loss", loss, positive=True, fix=_L_FIX)
    for name, a in (("E", E_n), ("loss", L_n)):
        if a.size != N_n.size:
            raise ValidationError(name, f"has {a.size} values but N has {N_n.size}", "pass one value per run")
    return N_n, E_n, L_n


def validate_runs(N, E, loss) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs (N, E, loss) as float arrays, or a ValidationError naming the bad field (NaN, <= 0, lengths)."""
    return _inputs(N, E, loss)


def _need_points(n: int, n_params: int, what: str) -> None:
    if n < n_params:
        raise ValidationError("N", f"{n} point(s) cannot determine the {n_params} parameters of {what}",
                              f"fit at least {n_params} runs (more for useful intervals)")


def _flag(name: str, value) -> bool:
    """A true/false option: only ``True``/``False`` (or numpy bools), never a string such as "no"."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValidationError(name, f"must be True or False, got {value!r}", f"pass {name}=True or {name}=False")
    return bool(value)


MAX_BOOTSTRAP = 100_000
"""Most bootstrap resamples one fit takes: the solver holds every resample's Jacobian at once (about
n x 6 x 8 bytes each), and 1000 already gives 95% intervals to about a percent."""


def _bootstrap(bootstrap, seed) -> tuple[int, int]:
    for name, v in (("bootstrap", bootstrap), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValidationError(name, f"must be an integer >= 0, got {v!r}",
                                  "bootstrap: 0 for no intervals, ~1000 for 95% intervals" if name == "bootstrap"
                                  else "any non-negative integer")
    if bootstrap > MAX_BOOTSTRAP:
        raise ValidationError("bootstrap", f"must be <= {MAX_BOOTSTRAP:,}, got {bootstrap:,}",
                              "about 1000 resamples give 95% intervals")
    return int(bootstrap), int(seed)


def _ok(keys: list[np.ndarray], mins: list[int], n_params: int):
    """Identifiability test of a bootstrap resample: enough distinct values of each key and points."""
    pair = np.unique(np.stack(keys, 1), axis=0, return_inverse=True)[1].ravel()
    n_cells = int(pair.max()) + 1
    if n_cells < n_params + 2:
        # With n_params cells every identifiable resample is the full set (zero spread); with one more,
        # almost none is identifiable. Two spare cells is the least that gives intervals a meaning.
        raise ValidationError("bootstrap", f"{n_cells} distinct runs for {n_params} parameters: too few for "
                              "bootstrap intervals (resamples would be unidentifiable or all alike)",
                              f"pass bootstrap=0 for the point fit only, or fit at least {n_params + 2} distinct runs")

    def ok(mask):
        if np.unique(pair[mask]).size < n_params:
            return False
        return all(np.unique(k[mask]).size >= m for k, m in zip(keys, mins))

    return ok


def _ci(samples: dict, names) -> dict:
    return {k: fitting.percentile_ci(samples[k]) if samples else (math.nan, math.nan) for k in names}


def fit_warnings(law: RoutedLaw, E) -> tuple[str, ...]:
    """Plain-words flags for a fitted saturating law over the runs' expert counts ``E``.

    Degenerate: e_start >= the largest E (or log10 E^ spanning < 5 % of log10 E's span) means E^ barely
    moves over the data, so the fit is near-linear in E and a, b, c, d trade off against each other.
    On a bound: e_max / e_start at its 1e7 cap means no saturation was seen; e_start at its lower
    bound 1 means the fit wanted saturation to begin below one expert, i.e. the first experts already
    give most of the gain (its interval is then one-sided).
    """
    law = _check_law(law)
    E_n = np.unique(_array("E", E, min_value=1.0, fix=_E_FIX))
    if not law.saturating or E_n.size < 2:
        return ()
    out = []
    span_e = float(np.log10(E_n[-1] / E_n[0]))
    eh = saturating_experts(E_n, law.e_start, law.e_max)
    span_h = float(np.log10(eh[-1] / eh[0]))
    if law.e_start >= E_n[-1] or span_h < 0.05 * span_e:
        out.append(f"degenerate: e_start = {law.e_start:.4g} vs E up to {E_n[-1]:g}, so log10 E^ spans only "
                   f"{span_h:.3f} of log10 E's {span_e:.2f} dex over these runs; the law is near-linear in E "
                   "here and a, b, c, d trade off: do not read them as Table 3's (these runs are not log-linear in E)")
    if law.e_max / law.e_start >= 10 ** fitting.Q_MAX * (1 - 1e-6):
        out.append(f"e_max / e_start at its cap 1e{fitting.Q_MAX:g}: no saturation seen in these runs")
    if law.e_start <= 1 + 1e-6:
        out.append(f"e_start at its lower bound 1 (e_max = {law.e_max:.4g}): the gain over dense comes mostly "
                   "from the first experts in these runs, so b, c and the saturation are loosely fixed")
    return tuple(out)


def fit_routed_law(N, E, loss, *, saturating: bool = True, bootstrap: int = 0, seed: int = 0) -> FitResult:
    """Fit Eq. 1 (with E^ when ``saturating``, else E^ = E and only a, b, c, d) to runs (N, E, L).

    Dense runs enter at E = 1. Summed Huber (delta 1e-3) in log10 L, equal weight per run; a grid
    of 30 (e_start, e_max) starts; ``bootstrap`` resamples of the runs give 95% percentile intervals.
    """
    saturating = _flag("saturating", saturating)
    N_n, E_n, L_n = _inputs(N, E, loss)
    boot, seed = _bootstrap(bootstrap, seed)
    n_params = 6 if saturating else 4
    n_e = np.unique(E_n).size
    if n_e == 1:
        raise ValidationError("E", f"every run has E = {E_n[0]:g}: " + (
            "E_start and E_max are not identifiable" if saturating else "b and c are not identifiable"),
            "fit runs at several expert counts (include the dense E = 1 runs)")
    if saturating and n_e < 3:
        raise ValidationError("E", f"only {n_e} distinct expert counts: E_start and E_max are not identifiable",
                              "fit at least 3 expert counts, or pass saturating=False")
    if np.unique(N_n).size < 2:
        raise ValidationError("N", "every run has the same N: a and c are not identifiable",
                              "fit runs of at least two model sizes")
    _need_points(N_n.size, n_params, "Eq. 1" + (" with E^" if saturating else ""))
    x, y = np.log10(N_n), np.log10(L_n)
    x0 = float(x.mean())
    xc = x - x0
    if saturating:
        model = fitting.saturating_model(xc, E_n, y)
    else:
        lz = np.log10(E_n)
        model = fitting.linear_model(np.stack([xc, lz, xc * lz, np.ones_like(xc)], 1), y)

    def to_params(th_BP):
        th_BP = np.atleast_2d(th_BP)
        a, b, c, d = th_BP[:, 0], th_BP[:, 1] - th_BP[:, 2] * x0, th_BP[:, 2], th_BP[:, 3] - th_BP[:, 0] * x0
        if saturating:
            es, em = 10.0 ** th_BP[:, 4], 10.0 ** (th_BP[:, 4] + th_BP[:, 5])
        else:
            es, em = np.ones_like(a), np.full_like(a, np.inf)
        return dict(zip(LAW_PARAMS, (a, b, c, d, es, em)))

    th, _ = fitting.fit_point(model, np.ones_like(y))
    law = RoutedLaw(*(float(v[0]) for v in to_params(th).values()))
    resid = y - np.log10(predict_loss(N_n, E_n, law))
    samples, n_unconv = {}, 0
    if boot:
        ok = _ok([x, E_n], [2, 3 if saturating else 2], n_params)
        counts = fitting.bootstrap_counts(N_n.size, boot, seed, ok)
        th_b, conv = fitting.fit_bootstrap(model, th, counts)
        samples = to_params(th_b)
        n_unconv = int((~conv).sum())
    return FitResult(law=law, ci=_ci(samples, LAW_PARAMS), rmse=float(np.sqrt(np.mean(resid ** 2))),
                     n_points=int(N_n.size), residuals=resid, n_bootstrap=boot, samples=samples,
                     n_unconverged=n_unconv, saturating=bool(saturating),
                     warnings=fit_warnings(law, E_n) if saturating else ())


def _linear_fit(cls, X, y, convert, keys, mins, boot, seed):
    model = fitting.linear_model(X, y)
    th, _ = fitting.fit_point(model, np.ones_like(y))
    params = {k: float(v[0]) for k, v in convert(th).items()}
    resid = y - X @ th
    samples = {}
    if boot:
        counts = fitting.bootstrap_counts(y.size, boot, seed, _ok(keys, mins, X.shape[1]))
        samples = convert(fitting.fit_bootstrap(model, th, counts)[0])
    return cls(params=params, ci=_ci(samples, params), rmse=float(np.sqrt(np.mean(resid ** 2))),
               n_points=int(y.size), residuals=resid, n_bootstrap=boot, samples=samples)


def fit_dense_law(N, loss, *, bootstrap: int = 0, seed: int = 0) -> DenseFit:
    """Fit the dense power law L = (N_c / N)^alpha_N (Huber in log10 L); unpacks to (alpha_N, N_c)."""
    N_n = _array("N", N, positive=True, fix=_N_FIX)
    L_n = _array("loss", loss, positive=True, fix=_L_FIX)
    if L_n.size != N_n.size:
        raise ValidationError("loss", f"has {L_n.size} values but N has {N_n.size}", "pass one loss per run")
    if np.unique(N_n).size < 2:
        raise ValidationError("N", "needs at least two distinct model sizes", "fit dense runs of several sizes")
    boot, seed = _bootstrap(bootstrap, seed)
    x = np.log10(N_n)
    x0 = float(x.mean())

    def convert(th):
        th = np.atleast_2d(th)
        alpha = -th[:, 0]
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            n_c = 10.0 ** ((th[:, 1] - th[:, 0] * x0) / alpha)
        return {"alpha_N": alpha, "N_c": n_c}

    X = np.stack([x - x0, np.ones_like(x)], 1)
    return _linear_fit(DenseFit, X, np.log10(L_n), convert, [x], [2], boot, seed)


def fit_fb_law(F, B, loss, *, bootstrap: int = 0, seed: int = 0) -> FBFit:
    """Fit Eq. 2, log10 L = a log10 F + b log10 B + c log10 F log10 B + d (B = P / F), Huber in log10 L."""
    F_n = _array("F", F, positive=True, fix="F is FLOPs per token (forward), not its log")
    B_n = _array("B", B, positive=True, fix="B = P / F, total parameters over FLOPs per token")
    L_n = _array("loss", loss, positive=True, fix=_L_FIX)
    for name, a in (("B", B_n), ("loss", L_n)):
        if a.size != F_n.size:
            raise ValidationError(name, f"has {a.size} values but F has {F_n.size}", "pass one value per run")
    for name, a in (("F", F_n), ("B", B_n)):
        if np.unique(a).size < 2:
            raise ValidationError(name, "has a single distinct value: its coefficients are not identifiable",
                                  "fit runs that vary both F and B")
    _need_points(F_n.size, 4, "Eq. 2")
    boot, seed = _bootstrap(bootstrap, seed)
    f, lb = np.log10(F_n), np.log10(B_n)
    f0 = float(f.mean())
    fc = f - f0

    def convert(th):
        th = np.atleast_2d(th)
        return {"a": th[:, 0], "b": th[:, 1] - th[:, 2] * f0, "c": th[:, 2], "d": th[:, 3] - th[:, 0] * f0}

    X = np.stack([fc, lb, fc * lb, np.ones_like(fc)], 1)
    return _linear_fit(FBFit, X, np.log10(L_n), convert, [f, lb], [2, 2], boot, seed)


def _slopes(by, keys, x, y, trend_x) -> SlopeFit:
    groups, slopes, icepts, counts = [], [], [], []
    for k in np.unique(keys):
        m = keys == k
        if np.unique(x[m]).size < 2:
            continue
        s, i = np.polyfit(x[m], y[m], 1)
        groups.append(k), slopes.append(s), icepts.append(i), counts.append(int(m.sum()))
    if len(groups) < 2:
        raise ValidationError("N" if by == "E" else "E", f"fewer than two {by} groups with two or more points",
                              "fit a grid of several sizes x several expert counts")
    g = np.array(groups, float)
    ts, ti = np.polyfit(trend_x(g), slopes, 1)
    return SlopeFit(by, g, np.array(slopes), np.array(icepts), np.array(counts), float(ts), float(ti))


def fit_per_expert_slopes(N, E, loss) -> SlopeFit:
    """Per expert count, least squares of log10 L on log10 N; the slopes a(E) trend with log10 E by c."""
    N_n, E_n, L_n = _inputs(N, E, loss)
    return _slopes("E", E_n, np.log10(N_n), np.log10(L_n), np.log10)


def fit_per_size_slopes(N, E, loss, *, law: RoutedLaw | None = None) -> SlopeFit:
    """Per model size, least squares of log10 L on log10 E (log10 E^ of ``law`` if given); the slopes
    b(N) = b + c log10 N rise with N, and reach zero at a separable N_cutoff (``zero_crossing``)."""
    N_n, E_n, L_n = _inputs(N, E, loss)
    z = np.log10(E_n if law is None else saturating_experts(E_n, _check_law(law).e_start, law.e_max))
    return _slopes("N", N_n, z, np.log10(L_n), np.log10)


def extrapolation_check(N, E, loss, *, saturating: bool = True) -> ExtrapolationCheck:
    """Leave the largest N out, fit the rest, and report the error predicting it (log10 L)."""
    saturating = _flag("saturating", saturating)
    N_n, E_n, L_n = _inputs(N, E, loss)
    top = float(N_n.max())
    test = N_n == top
    if test.all() or np.unique(N_n[~test]).size < 2:
        raise ValidationError("N", "needs at least three distinct model sizes to hold out the largest",
                              "add runs of more sizes")
    fit = fit_routed_law(N_n[~test], E_n[~test], L_n[~test], saturating=saturating)
    r = np.log10(L_n[test]) - np.log10(predict_loss(N_n[test], E_n[test], fit.law))
    return ExtrapolationCheck(top, fit.law, int((~test).sum()), int(test.sum()), fit.rmse,
                              float(np.sqrt(np.mean(r ** 2))), float(r.mean()), r)


__all__ = [
    "RoutedLaw", "FBLaw", "FitResult", "LinearFit", "DenseFit", "FBFit", "SlopeFit", "ExtrapolationCheck",
    "LAW_PARAMS", "saturating_experts", "predict_loss", "dense_slope", "effective_params", "cutoff_params",
    "iso_loss_curve", "predict_fb_loss", "fit_routed_law", "fit_warnings", "fit_dense_law", "fit_fb_law",
    "fit_per_expert_slopes", "fit_per_size_slopes", "extrapolation_check", "validate_runs", "check_laws",
    "MAX_BOOTSTRAP",
]
