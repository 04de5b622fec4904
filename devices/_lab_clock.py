"""LabClock: waits of lab time (exchange, anneal, storage) as a bluesky Movable."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol

from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Signal, SignalRO

__all__ = ["LabClock", "WallClock", "TimeSource", "MAX_WAIT_S"]

MAX_WAIT_S = 60 * 86400.0
"""Longest single lab wait accepted (60 days)."""


class TimeSource(Protocol):
    """What the LabClock needs: lab time now and an (optionally cancellable) wait."""

    def now(self) -> float:
        """Lab time (s)."""

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> float:
        """Let ``seconds`` of lab time pass; return the lab time afterwards."""

    def wall_seconds(self, lab_seconds: float) -> float:
        """Wall seconds that ``lab_seconds`` take."""


class WallClock:
    """The real lab's clock: Unix time, waits really wait (cancellable)."""

    def now(self) -> float:
        """Unix time (s)."""
        return time.time()

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> float:
        """Sleep ``seconds`` unless ``cancel`` is set first."""
        (cancel or threading.Event()).wait(seconds)
        return self.now()

    def wall_seconds(self, lab_seconds: float) -> float:
        """Lab time is wall time."""
        return lab_seconds


class _LabTime(SignalRO):
    """Lab time now, read from the parent's time source."""

    def get(self, **kwargs: Any) -> float:
        value = float(self.parent.source.now())
        self._readback = value
        return value


class _WaitStatus(DeviceStatus):
    """A lab wait's status that reports elapsed/total lab time to ``watch`` callbacks.

    Watchers (e.g. bluesky's ProgressBarManager) get ``name``, ``current`` (lab seconds
    elapsed), ``initial`` (0), ``target`` (the wait, lab s), ``unit`` ("s (lab)"),
    ``fraction`` (of the wait still to go) and ``time_elapsed`` (wall s), about every
    ``period_s`` wall seconds.
    """

    def __init__(self, device: Any, total_s: float, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self.total_s = total_s
        self.elapsed_s = 0.0
        self._t0 = time.monotonic()
        self._watch_lock = threading.Lock()

    def watch(self, func: Any) -> None:
        """Call ``func(**progress)`` now and periodically until the wait ends."""
        with self._watch_lock:
            self._watchers.append(func)
        func(**self._progress())

    def report(self, elapsed_s: float) -> None:
        """Record the lab time elapsed (s) and pass the progress to the watchers."""
        self.elapsed_s = min(max(float(elapsed_s), 0.0), self.total_s)
        with self._watch_lock:
            watchers = list(self._watchers)
        if self.done:
            return
        progress = self._progress()
        for func in watchers:
            try:
                func(**progress)
            except Exception:  # noqa: BLE001 - a broken display never fails a wait
                pass

    def _progress(self) -> dict[str, Any]:
        left = self.total_s - self.elapsed_s
        return {"name": self.device.name, "current": self.elapsed_s, "initial": 0.0,
                "target": self.total_s, "unit": "s (lab)", "precision": 0,
                "fraction": 0.0 if self.total_s == 0 else left / self.total_s,
                "time_elapsed": time.monotonic() - self._t0}


class LabClock(Device):
    """Lab time as a device: ``set(duration_s)`` completes after that much lab time.

    With the real :class:`WallClock` a 59 h exchange really takes 59 h (the status completes
    from a timer thread and ``stop()`` cancels it); with the virtual lab's clock it jumps.

    The status of a wait reports elapsed/total lab time to ``watch`` callbacks every
    ``progress_period_s`` wall seconds, so bluesky's progress bars show long waits.

    Parameters
    ----------
    source : TimeSource, optional
        Default :class:`WallClock`.
    progress_period_s : float
        Wall seconds between progress reports of a wait (> 0).
    """

    time = Cpt(_LabTime, kind="hinted")
    last_wait_s = Cpt(Signal, value=0.0, kind="normal")

    def __init__(self, prefix: str = "", *, name: str, source: TimeSource | None = None,
                 progress_period_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        if not (isinstance(progress_period_s, int | float) and math.isfinite(progress_period_s)
                and progress_period_s > 0):
            raise ValueError(f"progress_period_s must be a finite number of seconds > 0, got "
                             f"{progress_period_s!r}")
        self.progress_period_s = float(progress_period_s)
        self.source: TimeSource = source if source is not None else WallClock()
        self._cancel: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def position(self) -> float:
        """Lab time now (s)."""
        return self.time.get()

    def set(self, duration_s: float) -> DeviceStatus:
        """Wait ``duration_s`` seconds of lab time (0 … 60 days)."""
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)):
            raise ValueError(f"duration_s must be a finite number of seconds, got {duration_s!r}")
        if not 0 <= duration_s <= MAX_WAIT_S:
            raise ValueError(
                f"duration_s={duration_s!r} s outside [0, {MAX_WAIT_S:.0f}] s (limit 60 days)"
            )
        timeout = float(self.source.wall_seconds(duration_s)) + 30.0
        status = _WaitStatus(self, float(duration_s), timeout=timeout)
        cancel = threading.Event()
        with self._lock:
            self._cancel = cancel
        start_s = float(self.source.now())

        def report() -> None:
            while not status.done and not cancel.is_set():
                status.report(float(self.source.now()) - start_s)
                cancel.wait(self.progress_period_s)

        def run() -> None:
            try:
                self.source.wait(float(duration_s), cancel)
                if cancel.is_set():
                    raise RuntimeError(f"lab wait of {duration_s} s stopped before its end")
                self.last_wait_s.put(float(duration_s))
            except BaseException as exc:  # noqa: BLE001 - fail the status with the cause
                status.set_exception(exc)
                return
            finally:
                with self._lock:
                    if self._cancel is cancel:
                        self._cancel = None
            status.set_finished()

        threading.Thread(target=run, daemon=True, name=f"{self.name}-wait").start()
        threading.Thread(target=report, daemon=True, name=f"{self.name}-progress").start()
        return status

    def stop(self, *, success: bool = False) -> None:
        """Cancel a wait in progress (no effect otherwise)."""
        with self._lock:
            if self._cancel is not None:
                self._cancel.set()
