"""Simulated SurfaceLab: renders the virtual sample into BIF6 + sidecar exports.

The sample (any object with the interface of ``lltolab.diffusion.VirtualSample``: ``field``,
``profile``, ``window_m``, ``pixel_m``, ``boundary_map``, ``history``) is injected; this module
only does what the instrument does: raster, count with a one-count-per-pulse detector, export.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lltolab.formats import Bif6Image, SimsSidecar, sidecar_path_for, write_bif6, write_sidecar

from ._clock import VirtualClock

__all__ = ["SurfaceLabSimulator", "SimsSettings", "SampleLike", "resample_bilinear"]

_E_CHARGE_C = 1.602176634e-19
LI6_PEAK = (1, 6.015, 5.95, 6.08)
LI7_PEAK = (2, 7.016, 6.95, 7.08)
TI_PEAK = (3, 47.948, 47.85, 48.05)


class SampleLike(Protocol):
    """What the simulator needs from the virtual sample (see VirtualSample)."""

    pixel_m: float
    window_m: tuple[float, float, float, float]

    def field(self, time_s: float) -> np.ndarray: ...

    def profile(self, x_m: np.ndarray, time_s: float, *, width_m: float = ...) -> np.ndarray: ...

    @property
    def boundary_map(self) -> np.ndarray: ...

    # plus ``history``: a list of segments (start_s, temperature_K, ...) or a method
    # ``history(until_s=None)`` returning one (VirtualSample)


@dataclass(frozen=True)
class SimsSettings:
    """Acquisition settings of the simulated TOF.SIMS 5.

    Attributes
    ----------
    field_of_view_um : (float, float)
        Raster size (x, y), µm.
    pixels : (int, int)
        (nx, ny).
    origin_um : (float, float), optional
        Lower-left corner of the raster in the sample's window coordinates (µm); default
        x = 0 (the liquid level) when the window allows, y centred in the window.
    duration_s : float
        Lab time one image takes (default 5 h).
    shots_per_pixel, scans : int
        Pulses per pixel = shots_per_pixel * scans (default 16 * 128 = 2048, i.e. an 83 µs
        cycle for 512 x 206 pixels in 5 h).
    li_ions_per_pulse : float
        Mean detected Li+ ions (6Li + 7Li) per pulse and pixel, mu; mu6 = mu C and
        mu7 = mu (1 - C). The default 0.6 makes 7Li record on ~43 % of pulses at natural
        abundance, so raw ratios are biased by ~25 % (as on the real instrument).
    background_per_pulse : float
        Extra mean counts per pulse on each mass (detector noise / tails).
    matrix_peak : bool
        Also export a Ti+ image (uniform yield ``matrix_ions_per_pulse``).
    matrix_ions_per_pulse : float
        Mean Ti+ per pulse when ``matrix_peak``.
    primary_species, primary_energy_keV, primary_current_pA
        Bi+ 30 keV 0.5 pA by default.
    profile_area_um : float
        Side of the square analysis area of a line-profile point (µm).
    profile_duration_per_point_s : float
        Lab time per line-profile point (sputter + analysis), s.
    profile_shots_per_point, profile_scans : int
        Pulses integrated at one point = their product.
    """

    field_of_view_um: tuple[float, float] = (500.0, 200.0)
    pixels: tuple[int, int] = (512, 206)
    origin_um: tuple[float, float] | None = None
    duration_s: float = 5 * 3600.0
    shots_per_pixel: int = 16
    scans: int = 128
    li_ions_per_pulse: float = 0.6
    background_per_pulse: float = 0.0
    matrix_peak: bool = False
    matrix_ions_per_pulse: float = 0.2
    primary_species: str = "Bi+"
    primary_energy_keV: float = 30.0
    primary_current_pA: float = 0.5
    profile_area_um: float = 50.0
    profile_duration_per_point_s: float = 600.0
    profile_shots_per_point: int = 16384
    profile_scans: int = 20

    def __post_init__(self) -> None:
        fx, fy = self.field_of_view_um
        nx, ny = self.pixels
        if not (fx > 0 and fy > 0 and math.isfinite(fx * fy)):
            raise ValueError(f"field_of_view_um must be positive, got {self.field_of_view_um}")
        if not (1 <= nx <= 4096 and 1 <= ny <= 4096):
            raise ValueError(f"pixels must be in [1, 4096] each, got {self.pixels}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"duration_s must be finite and >= 0, got {self.duration_s}")
        for name in ("shots_per_pixel", "scans", "profile_shots_per_point", "profile_scans"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("li_ions_per_pulse", "background_per_pulse", "matrix_ions_per_pulse"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 50):
                raise ValueError(f"{name} must be in [0, 50] ions per pulse, got {v}")
        if not self.profile_area_um > 0:
            raise ValueError(f"profile_area_um must be > 0, got {self.profile_area_um}")

    @property
    def pulses_per_pixel(self) -> int:
        """N of the dead-time correction for images."""
        return self.shots_per_pixel * self.scans

    @property
    def profile_pulses_per_point(self) -> int:
        """N of the dead-time correction for line-profile points."""
        return self.profile_shots_per_point * self.profile_scans


def resample_bilinear(
    src: np.ndarray,
    src_origin: tuple[float, float],
    src_pitch: float,
    dst_origin: tuple[float, float],
    dst_pitch: tuple[float, float],
    dst_shape: tuple[int, int],
) -> np.ndarray:
    """Bilinear samples of ``src`` (ny, nx; cell centres at origin + (i + 0.5) pitch) at the
    pixel centres of a raster of ``dst_shape`` (ny, nx); edges clamp."""
    ix, wx = _axis_weights(src.shape[1], src_origin[0], src_pitch, dst_origin[0],
                           dst_pitch[0], dst_shape[1])
    iy, wy = _axis_weights(src.shape[0], src_origin[1], src_pitch, dst_origin[1],
                           dst_pitch[1], dst_shape[0])
    top = src[iy][:, ix] * (1 - wx) + src[iy][:, ix + 1] * wx
    bot = src[iy + 1][:, ix] * (1 - wx) + src[iy + 1][:, ix + 1] * wx
    return top * (1 - wy)[:, None] + bot * wy[:, None]


def _axis_weights(
    n_src: int, src0: float, pitch: float, dst0: float, dst_pitch: float, n_dst: int
) -> tuple[np.ndarray, np.ndarray]:
    pos = (dst0 + (np.arange(n_dst) + 0.5) * dst_pitch - src0) / pitch - 0.5
    pos = np.clip(pos, 0.0, max(n_src - 1, 0))
    i = np.minimum(np.floor(pos).astype(np.intp), max(n_src - 2, 0))
    w = pos - i
    if n_src == 1:
        return np.zeros(n_dst, np.intp), np.zeros(n_dst)
    return i, w


class SurfaceLabSimulator:
    """The simulated SurfaceLab: acquisitions on the lab clock, exports into a folder.

    Parameters
    ----------
    sample : SampleLike
        The virtual sample (``lltolab.diffusion.VirtualSample`` or any object with its
        interface).
    clock : VirtualClock
        The lab clock; an acquisition jumps it by its duration.
    export_folder : path-like
        Where BIF6 + sidecar exports (and micrographs) appear; created if missing.
    settings : SimsSettings, optional
        Acquisition settings.
    seed : int, optional
        Seed of the counting noise.
    stage_temperature_K : callable, optional
        ``f(lab_time_s) -> K`` for the sidecar; default the temperature of the sample's history
        segment at that time (or 163.15 K without history).
    epoch : datetime, optional
        Wall-clock date of lab time 0 (for sidecar timestamps); default 2024-01-01 UTC.
    prefix : str
        File-name prefix of exports.
    """

    def __init__(
        self,
        sample: SampleLike,
        clock: VirtualClock,
        export_folder: str | os.PathLike[str],
        *,
        settings: SimsSettings | None = None,
        seed: int | None = None,
        stage_temperature_K: Callable[[float], float] | None = None,
        epoch: datetime | None = None,
        prefix: str = "sims",
    ) -> None:
        self.sample = sample
        self.clock = clock
        self.export_folder = Path(export_folder)
        self.export_folder.mkdir(parents=True, exist_ok=True)
        self.settings = settings or SimsSettings()
        self.rng = np.random.default_rng(seed)
        self._stage_temperature = stage_temperature_K
        self.epoch = epoch or datetime(2024, 1, 1, tzinfo=UTC)
        if not prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name part, got {prefix!r}")
        self.prefix = prefix
        self.last_true_c: np.ndarray | None = None
        self.last_export: Path | None = None
        self._counter = 0
        self.busy = threading.RLock()
        """Held while an acquisition runs (see :meth:`VirtualLab.pass_time`)."""

    # ------------------------------------------------------------------ geometry
    def raster_origin_um(self) -> tuple[float, float]:
        """Lower-left corner of the raster in sample coordinates (µm)."""
        if self.settings.origin_um is not None:
            return self.settings.origin_um
        x0, x1, y0, y1 = (v * 1e6 for v in self.sample.window_m)
        fx, fy = self.settings.field_of_view_um
        # start at the liquid level (x = 0) when the window allows, centred in y
        ox = min(max(0.0, x0), max(x0, x1 - fx))
        oy = max(y0, 0.5 * (y0 + y1 - fy))
        return ox, oy

    def _raster(self) -> tuple[tuple[float, float], tuple[float, float], tuple[int, int]]:
        s = self.settings
        ox, oy = self.raster_origin_um()
        nx, ny = s.pixels
        fx, fy = s.field_of_view_um
        wx0, wx1, wy0, wy1 = (v * 1e6 for v in self.sample.window_m)
        tol = self.sample.pixel_m * 1e6 * 0.5
        if ox < wx0 - tol or oy < wy0 - tol or ox + fx > wx1 + tol or oy + fy > wy1 + tol:
            raise ValueError(
                f"raster {fx} x {fy} µm at ({ox}, {oy}) µm leaves the sample window "
                f"x {wx0}..{wx1} µm, y {wy0}..{wy1} µm"
            )
        return (ox, oy), (fx / nx, fy / ny), (ny, nx)

    def true_c_under_raster(self, field: np.ndarray) -> np.ndarray:
        """The sample's 6Li fraction ``field`` resampled to the raster pixels."""
        origin, pitch, shape = self._raster()
        x0, _, y0, _ = self.sample.window_m
        return resample_bilinear(
            np.asarray(field, dtype=np.float64), (x0 * 1e6, y0 * 1e6),
            self.sample.pixel_m * 1e6, origin, pitch, shape,
        )

    # ------------------------------------------------------------------ counting
    def count(self, c: np.ndarray, n_pulses: int) -> tuple[np.ndarray, np.ndarray]:
        """Recorded 6Li and 7Li counts for true fractions ``c`` with ``n_pulses`` per pixel:
        Binomial(N, 1 - exp(-mu)), mu6 = Y C + b, mu7 = Y (1 - C) + b."""
        s = self.settings
        c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
        y, b = s.li_ions_per_pulse, s.background_per_pulse
        p6 = -np.expm1(-(y * c + b))
        p7 = -np.expm1(-(y * (1.0 - c) + b))
        i6 = self.rng.binomial(n_pulses, p6).astype(np.uint32)
        i7 = self.rng.binomial(n_pulses, p7).astype(np.uint32)
        return i6, i7

    def render_images(self, c: np.ndarray) -> list[Bif6Image]:
        """BIF6 images (6Li, 7Li, optional Ti) of a true-fraction map ``c`` (ny, nx)."""
        s = self.settings
        n = s.pulses_per_pixel
        i6, i7 = self.count(c, n)
        images = [Bif6Image(*LI6_PEAK, i6), Bif6Image(*LI7_PEAK, i7)]
        if s.matrix_peak:
            p = -math.expm1(-(s.matrix_ions_per_pulse + s.background_per_pulse))
            ti = self.rng.binomial(n, p, size=c.shape).astype(np.uint32)
            images.append(Bif6Image(*TI_PEAK, ti))
        return images

    # ------------------------------------------------------------------ acquisitions
    def acquire_image(self, name: str | None = None) -> Path:
        """One image: takes ``settings.duration_s`` of lab time; returns the BIF6 path.

        The counted field is the mean of the sample's field at the start and the end of the
        acquisition (the sample keeps diffusing at the stage temperature meanwhile).
        """
        s = self.settings
        t0 = self.clock.now()
        c0 = self.true_c_under_raster(self.sample.field(t0))
        t1 = self.clock.jump(s.duration_s) if s.duration_s > 0 else t0
        c1 = c0 if t1 == t0 else self.true_c_under_raster(self.sample.field(t1))
        c = 0.5 * (c0 + c1)
        self.last_true_c = c
        images = self.render_images(c)
        area_cm2 = s.field_of_view_um[0] * s.field_of_view_um[1] * 1e-8
        sidecar_kw = dict(
            kind="image", field_of_view_um=tuple(s.field_of_view_um), pixels=tuple(s.pixels),
            shots_per_pixel=s.shots_per_pixel, scans=s.scans,
            pulses_per_pixel=s.pulses_per_pixel,
            dose_ions_per_cm2=self._dose(t1 - t0, area_cm2),
        )
        return self._publish(images, sidecar_kw, t0, t1, name, "image")

    def acquire_line_profile(
        self, positions_mm: Sequence[float], name: str | None = None
    ) -> Path:
        """Line measurement at ``positions_mm`` along x (distance from the liquid level).

        Each point integrates ``settings.profile_pulses_per_point`` pulses over a
        ``profile_area_um`` square; the whole profile takes
        ``profile_duration_per_point_s * len(positions_mm)`` of lab time.
        """
        s = self.settings
        x_mm = np.asarray(positions_mm, dtype=np.float64)
        if x_mm.ndim != 1 or x_mm.size < 1 or x_mm.size > 65535:
            raise ValueError(f"positions_mm must be 1 to 65535 positions, got {x_mm.shape}")
        if not np.all(np.isfinite(x_mm)):
            raise ValueError(f"positions_mm must be finite, got {list(x_mm)}")
        width_m = s.profile_area_um * 1e-6
        t0 = self.clock.now()
        c0 = np.asarray(self.sample.profile(x_mm * 1e-3, t0, width_m=width_m), dtype=float)
        duration = s.profile_duration_per_point_s * x_mm.size
        t1 = self.clock.jump(duration) if duration > 0 else t0
        c1 = c0 if t1 == t0 else np.asarray(
            self.sample.profile(x_mm * 1e-3, t1, width_m=width_m), dtype=float)
        c = (0.5 * (c0 + c1)).reshape(1, -1)
        self.last_true_c = c
        i6, i7 = self.count(c, s.profile_pulses_per_point)
        images = [Bif6Image(*LI6_PEAK, i6), Bif6Image(*LI7_PEAK, i7)]
        area_cm2 = s.profile_area_um**2 * 1e-8
        sidecar_kw = dict(
            kind="line_profile", field_of_view_um=(s.profile_area_um, s.profile_area_um),
            pixels=(int(x_mm.size), 1), shots_per_pixel=s.profile_shots_per_point,
            scans=s.profile_scans, pulses_per_pixel=s.profile_pulses_per_point,
            dose_ions_per_cm2=self._dose(s.profile_duration_per_point_s, area_cm2),
            positions_mm=tuple(float(v) for v in x_mm),
        )
        return self._publish(images, sidecar_kw, t0, t1, name, "profile")

    def request(self, kind: str, positions_mm: Sequence[float] | None) -> None:
        """Hook for ``SurfaceLabExport(request=...)``: acquire what the device asks for."""
        with self.busy:
            self._request(kind, positions_mm)

    def _request(self, kind: str, positions_mm: Sequence[float] | None) -> None:
        if kind == "image":
            self.acquire_image()
        elif kind == "line_profile":
            if not positions_mm:
                raise ValueError("a line profile needs positions_mm")
            self.acquire_line_profile(positions_mm)
        else:
            raise ValueError(f"unknown acquisition kind {kind!r}")

    def micrograph(self) -> np.ndarray:
        """The sample's grain-boundary map on the raster's pixels (bool, True = boundary):
        what :meth:`write_micrograph` writes, without writing it."""
        origin, pitch, shape = self._raster()
        x0, _, y0, _ = self.sample.window_m
        gb = np.asarray(self.sample.boundary_map, dtype=bool)
        p = self.sample.pixel_m * 1e6
        ys = ((origin[1] + (np.arange(shape[0]) + 0.5) * pitch[1]) - y0 * 1e6) / p
        xs = ((origin[0] + (np.arange(shape[1]) + 0.5) * pitch[0]) - x0 * 1e6) / p
        iy = np.clip(ys.astype(np.intp), 0, gb.shape[0] - 1)
        ix = np.clip(xs.astype(np.intp), 0, gb.shape[1] - 1)
        return gb[iy][:, ix]

    def write_micrograph(self, name: str | None = None) -> Path:
        """The 'optical micrograph after thermal etching' of the imaged area: the sample's
        grain-boundary map on the raster's pixels, as ``.npy`` (bool, True = boundary),
        ``.png`` (8-bit grey, boundaries black) and ``.json`` (geometry). Returns the .npy."""
        origin, _, _ = self._raster()
        img = self.micrograph()
        stem = name or self._next_stem("micrograph")
        npy = self.export_folder / f"{stem}.npy"
        _atomic_write(npy, lambda f: np.save(f, img))
        _atomic_write(self.export_folder / f"{stem}.png",
                      lambda f: f.write(_png_grey(np.where(img, 0, 255).astype(np.uint8))))
        meta = {
            "kind": "optical_micrograph", "boundary_value": True,
            "field_of_view_um": list(self.settings.field_of_view_um),
            "pixels": list(self.settings.pixels), "origin_um": list(origin),
            "note": "simulated laser-microscope image after thermal etching (1100 C, 1 h)",
        }
        _atomic_write(self.export_folder / f"{stem}.json",
                      lambda f: f.write(json.dumps(meta, indent=1).encode()))
        return npy

    # ------------------------------------------------------------------ helpers
    def stage_temperature_at(self, time_s: float) -> float:
        """Stage temperature (K) recorded in the sidecar for lab time ``time_s``."""
        if self._stage_temperature is not None:
            return float(self._stage_temperature(time_s))
        history = getattr(self.sample, "history", None)
        if callable(history):  # VirtualSample.history(until_s=None) is a method
            history = history(until_s=time_s)
        temp = 163.15
        for seg in history or []:
            if seg.start_s <= time_s:
                temp = float(seg.temperature_K)
        return temp

    def _dose(self, seconds: float, area_cm2: float) -> float:
        return self.settings.primary_current_pA * 1e-12 * seconds / _E_CHARGE_C / area_cm2

    def _stamp(self, lab_s: float) -> str:
        return (self.epoch + timedelta(seconds=lab_s)).isoformat()

    def _next_stem(self, kind: str) -> str:
        while True:
            self._counter += 1
            stem = f"{self.prefix}_{self._counter:04d}_{kind}"
            if not any(self.export_folder.glob(stem + ".*")):
                return stem

    def _publish(
        self, images: list[Bif6Image], sidecar_kw: dict[str, Any], t0: float, t1: float,
        name: str | None, kind: str,
    ) -> Path:
        s = self.settings
        stem = name or self._next_stem(kind)
        bif6 = self.export_folder / f"{stem}.bif6"
        sidecar = SimsSidecar(
            bif6=bif6.name, primary_species=s.primary_species,
            primary_energy_keV=s.primary_energy_keV, primary_current_pA=s.primary_current_pA,
            stage_temperature_K=self.stage_temperature_at(0.5 * (t0 + t1)),
            start_time=self._stamp(t0), end_time=self._stamp(t1),
            extra={"simulated": True, "lab_start_s": t0, "lab_end_s": t1}, **sidecar_kw,
        )
        sc_path = sidecar_path_for(bif6)
        sc_tmp = sc_path.with_name(f".{sc_path.name}.tmp")
        write_sidecar(sc_tmp, sidecar)
        os.replace(sc_tmp, sc_path)
        tmp = bif6.with_name(f".{bif6.name}.tmp")
        write_bif6(tmp, images)
        os.replace(tmp, bif6)
        self.last_export = bif6
        return bif6


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        write(f)
    os.replace(tmp, path)


def _png_grey(img: np.ndarray) -> bytes:
    """Minimal 8-bit greyscale PNG encoder."""
    h, w = img.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    raw = np.hstack([np.zeros((h, 1), np.uint8), img[::-1]]).tobytes()  # row 0 at the top
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))

