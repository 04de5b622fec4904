"""ophyd v1 signals whose ``get``/``put`` talk to an instrument through a message transport.

A message signal is defined by a query string (``"KRDG? A"``) and a parser for reading, and a
write format (``"SETP 1,{value:.3f}"``) for writing; or by plain callables doing the I/O. The
transport is anything with ``query(cmd, *, idempotent=True) -> str`` and ``write(cmd)``
(e.g. :class:`~lltolab.comm.VisaLineTransport`); when none is given, the signal uses the
``transport`` attribute of the nearest parent device that has one.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ophyd import Signal, SignalRO
from ophyd.signal import UNSET_VALUE  # type: ignore[attr-defined]

from ._checked import checked_query

__all__ = ["MessageSignal", "MessageSignalRO", "MessageTransport"]


@runtime_checkable
class MessageTransport(Protocol):
    """What a message signal needs from a transport."""

    def query(self, command: str, *, idempotent: bool = True) -> str: ...

    def write(self, command: str) -> None: ...


LimitsLike = tuple[float, float] | Callable[[Any], tuple[float, float]] | None


class _MessageIO:
    """Shared I/O machinery of MessageSignal and MessageSignalRO (mixin before ophyd.Signal)."""

    _query: str | None
    _parser: Callable[[str], Any]
    _getter: Callable[[], Any] | None
    _transport_src: Any

    def _init_io(
        self,
        query: str | None,
        parser: Callable[[str], Any] | None,
        getter: Callable[[], Any] | None,
        transport: Any,
        units: str | None,
        precision: int | None,
    ) -> None:
        if query is not None and getter is not None:
            raise ValueError("give either query= or getter=, not both")
        self._query = query
        self._parser = parser if parser is not None else _strip
        self._getter = getter
        self._transport_src = transport
        self._units = units
        self._precision = precision

    # -------------------------------------------------------------- wiring
    def bind(
        self,
        *,
        query: str | None = None,
        getter: Callable[[], Any] | None = None,
        transport: Any = None,
    ) -> None:
        """Replace the query string, the read callable or the transport after construction."""
        if query is not None and getter is not None:
            raise ValueError("give either query= or getter=, not both")
        if query is not None:
            self._query = query
            self._getter = None
        if getter is not None:
            self._getter = getter
            self._query = None
        if transport is not None:
            self._transport_src = transport

    @property
    def transport(self) -> MessageTransport:
        """The transport used for I/O (explicit, callable, or inherited from a parent)."""
        src = self._transport_src
        if src is not None:
            if isinstance(src, MessageTransport):
                return src
            if callable(src):
                return src()
            raise TypeError(f"{self.name}: transport {src!r} has no query()/write()")
        parent = getattr(self, "parent", None)
        while parent is not None:
            found = getattr(parent, "transport", None)
            if found is not None:
                return found
            parent = getattr(parent, "parent", None)
        raise RuntimeError(f"{self.name}: no transport (give transport= or a parent with one)")

    @property
    def source_name(self) -> str:
        if self._query is not None:
            return f"message:{self._query}"
        if self._getter is not None:
            return f"callable:{getattr(self._getter, '__qualname__', repr(self._getter))}"
        return f"message:{self.name}"

    # -------------------------------------------------------------- reading
    def _fetch(self) -> Any:
        if self._getter is not None:
            return self._getter()
        if self._query is None:
            raise RuntimeError(f"{self.name}: no query string or getter to read from")
        # a reply the parser rejects resynchronises the link before the error propagates
        return checked_query(self.transport, self._query, self._parser)

    def _update_cache(self, value: Any) -> None:
        old = self._readback
        self._readback = value
        stamp = time.time()
        self._metadata["timestamp"] = stamp
        self._run_subs(sub_type=self.SUB_VALUE, old_value=old, value=value, timestamp=stamp)

    def get(self, **kwargs: Any) -> Any:
        """Read the value from the instrument (one query), cache and return it."""
        value = self._fetch()
        self._update_cache(value)
        return value

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()  # type: ignore[misc]
        entry = desc[self.name]
        if self._units is not None:
            entry["units"] = self._units
        if self._precision is not None:
            entry["precision"] = self._precision
        return desc


class MessageSignalRO(_MessageIO, SignalRO):
    """Read-only signal whose ``get()`` queries the instrument.

    Parameters
    ----------
    query : str, optional
        The query line, e.g. ``"KRDG? A"``.
    parser : callable, optional
        ``parser(reply) -> value``; should raise InstrumentProtocolError on bad replies
        (default: the stripped reply string).
    getter : callable, optional
        Zero-argument callable doing the whole read instead of ``query``/``parser``.
    transport : MessageTransport or callable, optional
        Transport or a callable returning it (default: the parent's ``transport``).
    units : str, optional
        Engineering units reported in ``describe()`` (e.g. ``"K"``).
    precision : int, optional
        Display precision reported in ``describe()``.
    **kwargs
        Passed to :class:`ophyd.SignalRO` (name, parent, kind, ...).
    """

    def __init__(
        self,
        *,
        query: str | None = None,
        parser: Callable[[str], Any] | None = None,
        getter: Callable[[], Any] | None = None,
        transport: Any = None,
        units: str | None = None,
        precision: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("value", UNSET_VALUE)
        super().__init__(**kwargs)
        self._init_io(query, parser, getter, transport, units, precision)


class MessageSignal(_MessageIO, Signal):
    """Read-write signal: ``get()`` queries, ``put()`` validates then writes.

    Parameters
    ----------
    query, parser, getter, transport, units, precision
        As for :class:`MessageSignalRO`.
    write : str or callable, optional
        Command template formatted with ``value`` (``"SETP 1,{value:.3f}"``) or a callable
        ``value -> command line``.
    putter : callable, optional
        ``putter(value)`` doing the whole write instead of ``write``.
    limits : (low, high) or callable, optional
        Inclusive limits, or ``limits(signal) -> (low, high)`` evaluated at each put.
    value_type : type, optional
        ``float`` (default: finite real numbers), ``int`` (integral numbers), ``bool``, ``str``,
        or None to skip type checks.

    Notes
    -----
    ``put`` raises ValueError naming the value and the limit before any I/O. ``set`` returns
    a status that completes when the write is done (it does not wait for a readback: the
    instrument's readback may legitimately differ, e.g. a ramping setpoint).
    """

    def __init__(
        self,
        *,
        query: str | None = None,
        parser: Callable[[str], Any] | None = None,
        getter: Callable[[], Any] | None = None,
        write: str | Callable[[Any], str] | None = None,
        putter: Callable[[Any], None] | None = None,
        transport: Any = None,
        limits: LimitsLike = None,
        value_type: type | None = float,
        units: str | None = None,
        precision: int | None = None,
        **kwargs: Any,
    ) -> None:
        if write is not None and putter is not None:
            raise ValueError("give either write= or putter=, not both")
        kwargs.setdefault("value", UNSET_VALUE)
        super().__init__(**kwargs)
        self._init_io(query, parser, getter, transport, units, precision)
        self._write_fmt = write
        self._putter = putter
        self._limits_src = limits
        self._value_type = value_type

    def bind(
        self,
        *,
        query: str | None = None,
        getter: Callable[[], Any] | None = None,
        write: str | Callable[[Any], str] | None = None,
        putter: Callable[[Any], None] | None = None,
        transport: Any = None,
    ) -> None:
        """Replace query/getter, write format/putter or the transport after construction."""
        if write is not None and putter is not None:
            raise ValueError("give either write= or putter=, not both")
        super().bind(query=query, getter=getter, transport=transport)
        if write is not None:
            self._write_fmt = write
            self._putter = None
        if putter is not None:
            self._putter = putter
            self._write_fmt = None

    @property
    def limits(self) -> tuple[float, float]:
        """Inclusive (low, high) limits; (0, 0) means none (ophyd convention)."""
        src = self._limits_src
        if src is None:
            return (0, 0)
        if callable(src):
            return tuple(src(self))  # type: ignore[return-value]
        return (src[0], src[1])

    def check_value(self, value: Any) -> Any:
        """Validate and normalise ``value``; raise ValueError naming value and limit."""
        vt = self._value_type
        if vt is float or vt is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{self.name}: expected a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"{self.name}: value must be finite, got {value!r}")
            if vt is int:
                if float(value) != int(value):
                    raise ValueError(f"{self.name}: expected an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
        elif vt is bool:
            if not isinstance(value, bool | int) or int(value) not in (0, 1):
                raise ValueError(f"{self.name}: expected a boolean, got {value!r}")
            value = bool(value)
        elif vt is str:
            if not isinstance(value, str) or any(not " " <= c <= "~" for c in value):
                raise ValueError(
                    f"{self.name}: expected a single line of printable ASCII, got {value!r}"
                )
        if self._limits_src is not None and isinstance(value, numbers.Real):
            low, high = self.limits
            unit = f" {self._units}" if self._units else ""
            if value < low:
                raise ValueError(
                    f"{self.name}: {value!r}{unit} is below the low limit {low!r}{unit}"
                )
            if value > high:
                raise ValueError(
                    f"{self.name}: {value!r}{unit} is above the high limit {high!r}{unit}"
                )
        return value

    def put(self, value: Any, *, timestamp: float | None = None, force: bool = False,
            **kwargs: Any) -> None:
        """Validate ``value`` (always, before any I/O), write it, update the cached value."""
        value = self.check_value(value)
        if self._putter is not None:
            self._putter(value)
        else:
            fmt = self._write_fmt
            if fmt is None:
                raise RuntimeError(f"{self.name}: no write format or putter")
            command = fmt(value) if callable(fmt) else fmt.format(value=value)
            self.transport.write(command)
        self._update_cache(value)

    def set(self, value: Any, **kwargs: Any):  # noqa: ANN201 - ophyd Status
        """Validate now (ValueError raised here), then write in a thread; return its Status."""
        self.check_value(value)
        return super().set(value, **kwargs)

    def _set_and_wait(self, value: Any, timeout: float | None, **kwargs: Any) -> None:
        self.put(value)


def _strip(reply: str) -> str:
    return reply.strip()
