"""Instrument communication: transports, the project's exceptions, ophyd signals, positioners."""

from ._errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
)
from ._signal import MessageSignal, MessageSignalRO, MessageTransport
from ._temperature_loop import MoveStopped, TemperatureLoop
from ._visa import VisaLineTransport, parse_fields, parse_float, parse_floats, parse_int

__all__ = [
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentDisconnected",
    "InstrumentProtocolError",
    "InstrumentReportedError",
    "MessageSignal",
    "MessageSignalRO",
    "MessageTransport",
    "MoveStopped",
    "TemperatureLoop",
    "VisaLineTransport",
    "parse_fields",
    "parse_float",
    "parse_floats",
    "parse_int",
]
