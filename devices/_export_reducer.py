"""Export reducer: a read SIMS export → the arrays and summary values a detector publishes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lltolab.formats import ExportFormatError, SimsExport, isotope_fraction_map

__all__ = ["ExportReducer", "Reduction", "LineProfile", "LI6_MASS_U", "LI7_MASS_U", "band_means"]

LI6_MASS_U = 6.015
LI7_MASS_U = 7.016


@dataclass(frozen=True)
class LineProfile:
    """The last line profile read: x (mm), corrected 6Li fraction, recorded counts."""

    x_mm: np.ndarray
    c: np.ndarray
    li6_counts: np.ndarray
    li7_counts: np.ndarray


@dataclass(frozen=True, eq=False)
class Reduction:
    """What one export reduces to.

    Attributes
    ----------
    mode : {"image", "line_profile"}
    arrays : dict of name -> ndarray
        The asset datasets (image: ``li6_counts``, ``li7_counts``, ``c_fraction``; profile:
        ``profile_x_mm``, ``profile_c``, ``profile_li6_counts``, ``profile_li7_counts``).
    saturated_pixels : int
        Pixels where 6Li or 7Li counted on every pulse (C is NaN there).
    mean_c : float
        Image: mean corrected 6Li fraction (NaN ignored); NaN for a profile.
    li6_total, li7_total : int
        Recorded counts over the whole image or profile.
    row_band_means, column_band_means : ndarray
        Image: mean C in bands of rows (y) and of columns (x); empty for a profile.
    profile : LineProfile or None
        Line profiles only.
    """

    mode: str
    arrays: dict[str, np.ndarray]
    saturated_pixels: int
    mean_c: float
    li6_total: int
    li7_total: int
    row_band_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    column_band_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    profile: LineProfile | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of each array (one frame)."""
        return tuple(np.shape(next(iter(self.arrays.values()))))


def band_means(c: np.ndarray, n_bands: int, axis: int) -> np.ndarray:
    """Mean of ``c`` (NaN ignored) in ``n_bands`` contiguous bands along ``axis``."""
    n = c.shape[axis]
    edges = np.linspace(0, n, min(n_bands, n) + 1).round().astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        block = c[a:b] if axis == 0 else c[:, a:b]
        finite = block[np.isfinite(block)]
        out.append(float(finite.mean()) if finite.size else math.nan)
    return np.asarray(out)


class ExportReducer:
    """Selects the 6Li and 7Li images of an export and computes the corrected fraction.

    C is I6/(I6+I7) after the Poisson dead-time correction -N ln(1 - I/N) with N the pulses
    per pixel of the export's metadata; pixels where an isotope counted on every pulse are
    saturated (C is NaN there).

    Parameters
    ----------
    li6_mass_u, li7_mass_u : float
        Masses of 6Li+ and 7Li+ (u) used to pick the images.
    li6_peak_id, li7_peak_id : int, optional
        SurfaceLab peak numbers; when given they select the images (and must contain the mass).
    li6_window_u, li7_window_u : (float, float), optional
        Mass windows (u) in which the image's centre mass must lie (instead of peak ids).
    n_bands : int
        Number of row (and column) bands for the band means, in [1, 4096].

    Raises
    ------
    ValueError
        ``n_bands`` or a window out of range.
    """

    def __init__(
        self, *, li6_mass_u: float = LI6_MASS_U, li7_mass_u: float = LI7_MASS_U,
        li6_peak_id: int | None = None, li7_peak_id: int | None = None,
        li6_window_u: tuple[float, float] | None = None,
        li7_window_u: tuple[float, float] | None = None, n_bands: int = 8,
    ) -> None:
        if not (isinstance(n_bands, int) and not isinstance(n_bands, bool)
                and 1 <= n_bands <= 4096):
            raise ValueError(f"n_bands must be an integer in [1, 4096], got {n_bands!r}")
        for label, w in (("li6_window_u", li6_window_u), ("li7_window_u", li7_window_u)):
            if w is not None and not (len(w) == 2 and w[0] < w[1]):
                raise ValueError(f"{label} must be (lower, upper) with lower < upper, got {w!r}")
        self.li6 = {"mass_u": li6_mass_u, "peak_id": li6_peak_id, "window_u": li6_window_u}
        self.li7 = {"mass_u": li7_mass_u, "peak_id": li7_peak_id, "window_u": li7_window_u}
        self.n_bands = n_bands

    def reduce(
        self, export: SimsExport, mode: str, positions_mm: Sequence[float] | None = None
    ) -> Reduction:
        """Reduce ``export`` acquired in ``mode``.

        Parameters
        ----------
        export : SimsExport
        mode : {"image", "line_profile"}
        positions_mm : sequence of float, optional
            Line profiles: the requested x (mm), which the export's must equal (1 nm).

        Raises
        ------
        ExportFormatError
            Missing masses, both selections on one image, or profile positions that
            contradict the requested ones.
        """
        im6 = export.select(**self.li6)
        im7 = export.select(**self.li7)
        if im6 is im7:
            raise ExportFormatError(export.bif6_path,
                                    "6Li and 7Li selection picked the same image")
        i6, i7 = im6.counts, im7.counts
        meta = export.metadata
        c, saturated = isotope_fraction_map(i6, i7, meta.pulses_per_pixel)
        n_sat = int(saturated.sum())
        totals = int(i6.sum(dtype=np.int64)), int(i7.sum(dtype=np.int64))
        if mode == "line_profile":
            x = np.asarray(meta.positions_mm if meta.positions_mm is not None else (),
                           dtype=float)
            if positions_mm is not None and (
                len(positions_mm) != len(x) or not np.allclose(positions_mm, x, atol=1e-6)
            ):
                raise ExportFormatError(
                    export.sidecar_path or export.bif6_path,
                    f"line-profile positions {list(x)} mm contradict the requested "
                    f"{list(positions_mm)} mm",
                )
            if len(x) != i6.shape[1] or i6.shape[0] != 1:
                raise ExportFormatError(
                    export.bif6_path,
                    f"a line profile of {len(x)} positions needs 1 x {len(x)} pixels, "
                    f"got {i6.shape[0]} x {i6.shape[1]}",
                )
            profile = LineProfile(x, c[0].copy(), i6[0].copy(), i7[0].copy())
            arrays = {"profile_x_mm": profile.x_mm, "profile_c": profile.c,
                      "profile_li6_counts": profile.li6_counts,
                      "profile_li7_counts": profile.li7_counts}
            return Reduction("line_profile", arrays, n_sat, math.nan, *totals, profile=profile)
        if mode != "image":
            raise ValueError(f"mode must be 'image' or 'line_profile', got {mode!r}")
        finite = c[np.isfinite(c)]
        return Reduction(
            "image", {"li6_counts": i6, "li7_counts": i7, "c_fraction": c}, n_sat,
            float(finite.mean()) if finite.size else math.nan, *totals,
            row_band_means=band_means(c, self.n_bands, axis=0),
            column_band_means=band_means(c, self.n_bands, axis=1),
        )
