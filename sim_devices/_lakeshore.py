"""A Lake Shore 336-style temperature controller on a loopback TCP socket.

Speaks the 336 remote command set for what the cryo stage needs (``*IDN?``, ``*ESR?``,
``*CLS``, ``*RST``, ``*OPC?``, ``KRDG?``, ``CRDG?``, ``SETP``/``SETP?``, ``RAMP``/``RAMP?``,
``RAMPST?``, ``RANGE``/``RANGE?``, ``HTR?``, ``HTRST?``, ``RDGST?``). Several commands may be
joined with ``;`` (also ``;:`` as Lake Shore's own Python driver sends); the replies of the
queries among them come back on one line joined by ``;``. Replies end in CR LF, temperatures on
the wire are kelvin, ``SETP?`` returns the ramping working setpoint. Unknown commands set the
command-error bit (32) of the standard event status register and get no reply; parameters out
of range set the execution-error bit (16). The power-on bit (128) is set at start.

Control loop 1 drives the stage heater from input A (the stage sensor); input B reads the same
stage. Inputs C/D have no sensor (reading 0, status "invalid reading").
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

import numpy as np

from ._clock import VirtualClock
from ._cryo_thermal import CryoStageThermalModel
from ._line_server import LineServer, ReplyFault

__all__ = ["LakeShoreSimulator", "LAKESHORE_FAULTS"]

ESR_OPC = 1
ESR_QYE = 4
ESR_EXE = 16
ESR_CME = 32
ESR_PON = 128

RDGST_INVALID = 1
HTRST_OPEN_LOAD = 1

LAKESHORE_FAULTS = frozenset(
    {
        "no_reply", "garbled", "late_reply", "reject_connections",
        "sensor_break", "ln2_empty", "heater_failure",
    }
)
"""Fault names accepted by :meth:`LakeShoreSimulator.inject_fault` (plus one-shot "drop")."""

_TOKEN = re.compile(r"^\s*:?\s*(\*?[A-Za-z]+\??)\s*(.*?)\s*$")
_INPUTS = ("A", "B", "C", "D")
_SETP_MAX_K = 1500.0
_RAMP_MAX_K_PER_MIN = 100.0


class _CommandError(Exception):
    """Unknown command / wrong syntax (ESR bit 32)."""


class _ExecutionError(Exception):
    """Parameter out of range (ESR bit 16)."""


class LakeShoreSimulator:
    """Simulated Lake Shore 336 with an LN2-cooled stage (TCP on 127.0.0.1).

    Parameters
    ----------
    clock : VirtualClock, optional
        Shared lab clock; a private one running at ``time_scale`` is made if omitted.
    time_scale : float
        Lab seconds per wall second for the private clock.
    port : int
        TCP port (0: any free port; see :attr:`resource`).
    host : str
        Must be ``"127.0.0.1"``.
    initial_K : float
        Stage temperature at start, K.
    noise_K : float
        Standard deviation of the reading noise, K.
    seed : int, optional
        Seed of the reading noise.
    serial : str
        Instrument serial number reported by ``*IDN?``.
    **model_kwargs
        Passed to :class:`CryoStageThermalModel` (heat capacity, conductances, heater powers).

    Examples
    --------
    >>> with LakeShoreSimulator(time_scale=60) as sim:          # doctest: +SKIP
    ...     import pyvisa
    ...     inst = pyvisa.ResourceManager("@py").open_resource(
    ...         sim.resource, read_termination="\\r\\n", write_termination="\\n")
    ...     inst.query("KRDG? A")
    '+295.003'
    """

    def __init__(
        self,
        *,
        clock: VirtualClock | None = None,
        time_scale: float = 1.0,
        port: int = 0,
        host: str = "127.0.0.1",
        initial_K: float = 295.0,
        noise_K: float = 0.01,
        seed: int | None = None,
        serial: str = "LSA33600",
        **model_kwargs: float,
    ) -> None:
        if not (math.isfinite(noise_K) and noise_K >= 0):
            raise ValueError(f"noise_K must be finite and >= 0 K, got {noise_K!r}")
        self.clock = clock if clock is not None else VirtualClock(time_scale)
        self.model = CryoStageThermalModel(self.clock.now, initial_K=initial_K, **model_kwargs)
        self.noise_K = float(noise_K)
        self.serial = serial
        self._rng = np.random.default_rng(seed)
        self._seed = None if seed is None else abs(int(seed))
        self._lock = threading.RLock()
        self._esr = ESR_PON
        self._faults: set[str] = set()
        # output 2 exists on a 336 but drives nothing here: keep its settings only
        self._out2 = {"setp": 0.0, "ramp": (0, 0.0), "range": 0}
        self._ramp_rate_K_per_min = 0.0
        self.commands: list[str] = []
        """Every command line received (for tests), most recent last (bounded)."""
        self._server = LineServer(self.handle_line, host=host, port=port, name="lakeshore336")
        self._closed = False
        self.clock.on_jump(self._on_jump)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LakeShoreSimulator:
        """Start serving (returns self)."""
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving and drop every client."""
        self._closed = True
        self._server.close()

    def __enter__(self) -> LakeShoreSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def resource(self) -> str:
        """VISA resource string, ``TCPIP::127.0.0.1::PORT::SOCKET``."""
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    # ------------------------------------------------------------------ physics
    @property
    def temperature_K(self) -> float:
        """Stage temperature now (what the sample feels), K; no reading noise."""
        return self.model.temperature_K

    def _on_jump(self, start_s: float, end_s: float) -> None:
        if not self._closed:
            self.model.advance(end_s)

    # ------------------------------------------------------------------ faults
    @property
    def faults(self) -> frozenset[str]:
        """Active faults."""
        return frozenset(self._faults)

    def inject_fault(self, fault: str, *, delay_s: float = 2.0) -> None:
        """Start a fault.

        Parameters
        ----------
        fault : str
            ``"no_reply"`` (nothing answered or executed), ``"garbled"`` (replies corrupted),
            ``"late_reply"`` (replies delayed by ``delay_s``), ``"drop"`` (one-shot: close every
            connection now), ``"reject_connections"`` (new connections closed at once),
            ``"sensor_break"`` (input A invalid: reading 0, RDGST? 1, heater off),
            ``"ln2_empty"`` (no LN2: the stage warms towards room temperature),
            ``"heater_failure"`` (HTRST? 1 = open load, no heating).
        delay_s : float
            Reply delay for ``"late_reply"``, s.
        """
        if fault == "drop":
            self._server.drop_connections()
            return
        if fault not in LAKESHORE_FAULTS:
            raise ValueError(
                f"unknown fault {fault!r}; expected 'drop' or one of {sorted(LAKESHORE_FAULTS)}"
            )
        self._faults.add(fault)
        self._apply_faults(delay_s)

    def queue_reply_fault(self, fault: ReplyFault, *, delay_s: float = 1.0) -> None:
        """Spoil the next reply line (one-shot); see :data:`REPLY_FAULTS` of the line server.

        Parameters
        ----------
        fault : str or callable
            ``"duplicate"``, ``"extra_line"``, ``"garble"``, ``"partial"``, ``"late"``,
            ``"silent"``, ``"drop"``, ``"split_late"``, or ``fn(reply_bytes) -> bytes``.
        delay_s : float
            Delay of ``"late"`` / ``"split_late"``, s.
        """
        self._server.queue_reply_fault(fault, delay_s=delay_s)

    @property
    def replies_faulted(self) -> int:
        """Replies a one-shot fault was applied to."""
        return self._server.replies_faulted

    def clear_fault(self, fault: str | None = None) -> None:
        """End one fault (or all with None)."""
        if fault is None:
            self._faults.clear()
            self._server.clear_reply_faults()
        elif fault in self._faults:
            self._faults.discard(fault)
        elif fault not in LAKESHORE_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(LAKESHORE_FAULTS)}")
        self._apply_faults(self._server.late_reply_s or 2.0)

    def _apply_faults(self, delay_s: float) -> None:
        f = self._faults
        srv = self._server
        srv.no_reply = "no_reply" in f
        srv.garble = "garbled" in f
        srv.late_reply_s = float(delay_s) if "late_reply" in f else 0.0
        srv.reject_connections = "reject_connections" in f
        self.model.sensor_ok = "sensor_break" not in f
        self.model.ln2_present = "ln2_empty" not in f
        self.model.heater_ok = "heater_failure" not in f

    # ------------------------------------------------------------------ protocol
    def handle_line(self, line: str) -> str | None:
        """Execute one command line; return the reply line (without CR LF) or None."""
        with self._lock:
            if len(self.commands) > 10_000:
                del self.commands[:5_000]
            self.commands.append(line)
            replies: list[str] = []
            for part in line.split(";"):
                if not part.strip(" :"):
                    continue
                try:
                    reply = self._execute(part)
                except _CommandError:
                    self._esr |= ESR_CME
                    continue
                except _ExecutionError:
                    self._esr |= ESR_EXE
                    continue
                if reply is not None:
                    replies.append(reply)
            return ";".join(replies) if replies else None

    def _execute(self, part: str) -> str | None:
        match = _TOKEN.match(part)
        if match is None:
            raise _CommandError(part)
        mnemonic = match.group(1).upper()
        args = [a.strip() for a in match.group(2).split(",")] if match.group(2) else []
        handler = _COMMANDS.get(mnemonic)
        if handler is None:
            raise _CommandError(part)
        return handler(self, args)

    # --- common commands
    def _idn(self, args: list[str]) -> str:
        _nargs(args, 0)
        return f"LSCI,MODEL336,{self.serial}/#######,2.9"

    def _esr_q(self, args: list[str]) -> str:
        _nargs(args, 0)
        value, self._esr = self._esr, 0
        return str(value)

    def _cls(self, args: list[str]) -> None:
        _nargs(args, 0)
        self._esr = 0

    def _opc_q(self, args: list[str]) -> str:
        _nargs(args, 0)
        return "1"

    def _opc(self, args: list[str]) -> None:
        _nargs(args, 0)
        self._esr |= ESR_OPC

    def _rst(self, args: list[str]) -> None:
        _nargs(args, 0)
        self.model.set_range(0)
        self.model.set_ramp(False, 0.0)
        self._ramp_rate_K_per_min = 0.0
        self.model.set_target(self.model.temperature_K)

    # --- readings
    def _reading_K(self, name: str) -> float:
        if name not in _INPUTS:
            raise _ExecutionError(name)
        if name in ("C", "D") or not self.model.sensor_ok:
            return 0.0
        noise = self._noise_K() if self.noise_K > 0 else 0.0
        return max(self.model.temperature_K + noise, 0.0)

    def _noise_K(self) -> float:
        """Reading noise: with a seed, a function of (seed, lab time to 1 ms), so the readings
        do not depend on how many queries other clients made."""
        if self._seed is None:
            return float(self._rng.normal(0.0, self.noise_K))
        tick = int(round(abs(self.clock.now()) * 1000.0))
        return float(np.random.default_rng((self._seed, tick)).normal(0.0, self.noise_K))

    def _krdg(self, args: list[str]) -> str:
        name = _one(args).upper()
        if name == "0":
            return ",".join(_fmt_temp(self._reading_K(i)) for i in _INPUTS)
        return _fmt_temp(self._reading_K(name))

    def _crdg(self, args: list[str]) -> str:
        name = _one(args).upper()
        names = _INPUTS if name == "0" else (name,)
        values = []
        for i in names:
            kelvin = self._reading_K(i)
            values.append(_fmt_temp(kelvin - 273.15 if kelvin > 0 else 0.0))
        return ",".join(values)

    def _rdgst(self, args: list[str]) -> str:
        name = _one(args).upper()
        if name not in _INPUTS:
            raise _ExecutionError(name)
        bad = name in ("C", "D") or not self.model.sensor_ok
        return str(RDGST_INVALID if bad else 0)

    # --- control loop
    def _output(self, args: list[str], count: int) -> int:
        _nargs(args, count)
        try:
            out = int(args[0])
        except ValueError:
            raise _ExecutionError(args[0]) from None
        if out not in (1, 2):
            raise _ExecutionError(args[0])
        return out

    def _setp(self, args: list[str]) -> None:
        out = self._output(args, 2)
        value = _number(args[1])
        if not 0.0 <= value <= _SETP_MAX_K:
            raise _ExecutionError(args[1])
        if out == 1:
            self.model.set_target(value)
        else:
            self._out2["setp"] = value

    def _setp_q(self, args: list[str]) -> str:
        out = self._output(args, 1)
        value = self.model.working_setpoint_K if out == 1 else self._out2["setp"]
        return _fmt_temp(value)

    def _ramp(self, args: list[str]) -> None:
        out = self._output(args, 3)
        on = _number(args[1])
        rate = _number(args[2])
        if on not in (0, 1) or not 0.0 <= rate <= _RAMP_MAX_K_PER_MIN:
            raise _ExecutionError(",".join(args))
        if 0 < rate < 0.1:
            raise _ExecutionError(args[2])
        if out == 1:
            self._ramp_rate_K_per_min = rate
            self.model.set_ramp(bool(on), rate / 60.0)
        else:
            self._out2["ramp"] = (int(on), rate)

    def _ramp_q(self, args: list[str]) -> str:
        out = self._output(args, 1)
        if out == 1:
            on = int(self.model.ramp[0])
            rate = self._ramp_rate_K_per_min
        else:
            on, rate = self._out2["ramp"]
        return f"{on},{rate:+.1f}"

    def _rampst_q(self, args: list[str]) -> str:
        out = self._output(args, 1)
        return str(int(self.model.ramping)) if out == 1 else "0"

    def _range(self, args: list[str]) -> None:
        out = self._output(args, 2)
        value = _number(args[1])
        if value not in (0, 1, 2, 3):
            raise _ExecutionError(args[1])
        if out == 1:
            self.model.set_range(int(value))
        else:
            self._out2["range"] = int(value)

    def _range_q(self, args: list[str]) -> str:
        out = self._output(args, 1)
        return str(self.model.heater_range if out == 1 else self._out2["range"])

    def _htr_q(self, args: list[str]) -> str:
        out = self._output(args, 1)
        percent = 100.0 * self.model.heater_output_fraction if out == 1 else 0.0
        return f"{percent:+.1f}"

    def _htrst_q(self, args: list[str]) -> str:
        out = self._output(args, 1)
        return str(HTRST_OPEN_LOAD if (out == 1 and not self.model.heater_ok) else 0)


