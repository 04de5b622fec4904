"""One SIMS export: a BIF6 file plus its acquisition metadata, checked against each other.

The metadata comes from the JSON sidecar when there is one; a plain SurfaceLab BIF6 export
(SurfaceLab writes no sidecar) takes it from a :class:`MetadataFallback`, i.e. the field of
view and the pulses per pixel the acquisition was configured with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._bif6 import Bif6Image, read_bif6
from ._errors import ExportFormatError
from ._sidecar import SimsSidecar, read_sidecar, sidecar_path_for

__all__ = ["ExportMetadata", "MetadataFallback", "SimsExport", "read_export", "select_peak"]

_KINDS = ("image", "line_profile")


@dataclass(frozen=True)
class ExportMetadata:
    """Acquisition metadata of one export, from its sidecar or from configuration.

    Unknown values are NaN (numbers), 0 (counts) or ``""`` (text): a plain BIF6 export
    configured only with field of view and pulses per pixel knows nothing else.

    Attributes
    ----------
    kind : {"image", "line_profile"}
    field_of_view_um : (float, float)
        Raster size (x, y) in µm (line profile: the analysis area of one point).
    pixels : (int, int)
        (nx, ny) of the BIF6 images.
    pulses_per_pixel : int
        The N of the dead-time correction.
    source : {"sidecar", "configuration"}
        Where the values come from.
    shots_per_pixel, scans : int
        0 when unknown.
    primary_species : str
    primary_energy_keV, primary_current_pA, dose_ions_per_cm2 : float
    stage_temperature_K : float
        Stage temperature during the acquisition (K); NaN when unknown.
    start_time, end_time : str
        ISO 8601; ``""`` when unknown (from configuration, ``end_time`` is the file's
        modification time).
    positions_mm : tuple of float, optional
        Line profiles: x of each point (mm).
    """

    kind: str
    field_of_view_um: tuple[float, float]
    pixels: tuple[int, int]
    pulses_per_pixel: int
    source: str
    shots_per_pixel: int = 0
    scans: int = 0
    primary_species: str = ""
    primary_energy_keV: float = math.nan
    primary_current_pA: float = math.nan
    dose_ions_per_cm2: float = math.nan
    stage_temperature_K: float = math.nan
    start_time: str = ""
    end_time: str = ""
    positions_mm: tuple[float, ...] | None = None

    @classmethod
    def from_sidecar(cls, sc: SimsSidecar) -> ExportMetadata:
        """The metadata a (validated) sidecar carries."""
        return cls(
            kind=sc.kind, field_of_view_um=tuple(sc.field_of_view_um),  # type: ignore[arg-type]
            pixels=tuple(sc.pixels), pulses_per_pixel=sc.pulses_per_pixel,  # type: ignore[arg-type]
            source="sidecar", shots_per_pixel=sc.shots_per_pixel, scans=sc.scans,
            primary_species=sc.primary_species,
            primary_energy_keV=float(sc.primary_energy_keV),
            primary_current_pA=float(sc.primary_current_pA),
            dose_ions_per_cm2=float(sc.dose_ions_per_cm2),
            stage_temperature_K=float(sc.stage_temperature_K),
            start_time=sc.start_time, end_time=sc.end_time, positions_mm=sc.positions_mm,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``None``)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            elif isinstance(v, tuple):
                v = list(v)
            out[name] = v
        return out


@dataclass(frozen=True)
class MetadataFallback:
    """What a device is configured with, for exports that come without a sidecar.

    Parameters
    ----------
    field_of_view_um : (float, float)
        Raster size (x, y) in µm, each in (0, 1e5].
    n_pulses : int
        Pulses integrated per pixel (>= 1): the N of the dead-time correction.

    Raises
    ------
    ValueError
        A value outside those limits (booleans are not numbers).
    """

    field_of_view_um: tuple[float, float]
    n_pulses: int

    def __post_init__(self) -> None:
        fov = self.field_of_view_um
        ok = isinstance(fov, tuple | list) and len(fov) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and 0 < v <= 1e5 for v in fov)
        if not ok:
            raise ValueError(f"field_of_view_um must be (w, h) in (0, 1e5] µm, got {fov!r}")
        n = self.n_pulses
        if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 2**53):
            raise ValueError(f"n_pulses must be an integer in [1, 2**53], got {n!r}")
        object.__setattr__(self, "field_of_view_um", (float(fov[0]), float(fov[1])))

    def metadata(
        self, path: Path, kind: str, pixels: tuple[int, int],
        positions_mm: Sequence[float] | None = None,
    ) -> ExportMetadata:
        """Metadata of the BIF6 export ``path`` of ``pixels`` = (nx, ny) acquired as ``kind``.

        Raises
        ------
        ExportFormatError
            A line profile without ``positions_mm`` for each of its nx points (ny = 1).
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        pos = None
        if kind == "line_profile":
            pos = tuple(float(x) for x in positions_mm or ())
            if len(pos) != pixels[0] or pixels[1] != 1:
                raise ExportFormatError(
                    path,
                    f"without a sidecar a line profile needs the requested positions_mm: "
                    f"{len(pos)} positions for pixels {list(pixels)} (nx points, ny = 1)",
                )
        try:
            mtime = path.stat().st_mtime
        except OSError:
            end = ""
        else:
            end = datetime.fromtimestamp(mtime, UTC).isoformat()
        return ExportMetadata(
            kind=kind, field_of_view_um=self.field_of_view_um, pixels=pixels,
            pulses_per_pixel=self.n_pulses, source="configuration", end_time=end,
            positions_mm=pos,
        )


