"""Grain-boundary steps on ⁶Li fraction maps: D*_gb/δ per boundary from eq. 3.

For every pair of neighbouring grains the boundary is taken as the straight line through the
pixel faces the two grains share (principal axis of the face midpoints). Pixels of the two
grains within ``window_px`` of that line, and within the boundary's own length along it, are
fitted jointly with ``C = a_side + g s + q_side s² + r_side u`` (s: signed distance along the
normal n, which points away from the liquid level; u: position along the boundary). The common
slope g is the bulk gradient at the boundary (flux continuity with one D*_bulk on both sides),
``a_up - a_down`` the step ΔC, and eq. 3 gives ``D*_gb/δ = D*_bulk (−g) / ΔC``. The joint fit
averages over the whole boundary length, as the paper's ~50-row profiles do (docs/science.md §5).

Boundaries whose normal is far from the diffusion direction (x) carry little flux and a step
lost in the noise; by default only boundaries with the normal within ``max_angle_deg`` of x
enter the distribution.

Units: positions and lengths in cm, D in cm²/s, D*_gb/δ in cm/s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from lltolab.vocabulary import BOUNDARY_WIDTH_CM

from ._checks import as_fraction_array, as_positive

__all__ = [
    "DEFAULT_D_BULK_CM2_S",
    "DEFAULT_DELTA_CM",
    "BoundaryStep",
    "BoundaryAnalysis",
    "analyze_boundaries",
    "grains_from_boundary_map",
    "find_boundaries",
    "boundary_profile",
]

DEFAULT_D_BULK_CM2_S = 2.6e-8
"""D*_bulk of LLTO at 22 °C (NMR, docs/science.md §3), cm²/s."""
DEFAULT_DELTA_CM = BOUNDARY_WIDTH_CM
"""Assumed grain-boundary thickness δ = 0.5 nm, in cm."""

_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
_NOISY = 1.0  # median relative error of D_gb/δ above which the summary warns


@dataclass(frozen=True)
class BoundaryStep:
    """Result for one boundary (one pair of neighbouring grains).

    Attributes
    ----------
    grain_up, grain_down : int
        Grain on the liquid-level side (smaller s) and on the far side.
    x_cm, y_cm : float
        Centre of the boundary segment (cm from the map's lower-left corner).
    angle_deg : float
        Angle between the boundary normal and the x (diffusion) direction, 0..90°.
    length_cm : float
        Length of the boundary segment (cm).
    n_up, n_down : int
        Pixels fitted on each side.
    step : float
        ΔC = C_up − C_down extrapolated to the boundary.
    step_err : float
        Standard error of ``step``.
    gradient_per_cm : float
        Bulk gradient at the boundary, −∂C/∂n (cm⁻¹; > 0 when ⁶Li flows up → down).
    gradient_err : float
        Standard error of ``gradient_per_cm``.
    dgb_over_delta : float
        D*_gb/δ (cm/s) = D*_bulk · gradient / step; NaN when the signs are unphysical.
    dgb_over_delta_err : float
        Standard error (first-order propagation, with the step–gradient covariance).
    chi2_red : float
        Reduced χ² of the fit (NaN without a sigma map).
    c_up, c_down : float
        Fitted C on each side, extrapolated to the boundary (step = c_up − c_down).
    curvature_up_per_cm2, curvature_down_per_cm2 : float
        Fitted ∂²C/∂n² / 2 on each side (cm⁻²; equal unless ``curvature='separate'``).
    normal_x, normal_y : float
        Unit normal of the boundary, pointing from the up to the down grain (n_x >= 0).
    selected : bool
        Whether the boundary enters the distribution.
    reason : str
        Why it was left out ('' when selected).
    """

    grain_up: int
    grain_down: int
    x_cm: float
    y_cm: float
    angle_deg: float
    length_cm: float
    n_up: int
    n_down: int
    step: float
    step_err: float
    gradient_per_cm: float
    gradient_err: float
    dgb_over_delta: float
    dgb_over_delta_err: float
    chi2_red: float
    c_up: float
    c_down: float
    curvature_up_per_cm2: float
    curvature_down_per_cm2: float
    normal_x: float
    normal_y: float
    selected: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able dict (NaN replaced by None)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class BoundaryAnalysis:
    """Per-boundary steps of one C map and the distribution of D*_gb/δ.

    Attributes
    ----------
    steps : tuple of BoundaryStep
        Every analysed boundary (selected or not).
    d_bulk : float
        D*_bulk used (cm²/s).
    delta_cm : float
        δ used for D*_gb = (D*_gb/δ) δ (cm).
    pixel_cm : tuple of float
        (x, y) pixel pitch (cm).
    source : str
        Where the boundaries came from: 'grain_ids', 'boundary_map' or 'c_map'.
    grain_ids : ndarray
        The grain map used (ny, nx).
    """

    steps: tuple[BoundaryStep, ...]
    d_bulk: float
    delta_cm: float
    pixel_cm: tuple[float, float]
    source: str
    grain_ids: np.ndarray = field(repr=False)

    @property
    def selected(self) -> list[BoundaryStep]:
        """The boundaries entering the distribution."""
        return [s for s in self.steps if s.selected]

    @property
    def dgb_over_delta(self) -> np.ndarray:
        """D*_gb/δ (cm/s) of the selected boundaries."""
        return np.array([s.dgb_over_delta for s in self.selected], dtype=float)

    @property
    def dgb(self) -> np.ndarray:
        """D*_gb (cm²/s) of the selected boundaries, with δ = ``delta_cm``."""
        return self.dgb_over_delta * self.delta_cm

    @property
    def median(self) -> float:
        """Median D*_gb/δ (cm/s) of the selected boundaries (NaN if none)."""
        v = self.dgb_over_delta
        return float(np.median(v)) if v.size else math.nan

    def quantiles(self, q: tuple[float, ...] = _QUANTILES) -> dict[str, float]:
        """Quantiles of D*_gb/δ (cm/s) of the selected boundaries, keyed like 'q0.25'."""
        v = self.dgb_over_delta
        return {f"q{p:g}": (float(np.quantile(v, p)) if v.size else math.nan) for p in q}

    @property
    def median_stderr(self) -> float:
        """Standard error of the median (cm/s): 1.2533 · (robust sd from the MAD) / √n."""
        v = self.dgb_over_delta
        if v.size < 2:
            return math.nan
        mad = 1.4826 * float(np.median(np.abs(v - np.median(v))))
        return 1.2533 * mad / math.sqrt(v.size)

    def summary(self) -> dict[str, object]:
        """Distribution summary (JSON-able): counts, median, quantiles, geometric spread."""
        v = self.dgb_over_delta
        out: dict[str, object] = {
            "n_boundaries": len(self.steps),
            "n_selected": int(v.size),
            "d_bulk_cm2_s": self.d_bulk,
            "delta_cm": self.delta_cm,
            "source": self.source,
            "median_dgb_over_delta_cm_s": _jsonable(self.median),
            "median_stderr_cm_s": _jsonable(self.median_stderr),
            "median_dgb_cm2_s": _jsonable(self.median * self.delta_cm),
            "mean_dgb_cm2_s": _jsonable(float(np.mean(v)) * self.delta_cm if v.size else math.nan),
            "quantiles_dgb_over_delta_cm_s": {k: _jsonable(x) for k, x in self.quantiles().items()},
        }
        pos = v[v > 0]
        out["n_negative"] = int(v.size - pos.size)
        rel = np.array([abs(s.dgb_over_delta_err / s.dgb_over_delta) for s in self.selected
                        if s.dgb_over_delta != 0])
        out["median_relative_error"] = _jsonable(float(np.median(rel)) if rel.size else math.nan)
        if rel.size and float(np.median(rel)) > _NOISY:
            out["warning"] = (
                f"per-boundary gradients are noise-dominated (median relative error "
                f"{float(np.median(rel)):.1f}): the median is then biased low by the step "
                "selection; collect more counts per pixel (~1e4 gave ±10 % on the twin)")
        if pos.size >= 2:
            out["geometric_sd_factor"] = float(np.exp(np.std(np.log(pos), ddof=1)))
        return out

    def to_dict(self) -> dict[str, object]:
        """Summary plus the per-boundary table (JSON-able)."""
        out = self.summary()
        out["pixel_cm"] = list(self.pixel_cm)
        out["boundaries"] = [s.to_dict() for s in self.steps]
        return out


def _jsonable(v: object) -> object:
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer | np.bool_):
        return v.item()
    return v


def _pixel_pair(pixel_cm: float | tuple[float, float]) -> tuple[float, float]:
    if np.ndim(pixel_cm) == 0:
        p = as_positive("pixel_cm", pixel_cm)
        return p, p
    px, py = pixel_cm  # type: ignore[misc]
    return as_positive("pixel_cm[x]", px), as_positive("pixel_cm[y]", py)


# ---------------------------------------------------------------- boundaries → grains
def grains_from_boundary_map(boundary_map: np.ndarray, *, min_grain_px: int = 4) -> np.ndarray:
    """Grain map (ny, nx) from a boolean boundary map (True = boundary pixel).

    Grains are the 4-connected regions of non-boundary pixels with at least ``min_grain_px``
    pixels; boundary (and too small) pixels go to the nearest grain.
    """
    b = np.asarray(boundary_map)
    if b.ndim != 2 or min(b.shape) < 2:
        raise ValueError(f"boundary_map must be a 2-D image, got shape {b.shape}")
    b = b.astype(bool)
    lab, n = ndimage.label(~b)
    if n == 0:
        raise ValueError("boundary_map marks every pixel as boundary: no grains")
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= int(min_grain_px)
    keep[0] = False
    if not keep.any():
        raise ValueError(f"no grain of at least min_grain_px={min_grain_px} pixels")
    remap = np.zeros(n + 1, dtype=np.int64)
    remap[keep] = np.arange(1, int(keep.sum()) + 1)
    lab = remap[lab]
    idx = ndimage.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
    return lab[idx[0], idx[1]] - 1


def find_boundaries(
    c_map: np.ndarray,
    *,
    sigma_map: np.ndarray | None = None,
    smooth_px: float = 1.0,
    threshold: float = 4.0,
    low_threshold: float = 2.5,
) -> np.ndarray:
    """Boolean boundary map located from the C map itself (steps = gradient ridges).

    Canny-like: the map is smoothed with a Gaussian of ``smooth_px`` pixels, ridge pixels are
    the local maxima of the gradient magnitude across the ridge, and a ridge is kept where it
    exceeds ``low_threshold`` times the gradient's noise and is connected to a pixel above
    ``threshold`` times that noise (the noise from ``sigma_map`` or a robust estimate from the
    map). Weak steps far from the exchanged edge are missed, and two grains whose common
    boundary is not closed merge: prefer a micrograph when available.
    """
    c = as_fraction_array("c_map", c_map, allow_nan=True)
    if c.ndim != 2 or min(c.shape) < 3:
        raise ValueError(f"c_map must be a 2-D image of at least 3 x 3, got shape {c.shape}")
    as_positive("smooth_px", smooth_px)
    as_positive("threshold", threshold)
    as_positive("low_threshold", low_threshold)
    if low_threshold > threshold:
        raise ValueError(f"low_threshold={low_threshold} must not exceed threshold={threshold}")
    c = _fill_nan(c)
    cs = ndimage.gaussian_filter(c, smooth_px, mode="nearest")
    gy, gx = np.gradient(cs)
    mag = np.hypot(gx, gy)
    if sigma_map is not None:
        s = np.asarray(sigma_map, dtype=float)
        if s.shape != c.shape:
            raise ValueError(f"sigma_map has shape {s.shape}, expected {c.shape}")
        noise = float(np.nanmedian(s))
    else:
        # white-noise level from the residual to a 3 x 3 mean (robust to steps)
        lap = c - ndimage.uniform_filter(c, 3, mode="nearest")
        noise = 1.4826 * float(np.median(np.abs(lap - np.median(lap)))) * math.sqrt(9 / 8)
    # std of one central-difference component of Gaussian-smoothed white noise
    g_noise = noise * math.sqrt(-math.expm1(-1.0 / smooth_px**2) / (8 * math.pi * smooth_px**2))
    g_noise = max(g_noise, 1e-12)
    # non-maximum suppression across the ridge (gradient direction quantised to 4)
    ang = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    pad = np.pad(mag, 1, mode="edge")
    ny, nx = mag.shape
    nms = np.zeros(mag.shape, dtype=bool)
    for a, (dy, dx) in {0: (0, 1), 45: (1, 1), 90: (1, 0), 135: (1, -1)}.items():
        dist = np.abs(ang - a)
        sel = np.minimum(dist, 180.0 - dist) <= 22.5
        fwd = pad[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
        back = pad[1 - dy:1 - dy + ny, 1 - dx:1 - dx + nx]
        nms |= sel & (mag >= fwd) & (mag >= back)
    weak = nms & (mag >= low_threshold * g_noise)
    strong = weak & (mag >= threshold * g_noise)
    lab, n = ndimage.label(weak, structure=np.ones((3, 3), bool))
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(lab[strong])] = True
    keep[0] = False
    ridge = keep[lab]
    # close one-pixel gaps so that grains separate
    return ndimage.binary_dilation(ridge, structure=np.ones((3, 3), bool))


def _fill_nan(c: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(c)
    if not bad.any():
        return c
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return c[idx[0], idx[1]]


# ---------------------------------------------------------------- per-boundary fits
def analyze_boundaries(
    c_map: np.ndarray,
    *,
    pixel_cm: float | tuple[float, float] = 1e-4,
    d_bulk: float = DEFAULT_D_BULK_CM2_S,
    delta_cm: float = DEFAULT_DELTA_CM,
    grain_ids: np.ndarray | None = None,
    boundary_map: np.ndarray | None = None,
    sigma_map: np.ndarray | None = None,
    window_px: float = 14.0,
    exclude_px: float = 1.0,
    end_trim_px: float = 1.0,
    margin_px: int = 1,
    min_length_px: float = 6.0,
    min_pixels_side: int = 20,
    max_angle_deg: float = 40.0,
    min_step_snr: float = 3.0,
    max_chi2: float = 1.5,
    curvature: str = "shared",
) -> BoundaryAnalysis:
    """D*_gb/δ of every boundary of a ⁶Li fraction map (eq. 3 with fitted gradient and step).

    Parameters
    ----------
    c_map : ndarray, shape (ny, nx)
        ⁶Li fraction, x (columns) = distance from the liquid level. NaN pixels (saturated,
        no counts) are ignored.
    pixel_cm : float or (float, float)
        Pixel pitch (cm), or (x, y) pitches for non-square pixels.
    d_bulk : float
        D*_bulk at the temperature the map was frozen at (cm²/s); default 2.6e-8 (22 °C).
    delta_cm : float
        Boundary thickness δ (cm) for D*_gb; default 0.5 nm.
    grain_ids : ndarray of int, optional
        Grain map (ny, nx), e.g. from the twin.
    boundary_map : ndarray of bool, optional
        Boundary pixels, e.g. the etched micrograph overlaid on the map. Used when
        ``grain_ids`` is None. With neither, boundaries are located in the C map itself.
    sigma_map : ndarray, optional
        Standard error of every pixel's C (weights of the fits).
    window_px : float
        Depth of the fitted region on each side (pixels; the paper's quadratic fits used ~14).
    exclude_px : float
        Pixels closer than this to the boundary line are left out (staircase, blur).
    end_trim_px : float
        Pixels beyond the boundary's ends minus this margin are left out (triple junctions).
    margin_px : int
        Pixels within this many pixels (square neighbourhood) of any grain boundary are left
        out: a raster resampled from the sample (pitch ≠ grain-map pitch) blurs every boundary
        over a pixel, and mixed pixels next to the grain's *other* boundaries bias the fitted
        gradient (by ~1.5x on a 512 × 206 raster of 500 × 200 µm without this margin).
    min_length_px : float
        Shorter boundaries are skipped.
    min_pixels_side : int
        Fewer fitted pixels on a side: skipped.
    max_angle_deg : float
        Boundaries whose normal is further from x than this are not selected (90 = keep all).
    min_step_snr : float
        Boundaries whose step is not above this many standard errors are not selected (far
        from the exchanged edge both step and gradient vanish in the noise).
    max_chi2 : float
        With ``sigma_map``: boundaries whose fit leaves residuals above this reduced χ² are
        not selected (an undetected boundary inside the fitted region inflates the gradient).
    curvature : {'shared', 'separate', 'none'}
        Quadratic term of the fit: one curvature for both sides (default; the transient
        curvature ∂C/∂t / D is nearly continuous across a boundary and a shared term keeps the
        gradient's noise ~4x lower), one per side (the paper's independent quadratic fits), or
        none (linear).

    Returns
    -------
    BoundaryAnalysis
    """
    c = as_fraction_array("c_map", c_map, allow_nan=True)
    if c.ndim != 2 or min(c.shape) < 3:
        raise ValueError(f"c_map must be a 2-D image of at least 3 x 3, got shape {c.shape}")
    px, py = _pixel_pair(pixel_cm)
    d_bulk = as_positive("d_bulk", d_bulk)
    delta_cm = as_positive("delta_cm", delta_cm)
    as_positive("window_px", window_px)
    if not (isinstance(margin_px, int | np.integer) and 0 <= margin_px <= 5):
        raise ValueError(f"margin_px must be an integer in [0, 5], got {margin_px!r}")
    if not 0 <= exclude_px < window_px:
        raise ValueError(f"exclude_px must be in [0, window_px={window_px}), got {exclude_px}")
    if not 0 < max_angle_deg <= 90:
        raise ValueError(f"max_angle_deg must be in (0, 90], got {max_angle_deg}")
    if curvature not in ("shared", "separate", "none"):
        raise ValueError(f"curvature must be 'shared', 'separate' or 'none', got {curvature!r}")
    if not max_chi2 > 0:
        raise ValueError(f"max_chi2 must be > 0, got {max_chi2}")
    if not min_step_snr >= 0:
        raise ValueError(f"min_step_snr must be >= 0, got {min_step_snr}")
    if min_pixels_side < 4:
        raise ValueError(
            f"min_pixels_side must be >= 4 (parameters per side), got {min_pixels_side}"
        )
    w = None
    if sigma_map is not None:
        s = np.asarray(sigma_map, dtype=float)
        if s.shape != c.shape:
            raise ValueError(f"sigma_map has shape {s.shape}, expected {c.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(np.isfinite(s) & (s > 0), 1.0 / s, np.nan)
    if grain_ids is not None:
        ids = np.asarray(grain_ids)
        if ids.shape != c.shape:
            raise ValueError(f"grain_ids has shape {ids.shape}, expected {c.shape}")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0:
            raise ValueError("grain_ids must be non-negative integers")
        source = "grain_ids"
    elif boundary_map is not None:
        bm = np.asarray(boundary_map)
        if bm.shape != c.shape:
            raise ValueError(f"boundary_map has shape {bm.shape}, expected {c.shape}")
        ids = grains_from_boundary_map(bm)
        source = "boundary_map"
    else:
        ids = grains_from_boundary_map(find_boundaries(c, sigma_map=sigma_map))
        source = "c_map"
    ids = ids.astype(np.int64)
    valid = np.isfinite(c) if w is None else np.isfinite(c) & np.isfinite(w)
    if margin_px > 0:
        size = 2 * int(margin_px) + 1
        valid &= (ndimage.minimum_filter(ids, size, mode="nearest")
                  == ndimage.maximum_filter(ids, size, mode="nearest"))
    steps = [
        step
        for step in _iter_pairs(c, w, valid, ids, px, py, d_bulk, window_px, exclude_px,
                                end_trim_px, min_length_px, min_pixels_side, max_angle_deg,
                                min_step_snr, max_chi2, curvature)
    ]
    return BoundaryAnalysis(tuple(steps), d_bulk, delta_cm, (px, py), source, ids)


def _iter_pairs(c, w, valid, ids, px, py, d_bulk, window_px, exclude_px, end_trim_px,
                min_length_px, min_pixels_side, max_angle_deg, min_step_snr, max_chi2, curvature):
    ny, nx = ids.shape
    n = int(ids.max()) + 1
    # face midpoints in pixel units (x = column + 0.5 at pixel centres)
    r, col = np.nonzero(ids[:, :-1] != ids[:, 1:])
    fa, fb = ids[r, col], ids[r, col + 1]
    fx, fy = col + 1.0, r + 0.5
    r2, col2 = np.nonzero(ids[:-1, :] != ids[1:, :])
    fa = np.concatenate([fa, ids[r2, col2]])
    fb = np.concatenate([fb, ids[r2 + 1, col2]])
    fx = np.concatenate([fx, col2 + 0.5])
    fy = np.concatenate([fy, r2 + 1.0])
    keys = np.minimum(fa, fb) * n + np.maximum(fa, fb)
    order = np.argsort(keys, kind="stable")
    keys, fx, fy = keys[order], fx[order], fy[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(keys)]])
    # work in cm-scaled pixel units: physical coordinates divided by px (x) — keep aspect
    aspect = py / px
    half_w = window_px
    for a0, a1 in zip(starts, ends, strict=True):
        if a1 - a0 < 3:
            continue
        key = int(keys[a0])
        g1, g2 = key // n, key % n
        pts = np.column_stack([fx[a0:a1], fy[a0:a1] * aspect])  # in x-pixel units
        centre = pts.mean(axis=0)
        d = pts - centre
        cov = d.T @ d
        evals, evecs = np.linalg.eigh(cov)
        t = evecs[:, 1]
        nrm = np.array([t[1], -t[0]])
        if nrm[0] < 0 or (nrm[0] == 0 and nrm[1] < 0):
            nrm = -nrm
        proj = d @ t
        length = float(proj.max() - proj.min()) + 1.0
        if length < min_length_px:
            continue
        angle = math.degrees(math.acos(min(1.0, abs(float(nrm[0])))))
        half_len = 0.5 * length - end_trim_px
        reach = half_len + half_w + 1.0
        c0 = max(0, int(math.floor(centre[0] - reach)))
        c1 = min(nx, int(math.ceil(centre[0] + reach)) + 1)
        rr0 = max(0, int(math.floor((centre[1] - reach) / aspect)))
        rr1 = min(ny, int(math.ceil((centre[1] + reach) / aspect)) + 1)
        sub_ids = ids[rr0:rr1, c0:c1]
        xs = np.arange(c0, c1) + 0.5 - centre[0]
        ys = (np.arange(rr0, rr1) + 0.5) * aspect - centre[1]
        sx = xs[None, :] * nrm[0] + ys[:, None] * nrm[1]
        ux = xs[None, :] * t[0] + ys[:, None] * t[1]
        band = (np.abs(ux) <= half_len) & (np.abs(sx) <= half_w) & (np.abs(sx) >= exclude_px)
        band &= valid[rr0:rr1, c0:c1]
        in1 = band & (sub_ids == g1)
        in2 = band & (sub_ids == g2)
        # which grain lies upstream (negative s)?
        m1 = float(sx[sub_ids == g1].mean()) if np.any(sub_ids == g1) else 0.0
        m2 = float(sx[sub_ids == g2].mean()) if np.any(sub_ids == g2) else 0.0
        up, dn, in_up, in_dn = (g1, g2, in1, in2) if m1 <= m2 else (g2, g1, in2, in1)
        # keep only pixels on their own side of the line
        in_up &= sx < 0
        in_dn &= sx > 0
        n_up, n_dn = int(in_up.sum()), int(in_dn.sum())
        yc_cm = (centre[1] / aspect) * py
        xc_cm = centre[0] * px
        base = dict(grain_up=int(up), grain_down=int(dn), x_cm=float(xc_cm), y_cm=float(yc_cm),
                    angle_deg=float(angle), length_cm=float(length * px), n_up=n_up, n_down=n_dn,
                    normal_x=float(nrm[0]), normal_y=float(nrm[1]))
        if n_up < min_pixels_side or n_dn < min_pixels_side:
            yield _skipped(base, f"too few pixels ({n_up}, {n_dn} < {min_pixels_side})")
            continue
        sub_c = c[rr0:rr1, c0:c1]
        sub_w = None if w is None else w[rr0:rr1, c0:c1]
        fit = _joint_fit(sub_c, sub_w, sx, ux, in_up, in_dn, curvature)
        if fit is None:
            yield _skipped(base, "degenerate fit (pixels do not span the window)")
            continue
        step, step_err, slope, slope_err, cov_sg, chi2, a_up, a_dn, q_up, q_dn = fit
        grad = -slope / px  # per x-pixel unit → per cm
        grad_err = slope_err / px
        cov_sg_cm = -cov_sg / px
        if step > 0:
            # a negative value (gradient below its noise) is kept: dropping it would bias
            # the median of a noise-dominated gradient upwards
            k = d_bulk * grad / step
            var = (d_bulk / step) ** 2 * (grad_err**2 + (grad / step) ** 2 * step_err**2
                                          - 2 * (grad / step) * cov_sg_cm)
            k_err = math.sqrt(max(var, 0.0))
        else:
            k, k_err = math.nan, math.nan
        reason = ""
        if not step > min_step_snr * step_err:
            reason = f"step {step:.3g} not above {min_step_snr:g} x its error {step_err:.2g}"
        elif chi2 > max_chi2:
            reason = (f"residuals {chi2:.2g} x the counting noise (> max_chi2={max_chi2:g}): "
                      "a hidden boundary or merged grains")
        elif angle > max_angle_deg:
            reason = f"normal {angle:.0f}° from x > max_angle_deg={max_angle_deg:g}°"
        yield BoundaryStep(**base, step=step, step_err=step_err, gradient_per_cm=grad,
                           gradient_err=grad_err, dgb_over_delta=k, dgb_over_delta_err=k_err,
                           chi2_red=chi2, c_up=a_up, c_down=a_dn,
                           curvature_up_per_cm2=q_up / px**2,
                           curvature_down_per_cm2=q_dn / px**2, selected=reason == "",
                           reason=reason)


def _skipped(base: dict, reason: str) -> BoundaryStep:
    nan = math.nan
    return BoundaryStep(**base, step=nan, step_err=nan, gradient_per_cm=nan, gradient_err=nan,
                        dgb_over_delta=nan, dgb_over_delta_err=nan, chi2_red=nan, c_up=nan,
                        c_down=nan, curvature_up_per_cm2=nan, curvature_down_per_cm2=nan,
                        selected=False,
                        reason=reason)


def _joint_fit(c, w, sx, ux, in_up, in_dn, curvature):
    """LSQ of C = a_side + g s + q s² + r_side u (q shared, per side or absent).

    Returns (step, step_err, g, g_err, cov(step, g), reduced χ² (NaN without weights),
    a_up, a_down, q_up, q_down) or None when degenerate.
    """
    s_u, u_u, c_u = sx[in_up], ux[in_up], c[in_up]
    s_d, u_d, c_d = sx[in_dn], ux[in_dn], c[in_dn]
    if np.ptp(s_u) < 2.0 or np.ptp(s_d) < 2.0:
        return None
    mu, md = len(s_u), len(s_d)
    cols = [np.r_[np.ones(mu), np.zeros(md)], np.r_[np.zeros(mu), np.ones(md)],
            np.r_[s_u, s_d], np.r_[u_u, np.zeros(md)], np.r_[np.zeros(mu), u_d]]
    if curvature == "shared":
        cols.append(np.r_[s_u**2, s_d**2])
    elif curvature == "separate":
        cols += [np.r_[s_u**2, np.zeros(md)], np.r_[np.zeros(mu), s_d**2]]
    x = np.column_stack(cols)
    y = np.concatenate([c_u, c_d])
    if w is not None:
        ww = np.concatenate([w[in_up], w[in_dn]])
        x = x * ww[:, None]
        y = y * ww
    p = x.shape[1]
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    if rank < p:
        return None
    dof = len(y) - p
    res = y - x @ coef
    s2 = float(res @ res) / dof if dof > 0 else math.nan
    chi2_red = s2 if w is not None else math.nan
    if w is not None:
        s2 = max(s2, 1.0)  # weights are absolute errors: do not shrink below them
    cov = np.linalg.inv(x.T @ x) * s2
    step = float(coef[0] - coef[1])
    var_step = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    cov_sg = cov[0, 2] - cov[1, 2]
    if curvature == "shared":
        q_up = q_dn = float(coef[5])
    elif curvature == "separate":
        q_up, q_dn = float(coef[5]), float(coef[6])
    else:
        q_up = q_dn = 0.0
    return (step, math.sqrt(max(var_step, 0.0)), float(coef[2]), math.sqrt(cov[2, 2]), cov_sg,
            chi2_red, float(coef[0]), float(coef[1]), q_up, q_dn)


def boundary_profile(
    analysis: BoundaryAnalysis,
    c_map: np.ndarray,
    index: int,
    *,
    window_px: float = 14.0,
    bin_px: float = 1.0,
) -> dict[str, np.ndarray]:
    """Profile across boundary ``analysis.steps[index]``, averaged along the boundary.

    Pixels of the two grains within ``window_px`` of the boundary line and within its length
    are binned by their signed distance s (cm, along the normal, up grain at s < 0).

    Returns
    -------
    dict
        ``s_cm``, ``c`` (bin means), ``n`` (pixels per bin) and ``model_s_cm``,
        ``model_c`` (the fitted quadratics on each side, NaN between them).
    """
    st = analysis.steps[index]
    c = np.asarray(c_map, dtype=float)
    ids = analysis.grain_ids
    if c.shape != ids.shape:
        raise ValueError(f"c_map has shape {c.shape}, expected {ids.shape}")
    px, py = analysis.pixel_cm
    ny, nx = ids.shape
    xs = (np.arange(nx) + 0.5) * px - st.x_cm
    ys = (np.arange(ny) + 0.5) * py - st.y_cm
    n = np.array([st.normal_x, st.normal_y])
    s = xs[None, :] * n[0] + ys[:, None] * n[1]
    u = -xs[None, :] * n[1] + ys[:, None] * n[0]
    w = window_px * px
    band = (np.abs(u) <= st.length_cm / 2) & (np.abs(s) <= w) & np.isfinite(c)
    sel = band & (((ids == st.grain_up) & (s < 0)) | ((ids == st.grain_down) & (s > 0)))
    edges = np.arange(-w, w + bin_px * px, bin_px * px)
    idx = np.digitize(s[sel], edges) - 1
    nb = len(edges) - 1
    ok = (idx >= 0) & (idx < nb)
    cnt = np.bincount(idx[ok], minlength=nb)
    tot = np.bincount(idx[ok], c[sel][ok], minlength=nb)
    keep = cnt > 0
    centres = 0.5 * (edges[1:] + edges[:-1])
    ms = np.linspace(-w, w, 201)
    slope = -st.gradient_per_cm
    model = np.where(
        ms < 0, st.c_up + slope * ms + st.curvature_up_per_cm2 * ms**2,
        st.c_down + slope * ms + st.curvature_down_per_cm2 * ms**2)
    model[np.abs(ms) < 1e-12] = np.nan
    return {"s_cm": centres[keep], "c": tot[keep] / cnt[keep], "n": cnt[keep],
            "model_s_cm": ms, "model_c": model}
