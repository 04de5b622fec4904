"""Test doubles and builders for SIMS exports: an analytic sample and hand-made exports.

``ErfcSample`` is an analytic pattern source with the interface of
``lltolab.diffusion.VirtualSample`` that the simulated SurfaceLab renders (``field``,
``profile``, ``window_m``, ``pixel_m``, ``boundary_map``, ``history``): injected physics with a
known answer, not a mock of the simulator. ``image_sidecar`` and ``write_image_export`` make
small, valid BIF6 + sidecar exports for the export readers and the SurfaceLabExport device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erfc

from lltolab.formats import Bif6Image, SimsSidecar, sidecar_path_for, write_bif6, write_sidecar

__all__ = ["ErfcSample", "HistorySegment", "image_sidecar", "write_image_export"]


@dataclass(frozen=True)
class HistorySegment:
    """One thermal-history segment of :class:`ErfcSample` (lab times in s, temperature K)."""

    start_s: float
    end_s: float
    temperature_K: float
    immersed: bool


class ErfcSample:
    """C(x, t) = c0 + (cs - c0) erfc(x / 2 sqrt(D t)) times a per-grain step, on a pixel grid.

    Grains are a rectangular grid (``grain_um``); inside grain (i, j) C is scaled towards c0 by
    ``1 - step * ((i + j) % 2)``, so boundaries show as steps. ``uniform`` replaces the field by
    a constant. Field queries must not go back in time (like VirtualSample). The profile is
    frozen at an exchange time of 59 h (``c_time_s``).

    Parameters
    ----------
    d_m2_s : float
        Diffusion coefficient (m²/s).
    c0, cs : float
        Background and surface 6Li fractions.
    pixel_m : float
        Grid pitch (m).
    window_m : (x0, x1, y0, y1)
        Sample window (m); x = 0 is the liquid level.
    grain_um : float
        Grain size of the rectangular grid (µm).
    step : float
        Relative drop of C in every other grain.
    uniform : float, optional
        A constant field instead of the pattern.
    temperature_K : float
        The one temperature of the thermal history (K).
    """

    def __init__(
        self, *, d_m2_s: float = 3e-13, c0: float = 0.0759, cs: float = 0.95,
        pixel_m: float = 1e-6, window_m: tuple[float, float, float, float] = (
            -10e-6, 530e-6, 0.0, 210e-6), grain_um: float = 20.0, step: float = 0.05,
        uniform: float | None = None, temperature_K: float = 163.15,
    ) -> None:
        self.d, self.c0, self.cs, self.pixel_m, self.window_m = d_m2_s, c0, cs, pixel_m, window_m
        x0, x1, y0, y1 = window_m
        nx, ny = round((x1 - x0) / pixel_m), round((y1 - y0) / pixel_m)
        self.x_m = x0 + (np.arange(nx) + 0.5) * pixel_m
        y_m = y0 + (np.arange(ny) + 0.5) * pixel_m
        gi = np.floor((self.x_m - x0) * 1e6 / grain_um).astype(int)
        gj = np.floor((y_m - y0) * 1e6 / grain_um).astype(int)
        self.grain_ids = gj[:, None] * 1000 + gi[None, :]
        self.boundary_map = np.zeros((ny, nx), bool)
        self.boundary_map[:, 1:] |= np.diff(gi)[None, :] != 0
        self.boundary_map[1:, :] |= (np.diff(gj) != 0)[:, None]
        self.scale = 1 - step * ((gj[:, None] + gi[None, :]) % 2)
        self.uniform = uniform
        self.queries: list[float] = []
        self._history = [HistorySegment(0.0, math.inf, temperature_K, False)]
        self.c_time_s = 59 * 3600.0

    def history(self, until_s: float | None = None) -> list[HistorySegment]:
        """The thermal history (one segment at ``temperature_K``)."""
        return self._history

    def _check(self, t: float) -> None:
        if self.queries and t < self.queries[-1]:
            raise ValueError(f"time {t} precedes {self.queries[-1]}")
        self.queries.append(t)

    def line(self, x_m: np.ndarray) -> np.ndarray:
        """The erfc profile at distances ``x_m`` (m) from the liquid level."""
        arg = np.asarray(x_m) / (2 * math.sqrt(self.d * self.c_time_s))
        return self.c0 + (self.cs - self.c0) * erfc(np.clip(arg, 0, None))

    def field(self, time_s: float) -> np.ndarray:
        """C on the pixel grid (ny, nx) at lab time ``time_s`` (s)."""
        self._check(time_s)
        shape = self.boundary_map.shape
        if self.uniform is not None:
            return np.full(shape, self.uniform)
        return self.c0 + (self.line(self.x_m)[None, :] - self.c0) * self.scale

    def profile(self, x_m: np.ndarray, time_s: float, *, width_m: float = 50e-6) -> np.ndarray:
        """C along x at ``x_m`` (m) at lab time ``time_s`` (s); ``width_m`` is ignored."""
        self._check(time_s)
        if self.uniform is not None:
            return np.full(np.shape(x_m), self.uniform)
        return self.line(x_m)


def image_sidecar(name: str, nx: int, ny: int, n: int = 100, **changes: Any) -> SimsSidecar:
    """A valid image sidecar for BIF6 ``name`` of ``nx`` x ``ny`` pixels and ``n`` pulses per
    pixel (one scan, 50 x 20 µm, Bi+ 30 keV, 163 K, 5 h); ``changes`` override fields."""
    base: dict[str, Any] = dict(
        kind="image", bif6=name, field_of_view_um=(50.0, 20.0), pixels=(nx, ny),
        shots_per_pixel=n, scans=1, pulses_per_pixel=n, primary_species="Bi+",
        primary_energy_keV=30.0, primary_current_pA=0.5, dose_ions_per_cm2=5e13,
        stage_temperature_K=163.0, start_time="2024-01-03T11:00:00+00:00",
        end_time="2024-01-03T16:00:00+00:00",
    )
    base.update(changes)
    return SimsSidecar(**base)


def write_image_export(
    folder: Path, name: str = "e1.bif6", nx: int = 16, ny: int = 8, n: int = 100,
    seed: int = 0, images: Sequence[Bif6Image] | None = None, sidecar: bool = True,
) -> Path:
    """Write a 6Li (peak 1) + 7Li (peak 2) image export into ``folder``; return the BIF6 path.

    Counts are random (``seed``): 6Li in [0, 30), 7Li in [20, 90). ``sidecar=False`` writes
    the BIF6 alone, as SurfaceLab does.
    """
    rng = np.random.default_rng(seed)
    if images is None:
        images = [
            Bif6Image(1, 6.015, 5.95, 6.08, rng.integers(0, 30, (ny, nx)).astype(np.uint32)),
            Bif6Image(2, 7.016, 6.95, 7.08, rng.integers(20, 90, (ny, nx)).astype(np.uint32)),
        ]
    path = Path(folder) / name
    write_bif6(path, images)
    if sidecar:
        write_sidecar(sidecar_path_for(path), image_sidecar(name, nx, ny, n))
    return path
