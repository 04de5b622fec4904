"""Input checks shared by the diffusion twin: early ValueErrors naming the value and the limit."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_positive", "check_nonnegative", "check_fraction", "check_temperature"]


def _finite(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if finite and > 0, else raise ValueError naming it."""
    v = _finite(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as float if finite and >= 0, else raise ValueError naming it."""
    v = _finite(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def check_temperature(name: str, value: float) -> float:
    """Return a temperature in kelvin if finite and > 0 K, else raise ValueError naming it."""
    v = _finite(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0 K (kelvin), got {value!r}")
    return v


def check_fraction(name: str, value: float | np.ndarray) -> float | np.ndarray:
    """Check an isotope fraction (scalar or array) lies in [0, 1] and is not NaN."""
    arr = np.asarray(value, dtype=float)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN/inf), got {value!r}")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{arr.min():.6g}, {arr.max():.6g}]"
        )
    return float(arr) if arr.ndim == 0 else arr
