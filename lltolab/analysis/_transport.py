"""Relations between the transport coefficients (docs/science.md §2): eq. 3, eq. 5/6,
Nernst–Einstein, Haven ratio. Units: cm, s, K; D in cm²/s, D*_gb/δ in cm/s, σ in S/cm, n in cm⁻³.
"""

from __future__ import annotations

import numpy as np

from lltolab import formulas
from lltolab.vocabulary import BOUNDARY_WIDTH_CM

from ._checks import as_positive, as_positive_array, as_temperature

__all__ = [
    "K_B_J_PER_K",
    "E_CHARGE_C",
    "N_LI_PER_CM3",
    "dgb_over_delta_from_step",
    "grain_boundary_diffusivity",
    "series_deff",
    "series_bound_dgb_over_delta",
    "nernst_einstein_d",
    "haven_ratio",
]

K_B_J_PER_K = 1.380649e-23
"""Boltzmann constant (J/K)."""
E_CHARGE_C = 1.602176634e-19
"""Elementary charge (C)."""
N_LI_PER_CM3 = 5.0e21
"""Li concentration of Li0.29La0.57TiO3 used by the paper (cm⁻³; printed with a wrong sign)."""


def _out(v: np.ndarray) -> float | np.ndarray:
    return float(v) if np.ndim(v) == 0 else v


def dgb_over_delta_from_step(
    d_bulk: float | np.ndarray, gradient_per_cm: float | np.ndarray, step: float | np.ndarray
) -> float | np.ndarray:
    """Eq. 3: D*_gb/δ = D*_bulk · (∂C/∂y)_bulk / ΔC_gb, in cm/s.

    Parameters
    ----------
    d_bulk : float or array
        D*_bulk (cm²/s), > 0.
    gradient_per_cm : float or array
        Magnitude of the bulk gradient next to the boundary (cm⁻¹), >= 0.
    step : float or array
        Magnitude of the step of C across the boundary, > 0.

    Examples
    --------
    The paper's Fig. 3e: 2.6e-8 · 1.1 / 0.02 = 1.43e-6 cm/s.
    """
    d = as_positive_array("d_bulk", d_bulk)
    g = np.asarray(gradient_per_cm, dtype=float)
    s = np.asarray(step, dtype=float)
    if g.size == 0 or s.size == 0:
        raise ValueError("gradient_per_cm and step must not be empty")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(s))):
        raise ValueError("gradient_per_cm and step must be finite (no NaN/inf)")
    if np.any(g < 0):
        raise ValueError(f"gradient_per_cm must be a magnitude >= 0, got minimum {g.min()!r}")
    if np.any(s <= 0):
        raise ValueError(
            f"step must be a magnitude > 0 (no step, no finite D_gb/δ), got {s.min()!r}"
        )
    return _out(d * g / s)


def grain_boundary_diffusivity(
    dgb_over_delta: float | np.ndarray, delta_cm: float = BOUNDARY_WIDTH_CM
) -> float | np.ndarray:
    """D*_gb (cm²/s) = (D*_gb/δ) · δ with δ in cm (default 0.5 nm = 5e-8 cm)."""
    k = as_positive_array("dgb_over_delta", dgb_over_delta)
    return _out(k * as_positive("delta_cm", delta_cm))


def series_deff(
    d_bulk: float | np.ndarray,
    dgb_over_delta: float | np.ndarray,
    grain_size_cm: float | np.ndarray,
    *,
    delta_cm: float | None = None,
) -> float | np.ndarray:
    """Series model of grains and boundaries: D*_eff in cm²/s.

    Eq. 6 (l ≫ δ): ``D*_eff = 1 / (1/D*_bulk + 1/(l · D*_gb/δ))``; with ``delta_cm`` given,
    eq. 5: ``(l + δ)/D*_eff = l/D*_bulk + δ/D*_gb``. Valid when l ≪ √(D*_eff t).

    Parameters
    ----------
    d_bulk : float or array
        D*_bulk (cm²/s).
    dgb_over_delta : float or array
        D*_gb/δ (cm/s).
    grain_size_cm : float or array
        Grain size l (cm).
    delta_cm : float, optional
        Boundary thickness δ (cm) for eq. 5.
    """
    d = as_positive_array("d_bulk", d_bulk)
    k = as_positive_array("dgb_over_delta", dgb_over_delta)
    ll = as_positive_array("grain_size_cm", grain_size_cm)
    delta = None if delta_cm is None else as_positive("delta_cm", delta_cm)
    return _out(np.asarray(formulas.series_deff(d, k, ll, delta)))


def series_bound_dgb_over_delta(
    d_eff: float | np.ndarray, d_bulk: float | np.ndarray, grain_size_cm: float | np.ndarray
) -> float | np.ndarray:
    """Eq. 6 solved for D*_gb/δ (cm/s): 1 / (l (1/D*_eff − 1/D*_bulk)); NaN if D_eff >= D_bulk."""
    de = as_positive_array("d_eff", d_eff)
    d = as_positive_array("d_bulk", d_bulk)
    ll = as_positive_array("grain_size_cm", grain_size_cm)
    inv = 1.0 / de - 1.0 / d
    with np.errstate(divide="ignore"):
        out = np.where(inv > 0, 1.0 / (ll * np.where(inv > 0, inv, 1.0)), np.nan)
    return _out(out)


def nernst_einstein_d(
    sigma_S_per_cm: float | np.ndarray,
    temperature_K: float | np.ndarray,
    n_per_cm3: float = N_LI_PER_CM3,
) -> float | np.ndarray:
    """Charge diffusivity D_σ = σ k_B T / (n q²) in cm²/s (σ in S/cm, T in K, n in cm⁻³).

    Example: 1e-3 S/cm at 300 K with n = 5.0e21 cm⁻³ gives 3.2e-8 cm²/s.
    """
    s = as_positive_array("sigma_S_per_cm", sigma_S_per_cm)
    t = as_temperature("temperature_K", temperature_K)
    n = as_positive("n_per_cm3", n_per_cm3)
    return _out(s * K_B_J_PER_K * t / (n * E_CHARGE_C**2))


def haven_ratio(
    d_tracer: float | np.ndarray, d_sigma: float | np.ndarray
) -> float | np.ndarray:
    """Haven ratio H_R = D* / D_σ (dimensionless)."""
    return _out(as_positive_array("d_tracer", d_tracer) / as_positive_array("d_sigma", d_sigma))
