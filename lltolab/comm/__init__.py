"""Instrument communication: transports, the project's exceptions, ophyd signals, positioners."""

from ._checked import checked_query, resync
from ._errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
)
from ._modbus import MODBUS_EXCEPTION_CODES, ModbusRtuTransport
from ._signal import MessageSignal, MessageSignalRO, MessageTransport
from ._temperature_loop import MoveStopped, TemperatureLoop
from ._visa import (
    MAX_COMMAND_CHARS,
    MAX_REPLY_CHARS,
    VisaLineTransport,
    parse_fields,
    parse_float,
    parse_floats,
    parse_int,
)

__all__ = [
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentDisconnected",
    "InstrumentProtocolError",
    "InstrumentReportedError",
    "ModbusRtuTransport",
    "MODBUS_EXCEPTION_CODES",
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
    "checked_query",
    "resync",
    "MAX_COMMAND_CHARS",
    "MAX_REPLY_CHARS",
]
