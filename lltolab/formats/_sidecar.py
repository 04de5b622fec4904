"""The JSON sidecar written next to each BIF6 export: what BIF6 itself lacks.

Example (an image)::

    {
      "format": "lltolab.sims-sidecar", "version": 1,
      "kind": "image",
      "bif6": "exchange59h_0001.bif6",
      "field_of_view_um": [500.0, 200.0],
      "pixels": [512, 206],
      "shots_per_pixel": 64, "scans": 256, "pulses_per_pixel": 16384,
      "primary_species": "Bi+", "primary_energy_keV": 30.0, "primary_current_pA": 0.5,
      "dose_ions_per_cm2": 5.6e13,
      "stage_temperature_K": 163.15,
      "start_time": "2024-01-03T11:00:00+00:00", "end_time": "2024-01-03T16:00:00+00:00",
      "extra": {}
    }

A line profile (``"kind": "line_profile"``) stores one BIF6 "image" of nx = number of points
and ny = 1; ``positions_mm`` gives x of each point (distance from the liquid level),
``field_of_view_um`` the analysis area of one point and ``pulses_per_pixel`` the pulses
integrated at one point.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ._errors import ExportFormatError

__all__ = [
    "SIDECAR_FORMAT",
    "SimsSidecar",
    "read_sidecar",
    "write_sidecar",
    "sidecar_path_for",
]

SIDECAR_FORMAT = "lltolab.sims-sidecar"
_VERSION = 1
_KINDS = ("image", "line_profile")


@dataclass(frozen=True)
class SimsSidecar:
    """Acquisition metadata of one SIMS export.

    Attributes
    ----------
    kind : {"image", "line_profile"}
        What the BIF6 next to it holds.
    bif6 : str
        File name (no folder) of the BIF6 export this sidecar describes.
    field_of_view_um : (float, float)
        Raster size (x, y) in µm; for a line profile the analysis area of one point.
    pixels : (int, int)
        (nx, ny) of the BIF6 images.
    shots_per_pixel, scans : int
        Primary-ion shots per pixel and scan, and number of scans.
    pulses_per_pixel : int
        Pulses integrated per pixel (= shots_per_pixel * scans); the N of the dead-time
        correction.
    primary_species : str
        Primary ion, e.g. ``"Bi+"``.
    primary_energy_keV, primary_current_pA : float
        Primary-ion energy (keV) and pulsed current (pA).
    dose_ions_per_cm2 : float
        Primary-ion dose density.
    stage_temperature_K : float
        Sample-stage temperature during the acquisition (K).
    start_time, end_time : str
        ISO 8601 timestamps with time zone.
    positions_mm : tuple of float, optional
        Line profiles only: x of each point in mm.
    extra : dict
        Free-form additional metadata (JSON-serialisable).
    """

    kind: Literal["image", "line_profile"]
    bif6: str
    field_of_view_um: tuple[float, float]
    pixels: tuple[int, int]
    shots_per_pixel: int
    scans: int
    pulses_per_pixel: int
    primary_species: str
    primary_energy_keV: float
    primary_current_pA: float
    dose_ions_per_cm2: float
    stage_temperature_K: float
    start_time: str
    end_time: str
    positions_mm: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        errors = _defects(self)
        if errors:
            raise ValueError("invalid SIMS sidecar: " + "; ".join(errors))

    @property
    def pixel_size_um(self) -> tuple[float, float]:
        """Pixel pitch (x, y) in µm (images only; for line profiles the analysis area)."""
        if self.kind == "line_profile":
            return self.field_of_view_um
        return (
            self.field_of_view_um[0] / self.pixels[0],
            self.field_of_view_um[1] / self.pixels[1],
        )

    @property
    def duration_s(self) -> float:
        """Acquisition time in seconds (end minus start)."""
        return (_parse_time(self.end_time) - _parse_time(self.start_time)).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including the format tag and version."""
        d = asdict(self)
        d["field_of_view_um"] = list(self.field_of_view_um)
        d["pixels"] = list(self.pixels)
        if self.positions_mm is None:
            d.pop("positions_mm")
        else:
            d["positions_mm"] = list(self.positions_mm)
        return {"format": SIDECAR_FORMAT, "version": _VERSION, **d}


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return t


