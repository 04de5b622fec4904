"""Annealing furnace behind a Eurotherm 2000/3200-style controller, over Modbus RTU.

Modbus addresses (Eurotherm 2000-series communications handbook; values are scaled integers
in degC with one decimal place, two's complement): PV 1, target setpoint 2, output power 3
(%), working setpoint 5, setpoint low/high limits 11/12, setpoint rate limit 35 (degC/min,
0 = off), summary status word 75 (bit 0 alarm 1, bit 5 sensor break, bit 6 loop break,
bit 7 heater fail). The device speaks kelvin; conversion happens here.

Every temperature register is checked: the sensor-break word 0x8000 raises
:class:`~lltolab.comm.InstrumentReportedError`, a value at or below 0 K
:class:`~lltolab.comm.InstrumentProtocolError`; no impossible temperature is returned.
"""

from __future__ import annotations

import math
from typing import Any

from ophyd import Component as Cpt

from lltolab.comm import (
    InstrumentProtocolError,
    InstrumentReportedError,
    MessageSignal,
    MessageSignalRO,
    ModbusRtuTransport,
    TemperatureLoop,
)

__all__ = ["Furnace", "FURNACE_REGISTERS", "FURNACE_STATUS_BITS", "furnace_faults"]

ZERO_C_IN_K = 273.15
#: Modbus addresses used by :class:`Furnace`.
FURNACE_REGISTERS: dict[str, int] = {
    "pv": 1,
    "target_setpoint": 2,
    "output": 3,
    "working_setpoint": 5,
    "setpoint_low": 11,
    "setpoint_high": 12,
    "ramp_rate": 35,
    "status": 75,
}
#: Summary status word bits that make a move fail (bit number -> meaning).
FURNACE_STATUS_BITS: dict[int, str] = {
    0: "alarm 1 (over-temperature)",
    5: "sensor break",
    6: "loop break",
    7: "heater fail",
}
_SENSOR_BREAK_WORD = 0x8000
_DECIMALS = 1
_OUTPUT_RANGE_PERCENT = (-100.0, 100.0)


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def furnace_faults(word: int) -> str:
    """The faults a summary status word reports, comma-separated ("" when there is none).

    Parameters
    ----------
    word : int
        Summary status word (address 75), 0..65535.
    """
    return ", ".join(text for bit, text in FURNACE_STATUS_BITS.items() if word & (1 << bit))


