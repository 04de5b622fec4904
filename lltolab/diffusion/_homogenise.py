"""Effective (homogenised) diffusivity of a microstructure from a steady-state flux solve."""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg, splu

from ._microstructure import Microstructure
from ._network import Conductivities, FVNetwork
from ._stepper import FixedCells, Integrator

__all__ = ["effective_diffusivity", "EffectiveDiffusivity"]


def effective_diffusivity(
    micro: Microstructure,
    coeff: Conductivities,
    *,
    network: FVNetwork | None = None,
    staircase_correction: bool = True,
) -> float:
    """D_eff (m²/s) of ``micro`` along x: steady flux with C = 1 / 0 held on the end columns.

    D_eff = J L / (W ΔC), with J the total flux through the mid-plane, L the distance between
    the centres of the two held columns and W the height of the window.
    """
    _check_columns(micro)
    net = network or FVNetwork.from_microstructure(
        micro, staircase_correction=staircase_correction
    )
    c = Integrator(net).steady_state(coeff, _ends(micro))
    return _flux_ratio(micro, net, coeff, c)


def _check_columns(micro: Microstructure) -> None:
    if micro.shape[1] < 3:
        raise ValueError(f"need at least 3 columns to measure a flux, got nx={micro.shape[1]}")


def _ends(micro: Microstructure) -> FixedCells:
    """C = 1 on the first column, 0 on the last, held."""
    ny, nx = micro.shape
    mask = np.zeros((ny, nx), dtype=bool)
    mask[:, 0] = mask[:, -1] = True
    value = np.zeros((ny, nx))
    value[:, 0] = 1.0
    return FixedCells(mask.ravel(), value.ravel(), "ends")


def _flux_ratio(micro: Microstructure, net: FVNetwork, coeff: Conductivities,
                c: np.ndarray) -> float:
    """J L / (W ΔC) of the steady field ``c`` (the flux through the mid-plane)."""
    ny, nx = micro.shape
    h = micro.pixel_m
    mid = nx // 2
    cell = np.arange(nx * ny).reshape(ny, nx)
    left, right = cell[:, mid - 1], cell[:, mid]
    g = net.conductance(coeff)
    # x-faces come first in from_microstructure, row-major: face (r, col) -> r*(nx-1) + col
    face = np.arange(ny) * (nx - 1) + (mid - 1)
    assert np.all(net.face_i[face] == left) and np.all(net.face_j[face] == right)
    flux = float(np.sum(g[face] * (c[left] - c[right])))
    return flux * (nx - 1) * h / (ny * h)


class EffectiveDiffusivity:
    """D_eff(D_bulk, k) of one microstructure, interpolated in the ratio k/D_bulk.

    D_eff scales with D_bulk at fixed r = k/D_bulk, so ``D_eff = D_bulk φ(r)``. φ is smooth
    in ln r (a sigmoid between the boundary-limited and the bulk-limited regimes); it is
    computed on demand at nodes 0.25 apart in ln r (one steady solve each) and interpolated
    linearly in (ln r, ln φ) between them: the interpolation error is below 0.2 % (checked
    in the tests), far less than the spread between microstructures.

    The first node is solved directly (sparse LU); the others by conjugate gradients
    preconditioned with that LU and started from the nearest node's field (a node's matrix
    differs from its neighbour's only in the boundary conductances, by e^0.25): a few
    iterations to a relative residual of :attr:`RTOL`, instead of a new factorization each.
    """

    STEP = 0.25
    RTOL = 1e-12
    MAX_ITER = 60

    def __init__(self, micro: Microstructure) -> None:
        _check_columns(micro)
        self.micro = micro
        self._net = FVNetwork.from_microstructure(micro)
        self._log_phi: dict[int, float] = {}
        self._fields: dict[int, np.ndarray] = {}
        self._integrator = Integrator(self._net)
        self._ends = _ends(micro)
        self._lu: tuple[int, object] | None = None
        self._node_lock = threading.Lock()
        self.factorizations = 0

    def _node(self, k: int) -> float:
        with self._node_lock:
            if k not in self._log_phi:
                coeff = Conductivities(1.0, float(np.exp(k * self.STEP)))
                c = self._steady(k, coeff)
                self._log_phi[k] = float(np.log(_flux_ratio(self.micro, self._net, coeff, c)))
            return self._log_phi[k]

    def _steady(self, k: int, coeff: Conductivities) -> np.ndarray:
        """Steady field of node ``k`` (direct for the first node, preconditioned CG after)."""
        free, kff, b, _, _ = self._integrator._system(coeff, self._ends)
        out = np.asarray(np.broadcast_to(self._ends.value, (self._net.n_cells,)),
                         dtype=float).copy()
        x = None
        if self._lu is not None:
            lu = self._lu[1]
            near = min(self._fields, key=lambda j: abs(j - k))
            m = LinearOperator(kff.shape, matvec=lu.solve, dtype=float)  # type: ignore[attr-defined]
            x, info = cg(kff, b, x0=self._fields[near], rtol=self.RTOL, atol=0.0,
                         maxiter=self.MAX_ITER, M=m)
            if info != 0:
                x = None  # not converged: solve directly (and precondition from there on)
        if x is None:
            lu = splu(sp.csc_array(kff), permc_spec="MMD_AT_PLUS_A")
            self.factorizations += 1
            self._lu = (k, lu)
            x = lu.solve(b)
        self._fields[k] = x
        out[free] = x
        return out

    def nodes(self) -> dict[int, float]:
        """The nodes solved so far: ln φ by node index (ln r / :attr:`STEP`)."""
        with self._node_lock:
            return dict(self._log_phi)

    def adopt(self, nodes: dict[int, float]) -> None:
        """Take nodes solved elsewhere for the same microstructure (e.g. by a worker process
        integrating the same sample), so that both use the same numbers."""
        with self._node_lock:
            self._log_phi.update({int(k): float(v) for k, v in nodes.items()})

    def phi(self, ratio_per_m: float) -> float:
        """φ = D_eff / D_bulk at r = k / D_bulk (1/m)."""
        u = float(np.log(ratio_per_m)) / self.STEP
        k0 = int(np.floor(u))
        if u == k0:
            return float(np.exp(self._node(k0)))
        w = u - k0
        return float(np.exp((1 - w) * self._node(k0) + w * self._node(k0 + 1)))

    def __call__(self, d_bulk_m2_s: float, k_gb_m_s: float) -> float:
        """D_eff in m²/s."""
        return d_bulk_m2_s * self.phi(k_gb_m_s / d_bulk_m2_s)
