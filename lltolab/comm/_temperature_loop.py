"""A temperature positioner: set, wait until settled, hold on stop.

:class:`TemperatureLoop` is an ophyd Device implementing bluesky's Movable and Stoppable. It is
generic: give it callables (or signals) to read the temperature and write the setpoint, or
subclass it and redefine the ``readback``/``setpoint`` components (as ``CryoStage`` does).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Signal

from ._errors import InstrumentError, InstrumentTimeout
from ._signal import MessageSignal, MessageSignalRO

__all__ = ["TemperatureLoop", "MoveStopped"]

logger = logging.getLogger(__name__)


class MoveStopped(RuntimeError):
    """A temperature move ended before settling: ``stop()`` or superseded by a new ``set``."""


def _parent_limits(signal: Any) -> tuple[float, float]:
    return signal.parent.limits


class _MoveStatus(DeviceStatus):
    """A move's status that reports progress to ``watch`` callbacks (bluesky progress bars).

    Each readback poll calls the watchers with ``name``, ``current``, ``initial``, ``target``
    (K), ``unit``, ``precision``, ``fraction`` (of the distance still to go: 1 at the start,
    0 at the target, as ophyd's MoveStatus) and ``time_elapsed`` (s).
    """

    def __init__(self, device: Any, target_K: float, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self.target_K = target_K
        self.initial_K: float | None = None
        self.current_K: float | None = None
        self._t0 = time.monotonic()
        self._watch_lock = threading.Lock()

    def watch(self, func: Callable[..., None]) -> None:
        """Call ``func(**progress)`` now and after every readback until the move ends."""
        with self._watch_lock:
            self._watchers.append(func)
        func(**self._progress())

    def report(self, current_K: float) -> None:
        """Record a readback (K) and pass the progress to the watchers."""
        if self.initial_K is None:
            self.initial_K = current_K
        self.current_K = current_K
        with self._watch_lock:
            watchers = list(self._watchers)
        if not watchers or self.done:
            return
        progress = self._progress()
        for func in watchers:
            try:
                func(**progress)
            except Exception as exc:  # noqa: BLE001 - a broken display never fails a move
                logger.warning("%s: progress callback failed: %s", self.device.name, exc)

    def _progress(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.device.name,
                               "time_elapsed": time.monotonic() - self._t0}
        if self.current_K is None or self.initial_K is None:
            return out
        span = abs(self.target_K - self.initial_K)
        left = abs(self.target_K - self.current_K)
        fraction = 0.0 if span == 0 else min(max(left / span, 0.0), 1.0)
        out.update(current=self.current_K, initial=self.initial_K, target=self.target_K,
                   unit="K", precision=2, fraction=fraction)
        return out


class _Move:
    """Book-keeping of one move (its status may be finished exactly once)."""

    def __init__(self, target_K: float, status: DeviceStatus, timeout_s: float) -> None:
        self.target_K = target_K
        self.status = status
        self.timeout_s = timeout_s
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self.done = False

    def finish(self, exc: BaseException | None = None) -> bool:
        with self._lock:
            if self.done:
                return False
            self.done = True
        if exc is None:
            self.status.set_finished()
        else:
            self.status.set_exception(exc)
        return True


class TemperatureLoop(Device):
    """Movable/Stoppable temperature positioner (kelvin).

    ``set(T)`` writes the setpoint and returns a status that completes once the readback has
    stayed within ``tolerance`` of ``T`` for ``settle_time`` seconds. It fails with
    :class:`~lltolab.comm.InstrumentTimeout` if that has not happened after
    ``move_timeout`` + expected ramp time + ``settle_time`` (the loop then holds the present
    temperature), or with the instrument error that interrupted the polling. ``stop()`` holds
    the present temperature and fails the move with :class:`MoveStopped` (``stop(success=True)``,
    as the RunEngine calls it on pause, finishes the move's status successfully instead); it does
    nothing when no move is in progress (the RunEngine calls ``stop`` at the end of every plan).

    Parameters
    ----------
    read_temperature : callable or Signal, optional
        Returns the present temperature in K (a Signal's ``get`` is used). Not needed when a
        subclass defines the ``readback`` component.
    write_setpoint : callable or Signal, optional
        Writes the setpoint in K (a Signal's ``put`` is used).
    read_setpoint : callable or Signal, optional
        Returns the (working) setpoint in K, for ``read()``.
    ramp_rate : callable, optional
        Returns the active ramp rate in K/s (0 or None: no ramp); used to extend the timeout.
    check : callable, optional
        Called at every poll; raises an InstrumentError if the instrument reports a fault.
    hold : callable, optional
        ``hold()`` holds the present temperature (default: setpoint := present readback).
    limits : (float, float)
        Allowed setpoints (low, high) in K, inclusive.
    tolerance : float
        Settling band half-width in K (> 0).
    settle_time : float
        Seconds the readback must stay in the band (>= 0).
    timeout : float
        Seconds allowed beyond the expected ramp time and the settle time (> 0).
    poll_period : float
        Seconds between readback polls (> 0).
    clock : object, optional
        Time base of settling, timeout and polls: ``now()`` in seconds and
        ``wait(seconds, cancel_event)``. Default the wall clock; a simulated lab passes its
        lab clock, so a move takes the same lab time however fast the machine is.
    """

    readback = Cpt(MessageSignalRO, kind="hinted", units="K", precision=3)
    setpoint = Cpt(MessageSignal, kind="normal", units="K", precision=3, limits=_parent_limits)
    target = Cpt(Signal, value=math.nan, kind="normal", doc="final target of the last move, K")
    tolerance = Cpt(Signal, value=0.5, kind="config", doc="settling band half-width, K")
    settle_time = Cpt(Signal, value=10.0, kind="config", doc="time in band to settle, s")
    move_timeout = Cpt(Signal, value=600.0, kind="config", doc="time beyond ramp + settle, s")
    poll_period = Cpt(Signal, value=0.5, kind="config", doc="readback poll period, s")
    low_limit = Cpt(Signal, value=0.0, kind="config", doc="lowest allowed setpoint, K")
    high_limit = Cpt(Signal, value=1000.0, kind="config", doc="highest allowed setpoint, K")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        read_temperature: Callable[[], float] | Signal | None = None,
        write_setpoint: Callable[[float], None] | Signal | None = None,
        read_setpoint: Callable[[], float] | Signal | None = None,
        ramp_rate: Callable[[], float | None] | None = None,
        check: Callable[[], None] | None = None,
        hold: Callable[[], None] | None = None,
        limits: tuple[float, float] = (0.0, 1000.0),
        tolerance: float = 0.5,
        settle_time: float = 10.0,
        timeout: float = 600.0,
        poll_period: float = 0.5,
        clock: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self._clock = clock if clock is not None else _WallTime()
        low, high = _check_limits(limits)
        _check_positive("tolerance", tolerance)
        _check_non_negative("settle_time", settle_time)
        _check_positive("timeout", timeout)
        _check_positive("poll_period", poll_period)
        self.low_limit.put(low)
        self.high_limit.put(high)
        self.tolerance.put(float(tolerance))
        self.settle_time.put(float(settle_time))
        self.move_timeout.put(float(timeout))
        self.poll_period.put(float(poll_period))
        if read_temperature is not None:
            self.readback.bind(getter=_as_getter(read_temperature))
        if read_setpoint is not None:
            self.setpoint.bind(getter=_as_getter(read_setpoint))
        if write_setpoint is not None:
            self.setpoint.bind(putter=_as_putter(write_setpoint))
        if self.readback._query is None and self.readback._getter is None:
            raise ValueError(f"{name}: give read_temperature= or define a readback query")
        if self.setpoint._write_fmt is None and self.setpoint._putter is None:
            raise ValueError(f"{name}: give write_setpoint= or define a setpoint write format")
        if self.setpoint._query is None and self.setpoint._getter is None:
            # no way to read the setpoint back: report the last value written (NaN before)
            self.setpoint.bind(getter=self._last_written_setpoint)
        self._ramp_rate_fn = ramp_rate
        self._check_fn = check
        self._hold_fn = hold
        self._move_lock = threading.RLock()
        self._move: _Move | None = None
        # the hinted readback is reported under the device's own name (like a motor)
        self.readback.name = self.name

    def _last_written_setpoint(self) -> float:
        value = self.setpoint._readback
        return math.nan if not isinstance(value, int | float) else float(value)

    # ------------------------------------------------------------------ properties
    @property
    def limits(self) -> tuple[float, float]:
        """Allowed setpoints (low, high) in K, inclusive."""
        return (float(self.low_limit.get()), float(self.high_limit.get()))

    @property
    def position(self) -> float:
        """Present temperature in K (one readback query)."""
        return float(self.readback.get())

    @property
    def moving(self) -> bool:
        """True while a move is in progress."""
        move = self._move
        return move is not None and not move.done

    # ------------------------------------------------------------------ overridable I/O
    def _poll_temperature(self) -> float:
        """Read the temperature in K and raise if the instrument reports a fault."""
        value = float(self.readback.get())
        if self._check_fn is not None:
            self._check_fn()
        return value

    def _write_setpoint(self, value_K: float) -> None:
        self.setpoint.put(value_K)

    def _ramp_rate_K_per_s(self) -> float | None:
        return None if self._ramp_rate_fn is None else self._ramp_rate_fn()

    def _prepare_move(self, target_K: float) -> None:
        """Hook called (under the move lock) before the setpoint is written."""

    def _hold(self) -> None:
        """Hold the present temperature."""
        if self._hold_fn is not None:
            self._hold_fn()
            return
        present = float(self.readback.get())
        low, high = self.limits
        self._write_setpoint(min(max(present, low), high))

    # ------------------------------------------------------------------ bluesky API
    def check_value(self, value: Any) -> float:
        """Validate a target temperature in K; ValueError naming value and limit."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name}: target must be a number of kelvin, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: target must be finite, got {value!r}")
        low, high = self.limits
        if value < low:
            raise ValueError(f"{self.name}: target {value!r} K is below the low limit {low!r} K")
        if value > high:
            raise ValueError(f"{self.name}: target {value!r} K is above the high limit {high!r} K")
        return value

    def set(self, value: float, *, timeout: float | None = None) -> DeviceStatus:
        """Move to ``value`` K; the status completes when settled (see class docstring).

        Parameters
        ----------
        value : float
            Target temperature in K.
        timeout : float, optional
            Total seconds allowed for this move (default: ``move_timeout`` + expected ramp
            time + ``settle_time``).
        """
        target = self.check_value(value)
        if timeout is not None:
            _check_positive("timeout", timeout)
        with self._move_lock:
            previous = self._move
            if previous is not None and not previous.done:
                previous.cancelled.set()
                previous.finish(MoveStopped(f"{self.name}: move to {previous.target_K} K "
                                            f"superseded by a move to {target} K"))
            self._move = None
            if timeout is None:
                timeout = self._default_timeout(target)
            self._prepare_move(target)
            self._write_setpoint(target)
            self.target.put(target)
            move = _Move(target, _MoveStatus(self, target), float(timeout))
            self._move = move
        thread = threading.Thread(
            target=self._run_move, args=(move,), name=f"{self.name}-settle", daemon=True
        )
        thread.start()
        return move.status

    def stop(self, *, success: bool = False) -> None:
        """Hold the present temperature if a move is in progress; otherwise do nothing."""
        with self._move_lock:
            move = self._move
            if move is None or move.done:
                return
            move.cancelled.set()
            self._move = None
            try:
                self._hold()
            except InstrumentError as exc:
                logger.warning("%s: could not hold the temperature on stop: %s", self.name, exc)
        # success=True is bluesky's pause / end-of-plan stop: an expected stop, not a failure
        # (a failed status would resurface as FailedStatus when the paused plan resumes)
        move.finish(None if success else MoveStopped(f"{self.name}: move to {move.target_K} K "
                                                     "stopped"))

    # ------------------------------------------------------------------ internals
    def _default_timeout(self, target: float) -> float:
        extra = float(self.move_timeout.get()) + float(self.settle_time.get())
        rate = self._ramp_rate_K_per_s()
        if rate:
            start = float(self.readback.get())
            extra += abs(target - start) / float(rate)
        return extra

    def _run_move(self, move: _Move) -> None:
        tol = float(self.tolerance.get())
        settle = float(self.settle_time.get())
        period = float(self.poll_period.get())
        clock = self._clock
        started = clock.now()
        deadline = started + move.timeout_s
        in_band_since: float | None = None
        last: float = math.nan
        while not move.cancelled.is_set():
            try:
                last = self._poll_temperature()
            except Exception as exc:  # noqa: BLE001 - any failure ends the move
                if not move.cancelled.is_set():
                    self._hold_after_failure(move)
                    move.finish(exc)
                return
            if isinstance(move.status, _MoveStatus):
                move.status.report(last)
            now = clock.now()
            if abs(last - move.target_K) <= tol:
                if in_band_since is None:
                    in_band_since = now
                if now - in_band_since >= settle:
                    with self._move_lock:
                        if self._move is move:
                            self._move = None
                    move.finish()
                    return
            else:
                in_band_since = None
            if now >= deadline:
                self._hold_after_failure(move)
                move.finish(InstrumentTimeout(
                    f"{self.name}: not settled within ±{tol:g} K of {move.target_K:g} K after "
                    f"{move.timeout_s:.1f} s (last readback {last:.3f} K); holding the present "
                    f"temperature"))
                return
            wait = period
            if in_band_since is not None:
                wait = min(wait, max(in_band_since + settle - now, 0.0))
            clock.wait(max(min(wait, deadline - now), 0.0), move.cancelled)

    def _hold_after_failure(self, move: _Move) -> None:
        with self._move_lock:
            if self._move is not move:
                return  # superseded or stopped meanwhile: never overwrite a newer setpoint
            self._move = None
            try:
                self._hold()
            except Exception as exc:  # noqa: BLE001 - best effort; the move fails anyway
                logger.warning("%s: could not hold the temperature: %s", self.name, exc)


class _WallTime:
    """The default time base: monotonic wall time, waits cut short by the cancel event."""

    @staticmethod
    def now() -> float:
        return time.monotonic()

    @staticmethod
    def wait(seconds: float, cancel: threading.Event) -> None:
        cancel.wait(seconds)


def _as_getter(src: Callable[[], float] | Signal) -> Callable[[], float]:
    if isinstance(src, Signal):
        return src.get
    if not callable(src):
        raise TypeError(f"expected a callable or a Signal, got {src!r}")
    return src


def _as_putter(src: Callable[[float], None] | Signal) -> Callable[[float], None]:
    if isinstance(src, Signal):
        return src.put
    if not callable(src):
        raise TypeError(f"expected a callable or a Signal, got {src!r}")
    return src


def _check_limits(limits: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"limits must be (low, high) in K, got {limits!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"limits must be finite with low < high, got {limits!r}")
    return low, high


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
