"""Modbus RTU slave side: CRC-16, frame splitting and the function-code engine.

Written from the Modbus over Serial Line specification V1.02 and the Modbus Application
Protocol specification V1.1b3: a frame is ``address, function, data..., CRC lo, CRC hi``; the
CRC is CRC-16/MODBUS (reflected polynomial 0xA001, initial value 0xFFFF) sent low byte first.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable

__all__ = [
    "crc16",
    "with_crc",
    "check_crc",
    "request_length",
    "split_frames",
    "ModbusSlaveError",
    "RtuSlave",
    "ILLEGAL_FUNCTION",
    "ILLEGAL_DATA_ADDRESS",
    "ILLEGAL_DATA_VALUE",
    "RTU_REPLY_FAULTS",
    "RtuReplyFault",
]

RtuReplyFault = str | Callable[[bytes], bytes]
"""A one-shot reply fault: a name from :data:`RTU_REPLY_FAULTS` or ``fn(frame) -> bytes``."""

RTU_REPLY_FAULTS = frozenset({
    "bad_crc", "wrong_slave", "wrong_function", "wrong_echo", "duplicate", "extra_bytes",
    "partial", "late", "silent", "exception",
})
"""One-shot reply faults: ``bad_crc`` (CRC corrupted), ``wrong_slave`` / ``wrong_function``
(another slave address / function code, valid CRC), ``wrong_echo`` (a write's echoed
register address changed, valid CRC), ``duplicate`` (the frame twice), ``extra_bytes`` (junk
after the frame), ``partial`` (the first half only), ``late`` (sent after ``delay_s``),
``silent`` (no reply), ``exception`` (a valid exception reply, code 4)."""

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3

_MAX_READ = 125
_MAX_WRITE = 123


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (as an int; on the wire low byte first)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first."""
    return body + struct.pack("<H", crc16(body))


def check_crc(frame: bytes) -> bool:
    """True if the last two bytes of ``frame`` are the CRC of the rest."""
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def request_length(buffer: bytes) -> int | None:
    """Length of the request frame at the start of ``buffer``, or None if not yet known.

    Known for function codes 3, 4, 6 (8 bytes) and 16 (9 + byte count); for any other
    function code the frame ends at the next silent interval, which the carrier decides.
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (3, 4, 6):
        return 8
    if function == 16:
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return None


class ModbusSlaveError(Exception):
    """Raised by a register map to answer with a Modbus exception code."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"Modbus exception {code}")
        self.code = code


