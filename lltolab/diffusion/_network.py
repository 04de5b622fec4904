"""Finite-volume network: cells, faces and the stiffness matrix of the tracer-diffusion problem.

Every model of the twin (2-D pixel polycrystal, 1-D chain of grains, homogenised 1-D line and
their multiscale coupling) is a set of cells with volumes and faces between them. A face's
conductance is ``G = area / (dist_bulk / D_bulk + dist_eff / D_eff + gb_resist / k)``: the
series resistance of the bulk path, the homogenised path and a grain-boundary interface of
conductance k (= D*_gb/δ) scaled by ``gb_resist`` (the staircase factor f = |n_x| + |n_y|
divided by the boundary's spread multiplier; 0 for faces inside a grain). The boundary itself is
never meshed (docs/science.md §5).

Volumes and areas are per unit depth (2-D: m² and m) or per unit cross-section (1-D: m and 1);
the equations are ``V dC/dt = -K C`` with K the weighted graph Laplacian, symmetric with zero row
sums, so ⁶Li is conserved exactly when no cell is held fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._microstructure import Microstructure
from ._validate import check_positive

__all__ = ["FVNetwork", "Conductivities"]


@dataclass(frozen=True)
class Conductivities:
    """Transport coefficients at one temperature (SI).

    Parameters
    ----------
    d_bulk_m2_s : float
        Bulk tracer diffusivity D*_bulk (m²/s).
    k_gb_m_s : float
        Grain-boundary interface conductance k = D*_gb/δ (m/s).
    d_eff_m2_s : float
        Diffusivity of homogenised cells (m²/s); only used by faces with ``dist_eff > 0``.
    """

    d_bulk_m2_s: float
    k_gb_m_s: float
    d_eff_m2_s: float = 1.0

    def __post_init__(self) -> None:
        check_positive("d_bulk_m2_s", self.d_bulk_m2_s)
        check_positive("k_gb_m_s", self.k_gb_m_s)
        check_positive("d_eff_m2_s", self.d_eff_m2_s)


@dataclass(frozen=True)
class FVNetwork:
    """Cells and faces of a finite-volume model.

    Parameters
    ----------
    volume : ndarray, shape (n,)
        Cell volumes (per unit depth or cross-section), > 0.
    face_i, face_j : ndarray of int, shape (m,)
        The two cells of every face.
    area : ndarray, shape (m,)
        Face areas.
    dist_bulk, dist_eff : ndarray, shape (m,)
        Centre-to-centre path length through bulk grain material and through homogenised
        material (m).
    gb_resist : ndarray, shape (m,)
        Multiplier of the boundary resistance 1/k on each face (0 = no boundary).
    """

    volume: np.ndarray
    face_i: np.ndarray
    face_j: np.ndarray
    area: np.ndarray
    dist_bulk: np.ndarray
    dist_eff: np.ndarray
    gb_resist: np.ndarray

    def __post_init__(self) -> None:
        n, m = len(self.volume), len(self.face_i)
        for name in ("face_j", "area", "dist_bulk", "dist_eff", "gb_resist"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, expected {m}")
        if n == 0 or np.any(self.volume <= 0):
            raise ValueError("every cell volume must be > 0")
        if m and (min(self.face_i.min(), self.face_j.min()) < 0
                  or max(self.face_i.max(), self.face_j.max()) >= n):
            raise ValueError(f"face cell indices must lie in 0..{n - 1}")
        if np.any(self.dist_bulk + self.dist_eff <= 0) or np.any(self.gb_resist < 0):
            raise ValueError("face path lengths must be > 0 and boundary factors >= 0")

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return len(self.volume)

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_microstructure(
        cls, micro: Microstructure, *, staircase_correction: bool = True
    ) -> FVNetwork:
        """Pixel cells of a 2-D microstructure (row-major, x fastest), 4-neighbour faces.

        Faces between pixels of different grains carry the boundary resistance
        ``f / spread`` with f = |n_x| + |n_y| of that pair's boundary normal (1 without the
        staircase correction).
        """
        ids = micro.grain_ids
        ny, nx = ids.shape
        h = micro.pixel_m
        cell = np.arange(nx * ny).reshape(ny, nx)
        fi = np.concatenate([cell[:, :-1].ravel(), cell[:-1, :].ravel()])
        fj = np.concatenate([cell[:, 1:].ravel(), cell[1:, :].ravel()])
        gi, gj = ids.ravel()[fi], ids.ravel()[fj]
        resist = np.zeros(len(fi))
        on_gb = gi != gj
        if np.any(on_gb):
            pair = micro.pair_index(gi[on_gb], gj[on_gb])
            f = micro.staircase_factor()[pair] if staircase_correction else 1.0
            resist[on_gb] = f / micro.spread[pair]
        m = len(fi)
        return cls(
            volume=np.full(nx * ny, h * h),
            face_i=fi,
            face_j=fj,
            area=np.full(m, h),
            dist_bulk=np.full(m, h),
            dist_eff=np.zeros(m),
            gb_resist=resist,
        )

    @classmethod
    def line(
        cls,
        edges_m: np.ndarray,
        *,
        boundaries_m: np.ndarray | None = None,
        homogenised: bool = False,
    ) -> FVNetwork:
        """A 1-D line of cells between ``edges_m`` (per unit cross-section).

        Parameters
        ----------
        edges_m : ndarray, shape (n+1,)
            Increasing cell edges (m).
        boundaries_m : ndarray, optional
            Positions of grain boundaries; each must coincide with a cell edge (to 1e-9 of
            the local spacing). Faces there carry one boundary resistance 1/k.
        homogenised : bool
            If True the cells are homogenised material (D_eff) instead of bulk grain.
        """
        e = np.asarray(edges_m, dtype=float)
        if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0) or not np.all(np.isfinite(e)):
            raise ValueError("edges_m must be a finite, strictly increasing array of >= 2 values")
        width = np.diff(e)
        centre = 0.5 * (e[1:] + e[:-1])
        n = len(width)
        fi, fj = np.arange(n - 1), np.arange(1, n)
        dist = centre[1:] - centre[:-1]
        resist = np.zeros(n - 1)
        if boundaries_m is not None and len(boundaries_m):
            b = np.asarray(boundaries_m, dtype=float)
            k = np.searchsorted(e, b)
            k = np.clip(k, 1, n - 1)
            near = np.where(np.abs(e[k - 1] - b) < np.abs(e[k] - b), k - 1, k)
            tol = 1e-9 * width.min()
            if np.any(np.abs(e[near] - b) > tol) or np.any(near <= 0) or np.any(near >= n):
                raise ValueError("every boundary must lie on an interior cell edge")
            resist[near - 1] += 1.0
        zeros = np.zeros(n - 1)
        return cls(
            volume=width,
            face_i=fi,
            face_j=fj,
            area=np.ones(n - 1),
            dist_bulk=zeros if homogenised else dist,
            dist_eff=dist if homogenised else zeros,
            gb_resist=resist,
        )

    @staticmethod
    def join(parts: list[FVNetwork], links: list[tuple[int, np.ndarray, int, np.ndarray,
                                                          np.ndarray, np.ndarray,
                                                          np.ndarray]]) -> FVNetwork:
        """Concatenate networks and add link faces between them.

        ``links`` holds ``(part_a, cells_a, part_b, cells_b, area, dist_bulk, dist_eff)``
        tuples: faces between ``cells_a`` of part ``part_a`` and ``cells_b`` of ``part_b``.
        """
        offsets = np.cumsum([0] + [p.n_cells for p in parts])
        cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                             ("fi", "fj", "area", "db", "de", "gb")}
        for off, p in zip(offsets, parts, strict=False):
            cols["fi"].append(p.face_i + off)
            cols["fj"].append(p.face_j + off)
            cols["area"].append(p.area)
            cols["db"].append(p.dist_bulk)
            cols["de"].append(p.dist_eff)
            cols["gb"].append(p.gb_resist)
        for pa, ca, pb, cb, area, db, de in links:
            m = len(ca)
            cols["fi"].append(np.asarray(ca) + offsets[pa])
            cols["fj"].append(np.asarray(cb) + offsets[pb])
            cols["area"].append(np.broadcast_to(area, m).astype(float))
            cols["db"].append(np.broadcast_to(db, m).astype(float))
            cols["de"].append(np.broadcast_to(de, m).astype(float))
            cols["gb"].append(np.zeros(m))
        return FVNetwork(
            volume=np.concatenate([p.volume for p in parts]),
            face_i=np.concatenate(cols["fi"]).astype(np.int64),
            face_j=np.concatenate(cols["fj"]).astype(np.int64),
            area=np.concatenate(cols["area"]),
            dist_bulk=np.concatenate(cols["db"]),
            dist_eff=np.concatenate(cols["de"]),
            gb_resist=np.concatenate(cols["gb"]),
        )

    # ---------------------------------------------------------------- physics
    def conductance(self, coeff: Conductivities) -> np.ndarray:
        """Face conductances G (volume per time) at the given coefficients."""
        resistance = (
            self.dist_bulk / coeff.d_bulk_m2_s
            + self.dist_eff / coeff.d_eff_m2_s
            + self.gb_resist / coeff.k_gb_m_s
        )
        return self.area / resistance

    def stiffness(self, coeff: Conductivities) -> sp.csr_array:
        """Symmetric stiffness K (n × n, zero row sums): ``V dC/dt = -K C``."""
        g = self.conductance(coeff)
        n = self.n_cells
        diag = np.bincount(self.face_i, g, n) + np.bincount(self.face_j, g, n)
        rows = np.concatenate([self.face_i, self.face_j, np.arange(n)])
        cols = np.concatenate([self.face_j, self.face_i, np.arange(n)])
        vals = np.concatenate([-g, -g, diag])
        return sp.csr_array(sp.coo_array((vals, (rows, cols)), shape=(n, n)))
