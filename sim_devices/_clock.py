"""The virtual lab's clock: instrument dynamics at a time scale, lab waits as jumps."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["VirtualClock"]


class VirtualClock:
    """Lab time in seconds shared by every simulated instrument.

    Lab time advances at ``time_scale`` times the wall clock (so a 10 K/min ramp of the
    simulated cryo stage can take seconds in CI) and jumps forward instantly when a plan waits
    lab time (``jump``), e.g. a 59 h exchange.

    Parameters
    ----------
    time_scale : float
        Lab seconds per wall second (> 0). 1.0 is real time.
    start_s : float
        Lab time at creation, in seconds.
    wall : callable, optional
        Wall-clock source in seconds (default ``time.monotonic``).
    """

    def __init__(
        self,
        time_scale: float = 1.0,
        start_s: float = 0.0,
        *,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_scale(time_scale)
        if not math.isfinite(start_s):
            raise ValueError(f"start_s must be finite, got {start_s!r}")
        self._wall = wall
        self._lock = threading.RLock()
        self._anchor_wall = wall()
        self._anchor_lab = float(start_s)
        self._scale = float(time_scale)
        self._jump_listeners: list[Callable[[float, float], None]] = []
        self._before_jump_listeners: list[Callable[[float, float], None]] = []

    def now(self) -> float:
        """Current lab time in seconds."""
        with self._lock:
            return self._anchor_lab + self._scale * (self._wall() - self._anchor_wall)

    @property
    def time_scale(self) -> float:
        """Lab seconds per wall second."""
        return self._scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        _check_scale(value)
        with self._lock:
            self._anchor_lab = self.now()
            self._anchor_wall = self._wall()
            self._scale = float(value)

    def jump(self, seconds: float) -> float:
        """Let ``seconds`` of lab time pass instantly; return the new lab time.

        Listeners registered with :meth:`on_jump` are called with (start_s, end_s) so models
        can account for the interval (e.g. a thermal model relaxing during a long wait).
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"jump duration must be finite and >= 0 s, got {seconds!r}")
        with self._lock:
            before = list(self._before_jump_listeners)
        if before:  # called without the clock's lock held: listeners may read other models
            start = self.now()
            for listener in before:
                listener(start, start + seconds)
        with self._lock:
            start = self.now()
            end = start + seconds
            self._anchor_lab += seconds
            listeners = list(self._jump_listeners)
        for listener in listeners:
            listener(start, end)
        return end

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> float:
        """A lab wait: in the virtual lab it passes instantly (:meth:`jump`).

        ``cancel`` is accepted for interface compatibility with a wall clock (a jump cannot
        be interrupted); a wait already cancelled does not jump.
        """
        if cancel is not None and cancel.is_set():
            return self.now()
        return self.jump(seconds)

    def on_before_jump(self, callback: Callable[[float, float], None]) -> None:
        """Register ``callback(start_s, end_s)``, called just before every jump (clock at start)."""
        with self._lock:
            self._before_jump_listeners.append(callback)

    def on_jump(self, callback: Callable[[float, float], None]) -> None:
        """Register ``callback(start_s, end_s)``, called after every jump."""
        with self._lock:
            self._jump_listeners.append(callback)

    def wall_seconds(self, lab_seconds: float) -> float:
        """Wall-clock seconds that ``lab_seconds`` of lab time take at the current scale."""
        return lab_seconds / self._scale

    def sleep(self, lab_seconds: float) -> None:
        """Block the caller while ``lab_seconds`` of lab time pass at the time scale."""
        if not math.isfinite(lab_seconds) or lab_seconds < 0:
            raise ValueError(f"sleep duration must be finite and >= 0 s, got {lab_seconds!r}")
        time.sleep(self.wall_seconds(lab_seconds))


def _check_scale(value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"time_scale must be a finite number > 0, got {value!r}")