@dataclass(frozen=True, eq=False)
class SimsExport:
    """A validated export.

    Attributes
    ----------
    bif6_path : Path
        The BIF6 file.
    sidecar_path : Path or None
        Its sidecar (None: metadata from configuration).
    sidecar : SimsSidecar or None
        The sidecar's content.
    images : list of Bif6Image
        The peak images, in file order.
    metadata : ExportMetadata
        Acquisition metadata (from the sidecar when given).
    """

    bif6_path: Path
    sidecar_path: Path | None
    sidecar: SimsSidecar | None
    images: list[Bif6Image] = field(repr=False)
    metadata: ExportMetadata = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.metadata is None:
            if self.sidecar is None:
                raise ValueError("SimsExport needs a sidecar or metadata")
            object.__setattr__(self, "metadata", ExportMetadata.from_sidecar(self.sidecar))

    def select(
        self,
        mass_u: float,
        *,
        peak_id: int | None = None,
        window_u: tuple[float, float] | None = None,
    ) -> Bif6Image:
        """The image of one species (see :func:`select_peak`)."""
        return select_peak(
            self.images, mass_u=mass_u, peak_id=peak_id, window_u=window_u, path=self.bif6_path
        )


def select_peak(
    images: Sequence[Bif6Image],
    *,
    mass_u: float,
    peak_id: int | None = None,
    window_u: tuple[float, float] | None = None,
    path: str | os.PathLike[str] = "<export>",
) -> Bif6Image:
    """Pick the image of the species at ``mass_u`` (u).

    Rules: with ``peak_id``, the image with that SurfaceLab peak number, whose mass window must
    contain ``mass_u``; with ``window_u`` = (lower, upper), the image whose centre mass lies in
    that window; otherwise the image whose own [lower, upper] window contains ``mass_u``.
    Several candidates: the one with the centre nearest ``mass_u``.

    Raises
    ------
    ExportFormatError
        No such peak / no window at that mass ("missing masses"), or a peak id whose window
        contradicts ``mass_u``.
    """
    have = ", ".join(
        f"#{im.peak_id} {im.lower_u:.3f}-{im.upper_u:.3f} u" for im in images
    ) or "none"
    if peak_id is not None:
        hits = [im for im in images if im.peak_id == peak_id]
        if not hits:
            raise ExportFormatError(
                path, f"missing masses: no image with peak id {peak_id} (images: {have})"
            )
        im = hits[0]
        if not im.contains_mass(mass_u):
            raise ExportFormatError(
                path,
                f"peak id {peak_id} has mass window {im.lower_u:.3f}-{im.upper_u:.3f} u, "
                f"which does not contain {mass_u} u",
            )
        return im
    if window_u is not None:
        lo, hi = window_u
        hits = [im for im in images if lo <= im.centre_u <= hi]
        where = f"with a centre mass in {lo}-{hi} u"
    else:
        hits = [im for im in images if im.contains_mass(mass_u)]
        where = f"whose mass window contains {mass_u} u"
    if not hits:
        raise ExportFormatError(path, f"missing masses: no image {where} (images: {have})")
    return min(hits, key=lambda im: abs(im.centre_u - mass_u))


def read_export(
    bif6_path: str | os.PathLike[str], *, sidecar_pattern: str = "{stem}.json",
    fallback: MetadataFallback | None = None, kind: str = "image",
    positions_mm: Sequence[float] | None = None,
) -> SimsExport:
    """Read a BIF6 export and its metadata and check them against each other.

    Parameters
    ----------
    bif6_path : path-like
        The BIF6 file.
    sidecar_pattern : str
        Sidecar name from the BIF6 ``{stem}``/``{name}`` (see :func:`sidecar_path_for`).
    fallback : MetadataFallback, optional
        Metadata for an export without a sidecar (else a missing sidecar is an error).
    kind, positions_mm
        For ``fallback`` only: what was acquired (``"image"`` or ``"line_profile"``) and,
        for a line profile, the requested positions (mm).

    Raises
    ------
    ExportFormatError
        Any BIF6 or sidecar defect, a missing sidecar (without ``fallback``), or metadata
        that contradict the BIF6 (other file name, other pixel counts, counts above the
        pulses per pixel).
    """
    p = Path(bif6_path)
    sc_path = sidecar_path_for(p, sidecar_pattern)
    sidecar: SimsSidecar | None = None
    if os.path.lexists(sc_path) or fallback is None:
        if not os.path.lexists(sc_path):
            raise ExportFormatError(p, f"sidecar missing (expected {sc_path.name})")
        sidecar = read_sidecar(sc_path)
    images = read_bif6(p)
    ny, nx = images[0].counts.shape
    if sidecar is not None:
        if sidecar.bif6 != p.name:
            raise ExportFormatError(
                sc_path, f"sidecar describes {sidecar.bif6!r}, not {p.name!r} (contradictory)"
            )
        if tuple(sidecar.pixels) != (nx, ny):
            raise ExportFormatError(
                sc_path,
                f"sidecar pixels {list(sidecar.pixels)} contradict the BIF6 header "
                f"nx={nx}, ny={ny}",
            )
        metadata = ExportMetadata.from_sidecar(sidecar)
    else:
        assert fallback is not None
        metadata = fallback.metadata(p, kind, (nx, ny), positions_mm)
    n = metadata.pulses_per_pixel
    where = "sidecar's" if sidecar is not None else "configured"
    for im in images:
        top = int(im.counts.max())
        if top > n:
            raise ExportFormatError(
                p,
                f"peak {im.peak_id}: {top} counts in a pixel exceed the {where} "
                f"{n} pulses per pixel (contradictory)",
            )
    return SimsExport(p, sc_path if sidecar is not None else None, sidecar, images, metadata)