class Furnace(TemperatureLoop):
    """Eurotherm-controlled furnace as a bluesky Movable/Stoppable/Readable (kelvin).

    ``set(T)`` writes the target setpoint and completes once the PV has stayed within
    ``tolerance`` of ``T`` for ``settle_time`` seconds; it fails on timeout (then holds the
    present temperature) or when the controller reports sensor break, loop break, heater
    fail or alarm 1 (over-temperature). ``stop()`` holds the present temperature while a move
    is in progress and does nothing otherwise.

    Setpoints outside the software limits (``limits``) or outside the controller's own
    setpoint limits (addresses 11/12, read once before the first move) raise ValueError
    naming the value and the limit before anything is written.

    Parameters
    ----------
    port_or_url : str, optional
        Serial port or pyserial URL of the controller (e.g. ``/dev/ttyUSB0``,
        ``socket://127.0.0.1:PORT``). Not needed when ``transport`` is given.
    name : str
        ophyd name.
    transport : ModbusRtuTransport, optional
        An existing transport (shared bus, custom settings).
    slave_address, baudrate, timeout_s
        Passed to :class:`~lltolab.comm.ModbusRtuTransport` (timeout_s per transaction).
    limits : (float, float)
        Software setpoint limits in K.
    tolerance, settle_time, timeout, poll_period
        Settling band (K), time in band (s), time allowed beyond ramp + settle (s), readback
        poll period (s); see :class:`~lltolab.comm.TemperatureLoop`.
    """

    working_setpoint = Cpt(MessageSignalRO, kind="normal", units="K", precision=1)
    output = Cpt(MessageSignalRO, kind="normal", units="%", precision=1)
    status = Cpt(MessageSignalRO, kind="normal", doc="summary status word (address 75)")
    ramp_rate = Cpt(
        MessageSignal, kind="config", units="K/min", precision=1, limits=(0.0, 3276.7),
        doc="setpoint rate limit, K/min (0: off)",
    )
    setpoint_low = Cpt(MessageSignalRO, kind="config", units="K", precision=1,
                       doc="controller's setpoint low limit")
    setpoint_high = Cpt(MessageSignalRO, kind="config", units="K", precision=1,
                        doc="controller's setpoint high limit")
    fault = Cpt(MessageSignalRO, kind="omitted",
                doc="faults the status word reports, comma-separated; empty when none")
    sensor_break = Cpt(MessageSignalRO, kind="omitted", doc="status bit 5")
    loop_break = Cpt(MessageSignalRO, kind="omitted", doc="status bit 6")
    heater_fail = Cpt(MessageSignalRO, kind="omitted", doc="status bit 7")
    alarm_1 = Cpt(MessageSignalRO, kind="omitted", doc="status bit 0 (over-temperature)")

    def __init__(
        self,
        port_or_url: str | None = None,
        *,
        name: str,
        transport: ModbusRtuTransport | None = None,
        slave_address: int = 1,
        baudrate: int = 9600,
        timeout_s: float = 0.5,
        limits: tuple[float, float] = (273.15, 1473.15),
        tolerance: float = 1.0,
        settle_time: float = 30.0,
        timeout: float = 1800.0,
        poll_period: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if transport is None:
            if port_or_url is None:
                raise ValueError("Furnace needs port_or_url or transport")
            transport = ModbusRtuTransport(
                port_or_url,
                slave_address=slave_address,
                baudrate=baudrate,
                timeout_s=timeout_s,
                name=f"furnace {name!r} at {port_or_url}",
            )
        self.modbus = transport
        self._controller_limits_K: tuple[float, float] | None = None
        reg = FURNACE_REGISTERS
        super().__init__(
            name=name,
            read_temperature=self._read_pv_K,
            read_setpoint=lambda: self._read_K(reg["target_setpoint"]),
            write_setpoint=self._write_target_K,
            limits=limits,
            tolerance=tolerance,
            settle_time=settle_time,
            timeout=timeout,
            poll_period=poll_period,
            **kwargs,
        )
        self.working_setpoint.bind(getter=lambda: self._read_K(reg["working_setpoint"]))
        self.output.bind(getter=self._read_output)
        self.status.bind(getter=lambda: self.modbus.read_word(reg["status"]))
        self.fault.bind(getter=lambda: furnace_faults(int(self.status.get())))
        self.ramp_rate.bind(
            getter=self._read_ramp_rate,
            putter=lambda value: self.modbus.write_value(reg["ramp_rate"], value, _DECIMALS),
        )
        self.setpoint_low.bind(getter=lambda: self._read_limit(0))
        self.setpoint_high.bind(getter=lambda: self._read_limit(1))
        for signal, bit in (
            (self.alarm_1, 0), (self.sensor_break, 5), (self.loop_break, 6), (self.heater_fail, 7)
        ):
            signal.bind(getter=lambda bit=bit: bool(self.status.get() & (1 << bit)))

    # -- conversions --------------------------------------------------------------------------
    def _read_K(self, address: int) -> float:
        """One temperature register in K; sensor break or an impossible value raises."""
        word = self.modbus.read_word(address)
        if word == _SENSOR_BREAK_WORD:
            raise InstrumentReportedError(
                f"{self.name}: sensor break, the controller reports no valid value at "
                f"address {address}"
            )
        value_K = _signed(word) / 10**_DECIMALS + ZERO_C_IN_K
        if value_K <= 0.0:
            raise InstrumentProtocolError(
                f"{self.name}: address {address} reads {value_K:.2f} K, at or below the "
                "physical limit 0 K"
            )
        return value_K

    def _write_K(self, address: int, value_K: float) -> None:
        self.modbus.write_value(address, value_K - ZERO_C_IN_K, _DECIMALS)

    def _write_target_K(self, value_K: float) -> None:
        """Write the target setpoint after checking every limit (also for ``setpoint.put``)."""
        if self._controller_limits_K is None:
            self.refresh_limits()
        self.check_value(value_K)
        self._write_K(FURNACE_REGISTERS["target_setpoint"], value_K)

    def _read_pv_K(self) -> float:
        return self._read_K(FURNACE_REGISTERS["pv"])

    def _read_output(self) -> float:
        value = self.modbus.read_value(FURNACE_REGISTERS["output"], _DECIMALS)
        low, high = _OUTPUT_RANGE_PERCENT
        if not low <= value <= high:
            raise InstrumentProtocolError(
                f"{self.name}: output power {value!r} % is outside {low!r}..{high!r} %"
            )
        return value

    def _read_ramp_rate(self) -> float:
        value = self.modbus.read_value(FURNACE_REGISTERS["ramp_rate"], _DECIMALS)
        if value < 0:
            raise InstrumentProtocolError(
                f"{self.name}: setpoint rate limit {value!r} K/min is below 0 K/min"
            )
        return value

    def _read_limit(self, index: int) -> float:
        low = self._read_K(FURNACE_REGISTERS["setpoint_low"])
        high = self._read_K(FURNACE_REGISTERS["setpoint_high"])
        self._controller_limits_K = (low, high)
        return (low, high)[index]

    # -- limits -------------------------------------------------------------------------------
    @property
    def controller_limits(self) -> tuple[float, float] | None:
        """The controller's setpoint limits in K as last read (None before the first read)."""
        return self._controller_limits_K

    def refresh_limits(self) -> tuple[float, float]:
        """Read the controller's setpoint limits (addresses 11/12), in K."""
        self._read_limit(0)
        assert self._controller_limits_K is not None
        return self._controller_limits_K

    def check_value(self, value: Any) -> float:
        """Validate against the software limits and the controller's (if already read)."""
        target = super().check_value(value)
        if self._controller_limits_K is not None:
            _check_in(self.name, target, self._controller_limits_K, "controller setpoint")
        return target

    def _prepare_move(self, target_K: float) -> None:
        if self._controller_limits_K is None:
            self.refresh_limits()
            self.check_value(target_K)

    # -- TemperatureLoop hooks ------------------------------------------------------------------
    def _ramp_rate_K_per_s(self) -> float | None:
        rate = float(self.ramp_rate.get()) / 60.0
        return rate if rate > 0 else None

    def _poll_temperature(self) -> float:
        value = float(self.readback.get())
        self.check_status()
        return value

    def check_status(self) -> int:
        """Read the status word; raise InstrumentReportedError naming any fault bit set."""
        word = int(self.status.get())
        faults = furnace_faults(word)
        if faults:
            raise InstrumentReportedError(
                f"{self.name}: controller reports {faults} (status 0x{word:04X})"
            )
        return word

    def _hold(self) -> None:
        """Hold: target := present PV, or the working setpoint if the PV is invalid."""
        try:
            present = float(self.readback.get())
        except InstrumentReportedError:
            present = float(self.working_setpoint.get())
        low, high = self.limits
        if self._controller_limits_K is not None:
            low = max(low, self._controller_limits_K[0])
            high = min(high, self._controller_limits_K[1])
        self._write_setpoint(min(max(present, low), high))

    # -- life cycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the Modbus link."""
        self.modbus.close()

    def destroy(self) -> None:
        self.close()
        super().destroy()


def _check_in(name: str, value: float, limits: tuple[float, float], what: str) -> None:
    low, high = limits
    if not math.isfinite(value):
        raise ValueError(f"{name}: target must be finite, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: target {value!r} K is below the {what} low limit {low!r} K")
    if value > high:
        raise ValueError(f"{name}: target {value!r} K is above the {what} high limit {high!r} K")
