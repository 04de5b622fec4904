"""Temperature steps: quench (cool the SIMS stage), anneal in the furnace, storage."""

import math
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable
from bluesky.utils import FailedStatus

from lltolab.comm import InstrumentError
from lltolab.devices import FURNACE_STATUS_BITS, MAX_WAIT_S

from ._common import QUENCH_K, ROOM_K, PlanGen, lab_time, plan_md, record_segment
from ._validate import check_bool, check_md, check_movable, check_number, check_record

__all__ = ["quench", "anneal", "store", "AnnealAborted"]


class AnnealAborted(RuntimeError):
    """The furnace reported over-temperature or a sensor/heater fault during an anneal."""


def _fault_text(exc: BaseException) -> str:
    """The instrument's message (a failed move's status carries it as the cause)."""
    cause = exc.__cause__ if isinstance(exc, FailedStatus) and exc.__cause__ else exc
    return str(cause)


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def quench(
    stage: Movable, clock: Movable, temperature_K: float = QUENCH_K, *,
    record: Readable | None = None, md: dict[str, Any] | None = None,
) -> PlanGen:
    """Bring the cryo stage (with the sample on it) to ``temperature_K`` and let it settle.

    Also used to warm the stage up again (``temperature_K=295.15``). The stage's own limits
    reject impossible targets before any command is sent.

    Parameters
    ----------
    stage : CryoStage
        The cryo stage (with the sample on it).
    clock : LabClock
        Lab time of the change.
    temperature_K : float
        Target (K); default −110 °C.
    record : SampleRecord, optional
        Receives the temperature change as a history segment.
    md : dict, optional
        Extra start metadata.
    """
    check_movable("stage", stage)
    check_movable("clock", clock)
    temperature_K = check_number("temperature_K", temperature_K, unit="K")
    stage.check_value(temperature_K)
    check_record(record)
    md = check_md(md)
    _md = plan_md("quench", {"stage": stage, "clock": clock, "temperature_K": temperature_K},
                  md, purpose="stage temperature change")

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        t0 = yield from lab_time(clock)
        yield from bps.trigger_and_read([stage, clock])
        start_K = float((yield from bps.rd(stage)))
        yield from bps.mv(stage, float(temperature_K))
        t1 = yield from lab_time(clock)
        yield from bps.trigger_and_read([stage, clock])
        end_K = float((yield from bps.rd(stage)))
        yield from record_segment(record, t0, t1, [start_K, end_K], "sims_stage", False,
                                  "quench")

    return (yield from inner())


