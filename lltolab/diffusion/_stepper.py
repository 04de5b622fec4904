"""Time integration of ``V dC/dt = -K C`` with cells optionally held at fixed values.

TR-BDF2 (γ = 2 − √2: second order, L-stable): both stages share one matrix ``V + w Δt K``
(w = γ/2), so one sparse LU per (coefficients, fixed set, Δt) serves a whole segment and is
reused by later segments with the same key (small LRU cache). Steps are uniform within a
segment; their number follows an embedded, stiffness-filtered error estimate (Hosea–Shampine
style) so that the estimated error stays below ``StepControl.tol`` without user tuning:
a segment whose estimate fails is recomputed from its start with twice the steps. Segments
that barely move (rate × duration small, e.g. seconds at −110 °C) use explicit RK4 sub-steps
and no factorization.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ._network import Conductivities, FVNetwork
from ._validate import check_nonnegative, check_positive

__all__ = ["FixedCells", "StepControl", "Integrator"]

GAMMA = 2.0 - math.sqrt(2.0)
W = GAMMA / 2.0  # = (1-γ)/(2-γ): both stages use V + W Δt K
C_NEW = 1.0 / (GAMMA * (2.0 - GAMMA))
C_OLD = (1.0 - GAMMA) ** 2 / (GAMMA * (2.0 - GAMMA))
# local truncation error constant of TR-BDF2: LTE = C_LTE Δt³ y'''
C_LTE = (-3.0 * GAMMA**2 + 4.0 * GAMMA - 2.0) / (12.0 * (2.0 - GAMMA))


@dataclass(frozen=True)
class FixedCells:
    """Cells held at fixed values (Dirichlet), e.g. the immersed region in the bath.

    Parameters
    ----------
    mask : ndarray of bool, shape (n,)
        True where the cell is held.
    value : float or ndarray
        Held value(s) (⁶Li fraction).
    key : hashable
        Identity of this set for factorization reuse (same key ⇒ same mask and values).
    """

    mask: np.ndarray
    value: float | np.ndarray
    key: Hashable


@dataclass(frozen=True)
class StepControl:
    """Accuracy settings of the integrator.

    Parameters
    ----------
    tol : float
        Target of the estimated error of a segment in ⁶Li fraction (absolute): the sum of
        the filtered local error estimates over the second half of its steps (the initial
        layer is damped by L-stability). The estimate is conservative: on a 500 × 200 µm map
        through a 59 h exchange and 16 days of storage (``benchmarks/twin.py``, problem P1)
        the true maximum error was 5–8× smaller.
    initial_steps : int
        Steps per segment tried first.
    max_steps : int
        Upper limit of steps per segment (the estimate is then reported, not enforced).
    explicit_limit : float
        Segments with (max rate × duration) below this use explicit RK4 sub-steps.
    """

    tol: float = 3e-4
    initial_steps: int = 12
    max_steps: int = 768
    explicit_limit: float = 4.0

    def __post_init__(self) -> None:
        check_positive("tol", self.tol)
        if self.initial_steps < 1 or self.max_steps < self.initial_steps:
            raise ValueError(
                f"need 1 <= initial_steps <= max_steps, got {self.initial_steps}, "
                f"{self.max_steps}"
            )


class Integrator:
    """Advances a field on an :class:`FVNetwork` through constant-coefficient segments.

    Parameters
    ----------
    network : FVNetwork
    control : StepControl, optional
    cache_size : int
        Number of LU factorizations kept for reuse.
    """

    def __init__(
        self, network: FVNetwork, control: StepControl | None = None, *, cache_size: int = 2
    ) -> None:
        self.network = network
        self.control = control or StepControl()
        self._lu: OrderedDict[Hashable, object] = OrderedDict()
        self._systems: OrderedDict[Hashable, tuple] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self.last_steps = 0
        self.last_error_estimate = 0.0
        self.factorizations = 0

    # ---------------------------------------------------------------- public
    def advance(
        self,
        c: np.ndarray,
        duration_s: float,
        coeff: Conductivities,
        fixed: FixedCells | None = None,
        *,
        n_steps: int | None = None,
    ) -> np.ndarray:
        """Return the field after ``duration_s`` seconds at constant ``coeff`` and ``fixed``.

        Parameters
        ----------
        c : ndarray, shape (n,)
            Field at the start (not modified).
        duration_s : float
            Duration (s), >= 0.
        coeff : Conductivities
        fixed : FixedCells, optional
        n_steps : int, optional
            Force this many TR-BDF2 steps (no step control); for convergence studies.
        """
        duration_s = check_nonnegative("duration_s", duration_s)
        c = np.asarray(c, dtype=float)
        if c.shape != (self.network.n_cells,):
            raise ValueError(f"field has shape {c.shape}, expected ({self.network.n_cells},)")
        out = c.copy()
        if fixed is not None:
            out[fixed.mask] = np.broadcast_to(fixed.value, out.shape)[fixed.mask]
        if duration_s == 0:
            return out
        system = self._system(coeff, fixed)
        free, kff, b, vf, rate = system
        if kff.shape[0] == 0:
            return out
        x0 = out[free]
        if n_steps is not None:
            x, est = self._trbdf2(system, x0, duration_s, int(n_steps), coeff, fixed)
            self.last_steps, self.last_error_estimate = int(n_steps), est
        elif rate * duration_s <= self.control.explicit_limit:
            x = self._rk4(system, x0, duration_s)
            self.last_steps, self.last_error_estimate = 0, 0.0
        else:
            n = self.control.initial_steps
            while True:
                x, est = self._trbdf2(system, x0, duration_s, n, coeff, fixed)
                if est <= self.control.tol or 2 * n > self.control.max_steps:
                    break
                n *= 2
            self.last_steps, self.last_error_estimate = n, est
        out[free] = x
        return out

    def steady_state(self, coeff: Conductivities, fixed: FixedCells) -> np.ndarray:
        """The stationary field with ``fixed`` cells held (direct sparse solve)."""
        free, kff, b, _, _ = self._system(coeff, fixed)
        out = np.asarray(np.broadcast_to(fixed.value, (self.network.n_cells,)), dtype=float).copy()
        lu = splu(sp.csc_array(kff), permc_spec="MMD_AT_PLUS_A")
        out[free] = lu.solve(b)
        return out

    # ---------------------------------------------------------------- internals
    def _system(self, coeff: Conductivities, fixed: FixedCells | None) -> tuple:
        key = (coeff, None if fixed is None else fixed.key)
        if key in self._systems:
            self._systems.move_to_end(key)
            return self._systems[key]
        net = self.network
        k = net.stiffness(coeff)
        if fixed is None:
            free = np.ones(net.n_cells, dtype=bool)
            kff, b = k, np.zeros(net.n_cells)
        else:
            free = ~np.asarray(fixed.mask, dtype=bool)
            held = np.broadcast_to(fixed.value, (net.n_cells,))[~free]
            kff = k[free][:, free]
            b = -(k[free][:, ~free] @ held)
        vf = net.volume[free]
        diag = kff.diagonal()
        rate = float(2.0 * np.max(diag / vf)) if len(vf) else 0.0
        system = (free, sp.csr_array(kff), b, vf, rate)
        self._systems[key] = system
        while len(self._systems) > 2 * self._cache_size:
            self._systems.popitem(last=False)
        return system

    def _factor(self, system: tuple, dt: float, key: Hashable):
        if key in self._lu:
            self._lu.move_to_end(key)
            return self._lu[key]
        _, kff, _, vf, _ = system
        a = sp.csc_array(sp.diags_array(vf) + (W * dt) * kff)
        lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
        self.factorizations += 1
        self._lu[key] = lu
        while len(self._lu) > self._cache_size:
            self._lu.popitem(last=False)
        return lu

    def _trbdf2(self, system, x, duration, n, coeff, fixed) -> tuple[np.ndarray, float]:
        _, kff, b, vf, _ = system
        dt = duration / n
        lu = self._factor(system, dt, (coeff, None if fixed is None else fixed.key, dt))
        wdt = W * dt
        check_from = n // 2  # the initial layer is damped (L-stable); later steps persist
        est = 0.0
        kx = kff @ x
        for i in range(n):
            xg = lu.solve(vf * x - wdt * kx + 2.0 * wdt * b)
            xn = lu.solve(vf * (C_NEW * xg - C_OLD * x) + wdt * b)
            kxn = kff @ xn
            if i >= check_from:
                f0 = (b - kx) / vf
                fg = (b - kff @ xg) / vf
                f1 = (b - kxn) / vf
                lte = 2.0 * C_LTE * dt * ((f1 - fg) / (1.0 - GAMMA) - (fg - f0) / GAMMA)
                est += float(np.max(np.abs(lu.solve(vf * lte))))
            x, kx = xn, kxn
        return x, est

    def _rk4(self, system, x, duration) -> np.ndarray:
        _, kff, b, vf, rate = system
        n = max(1, math.ceil(rate * duration / 0.25))
        h = duration / n

        def f(y: np.ndarray) -> np.ndarray:
            return (b - kff @ y) / vf

        for _ in range(n):
            k1 = f(x)
            k2 = f(x + 0.5 * h * k1)
            k3 = f(x + 0.5 * h * k2)
            k4 = f(x + h * k3)
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x
