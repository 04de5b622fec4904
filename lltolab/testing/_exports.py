"""Test doubles and builders for SIMS exports: an analytic sample and hand-made exports.

``ErfcSample`` (re-exported from the doubles module) is the analytic sample the simulated
SurfaceLab renders in these tests. ``image_sidecar`` and ``write_image_export`` make
small, valid BIF6 + sidecar exports for the export readers and the SurfaceLabExport device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lltolab.formats import Bif6Image, SimsSidecar, sidecar_path_for, write_bif6, write_sidecar

from ._doubles import ErfcSample, HistorySegment

__all__ = ["ErfcSample", "HistorySegment", "image_sidecar", "write_image_export"]


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