def anneal(
    furnace: Movable, handler: Movable, clock: Movable, temperature_K: float,
    duration_s: float, *, check_interval_s: float = 600.0, safe_K: float = ROOM_K,
    cool_furnace: bool = True, record: Readable | None = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """Heat the furnace, put the sample in for ``duration_s``, take it out to cool (one run).

    During the hold the furnace is read every ``check_interval_s`` of lab time (stream
    ``primary``); over-temperature, sensor break, loop break or heater failure abort the
    anneal: the furnace is commanded to ``safe_K``, the sample (if in) is taken out and its
    time inside recorded in the history (source ``anneal_aborted``), and the run ends with
    :class:`AnnealAborted` (events taken so far are kept).

    Parameters
    ----------
    furnace : Furnace
        The annealing furnace.
    handler : SampleHandler
        Puts the sample into the furnace and takes it out (operator steps).
    clock : LabClock
        Lab waits of the hold.
    temperature_K : float
        Anneal temperature (K).
    duration_s : float
        Time the sample spends in the hot furnace (s).
    check_interval_s : float
        Lab seconds between furnace checks.
    safe_K : float
        Setpoint commanded on a fault and, with ``cool_furnace``, at the end.
    cool_furnace : bool
        Command ``safe_K`` (without waiting) after the sample is out.
    record : SampleRecord, optional
        Receives the anneal as a history segment.
    md : dict, optional
        Extra start metadata.
    """
    for name, dev in (("furnace", furnace), ("handler", handler), ("clock", clock)):
        check_movable(name, dev)
    temperature_K = check_number("temperature_K", temperature_K, unit="K")
    duration_s = check_number("duration_s", duration_s, unit="s", upper=MAX_WAIT_S)
    check_interval_s = check_number("check_interval_s", check_interval_s, unit="s",
                                    upper=MAX_WAIT_S)
    safe_K = check_number("safe_K", safe_K, unit="K")
    furnace.check_value(temperature_K)
    furnace.check_value(safe_K)
    check_bool("cool_furnace", cool_furnace)
    check_record(record)
    md = check_md(md)
    _md = plan_md("anneal", {"furnace": furnace, "handler": handler, "clock": clock,
                             "temperature_K": temperature_K, "duration_s": duration_s,
                             "check_interval_s": check_interval_s, "safe_K": safe_K}, md,
                  purpose="anneal")

    inside: dict[str, Any] = {"t0": None, "readings": []}  # the sample's time in the furnace

    def abort(reason: str, cause: BaseException | None = None) -> PlanGen:
        yield from bps.abs_set(furnace.setpoint, float(safe_K), wait=True)
        if inside["t0"] is not None:  # take the sample out; its history keeps the partial anneal
            yield from bps.mv(handler, "storage")
            t1 = yield from lab_time(clock)
            known = inside["readings"] or [float(temperature_K)]
            yield from record_segment(record, inside["t0"], t1, sum(known) / len(known),
                                      "furnace", False, "anneal_aborted")
        raise AnnealAborted(
            f"anneal at {temperature_K} K aborted: {reason}; "
            f"setpoint set to {safe_K} K"
        ) from cause

    def check() -> PlanGen:
        try:
            # a sensor break makes the PV read itself fail (InstrumentReportedError)
            yield from bps.trigger_and_read([furnace, clock])
            word = int((yield from bps.rd(furnace.status)))
        except (InstrumentError, FailedStatus) as exc:
            yield from abort(_fault_text(exc), exc)
        faults = [text for bit, text in FURNACE_STATUS_BITS.items() if word & (1 << bit)]
        if faults:
            yield from abort(f"furnace reports {', '.join(faults)}")
        return float((yield from bps.rd(furnace)))

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        try:
            yield from bps.mv(furnace, float(temperature_K))
        except (InstrumentError, FailedStatus) as exc:  # fault (or no settling) while heating
            yield from abort(_fault_text(exc), exc)
        yield from check()
        yield from bps.mv(handler, "furnace")
        t0 = yield from lab_time(clock)
        inside["t0"] = t0
        readings = inside["readings"]
        remaining = float(duration_s)
        while remaining > 0:
            step = min(remaining, float(check_interval_s))
            yield from bps.mv(clock, step)
            remaining -= step
            readings.append((yield from check()))
        yield from bps.mv(handler, "storage")
        inside["t0"] = None
        t1 = yield from lab_time(clock)
        if cool_furnace:
            yield from bps.abs_set(furnace.setpoint, float(safe_K), wait=True)
        mean_K = sum(readings) / len(readings)
        yield from record_segment(record, t0, t1, mean_K, "furnace", False, "anneal")

    return (yield from inner())


def store(
    clock: Movable, duration_s: float, *, temperature_K: float = ROOM_K,
    record: Readable | None = None, md: dict[str, Any] | None = None,
) -> PlanGen:
    """Keep the sample in (Ar) storage for ``duration_s`` at room temperature (one run).

    Parameters
    ----------
    clock : LabClock
        Lab wait of the storage.
    duration_s : float
        Storage time (s), e.g. 16 days.
    temperature_K : float
        Storage temperature recorded in the history (K).
    record : SampleRecord, optional
        Receives the storage as a history segment.
    md : dict, optional
        Extra start metadata.
    """
    check_movable("clock", clock)
    duration_s = check_number("duration_s", duration_s, unit="s", upper=MAX_WAIT_S)
    temperature_K = check_number("temperature_K", temperature_K, unit="K", upper=1000.0)
    check_record(record)
    md = check_md(md)
    _md = plan_md("store", {"clock": clock, "duration_s": duration_s,
                            "temperature_K": temperature_K}, md, purpose="storage")

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        t0 = yield from lab_time(clock)
        yield from bps.trigger_and_read([clock])
        yield from bps.mv(clock, float(duration_s))
        t1 = yield from lab_time(clock)
        yield from bps.trigger_and_read([clock])
        yield from record_segment(record, t0, t1, float(temperature_K), "storage", False,
                                  "store")

    return (yield from inner())
