"""SIMS acquisitions (image, line profile) with the quench-adequacy guard."""

import math
from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable

from lltolab.diffusion import BoundaryConductance, BulkDiffusivity
from lltolab.formulas import diffusion_length
from lltolab.vocabulary import BOUNDARY_WIDTH_M, Location, PlanName, SegmentSource

from ._common import PlanGen, lab_time, plan_md, record_segment
from ._validate import (
    check_bool,
    check_md,
    check_movable,
    check_number,
    check_positions,
    check_readable,
    check_record,
)

__all__ = ["sims_image", "sims_line_profile", "quench_guard", "QuenchInadequate",
           "stage_segments", "SUSPENDED_SOURCE"]

PIXEL_UM = 500.0 / 512.0
"""Default pixel of the 500 µm / 512 px raster, µm."""
ACQUISITION_S = 5 * 3600.0
"""Default image integration time, s."""


class QuenchInadequate(RuntimeError):
    """Imaging refused: the sample would diffuse more than half a pixel during acquisition."""


def quench_guard(
    temperature_K: float, acquisition_s: float, pixel_um: float, *,
    bulk: BulkDiffusivity | None = None, boundary: BoundaryConductance | None = None,
    delta_m: float = BOUNDARY_WIDTH_M,
) -> dict[str, float]:
    """Predicted diffusion lengths √(2 D t) (µm) during an acquisition, bulk and boundary.

    Returns ``{"bulk_um", "boundary_um", "limit_um", "ok"}`` with limit = half a pixel; the
    boundary value uses D*_gb = k δ (δ = 0.5 nm).
    """
    if not (math.isfinite(acquisition_s) and acquisition_s > 0):
        raise ValueError(f"acquisition_s must be > 0 s, got {acquisition_s!r}")
    if not (math.isfinite(pixel_um) and pixel_um > 0):
        raise ValueError(f"pixel_um must be > 0 µm, got {pixel_um!r}")
    bulk = bulk or BulkDiffusivity.paper_default()
    boundary = boundary or BoundaryConductance.paper_default()
    d_b = float(bulk(temperature_K))
    d_gb = float(boundary(temperature_K)) * delta_m
    l_b = diffusion_length(d_b, acquisition_s) * 1e6
    l_gb = diffusion_length(d_gb, acquisition_s) * 1e6
    limit = 0.5 * pixel_um
    return {"bulk_um": l_b, "boundary_um": l_gb, "limit_um": limit,
            "ok": float(max(l_b, l_gb) <= limit)}


def _guarded_md(stage_K: float, acquisition_s: float, pixel_um: float,
                allow_unfrozen: bool) -> dict[str, Any]:
    guard = quench_guard(stage_K, acquisition_s, pixel_um)
    if not guard["ok"]:
        text = (f"at {stage_K:.1f} K the sample diffuses {guard['bulk_um']:.3g} µm (bulk) during "
                f"{acquisition_s:.0f} s, more than half a pixel ({guard['limit_um']:.3g} µm)")
        if not allow_unfrozen:
            raise QuenchInadequate(f"imaging refused: {text}; quench the stage first "
                                   "(or pass allow_unfrozen=True to record anyway)")
        return {"quench_guard": guard, "guard_warning": text}
    return {"quench_guard": guard}


