"""The scaling laws of Clark et al. 2022 as functions: Eq. 1 with the saturating E-hat, Eq. 2 in
(F, B), the Effective Parameter Count, N_cutoff and iso-loss curves (the public API is ``routing_laws.laws``).

    log10 L(N, E) = a log10 N + b log10 E^ + c log10 N log10 E^ + d                  (Eq. 1)
    1/E^ = 1 / (E - 1 + (1/e_start - 1/e_max)^-1) + 1/e_max      (E^(1) = e_start, E^ -> e_max)
    log10 L(F, B) = a log10 F + b log10 B + c log10 F log10 B + d,  B = P / F        (Eq. 2)

All logs are base 10. Names: N dense (non-embedding) parameters, E experts, L loss, F FLOPs per
token, B = P / F with P total parameters; arrays are 1-D.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

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