_COMMANDS: dict[str, Callable[[LakeShoreSimulator, list[str]], str | None]] = {
    "*IDN?": LakeShoreSimulator._idn,
    "*ESR?": LakeShoreSimulator._esr_q,
    "*CLS": LakeShoreSimulator._cls,
    "*OPC?": LakeShoreSimulator._opc_q,
    "*OPC": LakeShoreSimulator._opc,
    "*RST": LakeShoreSimulator._rst,
    "KRDG?": LakeShoreSimulator._krdg,
    "CRDG?": LakeShoreSimulator._crdg,
    "RDGST?": LakeShoreSimulator._rdgst,
    "SETP": LakeShoreSimulator._setp,
    "SETP?": LakeShoreSimulator._setp_q,
    "RAMP": LakeShoreSimulator._ramp,
    "RAMP?": LakeShoreSimulator._ramp_q,
    "RAMPST?": LakeShoreSimulator._rampst_q,
    "RANGE": LakeShoreSimulator._range,
    "RANGE?": LakeShoreSimulator._range_q,
    "HTR?": LakeShoreSimulator._htr_q,
    "HTRST?": LakeShoreSimulator._htrst_q,
}


def _fmt_temp(value: float) -> str:
    return f"{value:+.3f}"


def _nargs(args: list[str], count: int) -> None:
    if len(args) != count or any(a == "" for a in args):
        raise _CommandError(args)


def _one(args: list[str]) -> str:
    _nargs(args, 1)
    return args[0]


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _ExecutionError(text) from None
    if not math.isfinite(value):
        raise _ExecutionError(text)
    return value
