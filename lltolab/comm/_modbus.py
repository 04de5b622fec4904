"""Modbus RTU transport over pyserial + minimalmodbus.

One :class:`ModbusRtuTransport` talks to one slave. Transports on the same serial port or URL
share one link (one pyserial object, one lock), as slaves on an RS-485 bus share the wire.
Whatever pyserial or minimalmodbus raise is translated into the project's exceptions
(:mod:`lltolab.comm._errors`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import TypeVar

import minimalmodbus
import serial

from ._errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
)

__all__ = ["ModbusRtuTransport", "MODBUS_EXCEPTION_CODES"]

#: Meaning of the Modbus exception codes (Modbus Application Protocol V1.1b3, section 7).
MODBUS_EXCEPTION_CODES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

_PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_T = TypeVar("_T")


class _Link:
    """One serial port or URL shared by every transport that names it."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.lock = threading.RLock()
        self.serial: serial.SerialBase | None = None
        self.users = 0


_links: dict[str, _Link] = {}
_links_lock = threading.Lock()


def _acquire_link(port: str) -> _Link:
    with _links_lock:
        link = _links.get(port)
        if link is None:
            link = _links[port] = _Link(port)
        link.users += 1
        return link


def _release_link(link: _Link) -> None:
    with _links_lock:
        link.users -= 1
        if link.users > 0:
            return
        _links.pop(link.port, None)
    with link.lock:
        port, link.serial = link.serial, None
    if link.port.startswith("socket://"):
        # pyserial's socket:// handler closes the socket, then sleeps 0.3 s "for quick
        # reconnects": that wait goes to a thread of its own, not to the caller
        threading.Thread(target=_close_quietly, args=(port,), name="modbus-socket-close",
                         daemon=True).start()
    else:
        _close_quietly(port)


def _close_quietly(port: serial.SerialBase | None) -> None:
    if port is None:
        return
    try:
        port.close()
    except Exception:  # noqa: BLE001 - closing a dead link must never raise
        pass


# how minimalmodbus words each exception code (most specific first)
_CODE_WORDING = (
    ("negative acknowledge", 7),
    ("illegal function", 1),
    ("illegal data address", 2),
    ("illegal data value", 3),
    ("device failure", 4),
    ("device busy", 6),
    ("memory parity", 8),
    ("gateway path", 10),
    ("gateway target", 11),
)


def _exception_code(message: str) -> int | None:
    """The Modbus exception code a minimalmodbus ``SlaveReportedException`` stands for."""
    found = re.search(r"error code (\d+)", message)
    if found:
        return int(found.group(1))
    lowered = message.lower()
    for wording, code in _CODE_WORDING:
        if wording in lowered:
            return code
    return None


