"""Simulated Eurotherm 2000/3200-style furnace controller: a Modbus RTU slave.

Register map (Modbus addresses as in the Eurotherm 2000-series communications handbook;
temperatures in degC and rates in degC/min as scaled integers with one decimal place,
two's complement):

=====  ==================================  =====
addr   parameter                           access
=====  ==================================  =====
1      PV, process value                   R
2      target setpoint                     R/W
3      output power, %                     R
4      working output, %                   R
5      working setpoint                    R
11     setpoint low limit                  R/W
12     setpoint high limit                 R/W
13     alarm 1 threshold (absolute high)   R/W
35     setpoint rate limit, degC/min       R/W (0 = off)
75     summary status word                 R
78     setpoint rate disable (0/1)         R/W
122    instrument identifier (0x2408)      R
268    control inhibit (0/1)               R/W (1: output 0 %)
273    auto (0) / manual (1) mode          R (always auto)
=====  ==================================  =====

Aliases used by common drivers (e.g. minimalmodbus' Eurotherm 3500 example): 24 (setpoint 1,
the only setpoint here) = 2, 85 (working output) = 4, 289 (loop 1 PV) = 1, 10241 (alarm 1
threshold) = 13.

Every parameter is mirrored as an IEEE 754 float (full resolution, high word first) at
``0x8000 + 2 * addr`` (two registers). Function codes 3 and 4 read, 6 and 16 write.
Status bits: 0 alarm 1, 5 sensor break, 7 heater fail.
On sensor break the PV register reads 0x8000 (and NaN as float) and the output drops to 0 %.
"""

from __future__ import annotations

import itertools
import math
import random
import struct
import threading
import weakref

from ._clock import VirtualClock
from ._furnace_thermal import FurnaceThermalModel
from ._modbus_rtu import (
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    ModbusSlaveError,
    RtuSlave,
)
from ._rtu_tcp import RtuTcpServer
from ._serial_loop import register_loop, unregister_loop

__all__ = ["EurothermSimulator", "EUROTHERM_STATUS_BITS"]

ZERO_C_IN_K = 273.15
FLOAT_BASE = 0x8000
SENSOR_BREAK_WORD = 0x8000
INSTRUMENT_ID = 0x2408

#: Bits of the summary status word (address 75) the simulator drives.
EUROTHERM_STATUS_BITS: dict[str, int] = {"alarm_1": 0, "sensor_break": 5, "heater_fail": 7}

_READABLE = (1, 2, 3, 4, 5, 11, 12, 13, 35, 75, 78, 122, 268, 273)
_WRITABLE = (2, 11, 12, 13, 35, 78, 268)
_ALIASES = {24: 2, 85: 4, 289: 1, 10241: 13}
_FLAGS = (75, 78, 122, 268, 273)  # plain integers, not scaled
_names = itertools.count(1)


