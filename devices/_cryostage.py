"""The cryo stage: a Lake Shore 335/336-style temperature controller as an ophyd positioner."""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt

from lltolab.comm import (
    InstrumentProtocolError,
    InstrumentReportedError,
    MessageSignal,
    MessageSignalRO,
    MessageTransport,
    TemperatureLoop,
    VisaLineTransport,
    checked_query,
    parse_fields,
    parse_float,
    parse_int,
)

__all__ = ["CryoStage", "LakeShoreLink"]

# standard event status register bits that mean an error (query, device, execution, command)
_ESR_ERROR_BITS = {4: "query error", 8: "device-dependent error", 16: "execution error",
                   32: "command error"}
_ESR_ERROR_MASK = sum(_ESR_ERROR_BITS)
_RDGST_BITS = {1: "invalid reading", 16: "temperature underrange", 32: "temperature overrange",
               64: "sensor units zero", 128: "sensor units overrange"}
_HTRST_CODES = {1: "heater open load", 2: "heater short"}
_INPUTS = ("A", "B", "C", "D")
_MIN_RAMP_K_PER_MIN = 0.1
_MAX_RAMP_K_PER_MIN = 100.0
_MAX_READING_K = 2000.0  # above any sensor a Lake Shore 335/336 reads
_ZERO_C_IN_K = 273.15


class LakeShoreLink:
    """A line transport plus the Lake Shore error-register check after every command.

    ``write(cmd)`` sends ``cmd;*ESR?`` as one line (never repeated) and raises
    :class:`~lltolab.comm.InstrumentReportedError` if the query, device, execution or command
    error bit is set; the power-on bit is ignored. ``query`` and ``resync`` pass through.

    Parameters
    ----------
    transport : MessageTransport
        E.g. a :class:`~lltolab.comm.VisaLineTransport`.
    """

    def __init__(self, transport: MessageTransport) -> None:
        self.transport = transport

    def query(self, command: str, *, idempotent: bool = True) -> str:
        return self.transport.query(command, idempotent=idempotent)

    def write(self, command: str) -> None:
        esr = checked_query(self.transport, f"{command};*ESR?", _esr_parser(command),
                            idempotent=False)
        check_esr(esr, command)

    def resync(self) -> None:
        """Bring the link back in step (see :meth:`~lltolab.comm.VisaLineTransport.resync`)."""
        method = getattr(self.transport, "resync", None)
        if method is not None:
            method()

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()


def check_esr(esr: int, command: str) -> None:
    """Raise InstrumentReportedError if the standard event status register holds an error."""
    if esr & _ESR_ERROR_MASK:
        names = ", ".join(name for bit, name in _ESR_ERROR_BITS.items() if esr & bit)
        raise InstrumentReportedError(f"Lake Shore rejected {command!r}: *ESR? {esr} ({names})")


def _input_status_error(status: int, channel: str) -> InstrumentReportedError:
    names = ", ".join(name for bit, name in _RDGST_BITS.items() if status & bit) or "unknown"
    return InstrumentReportedError(f"input {channel} status {status} ({names}): sensor fault")


def _esr_parser(command: str):  # noqa: ANN202 - a parser closure
    def parse(reply: str) -> int:
        return _in_range(parse_int(reply, what=f"*ESR? after {command!r}"), 0, 255,
                         f"*ESR? after {command!r}", "")
    return parse


def _in_range(value: float, low: float, high: float, what: str, unit: str,
              *, low_open: bool = False) -> float:
    """``value`` if physically possible, else InstrumentProtocolError naming value and limit."""
    if value < low or (low_open and value == low):
        relation = "at or below" if low_open else "below"
        raise InstrumentProtocolError(
            f"{what}: {value!r}{unit} is {relation} the physical limit {low!r}{unit}"
        )
    if value > high:
        raise InstrumentProtocolError(
            f"{what}: {value!r}{unit} is above the limit {high!r}{unit}"
        )
    return value


def _parse_kelvin(reply: str, what: str = "KRDG?") -> float:
    """A temperature in K: a strict number, > 0 K and <= 2000 K."""
    return _in_range(parse_float(reply, what=what), 0.0, _MAX_READING_K, what, " K",
                     low_open=True)


def _parse_setpoint(reply: str) -> float:
    return _in_range(parse_float(reply, what="SETP?"), 0.0, _MAX_READING_K, "SETP?", " K")


def _parse_celsius(reply: str) -> float:
    return _in_range(parse_float(reply, what="CRDG?"), -_ZERO_C_IN_K,
                     _MAX_READING_K - _ZERO_C_IN_K, "CRDG?", " degC", low_open=True)


def _parse_percent(reply: str) -> float:
    return _in_range(parse_float(reply, what="HTR?"), 0.0, 100.0, "HTR?", " %")


