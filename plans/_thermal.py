"""Temperature steps: quench (cool the SIMS stage), anneal in the furnace, storage."""

import logging
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable
from bluesky.utils import FailedStatus, RequestAbort, RequestStop

from lltolab.comm import InstrumentError
from lltolab.devices import MAX_WAIT_S
from lltolab.vocabulary import Location, PlanName, SegmentSource

from ._common import QUENCH_K, ROOM_K, PlanGen, lab_time, plan_md, record_segment
from ._validate import check_bool, check_md, check_movable, check_number, check_record

__all__ = ["quench", "anneal", "store", "AnnealAborted"]

logger = logging.getLogger(__name__)


class AnnealAborted(RuntimeError):
    """An anneal ended early: the furnace reported a fault or could not be read or commanded.

    Attributes
    ----------
    safety_failures : list of str
        The safety steps of the abort that failed (empty when all of them succeeded).
    """

    safety_failures: list[str]

    def __init__(self, message: str, safety_failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.safety_failures = list(safety_failures or [])


def _fault_text(exc: BaseException) -> str:
    """The instrument's message (a failed move's status carries it as the cause)."""
    cause = exc.__cause__ if isinstance(exc, FailedStatus) and exc.__cause__ else exc
    return str(cause)


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
    _md = plan_md(PlanName.QUENCH, {"stage": stage, "clock": clock, "temperature_K": temperature_K},
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
        yield from record_segment(record, t0, t1, [start_K, end_K], Location.SIMS_STAGE,
                                  False, SegmentSource.QUENCH)

    return (yield from inner())


def anneal(
    furnace: Movable, handler: Movable, clock: Movable, temperature_K: float,
    duration_s: float, *, check_interval_s: float = 600.0, safe_K: float = ROOM_K,
    cool_furnace: bool = True, record: Readable | None = None,
    md: dict[str, Any] | None = None,
) -> PlanGen:
    """Heat the furnace, put the sample in for ``duration_s``, take it out to cool (one run).

    During the hold the furnace is read every ``check_interval_s`` of lab time (stream
    ``primary``); a fault the furnace reports (its ``fault`` signal: over-temperature, sensor
    break, loop break, heater failure) or a failure to read or command it aborts the anneal.
    The abort takes three safety steps, each whatever happened to the others: the furnace is
    commanded to ``safe_K`` (one write, bounded by the link's timeout), the sample is asked
    out of the furnace (to ``"storage"``, always, even when it may not have gone in), and the
    time it spent inside is recorded in the history (source ``anneal_aborted``, at the last
    temperature read inside, or the anneal temperature when none was). The run then ends with
    :class:`AnnealAborted` naming any safety step that failed (events taken so far are kept).
    Any other failure during the hold ends it the same way; when the operator aborts or stops
    the run during the hold, the same safety steps run before the run ends.

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
        Setpoint commanded on a fault and, with ``cool_furnace``, at the end (K, finite and
        within the furnace's limits; checked before the run starts).
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
    _md = plan_md(PlanName.ANNEAL, {"furnace": furnace, "handler": handler, "clock": clock,
                             "temperature_K": temperature_K, "duration_s": duration_s,
                             "check_interval_s": check_interval_s, "safe_K": safe_K}, md,
                  purpose="anneal")

    # the sample's time in the furnace: t0 once it is inside, the last temperature read since
    inside: dict[str, Any] = {"t0": None, "last_K": None}

    def guarded(step: str, plan: PlanGen, failures: list[str]) -> PlanGen:
        """Run one safety step; a failure is noted and never skips the steps after it."""
        try:
            return (yield from plan)
        except (RequestAbort, RequestStop):
            raise  # the operator takes over
        except Exception as exc:  # noqa: BLE001 - every safety step must be attempted
            logger.error("anneal abort: %s failed: %s", step, exc)
            failures.append(f"{step} failed ({_fault_text(exc)})")
            return None

    def safety_steps() -> PlanGen:
        """Safe setpoint, sample out, history: each attempted; return the failures."""
        failures: list[str] = []
        # 1. the furnace to its safe setpoint (one write: bounded by the link's timeout)
        yield from guarded(f"commanding the safe setpoint {safe_K} K",
                           bps.abs_set(furnace.setpoint, float(safe_K), wait=True), failures)
        # 2. the sample out: it must not stay in a furnace that is out of control
        yield from guarded("moving the sample out", bps.mv(handler, Location.STORAGE), failures)
        # 3. what the sample went through, even if it could not be moved out
        if inside["t0"] is not None:
            t1 = yield from guarded("reading the lab clock", lab_time(clock), failures)
            if t1 is None:
                t1 = inside["t0"]
            known_K = inside["last_K"] if inside["last_K"] is not None else float(temperature_K)
            yield from guarded(
                "recording the thermal history",
                record_segment(record, inside["t0"], float(t1), float(known_K), Location.FURNACE,
                               False, SegmentSource.ANNEAL_ABORTED),
                failures,
            )
        inside["t0"] = None
        return failures

    def abort(reason: str, cause: BaseException | None = None) -> PlanGen:
        failures = yield from safety_steps()
        done = "; ".join(failures) if failures else f"sample out, setpoint set to {safe_K} K"
        raise AnnealAborted(
            f"anneal at {temperature_K} K aborted: {reason}; {done}", failures
        ) from cause

    def check() -> PlanGen:
        """Read the furnace; abort on a reported fault or a failed read."""
        try:
            # a sensor break makes the PV read itself fail (InstrumentReportedError)
            yield from bps.trigger_and_read([furnace, clock])
            value_K = float((yield from bps.rd(furnace)))
            inside["last_K"] = value_K if inside["t0"] is not None else inside["last_K"]
            fault = str((yield from bps.rd(furnace.fault)))
        except (InstrumentError, FailedStatus) as exc:
            yield from abort(_fault_text(exc), exc)
        if fault:
            yield from abort(f"furnace reports {fault}")
        return value_K

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        try:
            yield from bps.mv(furnace, float(temperature_K))
        except (InstrumentError, FailedStatus) as exc:  # fault (or no settling) while heating
            yield from abort(_fault_text(exc), exc)
        yield from check()
        yield from bps.mv(handler, Location.FURNACE)
        t0 = inside["t0"] = yield from lab_time(clock)
        readings: list[float] = []
        remaining = float(duration_s)
        try:
            while remaining > 0:
                step = min(remaining, float(check_interval_s))
                yield from bps.mv(clock, step)
                remaining -= step
                readings.append((yield from check()))
        except AnnealAborted:
            raise
        except (RequestAbort, RequestStop):
            # the run is aborted or stopped by the operator: the sample still comes out
            yield from safety_steps()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure during the hold ends it safely
            yield from abort(f"{type(exc).__name__} during the hold: {_fault_text(exc)}", exc)
        yield from bps.mv(handler, Location.STORAGE)
        inside["t0"] = None
        t1 = yield from lab_time(clock)
        if cool_furnace:
            yield from bps.abs_set(furnace.setpoint, float(safe_K), wait=True)
        mean_K = sum(readings) / len(readings)
        yield from record_segment(record, t0, t1, mean_K, Location.FURNACE, False,
                                  SegmentSource.ANNEAL)

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
    _md = plan_md(PlanName.STORE, {"clock": clock, "duration_s": duration_s,
                            "temperature_K": temperature_K}, md, purpose="storage")

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        t0 = yield from lab_time(clock)
        yield from bps.trigger_and_read([clock])
        yield from bps.mv(clock, float(duration_s))
        t1 = yield from lab_time(clock)
        yield from bps.trigger_and_read([clock])
        yield from record_segment(record, t0, t1, float(temperature_K), Location.STORAGE,
                                  False, SegmentSource.STORE)

    return (yield from inner())