class EurothermSimulator(RtuSlave):
    """A Eurotherm-style controller driving a simulated furnace, spoken to over Modbus RTU.

    Parameters
    ----------
    clock : VirtualClock, optional
        Lab time source (a private real-time clock if omitted). Jumps of the clock are
        integrated at once, so a furnace left at 200 degC for 59 h of lab time is there.
    slave_address : int
        Modbus slave address.
    port : int
        TCP port on 127.0.0.1 for :attr:`url` (0: any free port).
    name : str, optional
        Name of the in-process serial URL ``simloop://NAME`` (default: unique).
    room_temperature_K, heat_tau_s, max_rise_K, control_tau_s : float
        Thermal model (see :class:`FurnaceThermalModel`).
    setpoint_limits_C : (float, float)
        Initial setpoint low/high limits in degC.
    alarm_threshold_C : float
        Alarm 1 (absolute high) threshold in degC.
    noise_K : float
        Standard deviation of the PV noise, K (0: noiseless).
    seed : int, optional
        Seed of the PV noise.

    Fault injection: :attr:`no_reply`, :attr:`garble_replies`, :attr:`reply_delay_s` (late
    replies), :meth:`drop_connections`,
    :attr:`sensor_break`, :attr:`heater_failure`, :attr:`over_temperature` (heater stuck
    on), :meth:`clear_faults`.
    """

    def __init__(
        self,
        clock: VirtualClock | None = None,
        *,
        slave_address: int = 1,
        port: int = 0,
        name: str | None = None,
        room_temperature_K: float = 295.15,
        heat_tau_s: float = 1200.0,
        max_rise_K: float = 1300.0,
        control_tau_s: float = 60.0,
        setpoint_limits_C: tuple[float, float] = (0.0, 1200.0),
        alarm_threshold_C: float = 1250.0,
        noise_K: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(slave_address)
        low, high = (float(v) for v in setpoint_limits_C)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"setpoint_limits_C must be finite with low < high, got {low, high}")
        if not (math.isfinite(noise_K) and noise_K >= 0):
            raise ValueError(f"noise_K must be finite and >= 0, got {noise_K!r}")
        self.clock = clock if clock is not None else VirtualClock()
        self.model = FurnaceThermalModel(
            room_K=room_temperature_K,
            heat_tau_s=heat_tau_s,
            max_rise_K=max_rise_K,
            control_tau_s=control_tau_s,
        )
        self.sp_low_C = low
        self.sp_high_C = high
        self.alarm_threshold_C = float(alarm_threshold_C)
        self.noise_K = float(noise_K)
        self.ramp_setting_C_per_min = 0.0
        self.ramp_disabled = False
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._t_lab = self.clock.now()
        self._tcp = RtuTcpServer(self, port)
        self._loop_name = name or f"eurotherm-{next(_names)}"
        self._loop_url: str | None = None
        self._started = False
        ref = weakref.ref(self)

        def _relax(_start: float, end: float) -> None:
            sim = ref()
            if sim is not None:
                sim._advance(end)

        self.clock.on_jump(_relax)

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> EurothermSimulator:
        """Serve on ``socket://127.0.0.1:PORT`` and on ``simloop://NAME``."""
        if not self._started:
            self._tcp.start()
            self._loop_url = register_loop(self._loop_name, self)
            self._started = True
        return self

    def close(self) -> None:
        """Stop serving (TCP server closed, in-process URL unregistered)."""
        if self._started:
            self._tcp.close()
            unregister_loop(self._loop_name)
            self._started = False

    def __enter__(self) -> EurothermSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``socket://127.0.0.1:PORT`` carrying raw RTU frames (after :meth:`start`).

        For :class:`lltolab.comm.ModbusRtuTransport` or any pyserial client. minimalmodbus
        opens plain device names only: give it the port object,
        ``minimalmodbus.Instrument(serial.serial_for_url(url, timeout=0.5), 1)``.
        """
        if not self._started:
            raise RuntimeError("simulator not started: call start() first")
        return self._tcp.url

    @property
    def loop_url(self) -> str:
        """In-process pyserial URL ``simloop://NAME`` (after :meth:`start`)."""
        if self._loop_url is None:
            raise RuntimeError("simulator not started: call start() first")
        return self._loop_url

    # -- physical state -----------------------------------------------------------------------
    def _advance(self, t_lab: float | None = None) -> None:
        with self._lock:
            now = self.clock.now() if t_lab is None else t_lab
            if now > self._t_lab:
                self.model.advance(now - self._t_lab)
                self._t_lab = now

    @property
    def temperature_K(self) -> float:
        """Temperature inside the furnace, what a sample placed there feels (K)."""
        with self._lock:
            self._advance()
            return self.model.temperature_K

    @property
    def target_setpoint_C(self) -> float:
        with self._lock:
            return self.model.target_K - ZERO_C_IN_K

    @property
    def status_word(self) -> int:
        with self._lock:
            self._advance()
            return self._status()

    # -- faults ------------------------------------------------------------------------------
    @property
    def sensor_break(self) -> bool:
        """Thermocouple open: status bit 5, PV invalid, output 0 %."""
        return self.model.sensor_broken

    @sensor_break.setter
    def sensor_break(self, value: bool) -> None:
        with self._lock:
            self._advance()
            self.model.sensor_broken = bool(value)

    @property
    def heater_failure(self) -> bool:
        """Heater open circuit: output has no effect, status bit 7 while output > 0."""
        return self.model.heater_failed

    @heater_failure.setter
    def heater_failure(self, value: bool) -> None:
        with self._lock:
            self._advance()
            self.model.heater_failed = bool(value)

    @property
    def over_temperature(self) -> bool:
        """Heater stuck on (failed contactor): heats past the setpoint, alarm 1 trips."""
        return self.model.heater_stuck_on

    @over_temperature.setter
    def over_temperature(self, value: bool) -> None:
        with self._lock:
            self._advance()
            self.model.heater_stuck_on = bool(value)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.no_reply = False
        self.garble_replies = False
        self.reply_delay_s = 0.0
        self.sensor_break = False
        self.heater_failure = False
        self.over_temperature = False

    # -- register map -------------------------------------------------------------------------
    def _status(self) -> int:
        word = 0
        model = self.model
        if model.temperature_K - ZERO_C_IN_K > self.alarm_threshold_C:
            word |= 1 << EUROTHERM_STATUS_BITS["alarm_1"]
        if model.sensor_broken:
            word |= 1 << EUROTHERM_STATUS_BITS["sensor_break"]
        if model.heater_failed and model.output_percent > 0:
            word |= 1 << EUROTHERM_STATUS_BITS["heater_fail"]
        return word

    def _pv_C(self) -> float:
        if self.model.sensor_broken:
            return math.nan
        noise = self._rng.gauss(0.0, self.noise_K) if self.noise_K else 0.0
        return self.model.temperature_K + noise - ZERO_C_IN_K

    def _parameter(self, address: int) -> float:
        model = self.model
        values = {
            1: self._pv_C,
            2: lambda: model.target_K - ZERO_C_IN_K,
            3: lambda: model.output_percent,
            4: lambda: model.output_percent,
            5: lambda: model.working_setpoint_K - ZERO_C_IN_K,
            11: lambda: self.sp_low_C,
            12: lambda: self.sp_high_C,
            13: lambda: self.alarm_threshold_C,
            35: lambda: self.ramp_setting_C_per_min,
            75: lambda: float(self._status()),
            78: lambda: float(self.ramp_disabled),
            122: lambda: float(INSTRUMENT_ID),
            268: lambda: float(model.inhibited),
            273: lambda: 0.0,
        }
        return values[_ALIASES.get(address, address)]()

    def _word(self, address: int) -> int:
        value = self._parameter(address)
        if _ALIASES.get(address, address) in _FLAGS:
            return int(value)
        if math.isnan(value):
            return SENSOR_BREAK_WORD
        raw = max(-32767, min(32767, round(value * 10)))
        return raw & 0xFFFF

    def read_registers(self, address: int, count: int, function: int) -> list[int]:
        with self._lock:
            self._advance()
            words: list[int] = []
            for reg in range(address, address + count):
                if reg >= FLOAT_BASE:
                    parameter, half = divmod(reg - FLOAT_BASE, 2)
                    if _ALIASES.get(parameter, parameter) not in _READABLE:
                        raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)
                    high, low = struct.unpack(">HH", struct.pack(">f", self._parameter(parameter)))
                    words.append(low if half else high)
                elif _ALIASES.get(reg, reg) in _READABLE:
                    words.append(self._word(reg))
                else:
                    raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)
            return words

    def write_registers(self, address: int, words: list[int]) -> None:
        with self._lock:
            self._advance()
            updates: list[tuple[int, float]] = []
            if address >= FLOAT_BASE:
                if (address - FLOAT_BASE) % 2 or len(words) % 2:
                    raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
                for i in range(0, len(words), 2):
                    parameter = (address - FLOAT_BASE) // 2 + i // 2
                    value = struct.unpack(">f", struct.pack(">HH", words[i], words[i + 1]))[0]
                    updates.append((parameter, value))
            else:
                for offset, word in enumerate(words):
                    parameter = _ALIASES.get(address + offset, address + offset)
                    raw = word - 0x10000 if word & 0x8000 else word
                    updates.append((parameter, float(word) if parameter in _FLAGS else raw / 10))
            updates = [(_ALIASES.get(p, p), v) for p, v in updates]
            for parameter, _ in updates:
                if parameter not in _WRITABLE:
                    raise ModbusSlaveError(ILLEGAL_DATA_ADDRESS)
            for parameter, value in updates:
                self._store(parameter, value)

    def _store(self, parameter: int, value: float) -> None:
        if not math.isfinite(value):
            raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
        model = self.model
        if parameter == 2:
            if not self.sp_low_C <= value <= self.sp_high_C:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            model.set_target(value + ZERO_C_IN_K)
        elif parameter in (11, 12):
            low = value if parameter == 11 else self.sp_low_C
            high = value if parameter == 12 else self.sp_high_C
            if not low < high:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            self.sp_low_C, self.sp_high_C = low, high
            clamped = min(high, max(low, model.target_K - ZERO_C_IN_K))
            if clamped != model.target_K - ZERO_C_IN_K:
                model.set_target(clamped + ZERO_C_IN_K)
        elif parameter == 13:
            self.alarm_threshold_C = value
        elif parameter == 35:
            if value < 0:
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            self.ramp_setting_C_per_min = value
            model.set_ramp(0.0 if self.ramp_disabled else value / 60.0)
        elif parameter in (78, 268):
            if value not in (0.0, 1.0):
                raise ModbusSlaveError(ILLEGAL_DATA_VALUE)
            if parameter == 78:
                self.ramp_disabled = bool(value)
                model.set_ramp(0.0 if self.ramp_disabled else self.ramp_setting_C_per_min / 60)
            else:
                model.inhibited = bool(value)
