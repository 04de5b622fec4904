"""Eq. 4: long-range profile from a constant-fraction edge, (C − C0)/(Cs − C0) = erfc(x/2√(Dt)).

The fit is least squares in ln D (so D stays positive and its error is relative), optionally
with C0 and/or Cs free and a shift x0 of the origin (the meniscus: the liquid climbs above the
nominal level, which makes x0 > 0). Points with x < x0 lie in the bath and are modelled as Cs.
Units: x in cm, t in s, D in cm²/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.special import erfc

from ._checks import as_fraction_array, as_positive, as_vector

__all__ = ["ErfcFit", "fit_erfc_profile", "erfc_profile"]


def erfc_profile(
    x_cm: np.ndarray, d_eff: float, t_s: float, *, c0: float, cs: float, x0_cm: float = 0.0
) -> np.ndarray:
    """Eq. 4 evaluated at ``x_cm`` (cm): C0 + (Cs − C0) erfc((x − x0) / 2√(D t)); Cs for x < x0."""
    x = np.asarray(x_cm, dtype=float)
    arg = np.maximum(x - x0_cm, 0.0) / (2.0 * math.sqrt(d_eff * t_s))
    return c0 + (cs - c0) * erfc(arg)


@dataclass(frozen=True)
class ErfcFit:
    """Result of :func:`fit_erfc_profile`.

    Attributes
    ----------
    d_eff, stderr : float
        D*_eff and its standard error (cm²/s).
    c0, cs, x0_cm : float
        Fitted (or fixed) background fraction, surface fraction and origin shift (cm).
    c0_stderr, cs_stderr, x0_stderr_cm : float
        Their standard errors (0 when fixed).
    t_s : float
        Exchange time (s).
    residuals : ndarray
        Data − model at every point.
    rms : float
        Root-mean-square residual.
    n_points, dof : int
        Number of points and degrees of freedom.
    free : tuple of str
        Names of the fitted parameters.
    diffusion_length_cm : float
        2√(D t) (cm).
    """

    d_eff: float
    stderr: float
    c0: float
    cs: float
    x0_cm: float
    c0_stderr: float
    cs_stderr: float
    x0_stderr_cm: float
    t_s: float
    residuals: np.ndarray = field(repr=False)
    rms: float
    n_points: int
    dof: int
    free: tuple[str, ...]
    x_cm: np.ndarray = field(repr=False)
    c: np.ndarray = field(repr=False)

    @property
    def diffusion_length_cm(self) -> float:
        """2√(D t) in cm."""
        return 2.0 * math.sqrt(self.d_eff * self.t_s)

    def predict(self, x_cm: np.ndarray) -> np.ndarray:
        """The fitted eq. 4 at ``x_cm`` (cm)."""
        return erfc_profile(x_cm, self.d_eff, self.t_s, c0=self.c0, cs=self.cs,
                            x0_cm=self.x0_cm)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able summary (no arrays but the residual rms)."""
        return {
            "d_eff_cm2_s": self.d_eff, "stderr_cm2_s": self.stderr, "c0": self.c0,
            "cs": self.cs, "x0_cm": self.x0_cm, "c0_stderr": self.c0_stderr,
            "cs_stderr": self.cs_stderr, "x0_stderr_cm": self.x0_stderr_cm, "t_s": self.t_s,
            "rms": self.rms, "n_points": self.n_points, "dof": self.dof,
            "free": list(self.free), "diffusion_length_cm": self.diffusion_length_cm,
        }


