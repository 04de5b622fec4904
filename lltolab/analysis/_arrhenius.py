"""Arrhenius fits: D = D0 exp(−E_a / k_B T), E_a in eV, by weighted linear least squares of
ln D against 1/(k_B T)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lltolab.diffusion import K_B_EV

from ._checks import as_positive_array, as_temperature

__all__ = ["ArrheniusFit", "fit_arrhenius"]


@dataclass(frozen=True)
class ArrheniusFit:
    """Result of :func:`fit_arrhenius`.

    Attributes
    ----------
    ea_eV, ea_stderr_eV : float
        Activation energy and its standard error (eV).
    prefactor : float
        D0, in the unit of the data (e.g. cm²/s).
    ln_prefactor_stderr : float
        Standard error of ln D0 (the prefactor's error is multiplicative).
    prefactor_stderr : float
        First-order standard error of D0 (= D0 · ln_prefactor_stderr).
    covariance : tuple
        Covariance of (ln D0, E_a) as ((var, cov), (cov, var)).
    n_points : int
    rms_ln : float
        Root-mean-square residual of ln D.
    """

    ea_eV: float
    ea_stderr_eV: float
    prefactor: float
    ln_prefactor_stderr: float
    prefactor_stderr: float
    covariance: tuple[tuple[float, float], tuple[float, float]]
    n_points: int
    rms_ln: float

    def predict(self, temperature_K: float | np.ndarray) -> float | np.ndarray:
        """D(T) of the fitted law."""
        t = as_temperature("temperature_K", temperature_K)
        v = self.prefactor * np.exp(-self.ea_eV / (K_B_EV * t))
        return float(v) if v.ndim == 0 else v

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able summary."""
        return {
            "ea_eV": self.ea_eV, "ea_stderr_eV": _nn(self.ea_stderr_eV),
            "prefactor": self.prefactor, "prefactor_stderr": _nn(self.prefactor_stderr),
            "ln_prefactor_stderr": _nn(self.ln_prefactor_stderr), "n_points": self.n_points,
            "rms_ln": self.rms_ln,
        }


def _nn(v: float) -> float | None:
    return v if math.isfinite(v) else None


def fit_arrhenius(
    temperature_K: np.ndarray,
    d: np.ndarray,
    *,
    sigma: np.ndarray | None = None,
) -> ArrheniusFit:
    """Fit ``d = prefactor · exp(−ea_eV / k_B T)``.

    Parameters
    ----------
    temperature_K : array_like
        Temperatures (K), at least two distinct.
    d : array_like
        Values (> 0) in any unit (cm²/s, cm/s ...): the prefactor is in the same unit.
    sigma : array_like, optional
        Standard errors of ``d`` (absolute): weights (relative error σ/d on ln d) and error
        scale (covariance scaled by max(1, χ²_red)). Without it the errors come from the
        scatter (none with two points: reported as NaN).

    Returns
    -------
    ArrheniusFit
    """
    t = as_temperature("temperature_K", temperature_K).ravel()
    y = as_positive_array("d", d).ravel()
    if t.shape != y.shape:
        raise ValueError(f"temperature_K has {t.size} values but d has {y.size}")
    if t.size < 2:
        raise ValueError(f"{t.size} point(s) cannot determine 2 parameters (E_a, prefactor)")
    if np.ptp(t) == 0:
        raise ValueError("temperature_K must contain at least two distinct temperatures")
    beta = 1.0 / (K_B_EV * t)
    ly = np.log(y)
    if sigma is None:
        w = np.ones_like(ly)
    else:
        s = np.asarray(sigma, dtype=float).ravel()
        if s.shape != y.shape or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("sigma must be finite, > 0 and one per value of d")
        w = y / s  # 1 / σ(ln d)
    x = np.column_stack([np.ones_like(beta), -beta]) * w[:, None]
    coef, *_ = np.linalg.lstsq(x, ly * w, rcond=None)
    res = ly * w - x @ coef
    dof = t.size - 2
    xtx_inv = np.linalg.inv(x.T @ x)
    if sigma is not None:
        s2 = max(1.0, float(res @ res) / dof) if dof > 0 else 1.0
    else:
        s2 = float(res @ res) / dof if dof > 0 else math.nan
    cov = xtx_inv * s2
    ln_a, ea = float(coef[0]), float(coef[1])
    sd_ln_a = math.sqrt(cov[0, 0]) if math.isfinite(cov[0, 0]) else math.nan
    pref = math.exp(ln_a)
    rms = float(np.sqrt(np.mean((ly - (ln_a - ea * beta)) ** 2)))
    return ArrheniusFit(
        ea_eV=ea, ea_stderr_eV=math.sqrt(cov[1, 1]) if math.isfinite(cov[1, 1]) else math.nan,
        prefactor=pref, ln_prefactor_stderr=sd_ln_a, prefactor_stderr=pref * sd_ln_a,
        covariance=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        n_points=int(t.size), rms_ln=rms,
    )