class RtuSlave:
    """A Modbus RTU slave: turns request frames into reply frames.

    Subclasses provide the register map through :meth:`read_registers` and
    :meth:`write_registers` and raise :class:`ModbusSlaveError` for exception replies.
    Transport-level faults (no reply, garbled reply, late reply after ``reply_delay_s``,
    dropped connection) are injected here so every carrier (TCP bridge, in-process serial
    URL) behaves alike.

    Parameters
    ----------
    address : int
        Slave address 1..247 this slave answers to.
    """

    def __init__(self, address: int = 1) -> None:
        if not isinstance(address, int) or not 1 <= address <= 247:
            raise ValueError(f"slave address must be an int in 1..247, got {address!r}")
        self.address = address
        self.no_reply = False
        self.garble_replies = False
        self.reply_delay_s = 0.0
        self.frames_handled = 0
        self.replies_faulted = 0
        """Replies a one-shot fault was applied to."""
        self._reply_faults: deque[tuple[RtuReplyFault, float]] = deque()
        self._next_delay_s: float | None = None
        self._drop_listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()

    # -- faults -----------------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Cut every open connection (TCP clients, in-process ports); they may reconnect."""
        with self._listeners_lock:
            listeners = list(self._drop_listeners)
        for listener in listeners:
            listener()

    def add_drop_listener(self, callback: Callable[[], None]) -> None:
        """Carriers register how to cut their connections."""
        with self._listeners_lock:
            self._drop_listeners.append(callback)

    def remove_drop_listener(self, callback: Callable[[], None]) -> None:
        with self._listeners_lock:
            if callback in self._drop_listeners:
                self._drop_listeners.remove(callback)

    def queue_reply_fault(self, fault: RtuReplyFault, *, delay_s: float = 1.0) -> None:
        """Spoil the next reply not yet faulted (one-shot, first in first out).

        Parameters
        ----------
        fault : str or callable
            A name from :data:`RTU_REPLY_FAULTS` or ``fn(reply_frame) -> bytes_to_send``.
        delay_s : float
            Delay of ``late`` (s, 0..60).
        """
        if not callable(fault) and fault not in RTU_REPLY_FAULTS:
            raise ValueError(f"unknown reply fault {fault!r}; expected a callable or one of "
                             f"{sorted(RTU_REPLY_FAULTS)}")
        if not (isinstance(delay_s, int | float) and 0 <= delay_s <= 60):
            raise ValueError(f"delay_s must be a number of seconds in 0..60, got {delay_s!r}")
        with self._listeners_lock:
            self._reply_faults.append((fault, float(delay_s)))

    def clear_reply_faults(self) -> None:
        """Forget the queued one-shot reply faults."""
        with self._listeners_lock:
            self._reply_faults.clear()

    @property
    def pending_reply_faults(self) -> int:
        """One-shot reply faults not yet applied."""
        with self._listeners_lock:
            return len(self._reply_faults)

    def take_reply_delay(self) -> float:
        """Seconds a carrier waits before sending the reply just made (one-shot ``late``)."""
        delay, self._next_delay_s = self._next_delay_s, None
        return self.reply_delay_s if delay is None else delay

    # -- register map (override) ------------------------------------------------------------
    def read_registers(self, address: int, count: int, function: int) -> list[int]:
        """Words at ``address``..``address + count - 1`` (function 3 or 4)."""
        raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)

    def write_registers(self, address: int, words: list[int]) -> None:
        """Store ``words`` from ``address`` on (function 6 or 16)."""
        raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)

    # -- protocol ---------------------------------------------------------------------------
    def handle_frame(self, frame: bytes) -> bytes | None:
        """Reply frame for one request frame, or None when a real slave stays silent.

        Silent: bad CRC, too short, another slave's address, broadcast, no-reply fault.
        """
        if len(frame) < 4 or not check_crc(frame):
            return None
        if frame[0] != self.address:
            return None
        self.frames_handled += 1
        if self.no_reply:
            return None
        reply = with_crc(self._reply_body(frame[:-2]))
        if self.garble_replies:
            reply = reply[:-2] + bytes([reply[-2] ^ 0xFF, reply[-1] ^ 0x5A])
        with self._listeners_lock:
            one_shot = self._reply_faults.popleft() if self._reply_faults else None
        if one_shot is None:
            return reply
        self.replies_faulted += 1
        return self._faulted(reply, *one_shot)

    def _faulted(self, reply: bytes, fault: RtuReplyFault, delay_s: float) -> bytes | None:
        if callable(fault):
            return bytes(fault(reply))
        body = bytearray(reply[:-2])
        if fault == "bad_crc":
            return reply[:-2] + bytes([reply[-2] ^ 0xFF, reply[-1] ^ 0x5A])
        if fault == "wrong_slave":
            body[0] = (body[0] % 247) + 1
            return with_crc(bytes(body))
        if fault == "wrong_function":
            body[1] = 4 if body[1] == 3 else 3
            return with_crc(bytes(body))
        if fault == "wrong_echo":
            if body[1] in (6, 16) and len(body) >= 4:
                body[3] ^= 0x01
            else:  # a read reply: a value changed under a valid CRC cannot be told apart
                body[1] = 4 if body[1] == 3 else 3
            return with_crc(bytes(body))
        if fault == "duplicate":
            return reply + reply
        if fault == "extra_bytes":
            return reply + b"\x00\xff\x13"
        if fault == "partial":
            return reply[: max(1, len(reply) // 2)]
        if fault == "late":
            self._next_delay_s = delay_s
            return reply
        if fault == "exception":
            return with_crc(bytes([body[0], body[1] | 0x80, 4]))
        return None  # "silent"

    def _reply_body(self, body: bytes) -> bytes:
        address, function = body[0], body[1]
        try:
            return bytes([address, function]) + self._dispatch(function, body[2:])
        except ModbusSlaveError as exc:
            return bytes([address, function | 0x80, exc.code])

    def _dispatch(self, function: int, data: bytes) -> bytes:
        if function in (3, 4):
            if len(data) != 4:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            start, count = struct.unpack(">HH", data)
            if not 1 <= count <= _MAX_READ:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            if start + count > 0x10000:
                raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)
            words = self.read_registers(start, count, function)
            return bytes([2 * count]) + struct.pack(f">{count}H", *words)
        if function == 6:
            if len(data) != 4:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            start, word = struct.unpack(">HH", data)
            self.write_registers(start, [word])
            return data
        if function == 16:
            if len(data) < 5:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            start, count, nbytes = struct.unpack(">HHB", data[:5])
            if not 1 <= count <= _MAX_WRITE or nbytes != 2 * count or len(data) != 5 + nbytes:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            if start + count > 0x10000:
                raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)
            words = list(struct.unpack(f">{count}H", data[5:]))
            self.write_registers(start, words)
            return data[:4]
        raise ModbusSlaveError(ILLEGAL_FUNCTION)


def split_frames(buffer: bytearray, *, end_of_burst: bool) -> list[bytes]:
    """Cut complete request frames off the front of ``buffer`` (modified in place).

    Frames of known length are cut as soon as complete. With ``end_of_burst`` (the line
    went silent), whatever remains is one frame, as an RTU slave would treat it.
    """
    frames: list[bytes] = []
    while buffer:
        length = request_length(bytes(buffer[:7]))
        if length is not None and len(buffer) >= length:
            frames.append(bytes(buffer[:length]))
            del buffer[:length]
            continue
        if end_of_burst:
            frames.append(bytes(buffer))
            buffer.clear()
        break
    return frames
