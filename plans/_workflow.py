"""The whole exchange → image → anneal → re-image sequence, and the Arrhenius campaign."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lltolab.diffusion import BoundaryConductance, BulkDiffusivity
from lltolab.formulas import series_deff
from lltolab.vocabulary import Location

from ._common import QUENCH_K, ROOM_K, PlanGen
from ._exchange import isotope_exchange
from ._sims import ACQUISITION_S, sims_image, sims_line_profile
from ._thermal import anneal, quench
from ._transfer import transfer

__all__ = [
    "exchange_quench_image_anneal_reimage",
    "arrhenius_campaign",
    "image_cycle",
    "anneal_duration_for_length",
    "DEFAULT_PROFILE_MM",
]

DEFAULT_PROFILE_MM = tuple(round(0.25 * i, 2) for i in range(1, 25))
"""Line-profile positions 0.25 … 6 mm from the liquid level."""


def image_cycle(
    handler: Any, clock: Any, stage: Any, sims: Any, *,
    profile_positions_mm: Sequence[float] | None = DEFAULT_PROFILE_MM,
    quench_K: float = QUENCH_K, acquisition_s: float = ACQUISITION_S, record: Any = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """Transfer to the SIMS stage, quench, image (+ line profile), warm up, take out.

    Returns the uids of the runs it made (several runs).
    """
    uids = []
    uids.append((yield from transfer(handler, clock, Location.SIMS_STAGE, record=record, md=md)))
    uids.append((yield from quench(stage, clock, quench_K, record=record, md=md)))
    uids.append((yield from sims_image(sims, stage, clock, acquisition_s=acquisition_s,
                                       record=record, md=md)))
    if profile_positions_mm:
        uids.append((yield from sims_line_profile(sims, stage, clock, profile_positions_mm,
                                                  acquisition_s=acquisition_s,
                                                  record=record, md=md)))
    uids.append((yield from quench(stage, clock, ROOM_K, record=record, md=md)))
    uids.append((yield from transfer(handler, clock, Location.STORAGE, record=record, md=md)))
    return uids


def exchange_quench_image_anneal_reimage(
    cell: Any, handler: Any, clock: Any, stage: Any, furnace: Any, sims: Any, *,
    exchange_s: float = 59 * 3600.0, anneal_K: float = 473.15, anneal_s: float = 3.8 * 3600,
    cycles: int = 1, profile_positions_mm: Sequence[float] | None = DEFAULT_PROFILE_MM,
    quench_K: float = QUENCH_K, acquisition_s: float = ACQUISITION_S, record: Any = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """Exchange → quench → image → (anneal → quench → re-image) × ``cycles`` (docs/science.md §1).

    Every step is its own run (exchange, transfers, quench/warm-up, image, line profile,
    anneal), all sharing ``md`` (e.g. the sample id); image runs carry the thermal history.

    Parameters
    ----------
    cell, handler, clock, stage, furnace, sims
        ExchangeCell, SampleHandler, LabClock, CryoStage, Furnace, SurfaceLabExport.
    exchange_s : float
        Exchange time in the ⁶LiNO₃ bath (s).
    anneal_K, anneal_s : float
        Anneal temperature (K) and time (s) of each cycle.
    cycles : int
        Number of anneal + re-image cycles (>= 0).
    profile_positions_mm : sequence of float or None
        Line-profile positions (mm) after each image; None for images only.
    quench_K : float
        Stage temperature for imaging (K).
    acquisition_s : float
        Image integration time (s), for the quench guard.
    record : SampleRecord, optional
    md : dict, optional

    Returns
    -------
    list of str
        The uids of all runs, in order.
    """
    if not (isinstance(cycles, int) and 0 <= cycles <= 100):
        raise ValueError(f"cycles must be an integer in [0, 100], got {cycles!r}")
    for name, value in (("exchange_s", exchange_s), ("anneal_K", anneal_K),
                        ("anneal_s", anneal_s)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    furnace.check_value(anneal_K)
    stage.check_value(quench_K)
    md = dict(md or {})
    md.setdefault("workflow", "exchange_quench_image_anneal_reimage")
    uids = [(yield from isotope_exchange(cell, handler, clock, exchange_s, record=record,
                                         md=md))]
    cycle = dict(profile_positions_mm=profile_positions_mm, quench_K=quench_K,
                 acquisition_s=acquisition_s, record=record)
    uids += yield from image_cycle(handler, clock, stage, sims, md={**md, "cycle": 0}, **cycle)
    for k in range(1, cycles + 1):
        uids.append((yield from anneal(furnace, handler, clock, anneal_K, anneal_s,
                                       record=record, md={**md, "cycle": k})))
        uids += yield from image_cycle(handler, clock, stage, sims, md={**md, "cycle": k},
                                       **cycle)
    return uids


def anneal_duration_for_length(
    temperature_K: float, target_length_m: float, *, grain_size_m: float = 22e-6,
    bulk: BulkDiffusivity | None = None, boundary: BoundaryConductance | None = None,
) -> float:
    """Anneal time (s) for which the predicted √(D_eff t) equals ``target_length_m``.

    D_eff from the series model (eq. 6) with the effective grain size (≈ 1.4 × the EBSD mean
    diameter, docs/science.md §5).
    """
    if not (math.isfinite(target_length_m) and target_length_m > 0):
        raise ValueError(f"target_length_m must be > 0 m, got {target_length_m!r}")
    bulk = bulk or BulkDiffusivity.paper_default()
    boundary = boundary or BoundaryConductance.paper_default()
    d_eff = float(series_deff(float(bulk(temperature_K)), float(boundary(temperature_K)),
                              grain_size_m))
    return target_length_m**2 / d_eff


def arrhenius_campaign(
    cell: Any, handler: Any, clock: Any, stage: Any, furnace: Any, sims: Any,
    temperatures_K: Sequence[float], *, durations_s: Sequence[float] | None = None,
    target_length_m: float = 0.5e-3, exchange_s: float = 59 * 3600.0,
    profile_positions_mm: Sequence[float] | None = DEFAULT_PROFILE_MM,
    max_duration_s: float = 14 * 86400.0, record: Any = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """Exchange and image once, then anneal at each temperature and re-image (many runs).

    Durations are given, or chosen so that the predicted √(D_eff t) of each anneal equals
    ``target_length_m`` (bounded by ``max_duration_s``).

    Returns
    -------
    list of str
        The uids of all runs, in order.
    """
    temps = [float(t) for t in temperatures_K]
    if not temps:
        raise ValueError("temperatures_K must hold at least one temperature")
    for t in temps:
        furnace.check_value(t)
    if durations_s is None:
        durations = [min(anneal_duration_for_length(t, target_length_m), max_duration_s)
                     for t in temps]
    else:
        durations = [float(d) for d in durations_s]
        if len(durations) != len(temps):
            raise ValueError(f"durations_s has {len(durations)} values for {len(temps)} "
                             "temperatures")
    md = dict(md or {})
    md.setdefault("workflow", "arrhenius_campaign")
    md["campaign_temperatures_K"] = temps
    md["campaign_durations_s"] = durations
    uids = [(yield from isotope_exchange(cell, handler, clock, exchange_s, record=record,
                                         md=md))]
    cycle = dict(profile_positions_mm=profile_positions_mm, record=record)
    uids += yield from image_cycle(handler, clock, stage, sims, md={**md, "cycle": 0}, **cycle)
    for k, (t, d) in enumerate(zip(temps, durations, strict=True), start=1):
        uids.append((yield from anneal(furnace, handler, clock, t, d, record=record,
                                       md={**md, "cycle": k})))
        uids += yield from image_cycle(handler, clock, stage, sims, md={**md, "cycle": k},
                                       **cycle)
    return uids
