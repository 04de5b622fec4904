"""Input checks of the analysis layer: early ValueErrors that name the value and the limit."""

from __future__ import annotations

import numpy as np

from lltolab.diffusion import check_nonnegative, check_positive

__all__ = [
    "as_positive",
    "as_nonnegative",
    "as_temperature",
    "as_vector",
    "as_fraction_array",
    "as_positive_array",
]


# scalar checks are the diffusion twin's (same wording: the name, the value, the limit)
as_positive = check_positive
as_nonnegative = check_nonnegative


def as_temperature(name: str, value: object) -> np.ndarray:
    """Temperatures in kelvin (scalar or array): finite and > 0 K."""
    t = np.asarray(value, dtype=float)
    if t.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} must be finite (no NaN/inf), got {value!r}")
    if np.any(t <= 0):
        raise ValueError(f"{name} must be > 0 K (kelvin), got minimum {t.min()!r}")
    return t


def as_vector(name: str, value: object, *, min_len: int = 1) -> np.ndarray:
    """A finite 1-D float array of at least ``min_len`` entries."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if a.size < min_len:
        raise ValueError(f"{name} has {a.size} points, need at least {min_len}")
    if not np.all(np.isfinite(a)):
        first = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {first})")
    return a


def as_fraction_array(name: str, value: object, *, allow_nan: bool = False) -> np.ndarray:
    """An array of ⁶Li fractions in [0, 1] (NaN rejected unless ``allow_nan``)."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if np.any(bad):
        what = "inf" if allow_nan else "NaN or inf"
        raise ValueError(f"{name} contains {what} ({int(bad.sum())} values)")
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise ValueError(f"{name} has no finite values")
    if finite.min() < 0 or finite.max() > 1:
        raise ValueError(
            f"{name} must lie in [0, 1] (a 6Li fraction), got values in "
            f"[{finite.min():.6g}, {finite.max():.6g}]"
        )
    return a


def as_positive_array(name: str, value: object) -> np.ndarray:
    """A non-empty array of finite values > 0."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN/inf)")
    if np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got minimum {a.min()!r}")
    return a
