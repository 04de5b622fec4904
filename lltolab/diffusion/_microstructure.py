"""2-D polycrystal microstructure on a pixel grid: Laguerre (power) diagram of packed disks.

Grains are the power cells of disks packed by random sequential addition (largest first) with
log-normal equivalent-circle diameters; a plain Voronoi diagram cannot reach the 16 ± 11 µm
spread of the LLTO samples (docs/science.md §5). Lengths in metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ._validate import check_nonnegative, check_positive

__all__ = ["Microstructure", "lognormal_params"]


def lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    """(mu, sigma) of the underlying normal for a log-normal with the given mean and sd."""
    check_positive("mean", mean)
    check_positive("sd", sd)
    sigma2 = math.log(1.0 + (sd / mean) ** 2)
    return math.log(mean) - 0.5 * sigma2, math.sqrt(sigma2)


@dataclass(frozen=True)
class Microstructure:
    """Grains on a pixel grid.

    Parameters
    ----------
    grain_ids : ndarray of int, shape (ny, nx)
        Grain index of every pixel, 0 .. n_grains-1; x (columns) is the fast axis.
    pixel_m : float
        Pixel pitch in metres.
    origin_m : tuple of float
        (x, y) of the lower-left corner of pixel (0, 0) in metres.
    seeds_m : ndarray, shape (n_grains, 2)
        Generator point (x, y) of every grain in metres (its disk centre).
    pairs : ndarray of int, shape (m, 2)
        Neighbouring grain pairs (i < j) sharing at least one pixel face.
    normals : ndarray, shape (m, 2)
        Unit normal of the straight boundary of each pair (for a power diagram the direction
        from seed i to seed j).
    spread : ndarray, shape (m,)
        Multiplier of the boundary conductance per pair (1 = nominal).
    """

    grain_ids: np.ndarray
    pixel_m: float
    origin_m: tuple[float, float]
    seeds_m: np.ndarray
    pairs: np.ndarray
    normals: np.ndarray
    spread: np.ndarray
    _pair_keys: np.ndarray = field(repr=False, compare=False, default=None)  # type: ignore

    def __post_init__(self) -> None:
        check_positive("pixel_m", self.pixel_m)
        ids = np.asarray(self.grain_ids)
        if ids.ndim != 2 or min(ids.shape) < 1:
            raise ValueError(f"grain_ids must be a non-empty 2-D array, got shape {ids.shape}")
        n = self.n_grains
        keys = self.pairs[:, 0].astype(np.int64) * n + self.pairs[:, 1]
        if keys.size > 1 and np.any(np.diff(keys) <= 0):
            raise ValueError("pairs must be sorted and unique (i < j)")
        object.__setattr__(self, "_pair_keys", keys)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_grain_ids(
        cls,
        grain_ids: np.ndarray,
        pixel_m: float,
        seeds_m: np.ndarray,
        *,
        origin_m: tuple[float, float] = (0.0, 0.0),
        spread_sigma: float = 0.0,
        seed: int | None = None,
    ) -> Microstructure:
        """Build from a grain map and the grain generator points (normals from the seeds).

        Parameters
        ----------
        grain_ids : ndarray of int, shape (ny, nx)
        pixel_m : float
            Pixel pitch (m).
        seeds_m : ndarray, shape (n_grains, 2)
            Generator points; boundary normals are the unit vectors between neighbours' seeds.
        origin_m : tuple of float
            Lower-left corner (m).
        spread_sigma : float
            Standard deviation of ln(conductance multiplier) per boundary (0 = none).
        seed : int, optional
            Random seed for the spread.
        """
        ids = np.ascontiguousarray(grain_ids, dtype=np.int64)
        seeds = np.asarray(seeds_m, dtype=float)
        if ids.min() < 0 or ids.max() >= len(seeds):
            raise ValueError(
                f"grain_ids must index seeds_m (0..{len(seeds) - 1}), got {ids.min()}..{ids.max()}"
            )
        check_nonnegative("spread_sigma", spread_sigma)
        n = len(seeds)
        a = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
        b = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        keys = np.unique(lo * n + hi)
        pairs = np.stack([keys // n, keys % n], axis=1)
        d = seeds[pairs[:, 1]] - seeds[pairs[:, 0]]
        norm = np.hypot(d[:, 0], d[:, 1])
        if np.any(norm == 0):
            raise ValueError("two neighbouring grains share the same seed position")
        normals = d / norm[:, None]
        rng = np.random.default_rng(seed)
        if spread_sigma > 0:
            spread = np.exp(rng.normal(-0.5 * spread_sigma**2, spread_sigma, len(pairs)))
        else:
            spread = np.ones(len(pairs))
        return cls(ids, float(pixel_m), tuple(map(float, origin_m)), seeds, pairs, normals, spread)

    @classmethod
    def polycrystal(
        cls,
        width_m: float,
        height_m: float,
        pixel_m: float = 1e-6,
        *,
        seed: int = 0,
        mean_diameter_m: float = 16e-6,
        sd_diameter_m: float = 11e-6,
        origin_m: tuple[float, float] = (0.0, 0.0),
        spread_sigma: float = 0.0,
        packing_fraction: float = 0.45,
    ) -> Microstructure:
        """Laguerre polycrystal with log-normal equivalent-circle diameters.

        Parameters
        ----------
        width_m, height_m : float
            Size of the rectangle (x, y) in metres; rounded to whole pixels.
        pixel_m : float
            Pixel pitch (m).
        seed : int
            Random seed: the same seed gives the same microstructure.
        mean_diameter_m, sd_diameter_m : float
            Mean and standard deviation of the grains' equivalent-circle diameters (m).
        origin_m : tuple of float
            Lower-left corner (m).
        spread_sigma : float
            Std of ln(k multiplier) per boundary; ln 2 ≈ 0.69 gives the paper's range.
        packing_fraction : float
            Area fraction of the shrunk disks used for packing (0 < φ < 0.6).
        """
        width_m = check_positive("width_m", width_m)
        height_m = check_positive("height_m", height_m)
        pixel_m = check_positive("pixel_m", pixel_m)
        check_positive("mean_diameter_m", mean_diameter_m)
        check_positive("sd_diameter_m", sd_diameter_m)
        if not 0 < packing_fraction < 0.6:
            raise ValueError(f"packing_fraction must be in (0, 0.6), got {packing_fraction!r}")
        nx = max(1, round(width_m / pixel_m))
        ny = max(1, round(height_m / pixel_m))
        if nx * ny > 5e7:
            raise ValueError(f"grid of {nx} x {ny} pixels exceeds the limit of 5e7 pixels")
        rng = np.random.default_rng(seed)
        margin = 2.0 * mean_diameter_m
        x0, y0 = origin_m[0] - margin, origin_m[1] - margin
        w, h = nx * pixel_m + 2 * margin, ny * pixel_m + 2 * margin
        centres, diameters = _pack_disks(rng, w, h, mean_diameter_m, sd_diameter_m,
                                         packing_fraction)
        centres = centres + np.array([x0, y0])
        ids, used = _laguerre_pixels(centres, diameters, nx, ny, pixel_m, origin_m)
        return cls.from_grain_ids(ids, pixel_m, centres[used], origin_m=origin_m,
                                  spread_sigma=spread_sigma, seed=seed + 1)

    # ---------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) pixels."""
        return self.grain_ids.shape  # type: ignore[return-value]

    @property
    def n_grains(self) -> int:
        """Number of grains."""
        return len(self.seeds_m)

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) in metres."""
        ny, nx = self.shape
        x0, y0 = self.origin_m
        return x0, x0 + nx * self.pixel_m, y0, y0 + ny * self.pixel_m

    def x_centres_m(self) -> np.ndarray:
        """x of the pixel centres (columns) in metres."""
        return self.origin_m[0] + (np.arange(self.shape[1]) + 0.5) * self.pixel_m

    def y_centres_m(self) -> np.ndarray:
        """y of the pixel centres (rows) in metres."""
        return self.origin_m[1] + (np.arange(self.shape[0]) + 0.5) * self.pixel_m

    def boundary_map(self) -> np.ndarray:
        """Boolean (ny, nx) map of pixels with a 4-neighbour in another grain."""
        ids = self.grain_ids
        out = np.zeros(ids.shape, dtype=bool)
        dx = ids[:, 1:] != ids[:, :-1]
        dy = ids[1:, :] != ids[:-1, :]
        out[:, 1:] |= dx
        out[:, :-1] |= dx
        out[1:, :] |= dy
        out[:-1, :] |= dy
        return out

    def pair_index(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Index into ``pairs`` of each (a, b) grain pair (a != b), order-insensitive."""
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keys = lo.astype(np.int64) * self.n_grains + hi
        idx = np.searchsorted(self._pair_keys, keys)
        if np.any(idx >= len(self._pair_keys)) or np.any(self._pair_keys[idx] != keys):
            raise ValueError("grain pair is not a neighbouring pair of this microstructure")
        return idx

    def staircase_factor(self) -> np.ndarray:
        """Per pair f = |n_x| + |n_y|: a pixel staircase over-counts the boundary length by f."""
        return np.abs(self.normals[:, 0]) + np.abs(self.normals[:, 1])

    def equivalent_diameters_m(self, *, interior_only: bool = True) -> np.ndarray:
        """Equivalent-circle diameters (m) of the grains (interior: not touching the edge)."""
        ids = self.grain_ids
        area = np.bincount(ids.ravel(), minlength=self.n_grains) * self.pixel_m**2
        keep = area > 0
        if interior_only:
            edge = np.unique(np.concatenate([ids[0], ids[-1], ids[:, 0], ids[:, -1]]))
            keep[edge] = False
        return np.sqrt(4 * area[keep] / math.pi)


