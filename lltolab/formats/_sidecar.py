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
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ._errors import ExportFormatError

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_MAX_BYTES",
    "SIDECAR_MAX_DEPTH",
    "SimsSidecar",
    "read_sidecar",
    "write_sidecar",
    "sidecar_path_for",
]

SIDECAR_FORMAT = "lltolab.sims-sidecar"
_VERSION = 1
_KINDS = ("image", "line_profile")
#: Largest sidecar accepted (bytes); a real one is under 2 kB.
SIDECAR_MAX_BYTES = 1 << 20
#: Deepest nesting of JSON arrays/objects accepted (the sidecar itself is 2 deep).
SIDECAR_MAX_DEPTH = 32
#: Longest integer literal accepted (digits); larger ones are no physical quantity.
SIDECAR_MAX_INT_DIGITS = 40


def _is_int(v: Any) -> bool:
    """An integer that is not a boolean (JSON ``true`` is not 1)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    """A finite int or float that is not a boolean (and not too large for a float)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


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
    if not isinstance(s.kind, str) or s.kind not in _KINDS:
        out.append(f"kind {s.kind!r} is not one of {_KINDS}")
    if not isinstance(s.bif6, str) or not s.bif6 or Path(s.bif6).name != s.bif6:
        out.append(f"bif6 must be a bare file name, got {s.bif6!r}")
    fov = s.field_of_view_um
    if not (isinstance(fov, tuple | list) and len(fov) == 2
            and all(_is_real(v) and 0 < v <= 1e5 for v in fov)):
        out.append(f"field_of_view_um must be two numbers in (0, 1e5] µm, got {fov!r}")
    px = s.pixels
    if not (isinstance(px, tuple | list) and len(px) == 2
            and all(_is_int(v) and 1 <= v <= 65535 for v in px)):
        out.append(f"pixels must be two integers in [1, 65535], got {px!r}")
        px = ()
    for name in ("shots_per_pixel", "scans", "pulses_per_pixel"):
        v = getattr(s, name)
        if not (_is_int(v) and 1 <= v <= 2**53):
            out.append(f"{name} must be an integer in [1, 2**53], got {v!r}")
    if not out and s.pulses_per_pixel != s.shots_per_pixel * s.scans:
        out.append(
            f"pulses_per_pixel={s.pulses_per_pixel} contradicts shots_per_pixel * scans = "
            f"{s.shots_per_pixel} * {s.scans} = {s.shots_per_pixel * s.scans}"
        )
    if not isinstance(s.primary_species, str) or not s.primary_species:
        out.append(f"primary_species must be a non-empty string, got {s.primary_species!r}")
    for name, hi in (
        ("primary_energy_keV", 1e3),
        ("primary_current_pA", 1e6),
        ("dose_ions_per_cm2", 1e20),
    ):
        v = getattr(s, name)
        if not (_is_real(v) and 0 <= v <= hi):
            out.append(f"{name} must be a finite number in [0, {hi:g}], got {v!r}")
    t = s.stage_temperature_K
    if not (_is_real(t) and 0 < t < 2000):
        out.append(f"stage_temperature_K must be in (0, 2000) K, got {t!r}")
    try:
        if not (isinstance(s.start_time, str) and isinstance(s.end_time, str)):
            raise TypeError("timestamps must be strings")
        if _parse_time(s.end_time) < _parse_time(s.start_time):
            out.append(f"end_time {s.end_time} is before start_time {s.start_time}")
    except (TypeError, ValueError) as exc:
        out.append(f"start_time/end_time must be ISO 8601 with a time zone ({exc})")
    if s.kind == "line_profile":
        pos = s.positions_mm
        if pos is None:
            out.append("a line profile needs positions_mm")
        else:
            if not all(_is_real(v) for v in pos):
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
        Missing file, a directory, a file larger than :data:`SIDECAR_MAX_BYTES`, text that is
        not UTF-8, invalid JSON, nesting deeper than :data:`SIDECAR_MAX_DEPTH`, an integer
        of more than :data:`SIDECAR_MAX_INT_DIGITS` digits, NaN/Infinity, wrong format tag,
        missing fields or contradictory values (the message names the file and every defect
        found). Booleans are never taken as numbers.
    """
    p = Path(path)
    raw = _load_json(p)
    if not isinstance(raw, dict):
        raise ExportFormatError(p, "sidecar must hold a JSON object")
    if raw.get("format") != SIDECAR_FORMAT:
        raise ExportFormatError(
            p, f"sidecar format tag {_short(raw.get('format'))}, expected {SIDECAR_FORMAT!r}"
        )
    if not (_is_int(raw.get("version")) and raw.get("version") == _VERSION):
        raise ExportFormatError(p, f"unsupported sidecar version {_short(raw.get('version'))}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ExportFormatError(p, f"sidecar lacks fields {missing}")
    known = set(_REQUIRED) | {"format", "version", "positions_mm", "extra"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExportFormatError(p, f"sidecar has unknown fields {[_short(u) for u in unknown]}")
    for key in ("field_of_view_um", "pixels", "positions_mm"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], list):
            raise ExportFormatError(p, f"{key} must be a JSON array, got {_short(raw[key])}")
    if not isinstance(raw.get("extra", {}), dict):
        raise ExportFormatError(p, "extra must be a JSON object")
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
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExportFormatError(p, f"contradictory or invalid sidecar: {exc}") from None
    return sidecar


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (a defect message never echoes a whole file)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > SIDECAR_MAX_INT_DIGITS:
        raise ValueError(
            f"an integer of {len(text.lstrip('-'))} digits (limit {SIDECAR_MAX_INT_DIGITS})"
        )
    return int(text)


def _reject_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number JSON allows")


def _load_json(p: Path) -> Any:
    """The parsed JSON of sidecar ``p``; every defect as ExportFormatError."""
    try:
        mode = p.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ExportFormatError(p, "sidecar is a directory, not a file")
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            raise ExportFormatError(p, "sidecar is not a regular file")
        with p.open("rb") as fh:
            blob = fh.read(SIDECAR_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ExportFormatError(p, "sidecar missing") from None
    except OSError as exc:
        raise ExportFormatError(p, f"sidecar cannot be read ({exc.strerror or exc})") from None
    if len(blob) > SIDECAR_MAX_BYTES:
        raise ExportFormatError(p, f"sidecar larger than {SIDECAR_MAX_BYTES} bytes")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportFormatError(
            p, f"sidecar is not UTF-8 text (byte 0x{blob[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        raw = json.loads(text, parse_int=_parse_int, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(p, f"sidecar is not valid JSON ({exc})") from None
    except RecursionError:
        raise ExportFormatError(
            p, f"sidecar is not valid JSON (nested deeper than {SIDECAR_MAX_DEPTH} levels)"
        ) from None
    except ValueError as exc:
        raise ExportFormatError(p, f"sidecar is not valid JSON ({exc})") from None
    defect = _content_defect(raw)
    if defect:
        raise ExportFormatError(p, defect)
    return raw


def _content_defect(value: Any) -> str:
    """What makes parsed JSON unfit to carry on (too deep, odd text), or ``""``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > SIDECAR_MAX_DEPTH:
                return f"sidecar nested deeper than {SIDECAR_MAX_DEPTH} levels"
            items = list(v.items()) if isinstance(v, dict) else [(None, x) for x in v]
            for key, item in items:
                if key is not None:
                    stack.append((key, depth))
                stack.append((item, depth + 1))
        elif isinstance(v, str):
            if "\x00" in v:
                return f"sidecar text {_short(v)} holds a NUL character"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return f"sidecar text {_short(v)} holds an unpaired surrogate escape"
        elif isinstance(v, float) and not math.isfinite(v):
            return f"sidecar holds a number beyond the float range ({v})"
    return ""
