"""The virtual lab's clock: lab time that the devices drive, or that follows the wall clock.

Two modes:

- **stepped** (``time_scale=None``): lab time stands still until someone lets lab time pass
  (:meth:`VirtualClock.jump` / :meth:`VirtualClock.wait`): a lab wait, an acquisition, a
  temperature controller's poll interval. Every instrument's state is then a function of lab
  time alone and a seeded simulation reproduces exactly, whatever the machine's speed.
- **free-running** (``time_scale`` a number): lab time advances at ``time_scale`` times the
  wall clock (for a second process talking to the simulated instruments in real time) and
  jumps forward instantly on lab waits.

In both modes events scheduled with :meth:`VirtualClock.schedule` fire at their lab time when
a jump passes it (the jump is split there), so faults can be placed in lab time.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable

__all__ = ["VirtualClock"]


class VirtualClock:
    """Lab time in seconds shared by every simulated instrument.

    Parameters
    ----------
    time_scale : float or None
        Lab seconds per wall second (> 0; 1.0 is real time), or None for a stepped clock
        whose lab time only advances by jumps.
    start_s : float
        Lab time at creation, in seconds.
    wall : callable, optional
        Wall-clock source in seconds (default ``time.monotonic``; free-running mode only).
    """

    def __init__(
        self,
        time_scale: float | None = 1.0,
        start_s: float = 0.0,
        *,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale is not None:
            _check_scale(time_scale)
        if not math.isfinite(start_s):
            raise ValueError(f"start_s must be finite, got {start_s!r}")
        self._wall = wall
        self._lock = threading.RLock()
        self._jump_lock = threading.RLock()  # one jump at a time: listeners see ordered spans
        self._anchor_wall = wall()
        self._anchor_lab = float(start_s)
        self._scale = None if time_scale is None else float(time_scale)
        self._jump_listeners: list[Callable[[float, float], None]] = []
        self._before_jump_listeners: list[Callable[[float, float], None]] = []
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._event_ids = itertools.count()

    @property
    def stepped(self) -> bool:
        """True if lab time only advances by jumps (reproducible simulation)."""
        return self._scale is None

    def now(self) -> float:
        """Current lab time in seconds."""
        with self._lock:
            if self._scale is None:
                return self._anchor_lab
            return self._anchor_lab + self._scale * (self._wall() - self._anchor_wall)

    @property
    def time_scale(self) -> float | None:
        """Lab seconds per wall second (None: stepped clock)."""
        return self._scale

    @time_scale.setter
    def time_scale(self, value: float | None) -> None:
        if value is not None:
            _check_scale(value)
        with self._lock:
            self._anchor_lab = self.now()
            self._anchor_wall = self._wall()
            self._scale = None if value is None else float(value)

    def schedule(self, at_s: float, callback: Callable[[float], None]) -> None:
        """Call ``callback(at_s)`` when lab time reaches ``at_s`` during a jump.

        A jump across ``at_s`` is split there: listeners see the lab up to ``at_s``, then the
        callback runs (e.g. injects a fault), then the jump goes on. An event already due fires
        at the next jump.
        """
        if not math.isfinite(at_s):
            raise ValueError(f"event time must be finite lab seconds, got {at_s!r}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        with self._lock:
            heapq.heappush(self._events, (float(at_s), next(self._event_ids), callback))

    def jump(self, seconds: float) -> float:
        """Let ``seconds`` of lab time pass instantly; return the new lab time.

        Listeners registered with :meth:`on_before_jump` / :meth:`on_jump` are called with
        (start_s, end_s) so models can account for the interval (e.g. a thermal model
        relaxing during a long wait); scheduled events split the jump at their times.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"jump duration must be finite and >= 0 s, got {seconds!r}")
        with self._jump_lock:
            remaining = float(seconds)
            while True:
                with self._lock:
                    start = self.now()
                    due = self._events[0] if self._events else None
                if due is not None and due[0] <= start + remaining:
                    piece = max(due[0] - start, 0.0)
                    self._jump_piece(piece)
                    remaining -= piece
                    with self._lock:
                        event = heapq.heappop(self._events)
                    event[2](event[0])
                    continue
                return self._jump_piece(remaining)

    def _jump_piece(self, seconds: float) -> float:
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

    def remove_listener(self, callback: Callable[[float, float], None]) -> None:
        """Unregister a jump listener (no error if it is not registered)."""
        with self._lock:
            for group in (self._jump_listeners, self._before_jump_listeners):
                if callback in group:
                    group.remove(callback)

    def wall_seconds(self, lab_seconds: float) -> float:
        """Wall-clock seconds that ``lab_seconds`` of lab time take (0 for a stepped clock)."""
        return 0.0 if self._scale is None else lab_seconds / self._scale

    def sleep(self, lab_seconds: float) -> None:
        """Let ``lab_seconds`` pass: block at the time scale, or jump on a stepped clock."""
        if not math.isfinite(lab_seconds) or lab_seconds < 0:
            raise ValueError(f"sleep duration must be finite and >= 0 s, got {lab_seconds!r}")
        if self._scale is None:
            self.jump(lab_seconds)
        else:
            time.sleep(self.wall_seconds(lab_seconds))


def _check_scale(value: float) -> None:
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) and value > 0
    ):
        raise ValueError(f"time_scale must be a finite number > 0 or None, got {value!r}")
