"""Long-range multiscale model: a 2-D pixel polycrystal window inside a homogenised 1-D strip.

A mm-long line profile through the polycrystal at 1 µm everywhere would cost millions of cells.
Where the images are taken (the window) the grains are resolved; beyond it the strip is a 1-D
line of homogenised cells whose diffusivity D_eff is that of the same microstructure
(:class:`EffectiveDiffusivity`), not eq. 6 with the EBSD mean (docs/science.md §5). Window and line
are one finite-volume network (two-way, conservative coupling through the window's end
columns), so one sparse system advances both.
"""

from __future__ import annotations

import numpy as np

from ._homogenise import EffectiveDiffusivity
from ._microstructure import Microstructure
from ._network import FVNetwork
from ._validate import check_positive

__all__ = ["StripModel"]


class StripModel:
    """Geometry of the window + line network.

    Parameters
    ----------
    micro : Microstructure
        The resolved window; x is the distance from the liquid level (m).
    line_extent_m : tuple of float
        (x_min, x_max) of the whole strip (m); must enclose the window.
    coarse_dx_m : float
        Spacing of the homogenised cells (m).
    """

    def __init__(
        self,
        micro: Microstructure,
        *,
        line_extent_m: tuple[float, float] = (-1e-3, 9e-3),
        coarse_dx_m: float = 5e-6,
    ) -> None:
        check_positive("coarse_dx_m", coarse_dx_m)
        x0w, x1w, y0w, y1w = micro.extent_m
        lo, hi = map(float, line_extent_m)
        if not lo <= x0w < x1w <= hi:
            raise ValueError(
                f"line_extent_m {line_extent_m} must enclose the window x range "
                f"[{x0w:.6g}, {x1w:.6g}] m"
            )
        self.micro = micro
        self.width_m = y1w - y0w
        ny, nx = micro.shape
        h = micro.pixel_m
        self.n_window = nx * ny
        window = FVNetwork.from_microstructure(micro)
        parts = [window]
        links = []
        cell = np.arange(nx * ny).reshape(ny, nx)
        self.left_edges = _edges(lo, x0w, coarse_dx_m)
        self.right_edges = _edges(x1w, hi, coarse_dx_m)
        for side, edges in (("left", self.left_edges), ("right", self.right_edges)):
            if edges is None:
                continue
            line = _scaled_line(edges, self.width_m)
            parts.append(line)
            idx = len(parts) - 1
            if side == "left":
                coarse_cell = np.full(ny, line.n_cells - 1)
                fine_cells = cell[:, 0]
                dx_c = edges[-1] - edges[-2]
            else:
                coarse_cell = np.zeros(ny, dtype=np.int64)
                fine_cells = cell[:, -1]
                dx_c = edges[1] - edges[0]
            links.append((0, fine_cells, idx, coarse_cell, h, 0.5 * h, 0.5 * dx_c))
        self.network = FVNetwork.join(parts, links)
        x_fine = np.broadcast_to(micro.x_centres_m(), (ny, nx)).ravel()
        xs = [x_fine]
        for edges in (self.left_edges, self.right_edges):
            if edges is not None:
                xs.append(0.5 * (edges[1:] + edges[:-1]))
        self.x_centre_m = np.concatenate(xs)
        self.d_eff = EffectiveDiffusivity(micro)

    def window_field(self, c: np.ndarray) -> np.ndarray:
        """The window part of a network field as an (ny, nx) image."""
        return c[: self.n_window].reshape(self.micro.shape)

    def column_profile(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(edges_m, mean C per column/cell) along the whole strip, x increasing."""
        ny, nx = self.micro.shape
        x0w, x1w, _, _ = self.micro.extent_m
        h = self.micro.pixel_m
        pieces_e = []
        pieces_c = []
        pos = self.n_window
        if self.left_edges is not None:
            n = len(self.left_edges) - 1
            pieces_e.append(self.left_edges[:-1])
            pieces_c.append(c[pos:pos + n])
            pos += n
        pieces_e.append(x0w + np.arange(nx) * h)
        pieces_c.append(self.window_field(c).mean(axis=0))
        if self.right_edges is not None:
            n = len(self.right_edges) - 1
            pieces_e.append(self.right_edges[:-1])
            pieces_c.append(c[pos:pos + n])
            last = self.right_edges[-1]
        else:
            last = x1w
        return np.append(np.concatenate(pieces_e), last), np.concatenate(pieces_c)

    def profile(self, c: np.ndarray, x_m: np.ndarray, width_m: float) -> np.ndarray:
        """Mean C over [x - width/2, x + width/2] at each x (m), overlap-weighted."""
        check_positive("width_m", width_m)
        x = np.atleast_1d(np.asarray(x_m, dtype=float))
        edges, vals = self.column_profile(c)
        if np.any(x - width_m / 2 < edges[0]) or np.any(x + width_m / 2 > edges[-1]):
            raise ValueError(
                f"profile positions {x.min():.6g}..{x.max():.6g} m (± {width_m / 2:.3g} m) "
                f"must lie within the strip [{edges[0]:.6g}, {edges[-1]:.6g}] m"
            )
        cum = np.concatenate([[0.0], np.cumsum(vals * np.diff(edges))])

        def integral(at: np.ndarray) -> np.ndarray:
            k = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, len(vals) - 1)
            return cum[k] + vals[k] * (at - edges[k])

        return (integral(x + width_m / 2) - integral(x - width_m / 2)) / width_m


def _edges(a: float, b: float, dx: float) -> np.ndarray | None:
    if b - a <= 1e-12:
        return None
    n = max(1, int(np.ceil((b - a) / dx - 1e-9)))
    return np.linspace(a, b, n + 1)


def _scaled_line(edges: np.ndarray, width_m: float) -> FVNetwork:
    line = FVNetwork.line(edges, homogenised=True)
    return FVNetwork(
        volume=line.volume * width_m,
        face_i=line.face_i,
        face_j=line.face_j,
        area=line.area * width_m,
        dist_bulk=line.dist_bulk,
        dist_eff=line.dist_eff,
        gb_resist=line.gb_resist,
    )
