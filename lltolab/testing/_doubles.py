"""Test doubles with real behaviour: an analytic sample and a hand-driven wall clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfc

from lltolab.vocabulary import QUENCH_K

__all__ = ["ErfcSample", "HistorySegment", "ManualWall"]


@dataclass(frozen=True)
class HistorySegment:
    """One stretch of constant conditions, as ``VirtualSample.history()`` yields them."""

    start_s: float
    end_s: float
    temperature_K: float
    immersed: bool


class ErfcSample:
    """C(x, t) = c0 + (cs − c0) erfc(x / 2√(D t)) times a per-grain step, on a pixel grid.

    An analytic pattern source with the interface of :class:`lltolab.diffusion.VirtualSample`
    that the simulated SurfaceLab images (injected physics, not a mock of the simulator).
    Grains are a rectangular grid (``grain_um``); inside grain (i, j) C is scaled towards c0 by
    ``1 − step · ((i + j) mod 2)``, so boundaries show as steps. ``uniform`` replaces the field
    by a constant. Field queries must not go back in time (like VirtualSample); the profile is
    frozen at an exchange time of 59 h.

    Parameters
    ----------
    d_m2_s : float
        Diffusivity D of the erfc profile, m²/s.
    c0, cs : float
        Natural and surface ⁶Li fractions.
    pixel_m : float
        Grid pitch, m.
    window_m : (x0, x1, y0, y1)
        The sample window, m.
    grain_um : float
        Grain-grid pitch, µm.
    step : float
        Relative step of C at a boundary.
    uniform : float, optional
        A constant field instead of the pattern.
    temperature_K : float
        Temperature of the one history segment, K.
    """

    def __init__(
        self, *, d_m2_s: float = 3e-13, c0: float = 0.0759, cs: float = 0.95,
        pixel_m: float = 1e-6, window_m: tuple[float, float, float, float] = (
            -10e-6, 530e-6, 0.0, 210e-6), grain_um: float = 20.0, step: float = 0.05,
        uniform: float | None = None, temperature_K: float = QUENCH_K,
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
        self.c_time_s = 59 * 3600.0  # the profile is frozen at this exchange time

    def history(self, until_s: float | None = None) -> list[HistorySegment]:
        """The one segment of constant conditions."""
        return self._history

    def _check(self, t: float) -> None:
        if self.queries and t < self.queries[-1]:
            raise ValueError(f"time {t} precedes {self.queries[-1]}")
        self.queries.append(t)

    def line(self, x_m: np.ndarray) -> np.ndarray:
        """The erfc profile at ``x_m`` (m), without grain steps."""
        arg = np.asarray(x_m) / (2 * math.sqrt(self.d * self.c_time_s))
        return self.c0 + (self.cs - self.c0) * erfc(np.clip(arg, 0, None))

    def field(self, time_s: float) -> np.ndarray:
        """C on the pixel grid (rows y, columns x) at lab time ``time_s`` (s)."""
        self._check(time_s)
        shape = self.boundary_map.shape
        if self.uniform is not None:
            return np.full(shape, self.uniform)
        return self.c0 + (self.line(self.x_m)[None, :] - self.c0) * self.scale

    def profile(self, x_m: np.ndarray, time_s: float, *, width_m: float = 50e-6) -> np.ndarray:
        """C along x at ``x_m`` (m) at lab time ``time_s`` (s)."""
        self._check(time_s)
        if self.uniform is not None:
            return np.full(np.shape(x_m), self.uniform)
        return self.line(x_m)


class ManualWall:
    """A wall clock (s) the test advances by hand: ``wall.t += 5``; ``wall()`` reads it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t