def _pack_disks(
    rng: np.random.Generator, w: float, h: float, mean: float, sd: float, phi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Random sequential addition of shrunk disks, largest first; returns centres, diameters."""
    mu, sigma = lognormal_params(mean, sd)
    area = w * h
    n_est = int(1.3 * area / (math.pi / 4 * (mean**2 + sd**2))) + 8
    d = rng.lognormal(mu, sigma, n_est)
    total = np.cumsum(math.pi / 4 * d**2)
    d = np.sort(d[: int(np.searchsorted(total, area)) + 1])[::-1]
    scale = math.sqrt(phi)
    r = 0.5 * d * scale
    cell = 2 * r[0]
    nbx, nby = int(w // cell) + 1, int(h // cell) + 1
    bins: dict[tuple[int, int], list[int]] = {}
    cx = np.empty(len(d))
    cy = np.empty(len(d))
    placed = np.zeros(len(d), dtype=bool)
    tries = 40
    for i, ri in enumerate(r):
        px = rng.uniform(0, w, tries)
        py = rng.uniform(0, h, tries)
        for x, y in zip(px, py, strict=True):
            bx, by = int(x // cell), int(y // cell)
            ok = True
            for ix in range(max(bx - 1, 0), min(bx + 2, nbx)):
                for iy in range(max(by - 1, 0), min(by + 2, nby)):
                    for j in bins.get((ix, iy), ()):
                        if (cx[j] - x) ** 2 + (cy[j] - y) ** 2 < (r[j] + ri) ** 2:
                            ok = False
                            break
                    if not ok:
                        break
                if not ok:
                    break
            if ok:
                cx[i], cy[i] = x, y
                placed[i] = True
                bins.setdefault((bx, by), []).append(i)
                break
    return np.stack([cx[placed], cy[placed]], axis=1), d[placed]


def _laguerre_pixels(
    centres: np.ndarray,
    diameters: np.ndarray,
    nx: int,
    ny: int,
    pixel_m: float,
    origin_m: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Power-diagram cell of every pixel centre; returns compact ids and the used seed rows."""
    weights = (0.5 * diameters) ** 2
    lift = np.sqrt(weights.max() - weights)
    tree = cKDTree(np.column_stack([centres, lift]))
    xs = origin_m[0] + (np.arange(nx) + 0.5) * pixel_m
    ys = origin_m[1] + (np.arange(ny) + 0.5) * pixel_m
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])
    _, owner = tree.query(pts, workers=-1)
    used, compact = np.unique(owner, return_inverse=True)
    return compact.reshape(ny, nx), used
