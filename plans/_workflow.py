"""The whole exchange → image → anneal → re-image sequence, and the Arrhenius campaign."""

from collections.abc import Sequence
from typing import Any

from bluesky.protocols import Movable, Readable

from lltolab.devices import MAX_WAIT_S
from lltolab.diffusion import BoundaryConductance, BulkDiffusivity
from lltolab.formulas import series_deff
from lltolab.vocabulary import Location

from ._common import QUENCH_K, ROOM_K, PlanGen
from ._exchange import isotope_exchange
from ._sims import ACQUISITION_S, sims_image, sims_line_profile
from ._thermal import anneal, quench
from ._transfer import transfer
from ._validate import (
    check_count,
    check_md,
    check_movable,
    check_number,
    check_positions,
    check_readable,
    check_record,
)

__all__ = [
    "exchange_quench_image_anneal_reimage",
    "arrhenius_campaign",
    "image_cycle",
    "anneal_duration_for_length",
    "DEFAULT_PROFILE_MM",
]

DEFAULT_PROFILE_MM = tuple(round(0.25 * i, 2) for i in range(1, 25))
"""Line-profile positions 0.25 … 6 mm from the liquid level."""


def _check_devices(**devices: Any) -> None:
    for name, dev in devices.items():
        (check_readable if name == "sims" else check_movable)(name, dev)


def _check_cycle_args(
    stage: Any, profile_positions_mm: Any, quench_K: Any, acquisition_s: Any, record: Any,
) -> tuple[list[float] | None, float, float]:
    positions = check_positions("profile_positions_mm", profile_positions_mm, allow_none=True)
    quench_K = check_number("quench_K", quench_K, unit="K")
    stage.check_value(quench_K)
    stage.check_value(ROOM_K)
    acquisition_s = check_number("acquisition_s", acquisition_s, unit="s", upper=30 * 86400.0)
    check_record(record)
    return positions, quench_K, acquisition_s


def image_cycle(
    handler: Movable, clock: Movable, stage: Movable, sims: Readable, *,
    profile_positions_mm: Sequence[float] | None = DEFAULT_PROFILE_MM,
    quench_K: float = QUENCH_K, acquisition_s: float = ACQUISITION_S,
    record: Readable | None = None, md: dict[str, Any] | None = None,
) -> PlanGen:
    """Transfer to the SIMS stage, quench, image (+ line profile), warm up, take out.

    Parameters
    ----------
    handler : SampleHandler
        Moves the sample (operator steps).
    clock : LabClock
        Lab time.
    stage : CryoStage
        The SIMS cryo stage.
    sims : SurfaceLabExport
        The TOF-SIMS instrument's export folder.
    profile_positions_mm : sequence of float or None
        Line-profile positions (mm) after the image; None or empty for the image only.
    quench_K : float
        Stage temperature for imaging (K).
    acquisition_s : float
        Image integration time (s), for the quench guard.
    record : SampleRecord, optional
        The sample's thermal history.
    md : dict, optional
        Extra start metadata of every run.

    Returns
    -------
    list of str
        The uids of the runs it made (several runs).
    """
    _check_devices(handler=handler, clock=clock, stage=stage, sims=sims)
    positions, quench_K, acquisition_s = _check_cycle_args(
        stage, profile_positions_mm, quench_K, acquisition_s, record)
    md = check_md(md)
    uids = []
    uids.append((yield from transfer(handler, clock, Location.SIMS_STAGE, record=record, md=md)))
    uids.append((yield from quench(stage, clock, quench_K, record=record, md=md)))
    uids.append((yield from sims_image(sims, stage, clock, acquisition_s=acquisition_s,
                                       record=record, md=md)))
    if positions:
        uids.append((yield from sims_line_profile(sims, stage, clock, positions,
                                                  acquisition_s=acquisition_s,
                                                  record=record, md=md)))
    uids.append((yield from quench(stage, clock, ROOM_K, record=record, md=md)))
    uids.append((yield from transfer(handler, clock, Location.STORAGE, record=record, md=md)))
    return uids


