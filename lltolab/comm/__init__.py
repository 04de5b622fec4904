"""Instrument communication: transports, the project's exceptions, ophyd signals, positioners."""

from ._errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
)
from ._modbus import MODBUS_EXCEPTION_CODES, ModbusRtuTransport

__all__ = [
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentDisconnected",
    "InstrumentProtocolError",
    "InstrumentReportedError",
    "ModbusRtuTransport",
    "MODBUS_EXCEPTION_CODES",
]
