"""Lumped thermal model of an LN2-cooled sample stage with a heater under closed-loop control.

Stage energy balance (SI: K, s, W, J/K)::

    C dT/dt = P - G_ln2 (T - T_ln2) - G_room (T - T_room)

With LN2 present the unheated stage settles at the floor
``(G_ln2 T_ln2 + G_room T_room) / (G_ln2 + G_room)`` (about 81 K with the defaults): it can
never be colder. Without LN2 (run-out) only the weak room link remains, so the stage drifts to
room temperature and cannot stay cold. The controller asks for the steady heater power of the
working setpoint plus a proportional term (``gain_W_per_K``), clipped to
``0 … heater_max_W[range]``; the working setpoint ramps towards the target. Between changes
the model is integrated exactly (piecewise exponentials with the saturation switch times
solved analytically), so long lab-time jumps cost nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

__all__ = ["CryoStageThermalModel"]


class CryoStageThermalModel:
    """Thread-safe cryo-stage model advanced lazily along a lab clock.

    Parameters
    ----------
    now : callable
        Lab time source in seconds (e.g. ``VirtualClock.now``).
    initial_K : float
        Stage temperature at creation, K.
    ln2_K, room_K : float
        Temperatures of the LN2 reservoir and of the room, K.
    heat_capacity_J_per_K : float
        Stage heat capacity C.
    ln2_conductance_W_per_K, room_conductance_W_per_K : float
        Thermal links to the LN2 reservoir and to the room.
    gain_W_per_K : float
        Proportional gain of the controller.
    heater_max_W : sequence of 4 floats
        Maximum heater power for heater ranges 0 (off), 1 (low), 2 (medium), 3 (high).
    """

    def __init__(
        self,
        now: Callable[[], float],
        *,
        initial_K: float = 295.0,
        ln2_K: float = 77.0,
        room_K: float = 295.0,
        heat_capacity_J_per_K: float = 60.0,
        ln2_conductance_W_per_K: float = 1.0,
        room_conductance_W_per_K: float = 0.02,
        gain_W_per_K: float = 5.0,
        heater_max_W: Sequence[float] = (0.0, 5.0, 50.0, 500.0),
    ) -> None:
        for label, value in (
            ("initial_K", initial_K), ("ln2_K", ln2_K), ("room_K", room_K),
            ("heat_capacity_J_per_K", heat_capacity_J_per_K),
            ("ln2_conductance_W_per_K", ln2_conductance_W_per_K),
            ("room_conductance_W_per_K", room_conductance_W_per_K),
            ("gain_W_per_K", gain_W_per_K),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be finite and > 0, got {value!r}")
        if len(heater_max_W) != 4 or any(not (math.isfinite(p) and p >= 0) for p in heater_max_W):
            raise ValueError(f"heater_max_W must be 4 finite powers >= 0 W, got {heater_max_W!r}")
        self._now = now
        self._lock = threading.RLock()
        self._t = now()
        self._T = float(initial_K)
        self.ln2_K = float(ln2_K)
        self.room_K = float(room_K)
        self.C = float(heat_capacity_J_per_K)
        self.g_ln2 = float(ln2_conductance_W_per_K)
        self.g_room = float(room_conductance_W_per_K)
        self.gain = float(gain_W_per_K)
        self.heater_max_W = tuple(float(p) for p in heater_max_W)
        self._target = float(initial_K)
        self._working = float(initial_K)
        self._ramp_on = False
        self._ramp_K_per_s = 0.0
        self._range = 0
        self._ln2 = True
        self._heater_ok = True
        self._sensor_ok = True

    # ------------------------------------------------------------------ state (advance first)
    @property
    def temperature_K(self) -> float:
        """Stage temperature now, K (what a sample on the stage feels)."""
        with self._lock:
            self.advance()
            return self._T

    @property
    def working_setpoint_K(self) -> float:
        """The (ramping) control setpoint now, K."""
        with self._lock:
            self.advance()
            return self._working

    @property
    def target_K(self) -> float:
        """The final setpoint, K."""
        return self._target

    @property
    def ramping(self) -> bool:
        """True while the working setpoint is still ramping."""
        with self._lock:
            self.advance()
            return self._ramp_active()

    @property
    def heater_output_fraction(self) -> float:
        """Heater output now as a fraction (0…1) of the present range's maximum."""
        with self._lock:
            self.advance()
            pmax = self._pmax()
            return 0.0 if pmax <= 0 else self._power(self._T, self._working) / pmax

    @property
    def floor_K(self) -> float:
        """Lowest temperature the unheated stage reaches in the present conditions, K."""
        g_ln2 = self.g_ln2 if self._ln2 else 0.0
        return (g_ln2 * self.ln2_K + self.g_room * self.room_K) / (g_ln2 + self.g_room)

    @property
    def heater_range(self) -> int:
        return self._range

    @property
    def ramp(self) -> tuple[bool, float]:
        """(enabled, rate in K/s)."""
        return self._ramp_on, self._ramp_K_per_s

    @property
    def ln2_present(self) -> bool:
        return self._ln2

    @ln2_present.setter
    def ln2_present(self, value: bool) -> None:
        with self._lock:
            self.advance()
            self._ln2 = bool(value)

    @property
    def heater_ok(self) -> bool:
        return self._heater_ok

    @heater_ok.setter
    def heater_ok(self, value: bool) -> None:
        with self._lock:
            self.advance()
            self._heater_ok = bool(value)

    @property
    def sensor_ok(self) -> bool:
        return self._sensor_ok

    @sensor_ok.setter
    def sensor_ok(self, value: bool) -> None:
        with self._lock:
            self.advance()
            self._sensor_ok = bool(value)

    # ------------------------------------------------------------------ commands
    def set_target(self, target_K: float) -> None:
        """New setpoint; with the ramp on, the working setpoint ramps from where it is."""
        with self._lock:
            self.advance()
            self._target = float(target_K)
            if not self._ramp_active_rate():
                self._working = self._target

    def set_ramp(self, enabled: bool, rate_K_per_s: float) -> None:
        """Enable/disable setpoint ramping; rate 0 means an instantaneous setpoint."""
        with self._lock:
            self.advance()
            self._ramp_on = bool(enabled)
            self._ramp_K_per_s = float(rate_K_per_s)
            if not self._ramp_active_rate():
                self._working = self._target

    def set_range(self, heater_range: int) -> None:
        with self._lock:
            self.advance()
            self._range = int(heater_range)

    def set_temperature(self, temperature_K: float) -> None:
        """Force the stage temperature (test set-up)."""
        with self._lock:
            self.advance()
            self._T = float(temperature_K)

    # ------------------------------------------------------------------ integration
    def advance(self, to_s: float | None = None) -> None:
        """Integrate the model up to lab time ``to_s`` (default: now)."""
        with self._lock:
            end = self._now() if to_s is None else float(to_s)
            t = self._t
            if end <= t:
                return
            while t < end:
                h = end - t
                if self._ramp_active():
                    # march the ramp in steps short against the closed-loop time constant
                    tau_cl = self.C / (self.g_ln2 + self.g_room + self.gain)
                    rate = self._ramp_K_per_s
                    h = min(h, 0.25 * tau_cl, abs(self._target - self._working) / rate)
                    h = max(h, 1e-9)
                    step = math.copysign(rate * h, self._target - self._working)
                    mid = self._working + 0.5 * step
                    self._T = self._exact(self._T, mid, h)
                    self._working += step
                    if abs(self._target - self._working) < 1e-9:
                        self._working = self._target
                else:
                    self._T = self._exact(self._T, self._working, h)
                t += h
            self._t = end

    def _ramp_active_rate(self) -> bool:
        return self._ramp_on and self._ramp_K_per_s > 0

    def _ramp_active(self) -> bool:
        return self._ramp_active_rate() and self._working != self._target

    def _pmax(self) -> float:
        if not (self._heater_ok and self._sensor_ok):
            return 0.0
        return self.heater_max_W[self._range] if 0 <= self._range < 4 else 0.0

    def _sink(self) -> tuple[float, float]:
        """(a0, b) of the passive balance ``C dT/dt = P + a0 - b T``."""
        g_ln2 = self.g_ln2 if self._ln2 else 0.0
        return g_ln2 * self.ln2_K + self.g_room * self.room_K, g_ln2 + self.g_room

    def _desired(self, T: float, Tw: float) -> float:
        a0, b = self._sink()
        return b * Tw - a0 + self.gain * (Tw - T)

    def _power(self, T: float, Tw: float) -> float:
        return min(max(self._desired(T, Tw), 0.0), self._pmax())

    def _exact(self, T: float, Tw: float, h: float) -> float:
        """Exact solution over ``h`` s with a constant working setpoint ``Tw``."""
        a0, b = self._sink()
        pmax = self._pmax()
        for _ in range(4):
            if h <= 0:
                return T
            desired = self._desired(T, Tw)
            if pmax > 0 and 0.0 < desired < pmax:
                # unsaturated: closed loop relaxes to Tw and stays unsaturated
                tau = self.C / (b + self.gain)
                return Tw + (T - Tw) * math.exp(-h / tau)
            power = pmax if (pmax > 0 and desired >= pmax) else 0.0
            t_inf = (power + a0) / b
            tau = self.C / b
            # switch temperature where the controller's demand re-enters 0 < P < pmax
            bound = power
            t_switch = Tw + (b * Tw - a0 - bound) / self.gain
            if pmax <= 0 or not _between(t_switch, T, t_inf):
                return t_inf + (T - t_inf) * math.exp(-h / tau)
            ratio = (T - t_inf) / (t_switch - t_inf)
            t_c = tau * math.log(ratio) if ratio > 1 else 0.0
            if t_c >= h:
                return t_inf + (T - t_inf) * math.exp(-h / tau)
            T = t_switch + 1e-12 * math.copysign(1.0, t_inf - T)
            h -= t_c
        return T


def _between(x: float, a: float, b: float) -> bool:
    """True if x lies strictly between a and b (open interval on the far side)."""
    return (a <= x < b) or (b < x <= a)
