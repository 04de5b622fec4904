"""SampleRecord: the sample's identity and thermal history, kept by the plans.

Plans append one segment per stretch of known conditions (exchange in the bath, transfer at
room temperature, cooling, imaging at −110 °C, anneal, storage) by ``abs_set`` on
``record.segment``; every image run copies the history so far into its metadata. With a
``path`` the history is also written to a JSON file on every change, so a restarted session
continues the same sample's history; :meth:`SampleRecord.archive` ends it for a sample that
is gone (a simulated lab's), keeping the old history in a file.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from lltolab.vocabulary import SEGMENT_KEYS, SEGMENT_OVERLAP_S

__all__ = ["SampleRecord", "SEGMENT_KEYS"]

LOG_LENGTH = 100_000
"""Stage readings kept in memory by :meth:`SampleRecord.log_temperature` (oldest dropped)."""


def _check_segment(seg: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in SEGMENT_KEYS if k not in seg]
    if missing:
        raise ValueError(f"history segment lacks {missing}: {seg!r}")
    start, end = float(seg["start_s"]), float(seg["end_s"])
    if not (math.isfinite(start) and math.isfinite(end) and end >= start):
        raise ValueError(f"history segment needs finite start_s <= end_s, got {start}, {end}")
    temps = seg["temperature_K"]
    temps = temps if isinstance(temps, list | tuple) else [temps]
    if not temps or any(not (math.isfinite(float(t)) and float(t) > 0) for t in temps):
        raise ValueError(f"history segment temperature_K must be > 0 K, got {seg['temperature_K']}")
    out = {k: seg[k] for k in SEGMENT_KEYS}
    out["temperature_K"] = [float(t) for t in temps] if len(temps) > 1 else float(temps[0])
    out["start_s"], out["end_s"], out["immersed"] = start, end, bool(seg["immersed"])
    return out


class _SegmentSignal(Signal):
    """Writing a segment dict appends it to the parent's history."""

    def put(self, value: Any, **kwargs: Any) -> None:
        self.parent._append(_check_segment(dict(value)))
        super().put(json.dumps(value, default=float), **kwargs)

    def set(self, value: Any, **kwargs: Any) -> Status:
        """Append at once; the stored value is the segment's JSON, so do not wait for it."""
        self.put(value)
        status = Status(self)
        status.set_finished()
        return status


class SampleRecord(Device):
    """Identity and thermal history of the sample under study.

    Parameters
    ----------
    sample_id : str
        The sample's id (required by the session's metadata validator).
    path : path-like, optional
        JSON file holding the history; loaded if it exists, rewritten on every change.
    """

    sample_id = Cpt(Signal, value="", kind="config")
    n_segments = Cpt(Signal, value=0, kind="normal")
    segment = Cpt(_SegmentSignal, value="", kind="omitted")

    def __init__(self, prefix: str = "", *, name: str, sample_id: str = "",
                 path: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self._lock = threading.Lock()
        self._history: list[dict[str, Any]] = []
        self._readings: deque[tuple[float, float]] = deque(maxlen=LOG_LENGTH)
        self._suspensions: deque[tuple[float, float]] = deque(maxlen=LOG_LENGTH)
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.exists():
            saved = json.loads(self.path.read_text())
            self._history = [_check_segment(s) for s in saved.get("history", [])]
            sample_id = sample_id or saved.get("sample_id", "")
        self.sample_id.put(sample_id)
        self.n_segments.put(len(self._history))
        self.sample_id.subscribe(lambda **_: self._save(), run=False)

    def history(self) -> list[dict[str, Any]]:
        """A copy of the segments recorded so far, oldest first."""
        with self._lock:
            return [dict(s) for s in self._history]

    def log_temperature(self, time_s: float, temperature_K: float) -> None:
        """Note one reading of the temperature the sample feels (lab time s, K).

        The watchdog of imaging runs logs every stage reading here; image runs turn the
        readings of their time span into history segments (see :meth:`readings`).
        """
        t, temp = float(time_s), float(temperature_K)
        if not (math.isfinite(t) and math.isfinite(temp) and temp > 0):
            raise ValueError(f"reading needs finite time and temperature > 0 K, got "
                             f"{time_s!r} s, {temperature_K!r} K")
        with self._lock:
            self._readings.append((t, temp))

    def readings(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """Logged (time s, K) readings with ``start_s <= time <= end_s``, in time order."""
        with self._lock:
            return sorted((t, k) for t, k in self._readings if start_s <= t <= end_s)

    def log_suspension(self, start_s: float, end_s: float) -> None:
        """Note that acquisitions were suspended (stage too warm) from ``start_s`` to ``end_s``."""
        a, b = float(start_s), float(end_s)
        if not (math.isfinite(a) and math.isfinite(b) and b >= a):
            raise ValueError(f"suspension needs finite start_s <= end_s, got {a}, {b}")
        with self._lock:
            self._suspensions.append((a, b))

    def suspensions(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """Logged suspensions overlapping [start_s, end_s], clipped to it, in time order."""
        with self._lock:
            spans = sorted(self._suspensions)
        return [(max(a, start_s), min(b, end_s)) for a, b in spans
                if b > start_s and a < end_s]

    def reset(self, sample_id: str) -> None:
        """Start a new sample: clear the history and set its id."""
        with self._lock:
            self._history = []
            self._readings.clear()
            self._suspensions.clear()
        self.n_segments.put(0)
        self.sample_id.put(sample_id)
        self._save()

    def archive(self, folder: str | os.PathLike[str]) -> Path | None:
        """Move the history to a file in ``folder`` and start it anew, keeping the sample id.

        For a record whose sample is gone (a simulated lab's sample lives only as long as the
        lab). The file is named after the record's file and the UTC time to the microsecond
        (``S1-20261202T144906595384Z.json``); nothing is written, and None is returned, when
        the history is empty.
        """
        history = self.history()
        if not history:
            return None
        stem = self.path.stem if self.path is not None else "sample"
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = Path(folder) / f"{stem}-{stamp}.json"
        self._write(target, history)
        self.reset(self.sample_id.get())
        return target

    def _append(self, seg: dict[str, Any]) -> None:
        with self._lock:
            last = self._history[-1] if self._history else None
            if last is not None and seg["start_s"] < last["end_s"] - SEGMENT_OVERLAP_S:
                raise ValueError(
                    f"history segment starts at {seg['start_s']} s, before the last one "
                    f"({last['source']}) ends at {last['end_s']} s: the history runs forward "
                    f"in lab time (overlaps up to {SEGMENT_OVERLAP_S} s are clock steps)")
            self._history.append(seg)
            n = len(self._history)
        self.n_segments.put(n)
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            self._write(self.path, self.history())

    def _write(self, path: Path, history: list[dict[str, Any]]) -> None:
        """The record as JSON in ``path``, written whole (a temporary file, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sample_id": self.sample_id.get(), "history": history},
                                  indent=1))
        os.replace(tmp, path)