def exchange_quench_image_anneal_reimage(
    cell: Movable, handler: Movable, clock: Movable, stage: Movable, furnace: Movable,
    sims: Readable, *, exchange_s: float = 59 * 3600.0, anneal_K: float = 473.15,
    anneal_s: float = 3.8 * 3600, cycles: int = 1,
    profile_positions_mm: Sequence[float] | None = DEFAULT_PROFILE_MM,
    quench_K: float = QUENCH_K, acquisition_s: float = ACQUISITION_S,
    record: Readable | None = None, md: dict[str, Any] | None = None,
) -> PlanGen:
    """The workflow: exchange → quench → image → (anneal → quench → re-image) × ``cycles``.

    Every step is its own run (exchange, transfers, quench/warm-up, image, line profile,
    anneal), all sharing ``md`` (e.g. the sample id); image runs carry the thermal history.
    All arguments are checked before the first step starts.

    Parameters
    ----------
    cell : ExchangeCell
        The ⁶LiNO₃ exchange bath.
    handler : SampleHandler
        Moves the sample (operator steps).
    clock : LabClock
        Lab waits.
    stage : CryoStage
        The SIMS cryo stage.
    furnace : Furnace
        The annealing furnace.
    sims : SurfaceLabExport
        The TOF-SIMS instrument's export folder.
    exchange_s : float
        Exchange time in the ⁶LiNO₃ bath (s).
    anneal_K : float
        Anneal temperature of each cycle (K).
    anneal_s : float
        Anneal time of each cycle (s).
    cycles : int
        Number of anneal + re-image cycles (0 … 100).
    profile_positions_mm : sequence of float or None
        Line-profile positions (mm) after each image; None for images only.
    quench_K : float
        Stage temperature for imaging (K).
    acquisition_s : float
        Image integration time (s), for the quench guard.
    record : SampleRecord, optional
        The sample's thermal history.
    md : dict, optional
        Extra start metadata of every run.

    Returns
    -------
    list of str
        The uids of all runs, in order.
    """
    _check_devices(cell=cell, handler=handler, clock=clock, stage=stage, furnace=furnace,
                   sims=sims)
    exchange_s = check_number("exchange_s", exchange_s, unit="s", upper=MAX_WAIT_S)
    anneal_K = check_number("anneal_K", anneal_K, unit="K")
    anneal_s = check_number("anneal_s", anneal_s, unit="s", upper=MAX_WAIT_S)
    cycles = check_count("cycles", cycles, 0, 100)
    furnace.check_value(anneal_K)
    furnace.check_value(ROOM_K)  # the safe setpoint after each anneal
    positions, quench_K, acquisition_s = _check_cycle_args(
        stage, profile_positions_mm, quench_K, acquisition_s, record)
    md = check_md(md)
    md.setdefault("workflow", "exchange_quench_image_anneal_reimage")
    uids = [(yield from isotope_exchange(cell, handler, clock, exchange_s, record=record,
                                         md=md))]
    cycle = dict(profile_positions_mm=positions, quench_K=quench_K,
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

    D_eff from the series model of bulk and grain-boundary resistances (docs/science.md) with
    the effective grain size (≈ 1.4 × the EBSD mean diameter).

    Parameters
    ----------
    temperature_K : float
        Anneal temperature (K).
    target_length_m : float
        Wanted diffusion length (m).
    grain_size_m : float
        Effective grain size (m).
    bulk, boundary : optional
        Bulk diffusivity and boundary conductance laws (default: the published ones).
    """
    check_number("temperature_K", temperature_K, unit="K")
    check_number("target_length_m", target_length_m, unit="m")
    check_number("grain_size_m", grain_size_m, unit="m")
    bulk = bulk or BulkDiffusivity.paper_default()
    boundary = boundary or BoundaryConductance.paper_default()
    d_eff = float(series_deff(float(bulk(temperature_K)), float(boundary(temperature_K)),
                              grain_size_m))
    return target_length_m**2 / d_eff


def arrhenius_campaign(
    cell: Movable, handler: Movable, clock: Movable, stage: Movable, furnace: Movable,
    sims: Readable, temperatures_K: Sequence[float], *,
    durations_s: Sequence[float] | None = None, target_length_m: float = 0.5e-3,
    exchange_s: float = 59 * 3600.0,
    profile_positions_mm: Sequence[float] | None = DEFAULT_PROFILE_MM,
    max_duration_s: float = 14 * 86400.0, record: Readable | None = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """Exchange and image once, then anneal at each temperature and re-image (many runs).

    Durations are given, or chosen so that the predicted √(D_eff t) of each anneal equals
    ``target_length_m`` (bounded by ``max_duration_s``). All arguments are checked before
    the exchange starts.

    Parameters
    ----------
    cell : ExchangeCell
        The ⁶LiNO₃ exchange bath.
    handler : SampleHandler
        Moves the sample (operator steps).
    clock : LabClock
        Lab waits.
    stage : CryoStage
        The SIMS cryo stage.
    furnace : Furnace
        The annealing furnace.
    sims : SurfaceLabExport
        The TOF-SIMS instrument's export folder.
    temperatures_K : sequence of float
        Anneal temperatures (K), one anneal + re-image cycle each (1 … 100).
    durations_s : sequence of float, optional
        Anneal times (s), one per temperature; default: from ``target_length_m``.
    target_length_m : float
        Diffusion length √(D_eff t) each anneal should reach (m), without ``durations_s``.
    exchange_s : float
        Exchange time in the ⁶LiNO₃ bath (s).
    profile_positions_mm : sequence of float or None
        Line-profile positions (mm) after each image; None for images only.
    max_duration_s : float
        Longest chosen anneal (s).
    record : SampleRecord, optional
        The sample's thermal history.
    md : dict, optional
        Extra start metadata of every run.

    Returns
    -------
    list of str
        The uids of all runs, in order.
    """
    _check_devices(cell=cell, handler=handler, clock=clock, stage=stage, furnace=furnace,
                   sims=sims)
    if isinstance(temperatures_K, str | bytes) or not isinstance(temperatures_K, Sequence):
        raise TypeError(f"temperatures_K must be a sequence of kelvin, got {temperatures_K!r}")
    if not temperatures_K:
        raise ValueError("temperatures_K must hold at least one temperature")
    if len(temperatures_K) > 100:
        raise ValueError(f"temperatures_K holds {len(temperatures_K)} values, limit 100")
    temps = [check_number("temperatures_K", t, unit="K") for t in temperatures_K]
    for t in temps:
        furnace.check_value(t)
    target_length_m = check_number("target_length_m", target_length_m, unit="m", upper=1.0)
    exchange_s = check_number("exchange_s", exchange_s, unit="s", upper=MAX_WAIT_S)
    max_duration_s = check_number("max_duration_s", max_duration_s, unit="s",
                                  upper=MAX_WAIT_S)
    if durations_s is None:
        durations = [min(anneal_duration_for_length(t, target_length_m), max_duration_s)
                     for t in temps]
    else:
        if isinstance(durations_s, str | bytes) or not isinstance(durations_s, Sequence):
            raise TypeError(f"durations_s must be a sequence of seconds, got {durations_s!r}")
        durations = [check_number("durations_s", d, unit="s", upper=MAX_WAIT_S)
                     for d in durations_s]
        if len(durations) != len(temps):
            raise ValueError(f"durations_s has {len(durations)} values for {len(temps)} "
                             "temperatures")
    furnace.check_value(ROOM_K)  # the safe setpoint after each anneal
    positions, _, _ = _check_cycle_args(stage, profile_positions_mm, QUENCH_K, ACQUISITION_S,
                                        record)
    md = check_md(md)
    md.setdefault("workflow", "arrhenius_campaign")
    md["campaign_temperatures_K"] = temps
    md["campaign_durations_s"] = durations
    uids = [(yield from isotope_exchange(cell, handler, clock, exchange_s, record=record,
                                         md=md))]
    cycle = dict(profile_positions_mm=positions, record=record)
    uids += yield from image_cycle(handler, clock, stage, sims, md={**md, "cycle": 0}, **cycle)
    for k, (t, d) in enumerate(zip(temps, durations, strict=True), start=1):
        uids.append((yield from anneal(furnace, handler, clock, t, d, record=record,
                                       md={**md, "cycle": k})))
        uids += yield from image_cycle(handler, clock, stage, sims, md={**md, "cycle": k},
                                       **cycle)
    return uids
