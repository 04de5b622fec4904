"""Counts of a pulse-counting (TDC) detector, as the SIMS reduction stores them.

Thin adapters over :mod:`lltolab.formulas` (the one home of the dead-time correction and the
isotope fraction) with the shapes a reduction wants: integer pulse counts, no variances, empty
arrays passed through.
"""

from __future__ import annotations

import numpy as np

from lltolab.formulas import dead_time_correct as _dead_time_correct

__all__ = ["dead_time_correct", "isotope_fraction_map"]


def dead_time_correct(counts: np.ndarray, n_pulses: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson dead-time correction of recorded counts.

    Parameters
    ----------
    counts : array of int
        Recorded counts per pixel (0 <= counts <= n_pulses).
    n_pulses : int
        Pulses integrated per pixel, N (>= 1).

    Returns
    -------
    corrected : np.ndarray of float64
        ``-N ln(1 - I/N)``; NaN where the pixel is saturated (I = N).
    saturated : np.ndarray of bool
        Pixels with I = N.

    Raises
    ------
    ValueError
        ``n_pulses`` < 1, negative counts or counts above ``n_pulses``.
    """
    if not (isinstance(n_pulses, int | np.integer) and n_pulses >= 1):
        raise ValueError(f"n_pulses must be an integer >= 1, got {n_pulses!r}")
    i = np.asarray(counts)
    if i.size == 0:
        return np.zeros(i.shape), np.zeros(i.shape, dtype=bool)
    if i.max() > n_pulses:
        raise ValueError(
            f"counts up to {i.max()} exceed the {n_pulses} pulses per pixel (at most one count "
            "per pulse)"
        )
    corrected, _, saturated = _dead_time_correct(i, int(n_pulses))
    return corrected, saturated


def isotope_fraction_map(
    i6: np.ndarray, i7: np.ndarray, n_pulses: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """6Li fraction C = I6 / (I6 + I7) per pixel, dead-time corrected when ``n_pulses`` given.

    Returns
    -------
    c : np.ndarray of float64
        NaN where either isotope is saturated or both counts are zero.
    saturated : np.ndarray of bool
        Pixels where either isotope is saturated (all False without correction).
    """
    a6 = np.asarray(i6)
    a7 = np.asarray(i7)
    if a6.shape != a7.shape:
        raise ValueError(f"6Li and 7Li images differ in shape: {a6.shape} vs {a7.shape}")
    if n_pulses is not None and not (isinstance(n_pulses, int | np.integer) and n_pulses >= 1):
        raise ValueError(f"n_pulses must be an integer >= 1, got {n_pulses!r}")
    if a6.size == 0:
        return np.zeros(a6.shape), np.zeros(a6.shape, dtype=bool)
    if n_pulses is None:
        c6 = a6.astype(np.float64)
        c7 = a7.astype(np.float64)
        saturated = np.zeros(a6.shape, dtype=bool)
    else:
        c6, _, s6 = _dead_time_correct(a6, int(n_pulses))
        c7, _, s7 = _dead_time_correct(a7, int(n_pulses))
        saturated = s6 | s7
    total = c6 + c7
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where((total > 0) & ~saturated, c6 / np.where(total > 0, total, 1.0), np.nan)
    return c, saturated
