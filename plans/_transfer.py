"""Moving the sample between the bath, the bench, the SIMS stage and the furnace."""

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable

from lltolab.vocabulary import SAMPLE_LOCATIONS, PlanName, SegmentSource

from ._common import ROOM_K, PlanGen, lab_time, plan_md, record_segment
from ._validate import check_md, check_movable, check_record

__all__ = ["transfer"]


def transfer(
    handler: Movable, clock: Movable, location: str, *,
    record: Readable | None = None, md: dict[str, Any] | None = None,
) -> PlanGen:
    """Move the sample to ``location`` (an operator step; one run).

    The transfer itself happens at room temperature and is recorded as a history segment.

    Parameters
    ----------
    handler : SampleHandler
        Asks the operator to move the sample and waits for the confirmation.
    clock : LabClock
        Lab time of the transfer.
    location : str
        ``storage``, ``bath``, ``sims_stage`` or ``furnace``.
    record : SampleRecord, optional
        Receives the transfer as a history segment.
    md : dict, optional
        Extra start metadata.
    """
    check_movable("handler", handler)
    check_movable("clock", clock)
    if not isinstance(location, str):
        raise TypeError(f"location must be one of {SAMPLE_LOCATIONS}, got {location!r}")
    check_record(record)
    md = check_md(md)
    if location not in SAMPLE_LOCATIONS:
        raise ValueError(f"location must be one of {SAMPLE_LOCATIONS}, got {location!r}")
    _md = plan_md(PlanName.TRANSFER, {"handler": handler, "clock": clock, "location": location}, md,
                  purpose="sample transfer")

    @bpp.run_decorator(md=_md)
    def inner() -> PlanGen:
        t0 = yield from lab_time(clock)
        origin = yield from bps.rd(handler.location)
        yield from bps.mv(handler, location)
        t1 = yield from lab_time(clock)
        yield from bps.trigger_and_read([handler, clock], name="operator")
        yield from record_segment(record, t0, t1, ROOM_K, f"{origin}->{location}", False,
                                  SegmentSource.TRANSFER)

    return (yield from inner())
