"""Session state that belongs to a catalog target: scan_id counter, persistent metadata, samples.

Several processes may write to one catalog target at once (each with its own sample). The
state therefore lives in plain files changed under an exclusive file lock, one change at a time:

* ``scan_id`` — the last scan_id handed out; :class:`ScanIdCounter` is the RunEngine's
  ``scan_id_source``, so concurrent writers get distinct, increasing scan_ids;
* ``md.json`` — :class:`PersistentMetadata`, the RunEngine's ``md``: every change of a key is
  merged into the file at once (other processes' keys are kept);
* ``samples/<sample id>.json`` — one thermal-history record per sample
  (:func:`sample_record_path`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._locks import FileLock

__all__ = ["PersistentMetadata", "ScanIdCounter", "sample_record_path"]

logger = logging.getLogger("lltolab.catalog")

#: longest wait for another process holding the state lock (s)
STATE_LOCK_TIMEOUT_S = 30.0
_MISSING = object()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        FileLock(handle).acquire_within(STATE_LOCK_TIMEOUT_S, f"session state {lock_path}")
        yield  # closing the file releases the lock


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"session state file {path} is unreadable: {exc}") from exc


class ScanIdCounter:
    """scan_id source shared by every process writing to one catalog target.

    Parameters
    ----------
    folder : path
        The target's session-state folder.
    floor : callable, optional
        Returns the highest scan_id known elsewhere (e.g. the newest run of a server); the next
        scan_id is above it too. If it fails, the local counter alone decides.
    """

    def __init__(self, folder: str | os.PathLike[str],
                 floor: Callable[[], int] | None = None) -> None:
        self.path = Path(folder) / "scan_id"
        self._lock_path = Path(folder) / ".scan_id.lock"
        self._floor = floor

    def last(self) -> int:
        """The last scan_id handed out (0 before the first)."""
        value = _read_json(self.path)
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"scan_id file {self.path} holds {value!r}, not an integer >= 0")
        return value

    def __call__(self, md: Mapping[str, Any] | None = None) -> int:
        """The next scan_id (RunEngine ``scan_id_source`` signature)."""
        with _locked(self._lock_path):
            candidates = [self.last()]
            current = (md or {}).get("scan_id")
            if isinstance(current, int) and not isinstance(current, bool):
                candidates.append(current)
            if self._floor is not None:
                try:
                    candidates.append(int(self._floor() or 0))
                except Exception:  # e.g. a server outage: the local counter still holds
                    logger.warning("scan_id floor unavailable; counting on from %s",
                                   self.path, exc_info=True)
            value = max(candidates) + 1
            _write_atomic(self.path, json.dumps(value))
        return value


class PersistentMetadata(dict):
    """RunEngine metadata persisted in one JSON file, shared safely between processes.

    Every change (set, delete, update) is merged into the file under a file lock at once; keys
    other processes changed are kept in the file (this object keeps its own view). Values must
    be JSON-serialisable.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")
        stored = _read_json(self.path)
        if stored is not None and not isinstance(stored, dict):
            raise ValueError(f"metadata file {self.path} holds {type(stored).__name__}, "
                             "not a JSON object")
        super().update(stored or {})

    def _merge(self, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if not isinstance(key, str):
                raise TypeError(f"metadata keys must be strings, got {key!r}")
            if value is not _MISSING:
                json.dumps(value)  # refuse what cannot be stored, before anything changes
        with _locked(self._lock_path):
            stored = _read_json(self.path) or {}
            for key, value in changes.items():
                if value is _MISSING:
                    stored.pop(key, None)
                else:
                    stored[key] = value
            _write_atomic(self.path, json.dumps(stored, indent=1, sort_keys=True))

    def __setitem__(self, key: str, value: Any) -> None:
        self._merge({key: value})
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._merge({key: _MISSING})
        super().__delitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        changes = dict(*args, **kwargs)
        self._merge(changes)
        super().update(changes)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[str, Any]:
        key = next(reversed(self))
        return key, self.pop(key)

    def clear(self) -> None:
        self._merge(dict.fromkeys(self, _MISSING))
        super().clear()

    def flush(self) -> None:
        """Nothing to do: every change is on disk already (kept for PersistentDict users)."""


def sample_record_path(folder: str | os.PathLike[str], sample_id: str | None) -> Path:
    """File of the sample record of ``sample_id`` in a session-state folder.

    Without an id: ``sample.json`` (a record whose sample is not named yet).
    """
    if not sample_id:
        return Path(folder) / "sample.json"
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in sample_id)
    if safe in ("", ".", ".."):
        safe = "_" + safe
    if safe != sample_id:  # keep distinct ids in distinct files
        import hashlib

        safe += "-" + hashlib.sha256(sample_id.encode()).hexdigest()[:8]
    return Path(folder) / "samples" / f"{safe}.json"