def _acquire(
    kind: str, sims: Any, stage: Any, clock: Any, positions_mm: Sequence[float] | None,
    acquisition_s: float, pixel_um: float, allow_unfrozen: bool, record: Any,
    md: dict[str, Any] | None, plan_name: str,
) -> PlanGen:
    stage_K = float((yield from bps.rd(stage)))
    extra = _guarded_md(stage_K, acquisition_s, pixel_um, allow_unfrozen)
    if record is not None:
        extra["sample_id"] = record.sample_id.get()
        extra["thermal_history"] = record.history()
    args = {"sims": sims, "stage": stage, "clock": clock, "acquisition_s": acquisition_s,
            "pixel_um": pixel_um, "allow_unfrozen": allow_unfrozen}
    if positions_mm is not None:
        args["positions_mm"] = list(positions_mm)
    _md = plan_md(plan_name, args, md, purpose=f"SIMS {kind.replace('_', ' ')}", **extra)

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        yield from bps.mv(sims.mode, kind)
        if positions_mm is not None:
            yield from bps.mv(sims.positions_mm, [float(p) for p in positions_mm])
        t0 = yield from lab_time(clock)
        # a suspension (e.g. LN2 run-out) rewinds to here: the acquisition is repeated
        yield from bps.checkpoint()
        yield from bps.trigger_and_read([sims, stage, clock])
        t1 = yield from lab_time(clock)
        end_K = float((yield from bps.rd(stage)))
        for seg in stage_segments(record, t0, t1, stage_K, end_K, plan_name):
            yield from record_segment(record, *seg)

    return (yield from inner())


def _check_acquisition_args(
    sims: Any, stage: Any, clock: Any, acquisition_s: Any, pixel_um: Any,
    allow_unfrozen: Any, record: Any, md: Any,
) -> tuple[float, float, dict[str, Any]]:
    check_readable("sims", sims)
    check_movable("stage", stage)
    check_movable("clock", clock)
    acquisition_s = check_number("acquisition_s", acquisition_s, unit="s", upper=30 * 86400.0)
    pixel_um = check_number("pixel_um", pixel_um, unit="µm", upper=1e4)
    check_bool("allow_unfrozen", allow_unfrozen)
    check_record(record)
    return acquisition_s, pixel_um, check_md(md)


SUSPENDED_SOURCE = SegmentSource.SUSPENDED
"""History source of the time an imaging run spent suspended (stage too warm)."""
RAMP_TOLERANCE_K = 0.5
"""Largest deviation (K) of a logged reading from the linear ramps the history keeps."""


def stage_segments(
    record: Any, t0: float, t1: float, start_K: float, end_K: float, source: str,
) -> list[tuple[float, float, float | list[float], str, bool, str]]:
    """History segments (start_s, end_s, K, location, immersed, source) of an acquisition.

    Without a suspension: one segment at the mean of the start and end readings. With one
    (the watchdog logged the stage warm during [t0, t1]), the span is split at the
    suspensions' ends, and every piece follows the logged stage readings as linear ramps
    ([K_start, K_end], within :data:`RAMP_TOLERANCE_K`); the suspended pieces have source
    :data:`SUSPENDED_SOURCE`, so the history holds how warm the sample really got.
    """
    suspended = record.suspensions(t0, t1) if record is not None else []
    if not suspended:
        return [(t0, t1, 0.5 * (start_K + end_K), Location.SIMS_STAGE, False, source)]
    points = dict(record.readings(t0, t1))
    points.setdefault(t0, start_K)
    points[t1] = end_K
    times = sorted(points)
    temps = [points[t] for t in times]
    cuts = sorted({t0, t1, *(b for span in suspended for b in span)})
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if b <= a:
            continue
        inside = any(sa <= a and b <= sb for sa, sb in suspended)
        label = SUSPENDED_SOURCE if inside else source
        ts = [a, *(t for t in times if a < t < b), b]
        ks = [_interp(t, times, temps) for t in ts]
        for i, j in _ramps(ts, ks, RAMP_TOLERANCE_K):
            temp: float | list[float] = ([ks[i], ks[j]] if abs(ks[j] - ks[i]) > 1e-6
                                         else ks[i])
            out.append((ts[i], ts[j], temp, Location.SIMS_STAGE, False, label))
    return out


def _interp(t: float, times: list[float], temps: list[float]) -> float:
    """Linear interpolation of the readings at ``t`` (held flat beyond the ends)."""
    if t <= times[0]:
        return temps[0]
    for k in range(1, len(times)):
        if t <= times[k]:
            ta, tb, ka, kb = times[k - 1], times[k], temps[k - 1], temps[k]
            return ka if tb == ta else ka + (kb - ka) * (t - ta) / (tb - ta)
    return temps[-1]


