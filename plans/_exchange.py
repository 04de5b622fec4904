"""The isotope exchange: dip the sample edge into ⁶LiNO₃, wait, lift it out."""

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable

from lltolab.devices import MAX_WAIT_S
from lltolab.vocabulary import Location, PlanName, SegmentSource

from ._common import ROOM_K, PlanGen, lab_time, plan_md, record_segment
from ._validate import check_md, check_movable, check_number, check_record

__all__ = ["isotope_exchange"]


def isotope_exchange(
    cell: Movable, handler: Movable, clock: Movable, duration_s: float, *,
    record: Readable | None = None, md: dict[str, Any] | None = None,
) -> PlanGen:
    """Exchange ⁶Li for ``duration_s`` seconds at the bath temperature (one run).

    Parameters
    ----------
    cell : ExchangeCell
        The bath (dip / lift are operator steps).
    handler : SampleHandler
        Puts the sample above the bath first.
    clock : LabClock
        Lab waits.
    duration_s : float
        Exchange time (s), e.g. 59 h = 212400 s.
    record : SampleRecord, optional
        Receives the exchange as a history segment.
    md : dict, optional
        Extra start metadata.

    Notes
    -----
    Events: stream ``operator`` with the cell, the sample location and the lab time, one
    event after the dip and one after the lift.
    """
    for name, dev in (("cell", cell), ("handler", handler), ("clock", clock)):
        check_movable(name, dev)
    duration_s = check_number("duration_s", duration_s, unit="s", upper=MAX_WAIT_S)
    check_record(record)
    md = check_md(md)
    _md = plan_md(PlanName.ISOTOPE_EXCHANGE, {"cell": cell, "handler": handler, "clock": clock,
                                       "duration_s": duration_s}, md,
                  purpose="isotope exchange")
    bath_K = ROOM_K

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        nonlocal bath_K
        bath_K = 273.15 + float((yield from bps.rd(cell.bath_temperature_c)))
        yield from bps.mv(handler, Location.BATH)
        yield from bps.mv(cell, "dip")
        t0 = yield from lab_time(clock)
        yield from bps.trigger_and_read([cell, handler, clock], name="operator")
        yield from bps.mv(clock, float(duration_s))
        yield from bps.mv(cell, "lift")
        t1 = yield from lab_time(clock)
        yield from bps.mv(handler, Location.STORAGE)
        yield from bps.trigger_and_read([cell, handler, clock], name="operator")
        yield from record_segment(record, t0, t1, bath_K, Location.BATH, True,
                                  SegmentSource.ISOTOPE_EXCHANGE)

    return (yield from inner())
