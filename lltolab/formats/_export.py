"""One SIMS export: a BIF6 file plus its sidecar, checked against each other."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._bif6 import Bif6Image, read_bif6
from ._errors import ExportFormatError
from ._sidecar import SimsSidecar, read_sidecar, sidecar_path_for

__all__ = ["SimsExport", "read_export", "select_peak"]


@dataclass(frozen=True, eq=False)
class SimsExport:
    """A validated export.

    Attributes
    ----------
    bif6_path, sidecar_path : Path
        The two files.
    sidecar : SimsSidecar
        Acquisition metadata.
    images : list of Bif6Image
        The peak images, in file order.
    """

    bif6_path: Path
    sidecar_path: Path
    sidecar: SimsSidecar
    images: list[Bif6Image] = field(repr=False)

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
    bif6_path: str | os.PathLike[str], *, sidecar_pattern: str = "{stem}.json"
) -> SimsExport:
    """Read a BIF6 export and its sidecar and check them against each other.

    Raises
    ------
    ExportFormatError
        Any BIF6 or sidecar defect, a missing sidecar, or a sidecar that contradicts the BIF6
        (other file name, other pixel counts, counts above the pulses per pixel).
    """
    p = Path(bif6_path)
    sc_path = sidecar_path_for(p, sidecar_pattern)
    if not sc_path.exists():
        raise ExportFormatError(p, f"sidecar missing (expected {sc_path.name})")
    sidecar = read_sidecar(sc_path)
    images = read_bif6(p)
    if sidecar.bif6 != p.name:
        raise ExportFormatError(
            sc_path, f"sidecar describes {sidecar.bif6!r}, not {p.name!r} (contradictory)"
        )
    ny, nx = images[0].counts.shape
    if tuple(sidecar.pixels) != (nx, ny):
        raise ExportFormatError(
            sc_path,
            f"sidecar pixels {list(sidecar.pixels)} contradict the BIF6 header nx={nx}, ny={ny}",
        )
    n = sidecar.pulses_per_pixel
    for im in images:
        top = int(im.counts.max())
        if top > n:
            raise ExportFormatError(
                p,
                f"peak {im.peak_id}: {top} counts in a pixel exceed the sidecar's "
                f"{n} pulses per pixel (contradictory)",
            )
    return SimsExport(p, sc_path, sidecar, images)
