"""Result types of the scaling-law fits (the public API is ``routing_laws.laws``): the fitted law
with its bootstrap samples and intervals, linear-in-log fits, separable slope fits and the
extrapolation check. Arrays are 1-D over the n fitted points (runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from routing_laws import laws_fit as _fit
from routing_laws.law_forms import LAW_PARAMS, FBLaw, RoutedLaw
from routing_laws.laws_fit import HUBER_DELTA


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
    huber_delta: float = HUBER_DELTA
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
        return _fit.percentile_ci([fn(law) for law in self.bootstrap_laws()], level)

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
