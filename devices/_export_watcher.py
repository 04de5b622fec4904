"""Export watcher: finds new, complete SurfaceLab exports in a folder and sets bad ones aside.

An export is a BIF6 file (``pattern``, e.g. ``*.bif6``) and, optionally, a JSON sidecar next to
it. The watcher decides when an export is complete (the BIF6 has the size its header implies,
its sidecar reads, or the grace period for a sidecar has passed) and which ones are new. An
export that cannot be read (see :func:`lltolab.formats.read_sidecar` and
:func:`lltolab.formats.bif6_status`) is moved with its sidecar into a ``rejected/``
subfolder, next to a ``<name>.reason.txt`` that says why, so it never blocks the exports that
follow. The watcher never follows a symbolic link that leads outside the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lltolab.comm import InstrumentTimeout
from lltolab.formats import (
    ExportFormatError,
    bif6_status,
    read_sidecar,
    sidecar_path_for,
)

__all__ = ["ExportWatcher", "ReadyExport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadyExport:
    """A complete export, ready to be read.

    Attributes
    ----------
    bif6_path : Path
    identity : (int, int)
        (mtime_ns, size) of the BIF6 when it was found complete.
    sidecar_path : Path or None
        Its sidecar, or None when it has none (metadata from configuration).
    """

    bif6_path: Path
    identity: tuple[int, int]
    sidecar_path: Path | None


class ExportWatcher:
    """Polls an export folder for new complete exports.

    Parameters
    ----------
    folder : path-like
        The export folder (an existing directory).
    pattern : str
        Glob of BIF6 files in ``folder`` (not recursive).
    sidecar_pattern : str or None
        Sidecar name from the BIF6 ``{stem}``/``{name}``; None: exports have no sidecar.
    sidecar_grace_s : float
        How long (s) a complete BIF6 may wait for its sidecar, and a sidecar that does not
        read (possibly still being written) may wait to become valid.
    poll_s : float
        Polling interval (s).
    sidecar_optional : bool
        True: a BIF6 whose sidecar has not appeared within the grace period is ready without
        one (its reader supplies the metadata); False: it is rejected ("sidecar missing").
    rejected_dir : str or path-like or None
        Where bad exports are moved (relative to ``folder`` unless absolute); None leaves
        them in place (they are only remembered as seen).

    Raises
    ------
    ValueError
        A folder that does not exist, a non-positive or non-finite time, a sidecar pattern
        without ``{stem}`` or ``{name}``.
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, pattern: str = "*.bif6",
        sidecar_pattern: str | None = "{stem}.json", sidecar_grace_s: float = 60.0,
        poll_s: float = 0.2, sidecar_optional: bool = False,
        rejected_dir: str | os.PathLike[str] | None = "rejected",
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"export_folder {str(folder)!r} is not an existing folder")
        for label, v in (("poll_s", poll_s), ("sidecar_grace_s", sidecar_grace_s)):
            if isinstance(v, bool) or not (isinstance(v, int | float) and 0 < v < float("inf")):
                raise ValueError(f"{label} must be a finite number > 0 s, got {v!r}")
        if sidecar_pattern is not None and (
            "{stem}" not in sidecar_pattern and "{name}" not in sidecar_pattern
        ):
            raise ValueError(
                f"sidecar_pattern {sidecar_pattern!r} must contain {{stem}} or {{name}}"
            )
        if sidecar_pattern is None and not sidecar_optional:
            raise ValueError("sidecar_pattern=None needs sidecar_optional=True")
        self.folder = folder
        self._real_folder = os.path.realpath(folder)
        self.pattern = pattern
        self.sidecar_pattern = sidecar_pattern
        self.sidecar_grace_s = float(sidecar_grace_s)
        self.poll_s = float(poll_s)
        self.sidecar_optional = sidecar_optional
        self.rejected_dir = (
            None if rejected_dir is None else
            Path(rejected_dir) if Path(rejected_dir).is_absolute() else folder / rejected_dir
        )
        self._seen: dict[Path, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self.mark_present_as_seen()

    # ------------------------------------------------------------------ public
    def mark_present_as_seen(self) -> None:
        """Treat every export now in the folder as old (only later ones are new)."""
        for p in self._exports():
            ident = _identity(p)
            if ident is not None:
                with self._lock:
                    self._seen[p] = ident

    def mark_seen(self, ready: ReadyExport) -> None:
        """Never offer ``ready`` again (unless the file changes)."""
        with self._lock:
            self._seen[ready.bif6_path] = ready.identity

    def poll(self, kind: str, pending: dict[Path, str] | None = None) -> ReadyExport | None:
        """One look at the folder: the first new complete export of ``kind``, or None.

        Parameters
        ----------
        kind : {"image", "line_profile"}
            Exports whose sidecar says another kind are left for a later poll of that kind
            (exports without a sidecar are of any kind).
        pending : dict, optional
            Filled with path -> why it is not ready yet (for timeout messages).

        Raises
        ------
        ExportFormatError
            A new export that waiting cannot repair; it has been set aside (see
            :meth:`set_aside`) before the error is raised.
        """
        pending = {} if pending is None else pending
        for path in self._exports():
            ident = _identity(path)
            if ident is None:
                continue
            with self._lock:
                if self._seen.get(path) == ident:
                    continue
            try:
                ready = self._check(path, ident, kind, pending)
            except ExportFormatError as exc:
                pending.pop(path, None)
                raise self.set_aside(path, _defect_of(exc, path)) from None
            if ready is not None:
                pending.pop(path, None)
                return ready
        return None

    def wait(
        self, kind: str, *, deadline: float, cancelled: threading.Event | None = None,
        check: Callable[[], None] | None = None, what: str = "",
    ) -> ReadyExport | None:
        """Poll until a new complete export of ``kind`` is there.

        Parameters
        ----------
        kind : {"image", "line_profile"}
        deadline : float
            ``time.monotonic()`` value after which to give up.
        cancelled : threading.Event, optional
            When set, return None at the next poll.
        check : callable, optional
            Called before each poll; may raise to end the wait.
        what : str
            Name used in the timeout message.

        Raises
        ------
        ExportFormatError
            A bad export (set aside).
        InstrumentTimeout
            Nothing complete before ``deadline``; the message lists what was pending.
        """
        pending: dict[Path, str] = {}
        while True:
            if cancelled is not None and cancelled.is_set():
                return None
            if check is not None:
                check()
            ready = self.poll(kind, pending)
            if ready is not None:
                return ready
            if time.monotonic() > deadline:
                detail = "; ".join(f"{p.name}: {why}" for p, why in pending.items())
                raise InstrumentTimeout(
                    f"{what + ': ' if what else ''}no new complete {kind} export matching "
                    f"{self.pattern!r} in {self.folder} by the deadline"
                    + (f" (pending: {detail})" if detail else "")
                )
            if cancelled is not None:
                cancelled.wait(self.poll_s)
            else:
                time.sleep(self.poll_s)

    def set_aside(self, path: Path, defect: str) -> ExportFormatError:
        """Move the export ``path`` (and its sidecar) into the rejected folder, with a reason
        file; return the error to raise. When it cannot be moved, it stays in place and is
        remembered as seen (the error says so)."""
        ident = _identity(path)
        with self._lock:
            if ident is not None:
                self._seen[path] = ident
        if self.rejected_dir is None:
            return ExportFormatError(path, defect)
        try:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            dest = _free_name(self.rejected_dir / path.name)
            files = [path]
            sc = self._sidecar_path(path)
            if sc is not None and os.path.lexists(sc):
                files.append(sc)
            moved = []
            for f in files:
                target = dest if f == path else _free_name(self.rejected_dir / f.name)
                os.replace(f, target)
                moved.append(target.name)
            reason = dest.with_name(dest.name + ".reason.txt")
            reason.write_text(
                f"{datetime.now(UTC).isoformat()} {path.name}: {defect}\n"
                f"moved here: {', '.join(moved)}\n", encoding="utf-8")
        except OSError as exc:
            log.warning("%s: could not set the bad export aside (%s)", path, exc)
            return ExportFormatError(path, f"{defect} (left in place: {exc.strerror or exc})")
        with self._lock:
            self._seen.pop(path, None)
        return ExportFormatError(path, f"{defect} (set aside in {dest})")

    # ------------------------------------------------------------------ internals
    def _sidecar_path(self, path: Path) -> Path | None:
        if self.sidecar_pattern is None:
            return None
        return sidecar_path_for(path, self.sidecar_pattern)

    def _exports(self) -> list[Path]:
        out = []
        with contextlib.suppress(OSError):
            for p in self.folder.glob(self.pattern):
                if p.is_symlink() or p.is_file():
                    out.append(p)
        return sorted(out)

    def _inside(self, path: Path) -> bool:
        real = os.path.realpath(path)
        return os.path.commonpath([real, self._real_folder]) == self._real_folder

    def _check(
        self, path: Path, ident: tuple[int, int], kind: str, pending: dict[Path, str]
    ) -> ReadyExport | None:
        if path.is_symlink() and not self._inside(path):
            raise ExportFormatError(path, "a symbolic link leading outside the export folder "
                                          "(not followed)")
        if not path.is_file():
            return None  # a link to something that is not a file (yet)
        try:
            state, size, expected = bif6_status(path)
        except FileNotFoundError:
            return None
        if state != "complete":
            pending[path] = f"incomplete, {size} of {expected or '?'} bytes"
            return None
        # the identity the export is remembered by must be that of the complete file
        ident = _identity(path)
        if ident is None or ident[1] != expected:
            return None
        sc = self._sidecar_path(path)
        if sc is None:
            return ReadyExport(path, ident, None)
        if os.path.islink(sc) and not self._inside(sc):
            raise ExportFormatError(sc, "sidecar is a symbolic link leading outside the export "
                                        "folder (not followed)")
        age = time.time() - ident[0] / 1e9
        if not os.path.lexists(sc):
            if age > self.sidecar_grace_s:
                if self.sidecar_optional:
                    return ReadyExport(path, ident, None)
                raise ExportFormatError(
                    path, f"sidecar missing: no {sc.name} within {self.sidecar_grace_s:g} s"
                )
            pending[path] = f"complete, waiting for sidecar {sc.name}"
            return None
        try:
            sidecar = read_sidecar(sc)
        except ExportFormatError:
            try:
                sc_age = time.time() - sc.lstat().st_mtime
            except OSError:
                sc_age = 0.0
            if sc_age <= self.sidecar_grace_s:  # may still be being written
                pending[path] = f"sidecar {sc.name} not yet valid"
                return None
            raise
        if sidecar.kind != kind:
            pending.pop(path, None)
            return None  # an export of the other kind: left for a trigger in that mode
        return ReadyExport(path, ident, sc)


def _defect_of(exc: ExportFormatError, export: Path) -> str:
    """The defect of ``exc``, prefixed by the file's name when it is not ``export`` itself."""
    return exc.defect if exc.path == export else f"{exc.path.name}: {exc.defect}"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        try:
            st = path.lstat()  # a dangling link
        except OSError:
            return None
    return st.st_mtime_ns, st.st_size


def _free_name(path: Path) -> Path:
    """``path``, or ``path`` with ``.1``, ``.2`` … appended when it exists."""
    if not os.path.lexists(path):
        return path
    k = 1
    while os.path.lexists(path.with_name(f"{path.name}.{k}")):
        k += 1
    return path.with_name(f"{path.name}.{k}")
