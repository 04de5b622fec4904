"""A line-oriented VISA transport (pyvisa + pyvisa-py) with reconnects and one error family.

The transport owns one pyvisa resource and one lock. Every backend failure (``VisaIOError``,
``OSError`` subclasses, undecodable bytes) is translated into the project's exceptions from
:mod:`lltolab.comm._errors`.

Keeping the link in step: input still pending before a query (a duplicated or late reply) is
discarded; a reply must end in the read termination and be printable ASCII of bounded length;
after a timeout, a dropped link, or a reply that is garbled, partial or of the wrong shape
(:meth:`VisaLineTransport.resync`, called by :func:`checked_query` when the parser rejects it),
the session is closed and reopened on the next call, so a late reply can never be taken for the
answer to the next query (pyvisa-py's ``TCPIP::…::SOCKET`` reports a dropped peer as a plain
timeout). Only queries marked idempotent are retried, once, after such a reconnect.
"""

from __future__ import annotations

import logging
import math
import re
import select
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pyvisa
from pyvisa import constants as _vc
from pyvisa.errors import VisaIOError

from ._errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
)

__all__ = [
    "VisaLineTransport",
    "parse_float",
    "parse_floats",
    "parse_int",
    "parse_fields",
    "MAX_COMMAND_CHARS",
    "MAX_REPLY_CHARS",
]

logger = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 256
"""Longest command line sent, in characters (without the termination)."""
MAX_REPLY_CHARS = 1024
"""Longest reply line accepted, in characters (without the termination)."""
_MAX_NUMBER_CHARS = 32
_MAX_DRAIN_BYTES = 1 << 20
# strict numeric grammar: no underscores, no "inf"/"nan", no hex, no embedded spaces
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_INT_RE = re.compile(r"[+-]?[0-9]{1,12}")
_PRINTABLE_RE = re.compile(r"[\x20-\x7e]*")

# VISA status codes that mean "the link is gone / cannot be opened" rather than "no reply".
_DISCONNECT_CODES = {
    _vc.StatusCode.error_connection_lost,
    _vc.StatusCode.error_resource_not_found,
    _vc.StatusCode.error_invalid_object,
    _vc.StatusCode.error_resource_busy,
    _vc.StatusCode.error_closing_failed,
}


