"""D*_eff from the evolution of a sealed sample's profile (no-flux), the paper's best estimate.

Forward model: the diffusion twin's homogenised 1-D line (:meth:`FVNetwork.line` with
``homogenised=True``: the same cells, faces and conductances as the twin's long-range strip)
over the sample's length with sealed ends, started from the first measured profile. Because
the line is linear with one unknown D, its semi-discrete solution is exact in time through the
eigenvectors of the symmetrised stiffness (one tridiagonal eigendecomposition, reused for every
D the optimiser tries): ``C(t) = V^-1/2 Q exp(−D Λ t) Qᵀ V^1/2 C(0)``. Least squares in ln D
(scipy ``least_squares``, analytic Jacobian); the standard error follows from the Jacobian and
the residual scatter (or the given errors).
Units: x in cm, t in s, D in cm²/s (the twin is called in SI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.optimize import least_squares

from lltolab.diffusion import Conductivities, FVNetwork

from ._checks import as_fraction_array, as_positive, as_vector

__all__ = ["TimeEvolutionFit", "SealedLine", "fit_time_evolution"]

_CM = 1e-2  # m per cm


class SealedLine:
    """Exact-in-time propagator of the twin's homogenised, sealed 1-D line.

    Parameters
    ----------
    edges_cm : array_like
        Increasing cell edges (cm); the two outer faces are sealed.
    """

    def __init__(self, edges_cm: np.ndarray) -> None:
        e = as_vector("edges_cm", edges_cm, min_len=3)
        if np.any(np.diff(e) <= 0):
            raise ValueError("edges_cm must be strictly increasing")
        self.edges_cm = e
        self.centres_cm = 0.5 * (e[1:] + e[:-1])
        net = FVNetwork.line(e * _CM, homogenised=True)
        k = net.stiffness(Conductivities(1.0, 1.0, 1.0)).tocsr()  # per (m²/s) of D_eff
        n = net.n_cells
        diag = k.diagonal()
        off = np.asarray(k[np.arange(n - 1), np.arange(1, n)]).ravel()
        sq = np.sqrt(net.volume)
        self._sqrt_v = sq
        evals, evecs = eigh_tridiagonal(diag / net.volume, off / (sq[:-1] * sq[1:]))
        self.rates_m2 = np.maximum(evals, 0.0)  # λ (1/m²): decay rate = D_SI λ
        self.modes = evecs
        self.n_cells = n

    def coefficients(self, c0: np.ndarray) -> np.ndarray:
        """Modal coefficients Qᵀ V^1/2 C(0) of a cell field."""
        return self.modes.T @ (self._sqrt_v * np.asarray(c0, dtype=float))

    def basis(self, observe: np.ndarray) -> np.ndarray:
        """``observe @ V^-1/2 Q``: maps modal amplitudes to observed values."""
        return np.asarray(observe, dtype=float) @ (self.modes / self._sqrt_v[:, None])

    def decay(self, d_cm2_s: float, t_s: float) -> np.ndarray:
        """exp(−D λ t) per mode."""
        return np.exp(-(d_cm2_s * 1e-4) * self.rates_m2 * t_s)

    def advance(self, c0: np.ndarray, d_cm2_s: float, t_s: float) -> np.ndarray:
        """Cell field after ``t_s`` seconds at D = ``d_cm2_s`` (cm²/s) from cell field ``c0``."""
        a = self.coefficients(c0) * self.decay(d_cm2_s, t_s)
        return (self.modes @ a) / self._sqrt_v

    def observation(self, x_cm: np.ndarray, width_cm: float | None = None) -> np.ndarray:
        """Matrix (m × n) giving values at ``x_cm``: linear interpolation between cell centres
        or, with ``width_cm``, the mean over [x − w/2, x + w/2] (overlap-weighted)."""
        x = np.asarray(x_cm, dtype=float)
        n = self.n_cells
        out = np.zeros((x.size, n))
        if width_cm is None:
            xc = self.centres_cm
            j = np.clip(np.searchsorted(xc, x) - 1, 0, n - 2)
            f = np.clip((x - xc[j]) / (xc[j + 1] - xc[j]), 0.0, 1.0)
            rows = np.arange(x.size)
            out[rows, j] = 1.0 - f
            out[rows, j + 1] += f
            return out
        e = self.edges_cm
        lo = np.clip(x - width_cm / 2, e[0], e[-1])
        hi = np.clip(x + width_cm / 2, e[0], e[-1])
        overlap = np.clip(np.minimum(hi[:, None], e[None, 1:]) - np.maximum(lo[:, None],
                                                                             e[None, :-1]),
                          0.0, None)
        total = overlap.sum(axis=1, keepdims=True)
        return overlap / np.where(total > 0, total, 1.0)


@dataclass(frozen=True)
class TimeEvolutionFit:
    """Result of :func:`fit_time_evolution`.

    Attributes
    ----------
    d_eff, stderr : float
        D*_eff and its standard error (cm²/s).
    times_s : tuple of float
        Elapsed time of every profile since the first (s).
    residuals, predicted : list of ndarray
        Data − model and model for every later profile.
    rms : float
        Root-mean-square residual over all fitted points.
    n_points, dof : int
        Fitted points and degrees of freedom.
    domain_cm : tuple of float
        Extent of the sealed line (cm).
    n_cells : int
        Cells of the forward model.
    nfev : int
        Forward-model evaluations.
    """

    d_eff: float
    stderr: float
    times_s: tuple[float, ...]
    residuals: list[np.ndarray] = field(repr=False)
    predicted: list[np.ndarray] = field(repr=False)
    rms: float
    n_points: int
    dof: int
    domain_cm: tuple[float, float]
    n_cells: int
    nfev: int
    x_cm: list[np.ndarray] = field(repr=False)
    profiles: list[np.ndarray] = field(repr=False)
    _line: SealedLine = field(repr=False)
    _c_init: np.ndarray = field(repr=False)
    _width_cm: float | None = field(repr=False)

    def predict(self, x_cm: np.ndarray, elapsed_s: float) -> np.ndarray:
        """Model profile at ``x_cm`` (cm) ``elapsed_s`` seconds after the first profile."""
        elapsed_s = float(elapsed_s)
        if not (math.isfinite(elapsed_s) and elapsed_s >= 0):
            raise ValueError(f"elapsed_s must be finite and >= 0, got {elapsed_s!r}")
        field_c = self._line.advance(self._c_init, self.d_eff, elapsed_s)
        return self._line.observation(x_cm, self._width_cm) @ field_c

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able summary."""
        return {
            "d_eff_cm2_s": self.d_eff, "stderr_cm2_s": self.stderr,
            "times_s": list(self.times_s), "rms": self.rms, "n_points": self.n_points,
            "dof": self.dof, "domain_cm": list(self.domain_cm), "n_cells": self.n_cells,
            "nfev": self.nfev,
        }


