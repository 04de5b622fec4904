"""Closed-form relations shared across layers, each defined once (imports only numpy).

- Counting: the Poisson dead-time correction of a pulse-counting (TDC) detector and the ⁶Li
  fraction C = I6 / (I6 + I7) with its counting error (docs/science.md, "Counting").
- Transport: the series model of grains and boundaries for D*_eff and the diffusion length
  √(2 D t) (docs/science.md, "Series model" and "Quench").

The relations are unit-agnostic: give consistent units (SI in the twin and the plans, cm and s
in the analysis) and the result comes back in the same system.

A pulse-counting detector records at most one ion per primary pulse, so the recorded counts I
of N pulses follow Binomial(N, 1 − e^(−μ)) for a true mean of μ ions per pulse. The Poisson
dead-time correction ``I_corr = −N ln(1 − I/N)`` is the maximum-likelihood estimate of N μ;
its variance, propagated from the binomial variance N p (1 − p) with dI_corr/dI = 1/(1 − I/N),
is ``I / (1 − I/N)`` (→ I, plain Poisson, for I ≪ N). A pixel with I = N (every pulse counted)
has no finite estimate: it is *saturated* and reported as NaN, never guessed.
C = I6 / (I6 + I7) with σ_C² = (I7² σ6² + I6² σ7²) / (I6 + I7)⁴.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "IsotopeFraction",
    "dead_time_correct",
    "isotope_fraction",
    "series_deff",
    "diffusion_length",
]


class IsotopeFraction(NamedTuple):
    """⁶Li fraction and its standard error (arrays of the counts' shape).

    ``c`` and ``sigma`` are NaN where a pixel is saturated (I = N on either mass) or has no
    counts at all; :attr:`saturated` tells the two apart.
    """

    c: np.ndarray
    sigma: np.ndarray
    saturated: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Pixels with a finite fraction."""
        return np.isfinite(self.c)


def _counts(name: str, value: object) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of counts") from None
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    if a.min() < 0:
        raise ValueError(f"{name} must be >= 0 counts, got minimum {a.min():g}")
    return a


def _pulses(n_pulses: object) -> float:
    if isinstance(n_pulses, bool) or not isinstance(n_pulses, int | np.integer | float):
        raise ValueError(f"n_pulses must be a positive number of pulses, got {n_pulses!r}")
    n = float(n_pulses)
    if not (np.isfinite(n) and n >= 1):
        raise ValueError(f"n_pulses must be >= 1, got {n_pulses!r}")
    return n


def dead_time_correct(
    counts: np.ndarray, n_pulses: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dead-time corrected counts, their variance and the saturation mask.

    Parameters
    ----------
    counts : array_like
        Recorded counts (0 <= I <= n_pulses).
    n_pulses : int or float
        Primary pulses integrated per pixel, N (>= 1).

    Returns
    -------
    corrected, variance : ndarray of float64
        ``−N ln(1 − I/N)`` and ``I / (1 − I/N)``; NaN where saturated.
    saturated : ndarray of bool
        I = N.

    Raises
    ------
    ValueError
        Empty, non-finite or negative counts, ``n_pulses`` < 1, or counts above ``n_pulses``.
    """
    n = _pulses(n_pulses)
    i = _counts("counts", counts)
    if i.max() > n:
        raise ValueError(
            f"counts up to {i.max():g} exceed n_pulses={n:g} (at most one count per pulse)"
        )
    saturated = i >= n
    frac = np.where(saturated, 0.0, i / n)
    corrected = np.where(saturated, np.nan, -n * np.log1p(-frac))
    variance = np.where(saturated, np.nan, i / (1.0 - frac))
    return corrected, variance, saturated


def isotope_fraction(
    i6: np.ndarray, i7: np.ndarray, n_pulses: float | None = None
) -> IsotopeFraction:
    """⁶Li fraction C = I6 / (I6 + I7) per pixel with its counting error.

    Parameters
    ----------
    i6, i7 : array_like
        Recorded ⁶Li and ⁷Li counts (same shape).
    n_pulses : int, optional
        Pulses per pixel N: when given, both masses are dead-time corrected
        (``−N ln(1 − I/N)``) and the errors follow the binomial statistics; otherwise counts
        are taken as Poisson.

    Returns
    -------
    IsotopeFraction
        ``(c, sigma, saturated)``; NaN where saturated or without counts. A pixel with one
        isotope at zero counts gets that isotope's variance floored at one count, so its
        error is not zero.
    """
    a6 = _counts("i6", i6)
    a7 = _counts("i7", i7)
    if a6.shape != a7.shape:
        raise ValueError(f"i6 and i7 differ in shape: {a6.shape} vs {a7.shape}")
    if n_pulses is None:
        c6, v6, c7, v7 = a6, a6.copy(), a7, a7.copy()
        saturated = np.zeros(a6.shape, dtype=bool)
    else:
        c6, v6, s6 = dead_time_correct(a6, n_pulses)
        c7, v7, s7 = dead_time_correct(a7, n_pulses)
        saturated = s6 | s7
    v6 = np.maximum(v6, 1.0)
    v7 = np.maximum(v7, 1.0)
    total = c6 + c7
    ok = ~saturated & (total > 0)
    safe = np.where(ok, total, 1.0)
    with np.errstate(invalid="ignore"):
        c = np.where(ok, c6 / safe, np.nan)
        sigma = np.where(ok, np.sqrt(c7**2 * v6 + c6**2 * v7) / safe**2, np.nan)
    return IsotopeFraction(c, sigma, saturated)


def series_deff(
    d_bulk: float | np.ndarray, dgb_over_delta: float | np.ndarray,
    grain_size: float | np.ndarray, delta: float | None = None,
) -> float | np.ndarray:
    """Series model of grains and boundaries in one direction: D*_eff.

    Without ``delta`` (grain size l ≫ δ): ``D*_eff = 1 / (1/D*_bulk + 1/(l · D*_gb/δ))``;
    with it: ``(l + δ)/D*_eff = l/D*_bulk + δ/D*_gb``, i.e. ``(l + δ) / (l/D*_bulk +
    1/(D*_gb/δ))``. Valid when l ≪ √(D*_eff t). No input checks: callers validate.

    Parameters
    ----------
    d_bulk : float or array
        D*_bulk (length²/time, e.g. m²/s or cm²/s).
    dgb_over_delta : float or array
        Boundary conductance D*_gb/δ (length/time, same units).
    grain_size : float or array
        Grain size l (length).
    delta : float, optional
        Boundary width δ (length).
    """
    if delta is None:
        return 1.0 / (1.0 / d_bulk + 1.0 / (grain_size * dgb_over_delta))
    return (grain_size + delta) / (grain_size / d_bulk + 1.0 / dgb_over_delta)


def diffusion_length(diffusivity: float, time_s: float) -> float:
    """Diffusion length √(2 D t) of a diffusivity ``D`` over ``time_s`` seconds.

    The root-mean-square displacement along one axis; in the unit of √(D · s) (m for D in
    m²/s). ``D`` and ``time_s`` must be >= 0.
    """
    d, t = float(diffusivity), float(time_s)
    if not (math.isfinite(d) and d >= 0):
        raise ValueError(f"diffusivity must be finite and >= 0, got {diffusivity!r}")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"time_s must be finite and >= 0 s, got {time_s!r}")
    return math.sqrt(2.0 * d * t)
