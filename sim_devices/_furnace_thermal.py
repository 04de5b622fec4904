"""First-order thermal model of a tube furnace under a PI-like temperature controller."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FurnaceThermalModel"]

_MAX_SUBSTEPS = 200_000


@dataclass
class FurnaceThermalModel:
    """Lumped furnace: ``tau_h dT/dt = max_rise_K * p - (T - room_K)``.

    ``p`` (0..1) is the heater power fraction. The controller asks for the output that makes
    the temperature approach the working setpoint with time constant ``control_tau_s`` and is
    clipped to 0..100 %, so heating is power-limited and cooling is passive (no cooler). The
    working setpoint moves towards the target at ``ramp_K_per_s`` (0: jumps).

    Parameters (all SI: K, s)
    -------------------------
    room_K : float
        Surroundings; the furnace relaxes there with the heater off.
    heat_tau_s : float
        Passive time constant (heat capacity / loss conductance), s.
    max_rise_K : float
        Steady temperature rise above room at 100 % output, K.
    control_tau_s : float
        Closed-loop time constant while the output is not saturated, s.
    """

    room_K: float = 295.15
    heat_tau_s: float = 1200.0
    max_rise_K: float = 1300.0
    control_tau_s: float = 60.0
    temperature_K: float = math.nan
    target_K: float = math.nan
    working_setpoint_K: float = math.nan
    ramp_K_per_s: float = 0.0
    heater_failed: bool = False
    heater_stuck_on: bool = False
    sensor_broken: bool = False
    inhibited: bool = False

    def __post_init__(self) -> None:
        for label in ("room_K", "heat_tau_s", "max_rise_K", "control_tau_s"):
            value = getattr(self, label)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be finite and > 0, got {value!r}")
        if math.isnan(self.temperature_K):
            self.temperature_K = self.room_K
        if math.isnan(self.target_K):
            self.target_K = self.room_K
        if math.isnan(self.working_setpoint_K):
            self.working_setpoint_K = self.target_K

    def set_target(self, target_K: float) -> None:
        """New target setpoint; with a ramp the working setpoint restarts from the PV."""
        self.target_K = float(target_K)
        if self.ramp_K_per_s > 0:
            self.working_setpoint_K = self.temperature_K
        else:
            self.working_setpoint_K = self.target_K

    def set_ramp(self, ramp_K_per_s: float) -> None:
        """Setpoint rate limit in K/s (0 switches it off: the working setpoint jumps)."""
        if not (math.isfinite(ramp_K_per_s) and ramp_K_per_s >= 0):
            raise ValueError(f"ramp rate must be finite and >= 0 K/s, got {ramp_K_per_s!r}")
        self.ramp_K_per_s = float(ramp_K_per_s)
        if self.ramp_K_per_s == 0:
            self.working_setpoint_K = self.target_K

    @property
    def output_percent(self) -> float:
        """Controller output now, % (what the heater is asked for)."""
        return 100.0 * self._controller_output()

    def _controller_output(self) -> float:
        if self.sensor_broken or self.inhibited:
            return 0.0  # sensor-break output of the controller; inhibit turns control off
        if self.heater_stuck_on:
            return 1.0
        wanted = (self.temperature_K - self.room_K) + self.heat_tau_s * (
            self.working_setpoint_K - self.temperature_K
        ) / self.control_tau_s
        return min(1.0, max(0.0, wanted / self.max_rise_K))

    def advance(self, dt_s: float) -> None:
        """Integrate ``dt_s`` seconds (any length: long waits take bounded work)."""
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"dt_s must be finite and >= 0, got {dt_s!r}")
        remaining = dt_s
        steps = 0
        h_max = self.control_tau_s / 4
        while remaining > 0:
            steps += 1
            ramping = self.working_setpoint_K != self.target_K
            out = self._controller_output()
            h = min(remaining, h_max)
            if steps > _MAX_SUBSTEPS:
                h = remaining
            if ramping:
                step = self.ramp_K_per_s * h
                delta = self.target_K - self.working_setpoint_K
                self.working_setpoint_K = (
                    self.target_K if abs(delta) <= step else self.working_setpoint_K
                    + math.copysign(step, delta)
                )
            power = 0.0 if self.heater_failed else out
            t_eq = self.room_K + self.max_rise_K * power
            previous = self.temperature_K
            self.temperature_K = t_eq + (previous - t_eq) * math.exp(-h / self.heat_tau_s)
            remaining -= h
            if not ramping and abs(self.temperature_K - previous) < 1e-9 and remaining > 0:
                break  # steady: nothing changes over the rest of the interval
