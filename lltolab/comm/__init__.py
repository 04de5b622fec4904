"""Instrument communication: transports, the project's exceptions, ophyd signals, positioners."""

from ._errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
)

__all__ = [
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentDisconnected",
    "InstrumentProtocolError",
    "InstrumentReportedError",
]
