"""The project's instrument exception family.

Every transport translates whatever its backend raised (pyvisa, pyserial, minimalmodbus,
OSError, socket errors) into one of these, so devices and plans handle one family.
"""

from __future__ import annotations

__all__ = [
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentDisconnected",
    "InstrumentProtocolError",
    "InstrumentReportedError",
]


class InstrumentError(RuntimeError):
    """Base class of every instrument communication failure raised by lltolab."""


class InstrumentTimeout(InstrumentError, TimeoutError):
    """The instrument did not answer (or did not reach a state) within the allowed time."""


class InstrumentDisconnected(InstrumentError, ConnectionError):
    """The link to the instrument is closed, refused or dropped."""


class InstrumentProtocolError(InstrumentError):
    """A reply arrived but could not be parsed (garbled, wrong length, bad checksum)."""


class InstrumentReportedError(InstrumentError):
    """The instrument itself reported an error (error register, exception code, status bit)."""