def fit_erfc_profile(
    x_cm: np.ndarray,
    c: np.ndarray,
    t_s: float,
    *,
    c0: float,
    cs: float,
    free_c0: bool = False,
    free_cs: bool = False,
    fit_x0: bool = False,
    x0_cm: float = 0.0,
    sigma: np.ndarray | None = None,
    d_guess: float | None = None,
) -> ErfcFit:
    """Fit eq. 4 to a profile measured after ``t_s`` seconds of exchange.

    Parameters
    ----------
    x_cm : array_like
        Distance from the liquid level (cm).
    c : array_like
        ⁶Li fraction at ``x_cm`` (in [0, 1]).
    t_s : float
        Exchange duration (s), > 0.
    c0, cs : float
        Background (natural) and surface (solution) fractions; starting values when free.
    free_c0, free_cs : bool
        Fit C0 / Cs instead of holding them.
    fit_x0 : bool
        Fit the origin shift x0 (cm), the meniscus.
    x0_cm : float
        Origin shift held (or starting value) in cm.
    sigma : array_like, optional
        Standard errors of ``c``: weights, and absolute scale of the errors (the covariance is
        then scaled by max(1, χ²_red)); without it the errors come from the residual scatter.
    d_guess : float, optional
        Starting D (cm²/s); by default from the distance where C crosses half-way.

    Returns
    -------
    ErfcFit
    """
    x = as_vector("x_cm", x_cm)
    cc = as_fraction_array("c", c)
    if cc.shape != x.shape:
        raise ValueError(f"c has shape {cc.shape}, expected {x.shape} like x_cm")
    t_s = as_positive("t_s", t_s)
    c0 = float(as_fraction_array("c0", c0))
    cs = float(as_fraction_array("cs", cs))
    if cs == c0 and not (free_c0 or free_cs):
        raise ValueError(f"cs must differ from c0 (both {c0})")
    w = np.ones_like(x)
    if sigma is not None:
        s = np.asarray(sigma, dtype=float)
        if s.shape != x.shape:
            raise ValueError(f"sigma has shape {s.shape}, expected {x.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("sigma must be finite and > 0 everywhere")
        w = 1.0 / s
    names = ["ln_d"] + [n for n, f in (("c0", free_c0), ("cs", free_cs), ("x0", fit_x0)) if f]
    n_par = len(names)
    if x.size <= n_par:
        raise ValueError(
            f"{x.size} points cannot determine {n_par} parameters ({', '.join(names)}): "
            f"need at least {n_par + 1}"
        )
    span = float(np.ptp(x))
    if span <= 0:
        raise ValueError("x_cm must contain at least two distinct positions")
    if d_guess is None:
        d_guess = _guess_d(x - x0_cm, cc, c0, cs, t_s, span)
    d_guess = as_positive("d_guess", d_guess)
    xscale = max(span, 1e-12)

    def unpack(p: np.ndarray) -> tuple[float, float, float, float]:
        vals = dict(zip(names, p, strict=True))
        return (math.exp(vals["ln_d"]), vals.get("c0", c0), vals.get("cs", cs),
                vals.get("x0", x0_cm / xscale) * xscale)

    def resid(p: np.ndarray) -> np.ndarray:
        d, a0, a_s, x0 = unpack(p)
        return w * (erfc_profile(x, d, t_s, c0=a0, cs=a_s, x0_cm=x0) - cc)

    start = {"ln_d": math.log(d_guess), "c0": c0, "cs": cs, "x0": x0_cm / xscale}
    p0 = np.array([start[n] for n in names])
    sol = least_squares(resid, p0, method="lm", x_scale="jac", xtol=1e-12, ftol=1e-12,
                        gtol=1e-12, max_nfev=2000)
    d, a0, a_s, x0 = unpack(sol.x)
    dof = x.size - n_par
    chi2 = float(sol.fun @ sol.fun)
    s2 = chi2 / dof if dof > 0 else math.nan
    if sigma is not None:
        s2 = max(s2, 1.0)
    jac = sol.jac
    try:
        cov = np.linalg.inv(jac.T @ jac) * s2
        errs = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        errs = np.full(n_par, math.nan)
    err = dict(zip(names, errs, strict=True))
    model = erfc_profile(x, d, t_s, c0=a0, cs=a_s, x0_cm=x0)
    resid_raw = cc - model
    return ErfcFit(
        d_eff=d, stderr=d * float(err["ln_d"]), c0=float(a0), cs=float(a_s), x0_cm=float(x0),
        c0_stderr=float(err.get("c0", 0.0)), cs_stderr=float(err.get("cs", 0.0)),
        x0_stderr_cm=float(err.get("x0", 0.0)) * xscale, t_s=t_s, residuals=resid_raw,
        rms=float(np.sqrt(np.mean(resid_raw**2))), n_points=int(x.size), dof=int(dof),
        free=tuple(n if n != "ln_d" else "d_eff" for n in names), x_cm=x, c=cc,
    )


def _guess_d(x: np.ndarray, c: np.ndarray, c0: float, cs: float, t: float, span: float) -> float:
    """D from the position where the normalised profile crosses erfc(u) = 0.5 (u ≈ 0.477)."""
    if cs != c0:
        y = (c - c0) / (cs - c0)
        order = np.argsort(x)
        xs, ys = x[order], y[order]
        inside = xs > 0
        above = np.flatnonzero(inside & (ys >= 0.5))
        below = np.flatnonzero(inside & (ys < 0.5))
        if above.size and below.size:
            x_half = 0.5 * (xs[above[-1]] + xs[below[0]]) if below[0] > above[-1] else xs[
                below[0]]
            if x_half > 0:
                return float((x_half / (2 * 0.4769)) ** 2 / t)
    return float((0.25 * span) ** 2 / t)