def _parse_status(reply: str) -> int:
    return int(_in_range(parse_int(reply, what="status query"), 0, 255, "status query", ""))


def _parse_ramp(reply: str) -> float:
    """``RAMP?`` reply ``"on,rate"`` -> the active rate in K/min (0.0 when ramping is off)."""
    on, rate = parse_fields(reply, 2, what="RAMP?")
    enabled = parse_int(on, what="RAMP? on/off")
    if enabled not in (0, 1):
        raise InstrumentProtocolError(f"RAMP?: on/off must be 0 or 1, got {reply!r}")
    rate_K_per_min = _in_range(parse_float(rate, what="RAMP? rate"), 0.0, _MAX_RAMP_K_PER_MIN,
                               "RAMP? rate", " K/min")
    return rate_K_per_min if enabled else 0.0


def _idn(reply: str) -> str:
    text = reply.strip()
    if text.count(",") < 3:
        raise InstrumentProtocolError(
            f"*IDN?: expected 'maker,model,serial,firmware', got {reply!r}"
        )
    return text


class CryoStage(TemperatureLoop):
    """LN2-cooled SIMS sample stage under a Lake Shore 335/336 controller (kelvin).

    A bluesky Movable/Stoppable/Readable/Configurable device: ``set(T_K)`` writes ``SETP`` and
    completes once input ``input_channel`` has stayed within ``tolerance`` of the target for
    ``settle_time`` s (see :class:`~lltolab.comm.TemperatureLoop`); ``stop()`` holds the
    present temperature during a move. Every command is followed by ``*ESR?`` and an error bit
    raises :class:`~lltolab.comm.InstrumentReportedError`; a sensor fault (``RDGST?`` nonzero)
    raises it on every temperature read, a heater fault (``HTRST?``) during moves.

    Parameters
    ----------
    resource : str or MessageTransport
        VISA resource (e.g. ``"TCPIP::192.168.1.20::7777::SOCKET"``) or an open transport.
    name : str
        Device name; the temperature reads as ``name`` (K).
    input_channel : str
        Sensor input of the stage (``"A"`` … ``"D"``).
    loop : int
        Control loop / heater output (1 or 2).
    limits : (float, float)
        Allowed setpoints in K (default 77 … 500 K).
    tolerance, settle_time, timeout, poll_period : float
        Settling band (K), time in band (s), time allowed beyond ramp + settle (s), poll (s).
    heater_range : int, optional
        If given (0 off … 3 high), ensured with ``RANGE`` before every move.
    timeout_s : float
        I/O timeout of one exchange when ``resource`` is a string, s.
    """

    readback = Cpt(MessageSignalRO, query="KRDG? A", parser=_parse_kelvin, kind="hinted",
                   units="K", precision=3)
    setpoint = Cpt(MessageSignal, query="SETP? 1", write="SETP 1,{value:.4f}",
                   parser=_parse_setpoint, kind="normal", units="K", precision=3,
                   limits=lambda sig: sig.parent.limits, doc="working (ramping) setpoint, K")
    temperature_C = Cpt(MessageSignalRO, query="CRDG? A", parser=_parse_celsius, kind="omitted",
                        units="degC", precision=3, doc="stage temperature in degrees Celsius")
    heater_output = Cpt(MessageSignalRO, query="HTR? 1", parser=_parse_percent, kind="normal",
                        units="%", precision=1, doc="heater output, percent of range")
    heater_status = Cpt(MessageSignalRO, query="HTRST? 1", parser=_parse_status, kind="normal",
                        doc="0 ok, 1 open load, 2 short")
    input_status = Cpt(MessageSignalRO, query="RDGST? A", parser=_parse_status, kind="normal",
                       doc="RDGST? bit field, 0 = valid reading")
    ramp_rate = Cpt(MessageSignal, query="RAMP? 1", parser=_parse_ramp, kind="config",
                    units="K/min", limits=(0.0, _MAX_RAMP_K_PER_MIN),
                    doc="setpoint ramp rate in K/min; 0 = ramping off")
    heater_range = Cpt(MessageSignal, query="RANGE? 1", write="RANGE 1,{value:d}",
                       parser=_parse_status, value_type=int, limits=(0, 3), kind="config",
                       doc="0 off, 1 low, 2 medium, 3 high")
    identity = Cpt(MessageSignalRO, query="*IDN?", parser=_idn, kind="config")

    def __init__(
        self,
        resource: str | MessageTransport,
        *,
        name: str,
        input_channel: str = "A",
        loop: int = 1,
        limits: tuple[float, float] = (77.0, 500.0),
        tolerance: float = 0.5,
        settle_time: float = 30.0,
        timeout: float = 600.0,
        poll_period: float = 1.0,
        heater_range: int | None = None,
        timeout_s: float = 2.0,
        **kwargs: Any,
    ) -> None:
        if input_channel not in _INPUTS:
            raise ValueError(f"input_channel must be one of {_INPUTS}, got {input_channel!r}")
        if loop not in (1, 2):
            raise ValueError(f"loop must be 1 or 2, got {loop!r}")
        if heater_range is not None and heater_range not in (0, 1, 2, 3):
            raise ValueError(f"heater_range must be 0..3 or None, got {heater_range!r}")
        if isinstance(resource, str):
            transport: MessageTransport = VisaLineTransport(
                resource, timeout_s=timeout_s, read_termination="\r\n", write_termination="\r\n"
            )
        elif isinstance(resource, MessageTransport):
            transport = resource
        else:
            raise TypeError(f"resource must be a VISA resource string or a transport, got "
                            f"{resource!r}")
        self._link = LakeShoreLink(transport)
        self.input_channel = input_channel
        self.loop = loop
        self._ensure_range = heater_range
        super().__init__(
            "", name=name, limits=limits, tolerance=tolerance, settle_time=settle_time,
            timeout=timeout, poll_period=poll_period, **kwargs,
        )
        self.readback.bind(getter=self._read_kelvin)
        self.setpoint.bind(query=f"SETP? {loop}", write=f"SETP {loop},{{value:.4f}}")
        self.temperature_C.bind(query=f"CRDG? {input_channel}")
        self.heater_output.bind(query=f"HTR? {loop}")
        self.heater_status.bind(query=f"HTRST? {loop}")
        self.input_status.bind(query=f"RDGST? {input_channel}")
        self.ramp_rate.bind(query=f"RAMP? {loop}", write=self._ramp_command)
        self.heater_range.bind(query=f"RANGE? {loop}", write=f"RANGE {loop},{{value:d}}")

    # ------------------------------------------------------------------ plumbing
    @property
    def transport(self) -> LakeShoreLink:
        """The link every signal of this device talks through."""
        return self._link

    def close(self) -> None:
        """Close the link (reopened automatically on next use)."""
        self._link.close()

    def destroy(self) -> None:
        self.close()
        super().destroy()

    def _ramp_command(self, rate_K_per_min: float) -> str:
        if 0 < rate_K_per_min < _MIN_RAMP_K_PER_MIN:
            raise ValueError(
                f"{self.ramp_rate.name}: {rate_K_per_min!r} K/min is below the lowest ramp rate "
                f"{_MIN_RAMP_K_PER_MIN} K/min (use 0 to switch ramping off)"
            )
        if rate_K_per_min == 0:
            return f"RAMP {self.loop},0,0"
        return f"RAMP {self.loop},1,{rate_K_per_min:.1f}"

    # ------------------------------------------------------------------ reads
    def _read_kelvin(self) -> float:
        """``KRDG?`` and ``RDGST?`` in one exchange; a sensor fault raises."""
        ch = self.input_channel
        command = f"KRDG? {ch};RDGST? {ch}"

        def parse(reply: str) -> tuple[float, int]:
            kelvin, status = parse_fields(reply, 2, sep=";", what=command)
            code = _parse_status(status)
            # with a sensor fault the reading is meaningless (0): the status tells why
            value = parse_float(kelvin, what=command) if code else _parse_kelvin(kelvin, command)
            return value, code

        kelvin, code = checked_query(self._link, command, parse)
        if code:
            raise _input_status_error(code, ch)
        return kelvin

    # ------------------------------------------------------------------ TemperatureLoop hooks
    def _poll_temperature(self) -> float:
        ch, out = self.input_channel, self.loop
        command = f"KRDG? {ch};RDGST? {ch};HTRST? {out}"

        def parse(reply: str) -> tuple[float, int, int]:
            kelvin, status, heater = parse_fields(reply, 3, sep=";", what=command)
            code, heater_code = _parse_status(status), _parse_status(heater)
            value = parse_float(kelvin, what=command) if code else _parse_kelvin(kelvin, command)
            return value, code, heater_code

        value, code, heater_code = checked_query(self._link, command, parse)
        if code:
            raise _input_status_error(code, ch)
        if heater_code:
            label = _HTRST_CODES.get(heater_code, "unknown")
            raise InstrumentReportedError(f"heater output {out} status {heater_code} ({label})")
        self.readback._update_cache(value)
        return value

    def _ramp_rate_K_per_s(self) -> float | None:
        rate = float(self.ramp_rate.get())
        return rate / 60.0 if rate > 0 else None

    def _prepare_move(self, target_K: float) -> None:
        if self._ensure_range is not None and self.heater_range.get() != self._ensure_range:
            self.heater_range.put(self._ensure_range)