def _per_profile(name: str, value: object, n: int) -> list[object]:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return [value] * n
    seq = list(value)  # type: ignore[call-overload]
    if seq and np.ndim(seq[0]) == 0:
        return [np.asarray(seq, dtype=float)] * n
    if len(seq) != n:
        raise ValueError(f"{name} has {len(seq)} entries, expected one per profile ({n})")
    return seq


def fit_time_evolution(
    x_cm: np.ndarray | Sequence[np.ndarray],
    profiles: Sequence[np.ndarray],
    times_s: Sequence[float],
    *,
    sigma: Sequence[np.ndarray] | None = None,
    domain_cm: tuple[float, float] | None = None,
    n_cells: int | None = None,
    width_cm: float | None = None,
    outside: tuple[float | None, float | None] = (None, None),
    d_guess: float | None = None,
) -> TimeEvolutionFit:
    """D*_eff of a sealed sample from a sequence of profiles.

    Parameters
    ----------
    x_cm : array_like or sequence of array_like
        Positions (cm) common to all profiles, or one array per profile.
    profiles : sequence of array_like
        ⁶Li fraction profiles, the first is the initial condition (>= 2 profiles).
    times_s : sequence of float
        Lab time of every profile (s), >= 0 and strictly increasing.
    sigma : sequence of array_like, optional
        Standard errors of every profile (the first is not used): weights and error scale.
    domain_cm : (float, float), optional
        Extent of the sealed sample (cm); default: the first profile's span plus half a
        spacing at each end, right only when the profiles cover the whole sample. Profiles
        over 0–6 mm of a sample dipped 1 mm deep need (-0.1, L) and ``outside``: sealing
        the model at the liquid level gave D*_eff 80 % low on the twin.
    outside : (float or None, float or None)
        Initial C of the domain left / right of the first profile (None: its end value).
        E.g. ``(0.95, None)`` when the profiles start at the liquid level and the part that
        was immersed (x < 0) is included in ``domain_cm``.
    n_cells : int, optional
        Cells of the forward model (uniform); default the first profile's point count,
        clipped to 200..800.
    width_cm : float, optional
        Width of the analysis area of a point (cm): model values are averaged over it.
    d_guess : float, optional
        Starting D (cm²/s); by default the best of a logarithmic scan.

    Returns
    -------
    TimeEvolutionFit
    """
    profs = list(profiles) if not isinstance(profiles, np.ndarray) else list(profiles)
    if len(profs) < 2:
        raise ValueError(f"need at least 2 profiles (initial + later), got {len(profs)}")
    n_prof = len(profs)
    t = as_vector("times_s", times_s)
    if t.size != n_prof:
        raise ValueError(f"times_s has {t.size} entries, expected one per profile ({n_prof})")
    if np.any(t < 0):
        raise ValueError(f"times_s must be >= 0, got minimum {t.min()!r}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("times_s must be strictly increasing")
    xs = [as_vector(f"x_cm[{i}]", v) for i, v in enumerate(_per_profile("x_cm", x_cm, n_prof))]
    cs = []
    for i, (xi, p) in enumerate(zip(xs, profs, strict=True)):
        ci = as_fraction_array(f"profiles[{i}]", p)
        if ci.ndim != 1 or ci.shape != xi.shape:
            raise ValueError(f"profiles[{i}] has shape {ci.shape}, expected {xi.shape}")
        cs.append(ci)
    if xs[0].size < 2:
        raise ValueError("the initial profile needs at least 2 points")
    weights = [np.ones_like(c) for c in cs]
    if sigma is not None:
        sig = _per_profile("sigma", sigma, n_prof)
        for i in range(1, n_prof):
            s = np.asarray(sig[i], dtype=float)
            if s.shape != cs[i].shape or not np.all(np.isfinite(s)) or np.any(s <= 0):
                raise ValueError(f"sigma[{i}] must be finite, > 0 and shaped like profiles[{i}]")
            weights[i] = 1.0 / s
    n_fit = sum(c.size for c in cs[1:])
    if n_fit < 2:
        raise ValueError(f"{n_fit} later point(s) cannot determine D with an error: need >= 2")
    order = np.argsort(xs[0])
    x_init, c_init = xs[0][order], cs[0][order]
    if np.ptp(x_init) <= 0:
        raise ValueError("the initial profile must span at least two distinct positions")
    if domain_cm is None:
        half = 0.5 * np.ptp(x_init) / (x_init.size - 1)
        lo, hi = float(x_init[0] - half), float(x_init[-1] + half)
    else:
        lo, hi = map(float, domain_cm)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"domain_cm must be an increasing finite pair, got {domain_cm!r}")
    for i, xi in enumerate(xs):
        if xi.min() < lo or xi.max() > hi:
            raise ValueError(f"x_cm[{i}] leaves the domain [{lo:.6g}, {hi:.6g}] cm")
    if n_cells is None:
        n_cells = int(np.clip(x_init.size, 200, 800))
    if not 3 <= int(n_cells) <= 5000:
        raise ValueError(f"n_cells must be in [3, 5000], got {n_cells}")
    if width_cm is not None:
        width_cm = as_positive("width_cm", width_cm)
    line = SealedLine(np.linspace(lo, hi, int(n_cells) + 1))
    c0_cells = np.interp(line.centres_cm, x_init, c_init)
    left, right = outside
    if left is not None:
        c0_cells[line.centres_cm < x_init[0]] = float(as_fraction_array("outside[0]", left))
    if right is not None:
        c0_cells[line.centres_cm > x_init[-1]] = float(as_fraction_array("outside[1]", right))
    amp = line.coefficients(c0_cells)
    elapsed = t[1:] - t[0]
    bases = [line.basis(line.observation(xs[i], width_cm)) for i in range(1, n_prof)]
    lam = line.rates_m2 * 1e-4  # per cm²: rate = D_cm2 · lam
    data = np.concatenate([w * c for w, c in zip(weights[1:], cs[1:], strict=True)])

    def model(ln_d: float) -> tuple[np.ndarray, np.ndarray]:
        d = math.exp(ln_d)
        vals, ders = [], []
        for b, tau, w in zip(bases, elapsed, weights[1:], strict=True):
            e = np.exp(-d * lam * tau) * amp
            vals.append(w * (b @ e))
            ders.append(w * (b @ (-d * lam * tau * e)))
        return np.concatenate(vals), np.concatenate(ders)

    def resid(p: np.ndarray) -> np.ndarray:
        return model(float(p[0]))[0] - data

    def jac(p: np.ndarray) -> np.ndarray:
        return model(float(p[0]))[1][:, None]

    if d_guess is None:
        span = hi - lo
        h = span / line.n_cells
        grid = np.linspace(math.log(h**2 / elapsed[-1] * 1e-2), math.log(span**2 / elapsed[0]
                                                                          * 1e2), 41)
        costs = [float(np.sum(resid(np.array([g])) ** 2)) for g in grid]
        start = float(grid[int(np.argmin(costs))])
    else:
        start = math.log(as_positive("d_guess", d_guess))
    sol = least_squares(resid, np.array([start]), jac=jac, method="lm", xtol=1e-12,
                        ftol=1e-12, gtol=1e-12)
    ln_d = float(sol.x[0])
    d = math.exp(ln_d)
    dof = n_fit - 1
    chi2 = float(sol.fun @ sol.fun)
    s2 = chi2 / dof
    if sigma is not None:
        s2 = max(s2, 1.0)
    jj = float(sol.jac[:, 0] @ sol.jac[:, 0])
    sd_ln = math.sqrt(s2 / jj) if jj > 0 else math.inf
    vals = []
    resids = []
    pos = 0
    raw = model(ln_d)[0]
    for w, c in zip(weights[1:], cs[1:], strict=True):
        pred = raw[pos:pos + c.size] / w
        pos += c.size
        vals.append(pred)
        resids.append(c - pred)
    allres = np.concatenate(resids)
    return TimeEvolutionFit(
        d_eff=d, stderr=d * sd_ln, times_s=tuple(float(v) for v in t - t[0]),
        residuals=resids, predicted=vals, rms=float(np.sqrt(np.mean(allres**2))),
        n_points=int(n_fit), dof=int(dof), domain_cm=(lo, hi), n_cells=line.n_cells,
        nfev=int(sol.nfev), x_cm=xs, profiles=cs, _line=line, _c_init=c0_cells,
        _width_cm=width_cm,
    )