class ModbusRtuTransport:
    """Modbus RTU master for one slave on a serial port or pyserial URL.

    Parameters
    ----------
    port_or_url : str
        A serial port (``/dev/ttyUSB0``, ``COM3``) or any pyserial URL
        (``socket://127.0.0.1:PORT`` for an RTU-over-TCP bridge, ``rfc2217://...``, or a URL
        scheme registered in ``serial.protocol_handler_packages``).
    slave_address : int
        Modbus slave address, 1..247.
    baudrate : int
        Bits per second (ignored by ``socket://``).
    timeout_s : float
        Read timeout of one transaction in seconds (> 0); also bounds the wait for the link
        lock and the write.
    bytesize, parity, stopbits
        Character format, default 8N1 (``parity`` one of ``"N"``, ``"E"``, ``"O"``).
    retry_reads : bool
        If a read fails because the link dropped, reopen the link and retry that read once.
        Writes and timeouts are never retried.
    name : str, optional
        Used in error messages (default: the port and the slave address).

    Notes
    -----
    The link opens lazily on the first transaction and reopens after it was dropped, so a
    transport survives an unplugged adapter or a restarted RTU-over-TCP bridge. After a
    timeout or an invalid reply the link is closed too, so a late reply can never be taken
    for the answer to the next request. Every method
    raises only :class:`ValueError` (bad arguments, before any I/O) or the project's
    :class:`~lltolab.comm.InstrumentError` family.
    """

    def __init__(
        self,
        port_or_url: str,
        *,
        slave_address: int,
        baudrate: int = 9600,
        timeout_s: float = 0.5,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        retry_reads: bool = True,
        name: str | None = None,
    ) -> None:
        if not isinstance(port_or_url, str) or not port_or_url:
            raise ValueError(f"port_or_url must be a non-empty string, got {port_or_url!r}")
        if not _is_int(slave_address) or not 1 <= slave_address <= 247:
            raise ValueError(f"slave_address must be an int in 1..247, got {slave_address!r}")
        if not (_is_real(timeout_s) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a finite number > 0 s, got {timeout_s!r}")
        if not _is_int(baudrate) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive int, got {baudrate!r}")
        if parity not in _PARITIES:
            raise ValueError(f"parity must be one of {sorted(_PARITIES)}, got {parity!r}")
        self.port = port_or_url
        self.slave_address = slave_address
        self.baudrate = baudrate
        self.timeout_s = float(timeout_s)
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.retry_reads = retry_reads
        self.name = name or f"{port_or_url} (slave {slave_address})"
        self._link: _Link | None = _acquire_link(port_or_url)
        self._instrument: minimalmodbus.Instrument | None = None

    # -- life cycle -----------------------------------------------------------------------
    def open(self) -> None:
        """Open the link now (it otherwise opens on the first transaction)."""
        link = self._require_link()
        with self._locked(link):
            self._ensure_open(link)

    def close(self) -> None:
        """Release the link; the port closes when its last transport closes."""
        link, self._link = self._link, None
        self._instrument = None
        if link is not None:
            _release_link(link)

    @property
    def is_open(self) -> bool:
        """True while the shared link is open."""
        link = self._link
        return bool(link is not None and link.serial is not None and link.serial.is_open)

    def reconnect(self) -> None:
        """Close the link (for every transport sharing it) and open it again."""
        link = self._require_link()
        with self._locked(link):
            self._drop(link)
            self._ensure_open(link)

    def __enter__(self) -> ModbusRtuTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModbusRtuTransport({self.port!r}, slave_address={self.slave_address})"

    # -- transactions ---------------------------------------------------------------------
    def read_word(self, address: int, *, functioncode: int = 3) -> int:
        """Read one register as an unsigned 16-bit integer (0..65535)."""
        _check_address(address)
        _check_read_fc(functioncode)
        return int(self._transact(lambda i: i.read_register(address, 0, functioncode), True))

    def read_words(self, address: int, count: int, *, functioncode: int = 3) -> list[int]:
        """Read ``count`` consecutive registers (1..125) as unsigned integers."""
        _check_address(address)
        _check_read_fc(functioncode)
        if not _is_int(count) or not 1 <= count <= 125:
            raise ValueError(f"register count must be an int in 1..125, got {count!r}")
        _check_span(address, count)
        values = self._transact(lambda i: i.read_registers(address, count, functioncode), True)
        return [int(v) for v in values]

    def read_value(
        self, address: int, decimals: int = 0, *, signed: bool = True, functioncode: int = 3
    ) -> float:
        """Read one scaled register: raw / 10**decimals, as a float.

        ``signed`` reads the raw word as two's complement (temperatures below zero).
        """
        _check_address(address)
        _check_read_fc(functioncode)
        _check_decimals(decimals)
        raw = self._transact(
            lambda i: i.read_register(address, 0, functioncode, signed), True
        )
        return float(raw) / 10**decimals

    def write_word(self, address: int, word: int, *, functioncode: int = 6) -> None:
        """Write one unsigned 16-bit register with function code 6 (or 16)."""
        _check_address(address)
        _check_word(word)
        _check_write_fc(functioncode)
        self._transact(lambda i: i.write_register(address, word, 0, functioncode), False)

    def write_words(self, address: int, words: list[int]) -> None:
        """Write consecutive registers with function code 16 (1..123 registers)."""
        _check_address(address)
        if not isinstance(words, list | tuple) or not 1 <= len(words) <= 123:
            raise ValueError(f"words must be a list of 1..123 register values, got {words!r}")
        _check_span(address, len(words))
        for word in words:
            _check_word(word)
        self._transact(lambda i: i.write_registers(address, list(words)), False)

    def write_value(
        self,
        address: int,
        value: float,
        decimals: int = 0,
        *,
        signed: bool = True,
        functioncode: int = 6,
    ) -> None:
        """Write ``round(value * 10**decimals)`` to one register.

        Raises ValueError before any I/O if the scaled value does not fit 16 bits.
        """
        _check_address(address)
        _check_decimals(decimals)
        _check_write_fc(functioncode)
        if not (_is_real(value) and math.isfinite(value)):
            raise ValueError(f"value must be a finite number, got {value!r}")
        raw = round(value * 10**decimals)
        low, high = (-32768, 32767) if signed else (0, 65535)
        if not low <= raw <= high:
            raise ValueError(
                f"value {value!r} scaled by 10**{decimals} is {raw}, outside the 16-bit "
                f"{'signed' if signed else 'unsigned'} range {low}..{high}"
            )
        word = raw & 0xFFFF
        self._transact(lambda i: i.write_register(address, word, 0, functioncode), False)

    def read_float(self, address: int, *, functioncode: int = 3) -> float:
        """Read an IEEE 754 float from two registers, high word first."""
        _check_address(address, span=2)
        _check_read_fc(functioncode)
        value = float(self._transact(lambda i: i.read_float(address, functioncode, 2), True))
        if not math.isfinite(value):
            raise InstrumentProtocolError(
                f"{self.name}: registers {address}..{address + 1} hold {value!r}, not a finite "
                "number"
            )
        return value

    def write_float(self, address: int, value: float) -> None:
        """Write an IEEE 754 float to two registers, high word first (function code 16)."""
        _check_address(address, span=2)
        if not (_is_real(value) and math.isfinite(value)):
            raise ValueError(f"value must be a finite number, got {value!r}")
        self._transact(lambda i: i.write_float(address, float(value), 2), False)

    # -- internals ------------------------------------------------------------------------
    def _require_link(self) -> _Link:
        if self._link is None:
            raise InstrumentDisconnected(f"{self.name}: transport is closed")
        return self._link

    def _locked(self, link: _Link) -> _LinkGuard:
        return _LinkGuard(link, self.timeout_s * 4 + 1.0, self.name)

    def _ensure_open(self, link: _Link) -> minimalmodbus.Instrument:
        if link.serial is None or not link.serial.is_open:
            _close_quietly(link.serial)
            link.serial = None
            try:
                port = serial.serial_for_url(
                    self.port,
                    baudrate=self.baudrate,
                    bytesize=self.bytesize,
                    parity=_PARITIES[self.parity],
                    stopbits=self.stopbits,
                    timeout=self.timeout_s,
                    write_timeout=self.timeout_s,
                    do_not_open=True,
                )
                port.open()
            except (serial.SerialException, OSError, ValueError) as exc:
                raise InstrumentDisconnected(f"{self.name}: cannot open link: {exc}") from exc
            link.serial = port
        if self._instrument is None or self._instrument.serial is not link.serial:
            instrument = minimalmodbus.Instrument(link.serial, self.slave_address)
            instrument.clear_buffers_before_each_transaction = True
            self._instrument = instrument
        if link.serial.timeout != self.timeout_s:
            # transports sharing a link may use different timeouts (the line settings are
            # those of the transport that opened it)
            link.serial.timeout = self.timeout_s
            link.serial.write_timeout = self.timeout_s
        return self._instrument

    def _drop(self, link: _Link) -> None:
        _close_quietly(link.serial)
        link.serial = None
        self._instrument = None

    def _transact(self, call: Callable[[minimalmodbus.Instrument], _T], is_read: bool) -> _T:
        link = self._require_link()
        with self._locked(link):
            try:
                return self._attempt(link, call)
            except InstrumentDisconnected:
                if not (is_read and self.retry_reads):
                    raise
            return self._attempt(link, call)

    def _attempt(self, link: _Link, call: Callable[[minimalmodbus.Instrument], _T]) -> _T:
        instrument = self._ensure_open(link)
        try:
            return call(instrument)
        except minimalmodbus.NoResponseError as exc:
            # a late reply would desynchronise the next transaction: start a fresh link
            self._drop(link)
            raise InstrumentTimeout(
                f"{self.name}: no reply within {self.timeout_s} s"
            ) from exc
        except minimalmodbus.SlaveReportedException as exc:
            code = _exception_code(str(exc))
            meaning = MODBUS_EXCEPTION_CODES.get(code, "unknown") if code else "unknown"
            err = InstrumentReportedError(
                f"{self.name}: Modbus exception code {code} ({meaning})"
            )
            err.code = code  # type: ignore[attr-defined]
            raise err from exc
        except (minimalmodbus.InvalidResponseError, minimalmodbus.LocalEchoError) as exc:
            # short (late) or garbled reply: the rest may still be on its way
            self._drop(link)
            raise InstrumentProtocolError(f"{self.name}: invalid reply: {exc}") from exc
        except serial.SerialTimeoutException as exc:
            self._drop(link)
            raise InstrumentTimeout(f"{self.name}: write timed out: {exc}") from exc
        except (serial.SerialException, OSError) as exc:
            # includes minimalmodbus.ModbusException leftovers (IOError) and dead sockets
            self._drop(link)
            raise InstrumentDisconnected(f"{self.name}: link lost: {exc}") from exc
        except InstrumentError:
            raise
        except (TypeError, ValueError) as exc:
            self._drop(link)
            raise InstrumentProtocolError(f"{self.name}: cannot decode reply: {exc}") from exc



class _LinkGuard:
    """Context manager taking a link's lock with a timeout."""

    def __init__(self, link: _Link, timeout_s: float, name: str) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self._name = name

    def __enter__(self) -> None:
        if not self._link.lock.acquire(timeout=self._timeout_s):
            raise InstrumentTimeout(
                f"{self._name}: link busy for more than {self._timeout_s:.1f} s"
            )

    def __exit__(self, *exc: object) -> None:
        self._link.lock.release()


def _is_int(value: object) -> bool:
    """An int that is not a bool (True would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_word(word: int) -> None:
    if not _is_int(word) or not 0 <= word <= 0xFFFF:
        raise ValueError(f"register value must be an int in 0..65535, got {word!r}")


def _check_span(address: int, count: int) -> None:
    if address + count > 65536:
        raise ValueError(
            f"{count} registers from {address} would end at {address + count - 1}, past the "
            "last register 65535"
        )


def _check_address(address: int, span: int = 1) -> None:
    if not _is_int(address) or not 0 <= address <= 65536 - span:
        raise ValueError(f"register address must be an int in 0..{65536 - span}, got {address!r}")


def _check_decimals(decimals: int) -> None:
    if not _is_int(decimals) or not 0 <= decimals <= 6:
        raise ValueError(f"decimals must be an int in 0..6, got {decimals!r}")


def _check_read_fc(functioncode: int) -> None:
    if not _is_int(functioncode) or functioncode not in (3, 4):
        raise ValueError(f"read function code must be 3 or 4, got {functioncode!r}")


def _check_write_fc(functioncode: int) -> None:
    if not _is_int(functioncode) or functioncode not in (6, 16):
        raise ValueError(f"write function code must be 6 or 16, got {functioncode!r}")