class VisaLineTransport:
    """Thread-safe line transport over a pyvisa resource.

    Parameters
    ----------
    resource : str
        VISA resource string, e.g. ``"TCPIP::192.168.1.20::7777::SOCKET"``, ``"ASRL/dev/ttyUSB0"``
        or ``"GPIB0::12::INSTR"``.
    timeout_s : float
        I/O timeout of one read or write, in seconds (> 0).
    read_termination, write_termination : str
        Line terminations (Lake Shore: replies end in ``"\\r\\n"``).
    backend : str
        pyvisa backend (``"@py"`` for pyvisa-py).
    open_timeout_s : float, optional
        Timeout to open the link, in seconds (default ``timeout_s``).
    resource_kwargs : dict, optional
        Extra attributes for ``open_resource`` (e.g. ``baud_rate`` for serial links).

    Notes
    -----
    The link opens lazily on first use. ``query(..., idempotent=False)`` is never repeated:
    use it for anything that changes the instrument's state.
    """

    def __init__(
        self,
        resource: str,
        *,
        timeout_s: float = 2.0,
        read_termination: str = "\r\n",
        write_termination: str = "\r\n",
        backend: str = "@py",
        open_timeout_s: float | None = None,
        resource_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(resource, str) or not resource.strip():
            raise ValueError(f"resource must be a non-empty VISA resource string, got {resource!r}")
        _check_timeout("timeout_s", timeout_s)
        if open_timeout_s is not None:
            _check_timeout("open_timeout_s", open_timeout_s)
        self.resource = resource
        self.timeout_s = float(timeout_s)
        self.open_timeout_s = float(open_timeout_s if open_timeout_s is not None else timeout_s)
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.backend = backend
        self._resource_kwargs = dict(resource_kwargs or {})
        self._lock = threading.RLock()
        self._res: Any = None
        self.reconnects = 0
        """Number of times the link was reopened after a failure."""
        self.discarded_bytes = 0
        """Bytes of stale input thrown away before queries (duplicated or late replies)."""

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_open(self) -> bool:
        """True while a session is open."""
        return self._res is not None

    def open(self) -> None:
        """Open the link now (otherwise it opens on first use)."""
        with self._lock:
            self._ensure_open()

    def close(self) -> None:
        """Close the session; safe to call twice.

        The resource manager is left open: pyvisa shares one per backend in a process, and
        closing it would close every other transport's session too.
        """
        with self._lock:
            self._drop_session()

    def __enter__(self) -> VisaLineTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"VisaLineTransport({self.resource!r}, timeout_s={self.timeout_s}, {state})"

    # ------------------------------------------------------------------ I/O
    def write(self, command: str) -> None:
        """Send one command line (the write termination is appended).

        Raises
        ------
        InstrumentDisconnected, InstrumentTimeout
            If the link cannot be opened or the write fails; the link is reopened next time.
        """
        _check_line(command)
        with self._lock:
            self._ensure_open()
            self._discard_pending()
            try:
                self._res.write(command)
            except Exception as exc:  # noqa: BLE001 - translated below
                raise self._fail(exc, f"write {command!r}") from exc

    def query(self, command: str, *, idempotent: bool = True) -> str:
        """Send ``command`` and return the reply line without its termination.

        Parameters
        ----------
        command : str
            Query line, e.g. ``"KRDG? A"``.
        idempotent : bool
            If True (reading state only), a query that timed out or hit a dropped link is
            repeated once on a fresh connection. Never set it for commands that change state.

        Raises
        ------
        InstrumentTimeout
            No (complete) reply within ``timeout_s``.
        InstrumentDisconnected
            The link is closed or cannot be opened.
        InstrumentProtocolError
            The reply is not printable ASCII, too long, or lacks its termination (partial);
            the session is reopened before the next exchange.
        """
        _check_line(command)
        with self._lock:
            try:
                return self._query_once(command)
            except (InstrumentTimeout, InstrumentDisconnected):
                if not idempotent:
                    raise
            # one retry on a fresh link (the failed session was dropped by _fail)
            return self._query_once(command)

    def resync(self) -> None:
        """Bring the link back in step after a reply that did not fit its query.

        The session is closed (whatever the instrument still sends on it is lost with it) and
        reopened on the next call. Safe to call at any time.
        """
        with self._lock:
            if self._res is not None:
                self._drop_session()
                self.reconnects += 1

    # ------------------------------------------------------------------ internals
    def _query_once(self, command: str) -> str:
        self._ensure_open()
        self._discard_pending()
        try:
            self._res.write(command)
            raw = self._res.read_raw()
        except Exception as exc:  # noqa: BLE001 - translated below
            raise self._fail(exc, f"query {command!r}") from exc
        return self._decode_reply(raw, command)

    def _decode_reply(self, raw: bytes, command: str) -> str:
        """The reply line without its termination; a bad line resynchronises the link."""
        term = self.read_termination.encode("ascii")
        problem = None
        if term and not raw.endswith(term):
            problem = "partial reply (no line termination)"
        else:
            body = raw[: len(raw) - len(term)] if term else raw
            if len(body) > MAX_REPLY_CHARS:
                problem = f"reply of {len(body)} characters (limit {MAX_REPLY_CHARS})"
            else:
                try:
                    text = body.decode("ascii")
                except UnicodeDecodeError:
                    problem = "undecodable reply (not ASCII text)"
                else:
                    if _PRINTABLE_RE.fullmatch(text):
                        return text
                    problem = "reply holds control characters"
        self._drop_session()
        self.reconnects += 1
        shown = raw if len(raw) <= 80 else raw[:80] + b"..."
        raise InstrumentProtocolError(f"{self.resource}: {problem} to {command!r}: {shown!r}")

    def _discard_pending(self) -> None:
        """Throw away input that arrived outside any exchange (never blocks)."""
        res = self._res
        dropped = 0
        try:
            session = res.visalib.sessions[res.session]
        except Exception:  # noqa: BLE001 - other backends keep sessions elsewhere
            session = None
        pending = getattr(session, "_pending_buffer", None)
        if isinstance(pending, bytearray) and pending:
            dropped += len(pending)
            pending.clear()
        sock = _socket_of(res)
        if sock is not None:
            try:
                while dropped < _MAX_DRAIN_BYTES:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if not readable:
                        break
                    chunk = sock.recv(65536)
                    if not chunk:  # peer closed: reopen now, nothing of ours is lost
                        self._drop_session()
                        self.reconnects += 1
                        self._ensure_open()
                        break
                    dropped += len(chunk)
            except OSError as exc:
                raise self._fail(exc, "discarding stale input") from exc
        else:
            try:  # serial and others: discard the backend's receive buffer, no I/O wait
                waiting = getattr(getattr(session, "interface", None), "in_waiting", 0)
                dropped += waiting if isinstance(waiting, int) else 0
                res.flush(_vc.BufferOperation.discard_read_buffer)
            except Exception:  # noqa: BLE001 - not every backend supports flushing
                pass
        if dropped:
            self.discarded_bytes += dropped
            logger.warning("%s: discarded %d bytes of stale input", self.resource, dropped)

    def _ensure_open(self) -> None:
        if self._res is not None:
            if not _peer_closed(self._res):
                return
            # the peer closed the link between exchanges: nothing of ours is lost, reopen
            self._drop_session()
            self.reconnects += 1
        try:
            # pyvisa hands out one shared manager per backend (a new one if it was closed)
            rm = pyvisa.ResourceManager(self.backend)
            res = rm.open_resource(
                self.resource,
                read_termination=self.read_termination,
                write_termination=self.write_termination,
                timeout=int(math.ceil(self.timeout_s * 1000)),
                open_timeout=int(math.ceil(self.open_timeout_s * 1000)),
                **self._resource_kwargs,
            )
        except VisaIOError as exc:
            if exc.error_code == _vc.StatusCode.error_timeout:
                raise InstrumentTimeout(f"{self.resource}: timed out opening the link") from exc
            raise InstrumentDisconnected(f"{self.resource}: cannot open: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - pyvisa-py raises bare Exception on connect
            raise InstrumentDisconnected(f"{self.resource}: cannot open: {exc}") from exc
        sock = _socket_of(res)
        if sock is not None:
            # pyvisa-py reports a refused TCP connect as success: check the socket itself
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            try:
                if err:
                    raise OSError(err, "connect failed")
                sock.getpeername()
            except OSError as exc:
                _close_quietly(res)
                raise InstrumentDisconnected(f"{self.resource}: cannot connect: {exc}") from exc
        self._res = res

    def _drop_session(self) -> None:
        res, self._res = self._res, None
        if res is not None:
            _close_quietly(res)

    def _fail(self, exc: BaseException, what: str) -> InstrumentError:
        """Translate a backend failure, drop the session (reopened on next use)."""
        peer_closed = _peer_closed(self._res)
        self._drop_session()
        self.reconnects += 1
        where = f"{self.resource}: {what}"
        if isinstance(exc, VisaIOError):
            if exc.error_code == _vc.StatusCode.error_timeout:
                if peer_closed:
                    return InstrumentDisconnected(f"{where}: link dropped by the peer")
                return InstrumentTimeout(f"{where}: no reply within {self.timeout_s:g} s")
            if exc.error_code in _DISCONNECT_CODES:
                return InstrumentDisconnected(f"{where}: {exc}")
            return InstrumentError(f"{where}: {exc}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return InstrumentTimeout(f"{where}: no reply within {self.timeout_s:g} s")
        if isinstance(exc, OSError | pyvisa.errors.InvalidSession):
            return InstrumentDisconnected(f"{where}: {exc}")
        if isinstance(exc, UnicodeError):
            return InstrumentProtocolError(f"{where}: {exc}")
        return InstrumentError(f"{where}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------- reply parsing
def parse_float(reply: str, *, what: str = "reply") -> float:
    """Parse one finite number such as ``"+077.350"``; raise InstrumentProtocolError otherwise.

    The grammar is strict: optional sign, digits with an optional decimal point, optional
    exponent, at most 32 characters; no underscores, ``inf``/``nan``, hex or inner spaces.
    """
    text = reply.strip() if isinstance(reply, str) else ""
    if len(text) > _MAX_NUMBER_CHARS or not _FLOAT_RE.fullmatch(text):
        shown = reply if len(reply) <= 40 else reply[:40] + "..."
        raise InstrumentProtocolError(f"{what}: expected a number, got {shown!r}")
    value = float(text)
    if not math.isfinite(value):
        raise InstrumentProtocolError(f"{what}: expected a finite number, got {reply!r}")
    return value


def parse_int(reply: str, *, what: str = "reply") -> int:
    """Parse one integer such as ``"3"`` or ``"032"``; raise InstrumentProtocolError otherwise."""
    text = reply.strip() if isinstance(reply, str) else ""
    if not _INT_RE.fullmatch(text):
        shown = reply if len(reply) <= 40 else reply[:40] + "..."
        raise InstrumentProtocolError(f"{what}: expected an integer, got {shown!r}")
    return int(text)


def parse_fields(reply: str, count: int, *, sep: str = ",", what: str = "reply") -> list[str]:
    """Split ``reply`` on ``sep`` into exactly ``count`` stripped fields.

    Raises
    ------
    InstrumentProtocolError
        If the number of fields differs.
    """
    fields = [f.strip() for f in reply.strip().split(sep)]
    if len(fields) != count:
        raise InstrumentProtocolError(
            f"{what}: expected {count} fields separated by {sep!r}, got {reply!r}"
        )
    return fields


def parse_floats(reply: str, count: int, *, sep: str = ",", what: str = "reply") -> Sequence[float]:
    """Parse exactly ``count`` numbers separated by ``sep``."""
    return [parse_float(f, what=what) for f in parse_fields(reply, count, sep=sep, what=what)]


# ---------------------------------------------------------------------- helpers
def _check_timeout(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def _check_line(command: str) -> None:
    """A command must be one line of printable ASCII, at most MAX_COMMAND_CHARS long."""
    if not isinstance(command, str) or not command:
        raise ValueError(f"command must be a non-empty string, got {command!r}")
    if len(command) > MAX_COMMAND_CHARS:
        raise ValueError(
            f"command of {len(command)} characters exceeds the limit of {MAX_COMMAND_CHARS}: "
            f"{command[:40]!r}..."
        )
    if not _PRINTABLE_RE.fullmatch(command):
        bad = next(c for c in command if not "\x20" <= c <= "\x7e")
        raise ValueError(
            f"command must be a single line of printable ASCII (0x20..0x7E), got {bad!r} "
            f"in {command!r}"
        )


def _close_quietly(res: Any) -> None:
    try:
        res.close()
    except Exception:  # noqa: BLE001 - closing a broken session may raise anything
        pass


def _socket_of(res: Any) -> socket.socket | None:
    """The TCP socket behind a pyvisa-py SOCKET session, if there is one."""
    try:
        session = res.visalib.sessions[res.session]
    except Exception:  # noqa: BLE001 - other backends keep sessions elsewhere
        return None
    sock = getattr(session, "interface", None)
    return sock if isinstance(sock, socket.socket) else None


def _peer_closed(res: Any) -> bool:
    """True if the TCP peer has closed the connection (readable with EOF)."""
    if res is None:
        return False
    sock = _socket_of(res)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
