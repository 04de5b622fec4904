"""Temperature laws of the twin: bulk tracer diffusivity and grain-boundary conductance.

SI units throughout: D in m²/s, conductance k = D*_gb/δ in m/s, T in kelvin, energies in eV.
Defaults follow docs/science.md §4 (paper values at 22 °C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lltolab.vocabulary import ROOM_K

from ._validate import check_positive, check_temperature

__all__ = [
    "K_B_EV",
    "celsius_to_kelvin",
    "Arrhenius",
    "BulkDiffusivity",
    "BoundaryConductance",
]

K_B_EV = 8.617333262e-5
"""Boltzmann constant in eV/K."""

T_ROOM_K = ROOM_K
"""22 °C in kelvin, the exchange temperature of the paper."""


def celsius_to_kelvin(t_c: float) -> float:
    """Convert °C to K, rejecting temperatures at or below absolute zero."""
    return check_temperature("temperature (from °C)", float(t_c) + 273.15)


def _temperature_array(temperature_k: float | np.ndarray) -> np.ndarray:
    t = np.asarray(temperature_k, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"temperature_K must be finite and > 0 K, got {temperature_k!r}")
    return t


@dataclass(frozen=True)
class Arrhenius:
    """``value(T) = prefactor * exp(-ea_eV / (k_B T))``.

    Parameters
    ----------
    prefactor : float
        Value at infinite temperature, in the unit of the quantity (SI).
    ea_eV : float
        Activation energy in eV (>= 0).
    """

    prefactor: float
    ea_eV: float

    def __post_init__(self) -> None:
        check_positive("prefactor", self.prefactor)
        if not (math.isfinite(self.ea_eV) and self.ea_eV >= 0):
            raise ValueError(f"ea_eV must be finite and >= 0 eV, got {self.ea_eV!r}")

    @classmethod
    def through(cls, value: float, temperature_K: float, ea_eV: float) -> Arrhenius:
        """The law with energy ``ea_eV`` (eV) through ``value`` at ``temperature_K`` (K)."""
        check_positive("value", value)
        t = check_temperature("temperature_K", temperature_K)
        return cls(value * math.exp(ea_eV / (K_B_EV * t)), ea_eV)

    def __call__(self, temperature_K: float | np.ndarray) -> float | np.ndarray:
        t = _temperature_array(temperature_K)
        out = self.prefactor * np.exp(-self.ea_eV / (K_B_EV * t))
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class BulkDiffusivity:
    """Bulk tracer diffusivity D*_bulk(T) in m²/s.

    One Arrhenius branch, optionally combined harmonically with a high-temperature branch,
    ``1/D = 1/D_low + 1/D_high``, which bends the law down above the crossover (LLTO bulk is
    non-Arrhenius above about 177 °C).

    Parameters
    ----------
    low : Arrhenius
        Low-temperature branch (m²/s).
    high : Arrhenius or None
        High-temperature limiting branch (m²/s) with a smaller activation energy, or None.
    """

    low: Arrhenius
    high: Arrhenius | None = None

    @classmethod
    def paper_default(cls, *, ea_eV: float = 0.42, bend: bool = True) -> BulkDiffusivity:
        """D*_bulk(22 °C) = 2.6e-8 cm²/s (docs/science.md §3) with ``ea_eV``; bent above 177 °C.

        The paper gives no bulk activation energy (LLTO values lie around 0.30–0.40 eV). The
        default 0.42 eV is the smallest round value consistent with the paper's own premise
        that a 5 h image at −110 °C is frozen: it gives √(2 D t) = 0.38 µm, below half a
        1 µm pixel (0.40 eV would give 0.53 µm).

        The high branch (0.10 eV) equals the low branch at 250 °C (523.15 K); the harmonic
        combination stays within 7 % of the low-temperature Arrhenius line up to 100 °C, is
        25 % below it at 177 °C and bends further down above (a factor 5 at 400 °C).
        """
        d_room = 2.6e-12
        low = Arrhenius.through(d_room, T_ROOM_K, ea_eV)
        if not bend:
            return cls(low)
        t_bend = 523.15
        high = Arrhenius.through(float(low(t_bend)), t_bend, 0.10)
        # rescale both branches so the combined law still passes through D(22 °C)
        scale = d_room / float(cls(low, high)(T_ROOM_K))
        return cls(
            Arrhenius(low.prefactor * scale, low.ea_eV),
            Arrhenius(high.prefactor * scale, high.ea_eV),
        )

    def __call__(self, temperature_K: float | np.ndarray) -> float | np.ndarray:
        d = self.low(temperature_K)
        if self.high is not None:
            d = 1.0 / (1.0 / d + 1.0 / self.high(temperature_K))
        return d


@dataclass(frozen=True)
class BoundaryConductance:
    """Grain-boundary interface conductance k(T) = D*_gb/δ in m/s (Arrhenius).

    Parameters
    ----------
    law : Arrhenius
        k(T) in m/s.
    """

    law: Arrhenius

    @classmethod
    def paper_default(cls, *, grain_size_m: float = 16e-6) -> BoundaryConductance:
        """k = (0.048 cm²/s / l) exp(-0.43 eV / k_B T) with l = 16 µm (docs/science.md §4).

        0.048 cm²/s = 4.8e-6 m²/s is the prefactor of (l/δ) D*_gb (Fig. 5c), so
        k(22 °C) ≈ 1.4e-6 cm/s = 1.4e-8 m/s.
        """
        check_positive("grain_size_m", grain_size_m)
        return cls(Arrhenius(4.8e-6 / grain_size_m, 0.43))

    def __call__(self, temperature_K: float | np.ndarray) -> float | np.ndarray:
        return self.law(temperature_K)
