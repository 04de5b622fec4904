"""Model-based inversion of a SIMS image: D*_gb/δ from the whole ⁶Li/⁷Li image.

The twin's forward model (:class:`ImageForwardModel`: the grain map on the image's pixels, the
thermal history stored with the run) predicts the ⁶Li fraction of every pixel,
``C = c_off + (c_s − c_off) u(x, y; D_bulk, k)``, and the parameters θ = (ln D_bulk, ln k,
c_off, c_s) are fitted to the counts of all pixels at once by maximum likelihood.

Counting model (the simulator's and the instrument's): per pixel and mass the recorded counts
are Binomial(N, 1 − exp(−μ)) over N pulses (one count per pulse at most: dead time), with
μ6 = Y C and μ7 = Y (1 − C). The yield Y of each pixel (dose, topography) is a nuisance
taken from the pixel's own dead-time corrected total, Ŷ = (m6 + m7)/N with m = −N ln(1 − I/N):
the total is informative about the yield, C about the physics. Without N (a detector without
dead time) the likelihood of I6 given I6 + I7 is Binomial(I6 + I7, C).

The fit is Levenberg–Marquardt / Fisher scoring in θ with exact tangent sensitivities of the
discrete forward model at the first and last iterate and rank-one (Broyden) updates between
them; c_off and c_s enter linearly and are re-optimised for every forward solve. D_bulk is a
nuisance parameter with a log-normal prior (sd 0.3 in ln, about ±35 %) centred on the NMR law
(the paper's D*_bulk) and kept within a factor 10 of it: after days of exchange the grains are
nearly uniform inside, the image alone hardly tells D_bulk, and a free D_bulk trades against k
through D_eff (the series of both) and absorbs what the model lacks at the pixel scale.

Uncertainty: the Fisher information gives the model-based (Laplace) standard errors. Real
boundaries differ from one another (the twin draws a log-normal multiplier per boundary), so
one k is an average and the scatter of the boundaries adds to its uncertainty; the reported
interval uses the cluster-robust (sandwich) covariance with square blocks of grains (a few
grain diameters) as clusters, which contains that scatter, with Student's t for the number of
clusters, and is never narrower than the model-based one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import stdtrit

from lltolab.diffusion import BoundaryConductance, BulkDiffusivity

from ._boundaries import find_boundaries, grains_from_boundary_map
from ._forward import HeatStage, ImageForwardModel, equivalent_history, resolve_workers
from ._fraction import isotope_fraction

__all__ = ["ImageInversion", "invert_image"]

_C_MIN = 1e-6
_PARAMS = ("ln_d_bulk", "ln_k", "c_offset", "c_bath", "blur_var_px2")


class _Counts:
    """Per-pixel log-likelihood of the fraction C (vectorised over the valid pixels)."""

    def __init__(self, i6: np.ndarray, i7: np.ndarray, n_pulses: float | None) -> None:
        self.i6 = i6.astype(float)
        self.i7 = i7.astype(float)
        self.n = None if n_pulses is None else float(n_pulses)
        if self.n is None:
            self.total = self.i6 + self.i7
        else:
            n = self.n
            m6 = -n * np.log1p(-self.i6 / n)
            m7 = -n * np.log1p(-self.i7 / n)
            self.y = (m6 + m7) / n  # yield per pulse (mean Li ions per pulse)

    def _p(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return -np.expm1(-self.y * c), -np.expm1(-self.y * (1.0 - c))

    def loglik(self, c: np.ndarray) -> float:
        c = np.clip(c, _C_MIN, 1 - _C_MIN)
        if self.n is None:
            return float(np.sum(self.i6 * np.log(c) + self.i7 * np.log1p(-c)))
        p6, p7 = self._p(c)
        n = self.n
        return float(np.sum(self.i6 * np.log(p6) - (n - self.i6) * self.y * c
                            + self.i7 * np.log(p7) - (n - self.i7) * self.y * (1 - c)))

    def score_info(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dℓ/dC and the Fisher information E[−d²ℓ/dC²] per pixel."""
        c = np.clip(c, _C_MIN, 1 - _C_MIN)
        if self.n is None:
            return self.i6 / c - self.i7 / (1 - c), self.total / (c * (1 - c))
        p6, p7 = self._p(c)
        n, y = self.n, self.y
        score = y * ((self.i6 - n * p6) / p6 - (self.i7 - n * p7) / p7)
        info = n * y * y * ((1 - p6) / p6 + (1 - p7) / p7)
        return score, info

    def quality(self, c: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(deviance, Pearson χ², per-pixel deviance contributions)."""
        c = np.clip(c, _C_MIN, 1 - _C_MIN)

        def dev(k: np.ndarray, n: np.ndarray | float, p: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.where(k > 0, k * np.log(k / (n * p)), 0.0)
                b = np.where(n - k > 0, (n - k) * np.log((n - k) / (n * (1 - p))), 0.0)
            return 2 * (a + b)

        if self.n is None:
            n = self.total
            d = dev(self.i6, n, c)
            with np.errstate(divide="ignore", invalid="ignore"):
                pearson = np.where(n > 0, (self.i6 - n * c) ** 2 / (n * c * (1 - c)), 0.0)
            return float(d.sum()), float(pearson.sum()), d
        p6, p7 = self._p(c)
        n = self.n
        d = dev(self.i6, n, p6) + dev(self.i7, n, p7)
        pearson = ((self.i6 - n * p6) ** 2 / (n * p6 * (1 - p6))
                   + (self.i7 - n * p7) ** 2 / (n * p7 * (1 - p7)))
        return float(d.sum()), float(pearson.sum()), d


@dataclass(frozen=True)
class ImageInversion:
    """Result of :func:`invert_image` (public units: cm, s, K).

    Attributes
    ----------
    dgb_over_delta_cm_s : float
        Fitted k = D*_gb/δ (cm/s) at ``temperature_K``: one value for all boundaries.
    interval_cm_s : tuple of float
        (low, high) confidence interval of k at ``level`` (cluster-robust, log scale,
        Student's t with clusters − 1 degrees of freedom).
    level : float
        Confidence level of the intervals (0.9 by default).
    stderr_ln_k, stderr_ln_k_model : float
        Standard error of ln k: reported (robust, at least the model-based) and model-based.
    d_bulk_cm2_s : float
        Fitted D*_bulk (cm²/s), a nuisance parameter.
    d_bulk_interval_cm2_s : tuple of float
        Its interval at ``level``.
    c_offset, c_bath : float
        Fitted fraction of the unexchanged material (natural ⁶Li plus any offset of the
        image) and of the bath side (x < 0).
    blur_var_px2 : float
        Fitted variance (px², per axis) of the image blur: the probe's spread and the
        resampling of the sample onto the raster smear steps over neighbouring pixels.
    correlation : ndarray
        Correlation matrix of (ln D_bulk, ln k, c_offset, c_bath, blur variance) (robust).
    deviance, pearson_chi2 : float
        Fit quality; ``dof`` = valid pixels − 4.
    n_pixels, n_grains, n_boundaries : int
        Valid pixels fitted, grains and grain pairs of the model.
    grain_source : str
        'grain_ids', 'boundary_map' or 'c_map'.
    temperature_K : float
        Temperature of the fitted D*_bulk and k (the last warm stage).
    stages : tuple of HeatStage
        The thermal history the model integrated (equivalent stages).
    iterations, forward_solves : int
        LM iterations and forward solves (full resolution).
    coarse_forward_solves : int
        Forward solves of the 2 × 2-binned fit that gave the start (0 without one).
    converged : bool
        Whether the fit met its tolerance with a well-conditioned information matrix.
    message : str
        Why not converged ('' if converged).
    cpu_s, wall_s : float
        Process CPU time and wall time of the inversion (s).
    c_model, c_data, residual : ndarray
        Model and measured C maps and the Pearson residual map of C (NaN where not fitted:
        unusable counts, grains cut by the raster's edges).
    grain_ids : ndarray
        Grain map of the model.
    """

    dgb_over_delta_cm_s: float
    interval_cm_s: tuple[float, float]
    level: float
    stderr_ln_k: float
    stderr_ln_k_model: float
    d_bulk_cm2_s: float
    d_bulk_interval_cm2_s: tuple[float, float]
    c_offset: float
    c_bath: float
    blur_var_px2: float
    correlation: np.ndarray = field(repr=False)
    deviance: float = math.nan
    pearson_chi2: float = math.nan
    dof: int = 0
    n_pixels: int = 0
    n_grains: int = 0
    n_boundaries: int = 0
    grain_source: str = ""
    temperature_K: float = math.nan
    stages: tuple[HeatStage, ...] = ()
    iterations: int = 0
    forward_solves: int = 0
    coarse_forward_solves: int = 0
    converged: bool = False
    message: str = ""
    cpu_s: float = math.nan
    wall_s: float = math.nan
    c_model: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    c_data: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    residual: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    grain_ids: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def deviance_per_dof(self) -> float:
        """Deviance / dof (≈ 1 for a model that fits to the counting noise)."""
        return self.deviance / self.dof if self.dof > 0 else math.nan

    @property
    def pearson_per_dof(self) -> float:
        """Pearson χ² / dof."""
        return self.pearson_chi2 / self.dof if self.dof > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (no maps)."""
        def f(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "method": "inversion",
            "dgb_over_delta_cm_s": f(self.dgb_over_delta_cm_s),
            "dgb_over_delta_cm_s_interval": [f(self.interval_cm_s[0]), f(self.interval_cm_s[1])],
            "level": self.level,
            "stderr_ln_dgb_over_delta": f(self.stderr_ln_k),
            "stderr_ln_dgb_over_delta_model": f(self.stderr_ln_k_model),
            "d_bulk_cm2_s": f(self.d_bulk_cm2_s),
            "d_bulk_cm2_s_interval": [f(self.d_bulk_interval_cm2_s[0]),
                                      f(self.d_bulk_interval_cm2_s[1])],
            "c_offset": f(self.c_offset), "c_bath": f(self.c_bath),
            "blur_var_px2": f(self.blur_var_px2),
            "correlation": {"parameters": list(_PARAMS),
                            "matrix": [[f(v) for v in row] for row in self.correlation]},
            "deviance": f(self.deviance), "pearson_chi2": f(self.pearson_chi2),
            "dof": self.dof, "deviance_per_dof": f(self.deviance_per_dof),
            "pearson_per_dof": f(self.pearson_per_dof),
            "n_pixels": self.n_pixels, "n_grains": self.n_grains,
            "n_boundaries": self.n_boundaries, "grain_source": self.grain_source,
            "temperature_K": f(self.temperature_K),
            "stages": [{"duration_s": s.duration_s, "temperature_K": s.temperature_K,
                        "immersed": s.immersed, "k_factor": s.k_factor}
                       for s in self.stages],
            "iterations": self.iterations, "forward_solves": self.forward_solves,
            "coarse_forward_solves": self.coarse_forward_solves,
            "converged": self.converged, "message": self.message,
            "cpu_s": f(self.cpu_s), "wall_s": f(self.wall_s),
        }


def _counts_array(name: str, value: object, shape: tuple[int, ...] | None) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != 2 or min(a.shape) < 3:
        raise ValueError(f"{name} must be a 2-D count image of at least 3 x 3, got shape "
                         f"{a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} (as i6)")
    a = a.astype(float)
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a != np.round(a)):
        raise ValueError(f"{name} must hold non-negative whole counts")
    return a


def invert_image(
    i6: np.ndarray,
    i7: np.ndarray,
    *,
    history: Sequence[Any],
    temperature_K: float,
    pixel_um: float | tuple[float, float] = 1.0,
    n_pulses: int | None = None,
    grain_ids: np.ndarray | None = None,
    boundary_map: np.ndarray | None = None,
    bulk: BulkDiffusivity | None = None,
    boundary: BoundaryConductance | None = None,
    k_start_cm_s: float | None = None,
    d_bulk_start_cm2_s: float | None = None,
    c_offset_start: float = 0.0759,
    c_bath_start: float = 0.95,
    level: float = 0.9,
    max_iterations: int = 25,
    steps_per_stage: int = 8,
    strip_extent_cm: tuple[float, float] = (-0.1, 0.9),
    fit_edge_grains: bool = False,
    cluster_um: float = 48.0,
    d_bulk_prior_sd_ln: float | None = 0.3,
    c_offset_prior_sd: float | None = 0.02,
    c_bath_prior_sd: float | None = 0.05,
    coarse_start: bool = True,
    tolerance_ln_k: float = 2e-3,
    tolerance_loglik: float = 0.01,
    workers: int | None = None,
) -> ImageInversion:
    """Fit the twin's forward model to a whole ⁶Li/⁷Li image (see the module docstring).

    Parameters
    ----------
    i6, i7 : ndarray, shape (ny, nx)
        Recorded ⁶Li and ⁷Li counts per pixel; column 0 is at the liquid level (x = 0) and x
        grows with the column index.
    history : sequence
        The sample's thermal history up to the image (a run's ``thermal_history``: segments
        with ``start_s``, ``end_s``, ``temperature_K``, ``immersed``).
    temperature_K : float
        Temperature (K) at which D*_bulk and k are reported; stages at other temperatures
        scale them with the laws ``bulk`` and ``boundary``.
    pixel_um : float or (float, float)
        Pixel pitch (µm), x and y.
    n_pulses : int, optional
        Pulses per pixel (dead-time model); None for a detector without dead time.
    grain_ids, boundary_map : ndarray, optional
        Grain map on the image's pixels, or the etched micrograph (True = boundary) on them;
        with neither, boundaries are located in the C map.
    bulk, boundary : laws, optional
        Temperature dependences for stages at other temperatures (and the default start).
    k_start_cm_s, d_bulk_start_cm2_s : float, optional
        Start values (default: the laws at ``temperature_K``).
    c_offset_start, c_bath_start : float
        Start values of the linear parameters.
    level : float
        Confidence level of the intervals, in (0, 1).
    max_iterations : int
        Limit of LM iterations.
    steps_per_stage : int
        TR-BDF2 steps per stage of the history.
    strip_extent_cm : tuple of float
        x range of the sample strip (cm), bath side first.
    fit_edge_grains : bool
        Also fit the pixels of grains cut by the top, bottom and far edges of the raster
        (off by default: their unseen parts, sealed or homogenised in the model, change how
        they fill).
    cluster_um : float
        Side (µm) of the square blocks of grains (by centroid) that are the clusters of the
        robust covariance; a few grain diameters, so that the scores of neighbouring
        clusters, which share boundaries, are nearly independent.
    d_bulk_prior_sd_ln : float or None
        Standard deviation (in ln) of the log-normal prior on D*_bulk centred on the law
        ``bulk`` at ``temperature_K`` (the paper takes D*_bulk from NMR); None: no prior (a
        factor 10 around the law still bounds it).
    c_offset_prior_sd, c_bath_prior_sd : float or None
        Standard deviations of normal priors on the two fractions, centred on their start
        values (the natural ⁶Li abundance and the bath's enrichment); None: no prior. Weak
        where the image spans both (after an exchange the data fix them to ~0.001); they
        anchor the level of an image that an anneal has flattened, which alone cannot tell
        the fractions from the amount that diffused in.
    coarse_start : bool
        First fit a copy of the image binned 2 × 2 (counts summed, the grain map taken at
        every other pixel: a quarter of the cells, a forward solve several times cheaper)
        and start the full fit from its estimate; the full-resolution fit alone gives the
        result (images of at least 32 × 32 pixels).
    tolerance_ln_k, tolerance_loglik : float
        The fit has converged when, after an accepted step, the undamped Gauss–Newton step
        from there would move ln k by less than ``tolerance_ln_k`` and gain less than
        ``tolerance_loglik`` in log-likelihood, or when an accepted step moved all of
        ln D_bulk, ln k and the blur by less than 1e-3; 2e-3 is 0.2 % of k, a tenth of the
        narrowest interval seen at the simulator's default dose. The coarse fit that gives
        the start stops once that step would move k by less than 1 %.
    workers : int, optional
        Threads of the forward model that factorize stages ahead of the integration
        (default: up to 2, as the machine's cores allow; 1 leaves the other core to work
        going on beside the fit). The estimates do not depend on it.

    Returns
    -------
    ImageInversion
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    a6 = _counts_array("i6", i6, None)
    a7 = _counts_array("i7", i7, a6.shape)
    if n_pulses is not None:
        if not (isinstance(n_pulses, int | np.integer) and n_pulses >= 1):
            raise ValueError(f"n_pulses must be a whole number >= 1, got {n_pulses!r}")
        top = max(a6.max(), a7.max())
        if top > n_pulses:
            raise ValueError(f"counts up to {top:.0f} exceed n_pulses={n_pulses}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    for name, sd in (("d_bulk_prior_sd_ln", d_bulk_prior_sd_ln),
                     ("c_offset_prior_sd", c_offset_prior_sd),
                     ("c_bath_prior_sd", c_bath_prior_sd)):
        if sd is not None and not (isinstance(sd, int | float) and math.isfinite(sd)
                                   and sd > 0):
            raise ValueError(f"{name} must be a finite number > 0 or None, got {sd!r}")
    if not (math.isfinite(cluster_um) and cluster_um > 0):
        raise ValueError(f"cluster_um must be finite and > 0 µm, got {cluster_um!r}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    resolve_workers(workers)  # before any work: names a bad value
    if not (math.isfinite(tolerance_ln_k) and tolerance_ln_k > 0):
        raise ValueError(f"tolerance_ln_k must be finite and > 0, got {tolerance_ln_k!r}")
    if not tolerance_loglik > 0:
        raise ValueError(f"tolerance_loglik must be > 0, got {tolerance_loglik!r}")
    px, py = ((float(pixel_um),) * 2 if np.ndim(pixel_um) == 0
              else (float(pixel_um[0]), float(pixel_um[1])))  # type: ignore[index]
    if not (px > 0 and py > 0 and math.isfinite(px * py)):
        raise ValueError(f"pixel_um must be finite and > 0 µm, got {pixel_um!r}")
    for name, v in (("c_offset_start", c_offset_start), ("c_bath_start", c_bath_start)):
        if not 0 < v < 1:
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    bulk = bulk or BulkDiffusivity.paper_default()
    boundary = boundary or BoundaryConductance.paper_default()
    if not (math.isfinite(temperature_K) and temperature_K > 0):
        raise ValueError(f"temperature_K must be > 0 K, got {temperature_K!r}")

    frac = isotope_fraction(a6, a7, n_pulses)
    valid = np.isfinite(frac.c) & (a6 + a7 > 0)
    if n_pulses is not None:
        valid &= (a6 < n_pulses) & (a7 < n_pulses)
    if valid.sum() < 16:
        raise ValueError(f"only {int(valid.sum())} pixels have usable counts: nothing to fit")
    if grain_ids is not None:
        ids = np.asarray(grain_ids)
        if ids.shape != a6.shape:
            raise ValueError(f"grain_ids has shape {ids.shape}, expected {a6.shape}")
        _, ids = np.unique(ids, return_inverse=True)
        ids = ids.reshape(a6.shape)
        source = "grain_ids"
    elif boundary_map is not None:
        bm = np.asarray(boundary_map)
        if bm.shape != a6.shape:
            raise ValueError(f"boundary_map has shape {bm.shape}, expected {a6.shape}")
        ids = grains_from_boundary_map(bm)
        source = "boundary_map"
    else:
        c_fill = np.where(np.isfinite(frac.c), frac.c, np.nanmedian(frac.c))
        sig = np.where(np.isfinite(frac.sigma), frac.sigma, np.nanmax(frac.sigma))
        ids = grains_from_boundary_map(find_boundaries(c_fill, sigma_map=sig))
        source = "c_map"

    if not fit_edge_grains:
        # grains cut by the raster's top, bottom and far edges continue unseen: they are
        # modelled (sealed, resp. homogenised, beyond the edge), but not fitted; grains at
        # the liquid level stay (the unseen side is held at the bath fraction, as modelled)
        inner = ~np.isin(ids, np.unique(np.concatenate([ids[0], ids[-1], ids[:, -1]])))
        if np.count_nonzero(valid & inner) >= 16:
            valid &= inner
    coarse_solves = 0
    if coarse_start and min(a6.shape) >= 32:
        try:
            rough = invert_image(
                _bin2(a6), _bin2(a7), history=history, temperature_K=temperature_K,
                pixel_um=(2 * px, 2 * py), n_pulses=None if n_pulses is None else 4 * n_pulses,
                grain_ids=ids[: ids.shape[0] // 2 * 2 : 2, : ids.shape[1] // 2 * 2 : 2],
                bulk=bulk, boundary=boundary, k_start_cm_s=k_start_cm_s,
                d_bulk_start_cm2_s=d_bulk_start_cm2_s, c_offset_start=c_offset_start,
                c_bath_start=c_bath_start, max_iterations=min(max_iterations, 8),
                steps_per_stage=steps_per_stage, strip_extent_cm=strip_extent_cm,
                fit_edge_grains=fit_edge_grains, cluster_um=cluster_um,
                d_bulk_prior_sd_ln=d_bulk_prior_sd_ln, c_offset_prior_sd=c_offset_prior_sd,
                c_bath_prior_sd=c_bath_prior_sd, coarse_start=False, tolerance_ln_k=0.01,
                tolerance_loglik=math.inf, workers=workers)
        except ValueError:  # nothing usable at the coarse scale: start from the defaults
            rough = None
        if rough is not None:
            coarse_solves = rough.forward_solves
            if math.isfinite(rough.dgb_over_delta_cm_s * rough.d_bulk_cm2_s):
                k_start_cm_s, d_bulk_start_cm2_s = rough.dgb_over_delta_cm_s, rough.d_bulk_cm2_s
    stages = equivalent_history(history, bulk=bulk, boundary=boundary)
    pixel_m = (px * 1e-6, py * 1e-6)
    model = ImageForwardModel(ids, pixel_m, stages, temperature_K=temperature_K, bulk=bulk,
                              boundary=boundary, steps_per_stage=steps_per_stage,
                              workers=workers, strip_extent_m=(strip_extent_cm[0] * 1e-2,
                                              strip_extent_cm[1] * 1e-2))
    counts = _Counts(a6[valid], a7[valid], n_pulses)
    d0 = (float(bulk(temperature_K)) if d_bulk_start_cm2_s is None
          else float(d_bulk_start_cm2_s) * 1e-4)
    k0 = (float(boundary(temperature_K)) if k_start_cm_s is None
          else float(k_start_cm_s) * 1e-2)
    if not (d0 > 0 and k0 > 0 and math.isfinite(d0 * k0)):
        raise ValueError(f"start values must be finite and > 0, got D {d0!r} m²/s, k {k0!r} m/s")
    if not model.active_stages(d0, k0):
        raise ValueError("the thermal history has no stage in which the sample diffused "
                         "measurably: nothing to fit")
    fitter = _Fitter(model, counts, valid)
    fitter.prior_mu = np.array([math.log(float(bulk(temperature_K))), 0.0, c_offset_start,
                                c_bath_start, 0.0])
    fitter.prior_prec = np.array([0.0 if sd is None else sd ** -2 for sd in (
        d_bulk_prior_sd_ln, None, c_offset_prior_sd, c_bath_prior_sd, None)])
    theta = fitter._bounded(np.array([math.log(d0), math.log(k0), c_offset_start,
                                      c_bath_start, 0.25]))
    theta, info = fitter.run(theta, max_iterations, tolerance_ln_k, tolerance_loglik)
    # covariance: model-based (Fisher) and cluster-robust with grains as clusters
    u, jac_u = fitter.u, fitter.jac_u
    jac = fitter.jacobian(theta, u, jac_u)
    c = fitter.c_of(theta, u)
    score, w = counts.score_info(c)
    h = jac.T @ (w[:, None] * jac) + np.diag(fitter.prior_prec)
    try:
        h_inv = np.linalg.inv(h)
        cond_ok = bool(np.isfinite(h_inv).all() and np.linalg.cond(h) < 1e14)
    except np.linalg.LinAlgError:
        h_inv = np.full((5, 5), np.nan)
        cond_ok = False
    contrib = jac * score[:, None]
    blocks = _grain_blocks(ids, (px, py), cluster_um)[valid]
    n_cl = int(blocks.max()) + 1
    npar = jac.shape[1]
    sums = np.stack([np.bincount(blocks, contrib[:, i], n_cl) for i in range(npar)], axis=1)
    g_used = int(np.count_nonzero(np.bincount(blocks, minlength=n_cl)))
    meat = sums.T @ sums * (g_used / max(g_used - 1, 1))
    cov_rob = h_inv @ meat @ h_inv
    se_model = np.sqrt(np.maximum(np.diag(h_inv), 0))
    se = np.maximum(np.sqrt(np.maximum(np.diag(cov_rob), 0)), se_model)
    # Student's t quantile (what scipy.stats.t.ppf computes, without importing scipy.stats)
    z = float(stdtrit(max(g_used - 1, 1), 0.5 + 0.5 * level))
    dsd = np.outer(se, se)
    corr_base = cov_rob.copy()
    corr_base[np.diag_indices(len(se))] = se**2
    corr = corr_base / dsd
    dev, pearson, _ = counts.quality(c)
    dof = int(valid.sum()) - len(theta)
    c_model = theta[2] + (theta[3] - theta[2]) * blur(u, theta[4])
    resid = np.full(a6.shape, np.nan)
    resid[valid] = (frac.c[valid] - c) * np.sqrt(w)
    converged = info["converged"] and cond_ok
    message = info["message"] if not info["converged"] else (
        "" if cond_ok else "information matrix is singular: parameters not identifiable")
    n_pairs = len({(min(p, q), max(p, q)) for p, q in zip(
        np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()]).tolist(),
        np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()]).tolist(), strict=True)
        if p != q})
    lk, ld = theta[1], theta[0]
    if not (np.all(np.isfinite(se[:2])) and se[1] < 3.0):
        converged, message = False, (message or f"D_gb/δ is not determined by this image "
                                     f"(standard error of ln k = {se[1]:.3g})")
        se = np.where(np.isfinite(se) & (se < 50), se, 50.0)
    return ImageInversion(
        dgb_over_delta_cm_s=math.exp(lk) * 100,
        interval_cm_s=(math.exp(lk - z * se[1]) * 100, math.exp(lk + z * se[1]) * 100),
        level=float(level), stderr_ln_k=float(se[1]), stderr_ln_k_model=float(se_model[1]),
        d_bulk_cm2_s=math.exp(ld) * 1e4,
        d_bulk_interval_cm2_s=(math.exp(ld - z * se[0]) * 1e4, math.exp(ld + z * se[0]) * 1e4),
        c_offset=float(theta[2]), c_bath=float(theta[3]), blur_var_px2=float(theta[4]),
        correlation=corr,
        deviance=dev, pearson_chi2=pearson, dof=dof, n_pixels=int(valid.sum()),
        n_grains=int(ids.max()) + 1, n_boundaries=n_pairs, grain_source=source,
        temperature_K=float(temperature_K), stages=tuple(stages),
        iterations=info["iterations"], forward_solves=info["solves"],
        coarse_forward_solves=coarse_solves, converged=converged,
        message=message, cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0,
        c_model=c_model, c_data=np.asarray(frac.c, dtype=float), residual=resid,
        grain_ids=ids,
    )


def _bin2(a: np.ndarray) -> np.ndarray:
    """Counts summed over 2 × 2 pixel blocks (an odd last row or column dropped)."""
    ny, nx = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return a[:ny, :nx].reshape(ny // 2, 2, nx // 2, 2).sum(axis=(1, 3))


def _lap_x(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(1, 1)], mode="edge")
    return p[..., :-2] - 2 * a + p[..., 2:]


def _lap_y(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (0, 0)], mode="edge")
    return p[..., :-2, :] - 2 * a + p[..., 2:, :]


def blur(a: np.ndarray, v: float) -> np.ndarray:
    """Separable 3-tap blur of variance ``v`` (px², 0 <= v < 1) per axis over the last 2 axes."""
    b = a + 0.5 * v * _lap_x(a)
    return b + 0.5 * v * _lap_y(b)


def _blur_dv(a: np.ndarray, v: float) -> np.ndarray:
    lx = _lap_x(a)
    return 0.5 * lx + 0.5 * _lap_y(a) + 0.5 * v * _lap_y(lx)


_V_MAX = 0.9
_SENS_REUSE_LN = 0.02
_LN_D_RANGE = math.log(10.0)


def _grain_blocks(ids: np.ndarray, pixel_um: tuple[float, float], side_um: float) -> np.ndarray:
    """Cluster index per pixel: the square block (``side_um``) holding its grain's centroid."""
    ny, nx = ids.shape
    n = int(ids.max()) + 1
    r, c = np.mgrid[0:ny, 0:nx]
    cnt = np.maximum(np.bincount(ids.ravel(), minlength=n), 1)
    gx = np.bincount(ids.ravel(), c.ravel() + 0.5, n) / cnt * pixel_um[0]
    gy = np.bincount(ids.ravel(), r.ravel() + 0.5, n) / cnt * pixel_um[1]
    nbx = max(1, int(math.ceil(nx * pixel_um[0] / side_um)))
    bx = np.minimum((gx // side_um).astype(np.int64), nbx - 1)
    by = (gy // side_um).astype(np.int64)
    return (by * nbx + bx)[ids]


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares solution of a x = b (a singular system gives the minimum-norm step)."""
    return np.linalg.lstsq(a, b, rcond=1e-12)[0]


class _Fitter:
    """LM on θ = (ln D, ln k, c_off, c_s, v) with Broyden-updated sensitivities of u."""

    def __init__(self, model: ImageForwardModel, counts: _Counts, valid: np.ndarray) -> None:
        self.model = model
        self.counts = counts
        self.valid = valid
        self.solves = 0
        self.u: np.ndarray = np.empty(0)
        self.jac_u: np.ndarray = np.empty((2, 0, 0))
        self._start: np.ndarray = np.zeros(5)
        self.prior_mu = np.zeros(5)  # Gaussian priors per parameter (precision 0: none)
        self.prior_prec = np.zeros(5)

    def forward(self, theta: np.ndarray, sens: bool) -> tuple[np.ndarray, np.ndarray | None]:
        self.solves += 1
        return self.model.solve(math.exp(theta[0]), math.exp(theta[1]), sensitivities=sens)

    def _try(self, trial: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
        """Forward solve + linear re-fit at a trial point; -inf when it is out of range."""
        if not np.all(np.abs(trial[:2] - self._start[:2]) < 12.0):  # beyond e^±12 of start
            return trial, None, -math.inf
        u_t, _ = self.forward(trial, False)
        trial, ll_t = self._linear(trial, u_t)
        return trial, u_t, ll_t

    def c_of(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        bu = blur(u, theta[4])[self.valid]
        return theta[2] + (theta[3] - theta[2]) * bu

    def jacobian(self, theta: np.ndarray, u: np.ndarray, jac_u: np.ndarray) -> np.ndarray:
        amp = theta[3] - theta[2]
        v = theta[4]
        bu = blur(u, v)[self.valid]
        bd = blur(jac_u, v)
        return np.column_stack([amp * bd[0][self.valid], amp * bd[1][self.valid], 1 - bu, bu,
                                amp * _blur_dv(u, v)[self.valid]])

    def _linear(self, theta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, float]:
        """Re-optimise (c_off, c_s) for fixed u (concave: a few Newton steps)."""
        th = theta.copy()
        ll = self.counts.loglik(self.c_of(th, u)) + self.log_prior(th)
        bu = blur(u, th[4])[self.valid]
        basis = np.column_stack([1 - bu, bu])
        prec = self.prior_prec[2:4]
        for _ in range(20):
            score, w = self.counts.score_info(self.c_of(th, u))
            g = basis.T @ score + self.prior_score(th)[2:4]
            hm = basis.T @ (w[:, None] * basis) + np.diag(prec)
            step = _solve(hm, g)
            t = 1.0
            while t > 1e-3:
                trial = th.copy()
                trial[2:4] += t * step
                c = self.c_of(trial, u)
                if c.min() > 0 and c.max() < 1:
                    ll_t = self.counts.loglik(c) + self.log_prior(trial)
                    if ll_t >= ll - 1e-9:
                        break
                t *= 0.5
            else:
                break
            th, ll = trial, ll_t
            if np.max(np.abs(t * step)) < 1e-8:
                break
        return th, ll

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of θ: D_bulk within a factor 10 of the law, the blur
        variance in [0, 0.9] px², the others free."""
        mu = self.prior_mu[0]
        return (np.array([mu - _LN_D_RANGE, -np.inf, -np.inf, -np.inf, 0.0]),
                np.array([mu + _LN_D_RANGE, np.inf, np.inf, np.inf, _V_MAX]))

    def _bounded(self, theta: np.ndarray) -> np.ndarray:
        """θ clipped into :meth:`_bounds`."""
        return np.clip(theta, *self._bounds())

    def _step(self, theta: np.ndarray, a: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Solve a · step = g over the parameters not held at a bound the step pushes against.

        ln D_bulk and the blur variance have bounds (:meth:`_bounded`); a parameter sitting on
        one with the step pointing outwards is held there and the others are re-solved
        without it (an active set), so that a clipped step is still a Newton step for the
        rest (clipping alone gave steps that failed and k oscillating).
        """
        lo, hi = self._bounds()
        free = np.ones(len(theta), dtype=bool)
        step = np.zeros(len(theta))
        for _ in range(len(theta)):
            idx = np.flatnonzero(free)
            step[:] = 0.0
            step[idx] = _solve(a[np.ix_(idx, idx)], g[idx])
            out = free & (((theta <= lo + 1e-12) & (step < 0)) |
                          ((theta >= hi - 1e-12) & (step > 0)))
            if not out.any():
                break
            free &= ~out
        return step

    def log_prior(self, theta: np.ndarray) -> float:
        """Log-normal prior of D_bulk (the NMR law), normal priors of the two fractions."""
        return float(-0.5 * np.sum(self.prior_prec * (theta - self.prior_mu) ** 2))

    def prior_score(self, theta: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`log_prior`."""
        return -self.prior_prec * (theta - self.prior_mu)

    def run(self, theta: np.ndarray, max_iter: int, tol_ln_k: float,
            tol_ll: float) -> tuple[np.ndarray, dict[str, Any]]:
        self._start = theta.copy()
        u, ju = self.forward(theta, True)
        exact_at = theta[:2].copy()  # where the sensitivities were last computed exactly
        theta, ll = self._linear(theta, u)
        lam = 1e-3
        fresh = True
        accepted = False
        converged, message, it = False, "iteration limit reached", 0
        for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
            jac = self.jacobian(theta, u, ju)
            score, w = self.counts.score_info(self.c_of(theta, u))
            g = jac.T @ score + self.prior_score(theta)
            h = jac.T @ (w[:, None] * jac) + np.diag(self.prior_prec)
            if accepted:
                # converged: the undamped Gauss-Newton step from here would move ln k by less
                # than tol_ln_k and gain less than tol_ll in log-likelihood (D_bulk may still
                # drift along a flat valley; damped steps can be small far from the optimum)
                newton = self._step(theta, h, g)
                if abs(newton[1]) < tol_ln_k and 0.5 * float(g @ newton) < tol_ll:
                    converged, message = True, ""
                    break
            step = self._step(theta, h + lam * np.diag(np.diag(h)), g)
            step[:2] = np.clip(step[:2], -1.0, 1.0)  # at most a factor e per iteration
            trial = self._bounded(theta + step)
            trial, u_t, ll_t = self._try(trial)
            if u_t is not None and ll_t > ll - 1e-9:
                d_nl = trial[:2] - theta[:2]
                # Broyden update of the u-sensitivities along the accepted step
                nn = float(d_nl @ d_nl)
                if nn > 0:
                    resid = (u_t - u) - np.tensordot(d_nl, ju, axes=1)
                    ju = ju + d_nl[:, None, None] * resid[None] / nn
                # converged: the parameters stopped moving
                small = np.max(np.abs(d_nl)) < 1e-3 and abs(trial[4] - theta[4]) < 1e-3
                theta, u, ll = trial, u_t, ll_t
                fresh = False
                accepted = True
                lam = max(lam / 3, 1e-6)
                if small:
                    converged, message = True, ""
                    break
            else:
                accepted = False
                if not fresh:  # stale sensitivities: recompute them exactly here
                    u, ju = self.forward(theta, True)
                    exact_at = theta[:2].copy()
                    fresh = True
                else:
                    lam *= 5
                if lam > 1e6:
                    converged, message = True, ""
                    break
        # sensitivities at the optimum for the covariance (and one polishing step): exact
        # unless the last exact ones were taken within _SENS_REUSE_LN of it in ln D_bulk and
        # ln k (the Broyden-updated ones are then exact along the path and off by about that
        # fraction across it, a shift of a percent of the standard errors)
        if np.max(np.abs(theta[:2] - exact_at)) > _SENS_REUSE_LN:
            u, ju = self.forward(theta, True)
        jac = self.jacobian(theta, u, ju)
        score, w = self.counts.score_info(self.c_of(theta, u))
        h = jac.T @ (w[:, None] * jac) + np.diag(self.prior_prec)
        g = jac.T @ score + self.prior_score(theta)
        step = self._step(theta, h, g)
        step[:2] = np.clip(step[:2], -0.1, 0.1)
        if abs(step[1]) > tol_ln_k:  # k still moves (D_bulk, a nuisance, may drift)
            trial = self._bounded(theta + step)
            u_t, ju_t = self.forward(trial, True)
            trial, ll_t = self._linear(trial, u_t)
            if ll_t > ll:
                theta, u, ju, ll = trial, u_t, ju_t, ll_t
        self.u, self.jac_u = u, ju
        return theta, {"converged": converged, "message": message, "iterations": it,
                       "solves": self.solves}