def _ramps(ts: list[float], ks: list[float], tol: float) -> list[tuple[int, int]]:
    """Greedy split of the readings into ramps (index pairs) within ``tol`` of each reading."""
    out, i = [], 0
    while i < len(ts) - 1:
        j = i + 1
        while j + 1 < len(ts) and all(
            abs(ks[i] + (ks[j + 1] - ks[i]) * (ts[m] - ts[i]) / (ts[j + 1] - ts[i]) - ks[m])
            <= tol for m in range(i + 1, j + 1)
        ):
            j += 1
        out.append((i, j))
        i = j
    return out


def sims_image(
    sims: Readable, stage: Movable, clock: Movable, *, acquisition_s: float = ACQUISITION_S,
    pixel_um: float = PIXEL_UM, allow_unfrozen: bool = False, record: Readable | None = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """One ⁶Li/⁷Li image (one run) after checking the quench is adequate.

    The guard predicts √(2 D t) over ``acquisition_s`` at the stage's present temperature
    (bulk and boundary laws) and refuses when it exceeds half a pixel — unless
    ``allow_unfrozen``, in which case the run's metadata carries ``guard_warning``.
    The start document carries the sample's thermal history so far (from ``record``).

    Parameters
    ----------
    sims : SurfaceLabExport
        The TOF-SIMS instrument's export folder (acquires the image).
    stage : CryoStage
        The cryo stage the sample sits on (its temperature feeds the guard).
    clock : LabClock
        Lab time of the acquisition.
    acquisition_s : float
        Integration time of the image (s), for the guard.
    pixel_um : float
        Pixel size (µm), for the guard.
    allow_unfrozen : bool
        Record even if the guard refuses (the run then carries ``guard_warning``).
    record : SampleRecord, optional
        The sample's thermal history (copied into the start document, extended).
    md : dict, optional
        Extra start metadata.
    """
    acquisition_s, pixel_um, md = _check_acquisition_args(
        sims, stage, clock, acquisition_s, pixel_um, allow_unfrozen, record, md)
    return (yield from _acquire("image", sims, stage, clock, None, acquisition_s, pixel_um,
                                allow_unfrozen, record, md, PlanName.SIMS_IMAGE))


def sims_line_profile(
    sims: Readable, stage: Movable, clock: Movable, positions_mm: Sequence[float], *,
    acquisition_s: float = ACQUISITION_S, pixel_um: float = PIXEL_UM,
    allow_unfrozen: bool = False, record: Readable | None = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """A line profile at ``positions_mm`` along the diffusion direction (one run, guarded).

    Parameters
    ----------
    sims : SurfaceLabExport
        The TOF-SIMS instrument's export folder (acquires the profile).
    stage : CryoStage
        The cryo stage the sample sits on (its temperature feeds the guard).
    clock : LabClock
        Lab time of the acquisition.
    positions_mm : sequence of float
        Distances from the liquid level (mm), e.g. 0 … 6 mm.
    acquisition_s : float
        Integration time (s), for the guard.
    pixel_um : float
        Pixel size (µm), for the guard.
    allow_unfrozen : bool
        Record even if the guard refuses (the run then carries ``guard_warning``).
    record : SampleRecord, optional
        The sample's thermal history (copied into the start document, extended).
    md : dict, optional
        Extra start metadata.
    """
    acquisition_s, pixel_um, md = _check_acquisition_args(
        sims, stage, clock, acquisition_s, pixel_um, allow_unfrozen, record, md)
    pos = check_positions("positions_mm", positions_mm)
    return (yield from _acquire("line_profile", sims, stage, clock, pos, acquisition_s,
                                pixel_um, allow_unfrozen, record, md,
                                PlanName.SIMS_LINE_PROFILE))