def _defects(s: SimsSidecar) -> list[str]:
    """Every inconsistency of a sidecar, in words (empty when it is sound)."""
    out: list[str] = []
    if s.kind not in _KINDS:
        out.append(f"kind {s.kind!r} is not one of {_KINDS}")
    if not s.bif6 or Path(s.bif6).name != s.bif6:
        out.append(f"bif6 must be a bare file name, got {s.bif6!r}")
    fov = s.field_of_view_um
    if len(fov) != 2 or not all(math.isfinite(v) and 0 < v <= 1e5 for v in fov):
        out.append(f"field_of_view_um must be two numbers in (0, 1e5] µm, got {fov!r}")
    px = s.pixels
    if len(px) != 2 or not all(isinstance(v, int) and 1 <= v <= 65535 for v in px):
        out.append(f"pixels must be two integers in [1, 65535], got {px!r}")
    for name in ("shots_per_pixel", "scans", "pulses_per_pixel"):
        v = getattr(s, name)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            out.append(f"{name} must be an integer >= 1, got {v!r}")
    if not out and s.pulses_per_pixel != s.shots_per_pixel * s.scans:
        out.append(
            f"pulses_per_pixel={s.pulses_per_pixel} contradicts shots_per_pixel * scans = "
            f"{s.shots_per_pixel} * {s.scans} = {s.shots_per_pixel * s.scans}"
        )
    if not s.primary_species:
        out.append("primary_species is empty")
    for name, hi in (
        ("primary_energy_keV", 1e3),
        ("primary_current_pA", 1e6),
        ("dose_ions_per_cm2", 1e20),
    ):
        v = getattr(s, name)
        if not (isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= hi):
            out.append(f"{name} must be a finite number in [0, {hi:g}], got {v!r}")
    t = s.stage_temperature_K
    if not (isinstance(t, int | float) and math.isfinite(t) and 0 < t < 2000):
        out.append(f"stage_temperature_K must be in (0, 2000) K, got {t!r}")
    try:
        if _parse_time(s.end_time) < _parse_time(s.start_time):
            out.append(f"end_time {s.end_time} is before start_time {s.start_time}")
    except (TypeError, ValueError) as exc:
        out.append(f"start_time/end_time must be ISO 8601 with a time zone ({exc})")
    if s.kind == "line_profile":
        pos = s.positions_mm
        if pos is None:
            out.append("a line profile needs positions_mm")
        else:
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in pos):
                out.append("positions_mm must be finite numbers")
            if len(px) == 2 and (len(pos) != px[0] or px[1] != 1):
                out.append(
                    f"{len(pos)} positions_mm contradict pixels {list(px)} "
                    "(a line profile has nx = number of points, ny = 1)"
                )
    elif s.positions_mm is not None:
        out.append("positions_mm is only allowed for kind 'line_profile'")
    if not isinstance(s.extra, dict):
        out.append("extra must be a JSON object")
    return out


def sidecar_path_for(bif6_path: str | os.PathLike[str], pattern: str = "{stem}.json") -> Path:
    """Where the sidecar of ``bif6_path`` lives: ``pattern`` formatted with the BIF6 file's
    ``stem`` and ``name``, in the same folder."""
    p = Path(bif6_path)
    return p.with_name(pattern.format(stem=p.stem, name=p.name))


def write_sidecar(path: str | os.PathLike[str], sidecar: SimsSidecar) -> None:
    """Write ``sidecar`` as JSON at ``path`` (in place; publish by rename if watched)."""
    Path(path).write_text(json.dumps(sidecar.to_dict(), indent=1) + "\n", encoding="utf-8")


_REQUIRED = (
    "kind", "bif6", "field_of_view_um", "pixels", "shots_per_pixel", "scans",
    "pulses_per_pixel", "primary_species", "primary_energy_keV", "primary_current_pA",
    "dose_ions_per_cm2", "stage_temperature_K", "start_time", "end_time",
)


def read_sidecar(path: str | os.PathLike[str]) -> SimsSidecar:
    """Read and validate a sidecar.

    Raises
    ------
    ExportFormatError
        Missing file, invalid JSON, wrong format tag, missing fields or contradictory values
        (the message names the file and every defect found).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportFormatError(p, "sidecar missing") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(p, f"sidecar is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ExportFormatError(p, "sidecar must hold a JSON object")
    if raw.get("format") != SIDECAR_FORMAT:
        raise ExportFormatError(
            p, f"sidecar format tag {raw.get('format')!r}, expected {SIDECAR_FORMAT!r}"
        )
    if raw.get("version") != _VERSION:
        raise ExportFormatError(p, f"unsupported sidecar version {raw.get('version')!r}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ExportFormatError(p, f"sidecar lacks fields {missing}")
    known = set(_REQUIRED) | {"format", "version", "positions_mm", "extra"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExportFormatError(p, f"sidecar has unknown fields {unknown}")
    try:
        pos = raw.get("positions_mm")
        sidecar = SimsSidecar(
            kind=raw["kind"],
            bif6=raw["bif6"],
            field_of_view_um=tuple(raw["field_of_view_um"]),
            pixels=tuple(raw["pixels"]),
            shots_per_pixel=raw["shots_per_pixel"],
            scans=raw["scans"],
            pulses_per_pixel=raw["pulses_per_pixel"],
            primary_species=raw["primary_species"],
            primary_energy_keV=raw["primary_energy_keV"],
            primary_current_pA=raw["primary_current_pA"],
            dose_ions_per_cm2=raw["dose_ions_per_cm2"],
            stage_temperature_K=raw["stage_temperature_K"],
            start_time=raw["start_time"],
            end_time=raw["end_time"],
            positions_mm=None if pos is None else tuple(pos),
            extra=raw.get("extra", {}),
        )
    except (TypeError, ValueError) as exc:
        raise ExportFormatError(p, f"contradictory or invalid sidecar: {exc}") from None
    return sidecar
