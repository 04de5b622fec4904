"""The durable catalog writer: a RunEngine callback that journals first, then writes to tiled.

bluesky-tiled-plugins' ``TiledWriter`` caches event rows and writes them in batches; a crash
loses the cache, and writing every event alone costs one HTTP/SQL round trip per row. The
writer returned by :func:`catalog_writer` therefore makes durability independent of batching:

* every document is first appended as one JSON line to ``journal/<start uid>.jsonl`` and
  ``fdatasync``-ed before it is handed to ``TiledWriter`` (a document handed to any later
  subscriber is already on disk); the journal is held under an exclusive lock while its run
  is open and deleted once the stop document is in the catalog;
* ``TiledWriter`` then batches freely: ``batch_size`` only sets how soon other processes see the
  rows of a running run. Default :data:`DEFAULT_BATCH_SIZE` = 100 rows. It may be a function of
  the start document, to choose per run (1 for slow image runs so that each image shows up at
  once, 100 for fast scans).

With ``queued=True`` the hand-over to tiled happens on a thread of its own, in document order:
the RunEngine waits only for the journal, never for tiled (a catalog still opening, a slow
server), and :meth:`CatalogWriter.flush` waits until everything handed in is stored (the
session's RunEngine calls it before its call returns, so a run the catalog failed to store
still raises :class:`CatalogWriteError` from that call).

Measured costs are in ``docs/catalog.md`` (``benchmarks/catalog.py`` reproduces them).
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._journal import Journal, parse_journal
from ._open import OPEN_TIMEOUT_S, open_catalog
from ._quick import ARCHIVE_DIR, archive_documents
from ._recovery import journal_dir_of_client, make_tiled_writer, recover, recover_journal
from ._target import CatalogTarget, resolve_target

__all__ = ["DEFAULT_BATCH_SIZE", "CatalogWriteError", "CatalogWriter", "catalog_writer"]

logger = logging.getLogger("lltolab.catalog")

#: Event rows (and StreamDatum frames) TiledWriter collects before one write, per run.
DEFAULT_BATCH_SIZE = 100


@dataclass
class _OpenRun:
    start: Mapping[str, Any]
    journal: Journal
    writer: Any = None  # the TiledWriter, made at the first hand-over
    broken: bool = False

    @property
    def uid(self) -> str:
        return self.start["uid"]


class CatalogWriteError(RuntimeError):
    """A run the catalog failed to store (its documents are kept in the journal)."""


class CatalogWriter:
    """RunEngine subscriber: journal every document durably, then write it with TiledWriter.

    Create it with :func:`catalog_writer`. Thread-safe; several runs may be open at once.

    If tiled fails during a run, the run goes on (every document is in the journal) and is
    rewritten from the journal at its stop; if that fails too, the stop raises
    :class:`CatalogWriteError` (from :meth:`failure_check` when subscribed, else from the
    writer), so that the RunEngine call reports it: a run never "succeeds" into the journal
    alone.

    Parameters
    ----------
    client
        Tiled container of runs (``CatalogOfBlueskyRuns``), or a ``Future`` of one (e.g. from
        :func:`warm_up`): documents are journaled at once and handed to tiled once it resolves.
    journal_dir
        Folder of the write-ahead journal files.
    batch_size
        Event rows per TiledWriter write, or a function ``start_doc -> batch size``.
    fsync
        fdatasync the journal after every document (survives power loss and OS crashes, not
        only process kills); its cost is measured in ``docs/catalog.md``.
    archive_dir
        Folder keeping the documents of each stored run (quick replay), or None.
    queued
        Hand the documents to tiled on a thread of their own (see the module docstring);
        failures are then raised by :meth:`flush` or by the ``failure_check`` callback at the
        next stop, and :meth:`wait_stored` tells when one run is in the catalog.
    """

    def __init__(
        self,
        client: Any,
        *,
        journal_dir: str | os.PathLike[str],
        batch_size: int | Callable[[Mapping[str, Any]], int] = DEFAULT_BATCH_SIZE,
        fsync: bool = True,
        archive_dir: str | os.PathLike[str] | None = None,
        queued: bool = False,
    ) -> None:
        if not callable(batch_size):
            _check_batch_size(batch_size)
        self._client = client
        self.journal_dir = Path(journal_dir)
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._fsync = fsync
        #: where the documents of each stored run are kept (gzip JSON lines), or None
        self.archive_dir = Path(archive_dir) if archive_dir is not None else None
        self._writers: dict[int, Any] = {}
        self._runs: dict[str, _OpenRun] = {}
        self._owner: dict[str, str] = {}  # descriptor / resource uid -> run uid
        self._lock = threading.RLock()
        #: uids of runs that TiledWriter failed on (rewritten from the journal at stop)
        self.failed_runs: list[str] = []
        self._unsaved: dict[str, CatalogWriteError] = {}  # stopped runs not in the catalog
        self._deferred = False  # a failure_check() callback raises instead of the writer
        self.queued = bool(queued)
        self._queue: queue.SimpleQueue[tuple[_OpenRun, str, Mapping[str, Any]]] = (
            queue.SimpleQueue())
        self._idle = threading.Condition(self._lock)
        self._waiting = 0  # documents handed in and not yet handed to tiled
        self._stored: dict[str, threading.Event] = {}
        self._worker: threading.Thread | None = None

    @property
    def opening(self) -> Future | None:
        """The opening of the catalog under way when the writer was made (a ``Future`` of
        the client), or None when it was given an open client."""
        return self._client if isinstance(self._client, Future) else None

    @property
    def client(self) -> Any:
        """The tiled container of runs (waits up to the open timeout for a pending one)."""
        if isinstance(self._client, Future):
            try:
                return self._client.result(timeout=OPEN_TIMEOUT_S)
            except FutureTimeout:
                raise TimeoutError(f"catalog not open after {OPEN_TIMEOUT_S} s") from None
        return self._client

    def _writer_for(self, start: Mapping[str, Any]) -> Any:
        size = self._batch_size(start) if callable(self._batch_size) else self._batch_size
        _check_batch_size(size)
        if size not in self._writers:
            self._writers[size] = make_tiled_writer(self.client, size)
        return self._writers[size]

    def _run_uid(self, name: str, doc: Mapping[str, Any]) -> str | None:
        if name == "start":
            return doc["uid"]
        if name in ("stop", "descriptor"):
            return doc.get("run_start")
        if name in ("event", "event_page", "stream_datum"):
            return self._owner.get(doc.get("descriptor", ""))
        if name in ("resource", "stream_resource"):
            uid = doc.get("run_start")
            if uid:
                return uid
        if name in ("datum", "datum_page"):
            return self._owner.get(doc.get("resource", ""))
        # resource/stream_resource without run_start: the most recently opened run
        return next(reversed(self._runs), None) if self._runs else None

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            if name == "start":
                self._runs[doc["uid"]] = _OpenRun(
                    start=doc,
                    journal=Journal(self.journal_dir / f"{doc['uid']}.jsonl", fsync=self._fsync),
                )
                self._stored[doc["uid"]] = threading.Event()
            uid = self._run_uid(name, doc)
            run = self._runs.get(uid) if uid else None
            if run is None:
                logger.warning("catalog writer: %s document of no open run ignored", name)
                return
            if name in ("descriptor", "resource", "stream_resource"):
                self._owner[doc["uid"]] = run.uid
            # Durable first: a crash from here on cannot lose this document.
            run.journal.append(name, doc)
            if self.queued:
                if name == "stop":  # no later document belongs to it
                    self._forget(run)
                self._waiting += 1
                if self._worker is None:
                    self._worker = threading.Thread(target=self._hand_over_loop, daemon=True,
                                                    name="lltolab-catalog-handover")
                    self._worker.start()
                # a copy: TiledWriter may amend what it is given, other callbacks read it
                self._queue.put((run, name, copy.deepcopy(dict(doc))))
                return
            self._hand_over(run, name, doc)
            if name == "stop":
                self._forget(run)
                self._finish(run)
                if not self._deferred and run.uid in self._unsaved:
                    raise self._unsaved.pop(run.uid)

    def _hand_over(self, run: _OpenRun, name: str, doc: Mapping[str, Any]) -> None:
        """Give one journaled document to TiledWriter; a failure marks the run broken."""
        if not run.broken:
            try:
                if run.writer is None:
                    run.writer = self._writer_for(run.start)
                run.writer(name, doc)
            except Exception:
                logger.exception(
                    "TiledWriter failed on a %s document of run %s; the run is kept in "
                    "the journal %s and rewritten at its stop or by recover()",
                    name, run.uid, run.journal.path,
                )
                run.broken = True
                self.failed_runs.append(run.uid)

    def _hand_over_loop(self) -> None:
        while True:
            run, name, doc = self._queue.get()
            try:
                self._hand_over(run, name, doc)
                if name == "stop":
                    self._finish(run)
            except Exception:  # noqa: BLE001 - the run stays in its journal
                logger.exception("catalog writer: hand-over of a %s document failed", name)
            finally:
                with self._idle:
                    self._waiting -= 1
                    self._idle.notify_all()

    def _forget(self, run: _OpenRun) -> None:
        """Drop a stopped run from the lookup tables of open runs."""
        self._runs.pop(run.uid, None)
        for key in [k for k, v in self._owner.items() if v == run.uid]:
            del self._owner[key]

    def flush(self, timeout_s: float = 600.0) -> None:
        """Wait until every document handed in is in the catalog or its journal is kept.

        Raises
        ------
        CatalogWriteError
            For the runs that the catalog failed to store (their journals are kept).
        TimeoutError
            If the hand-over has not caught up within ``timeout_s`` seconds (the documents
            stay in their journals; :func:`lltolab.catalog.recover` writes them).
        """
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self._waiting} documents not yet handed to the catalog after "
                        f"{timeout_s} s; they are safe in {self.journal_dir}")
                self._idle.wait(left)
            errors = list(self._unsaved.values())
            self._unsaved.clear()
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise CatalogWriteError("; ".join(str(e) for e in errors))

    def wait_stored(self, uid: str, timeout_s: float = 600.0) -> bool:
        """Wait until run ``uid`` (started through this writer) has been handed over in full.

        Returns True once its stop has gone to the catalog (stored, or kept in its journal
        after a failure: see :meth:`flush`), False on timeout or for a run not seen here.
        """
        with self._lock:
            done = self._stored.get(uid)
        return done is not None and done.wait(timeout_s)

    def _finish(self, run: _OpenRun) -> None:
        try:
            self._store_or_keep(run)
        finally:
            with self._lock:
                done = self._stored.get(run.uid)
            if done is not None:
                done.set()

    def _store_or_keep(self, run: _OpenRun) -> None:
        if not run.broken:
            run.journal.close(delete=False)
            self._archive(run)
            run.journal.path.unlink(missing_ok=True)
            return
        run.journal.close(delete=False)
        try:
            recover_journal(self.client, run.journal.path, archive_dir=self.archive_dir)
        except Exception as exc:
            logger.exception(
                "run %s could not be rewritten from its journal now; "
                "lltolab.catalog.recover() will retry", run.uid,
            )
            self._unsaved[run.uid] = CatalogWriteError(
                f"run {run.uid} is NOT in the catalog ({type(exc).__name__}: {exc}); its "
                f"documents are safe in {run.journal.path} and lltolab.catalog.recover() "
                "writes them once the catalog works"
            )

    def failure_check(self) -> Callable[[str, Mapping[str, Any]], None]:
        """A callback to subscribe LAST that raises :class:`CatalogWriteError` at the stop of
        a run the catalog failed to store (so every other subscriber got the stop first).

        Without it, the writer raises at that stop itself. A queued writer learns of a
        failure after the run's stop has been handed over: the check then raises at the next
        stop (and :meth:`flush` raises what is left).
        """
        self._deferred = True

        def check(name: str, doc: Mapping[str, Any]) -> None:
            if name == "stop":
                with self._lock:
                    if self.queued:
                        errors = list(self._unsaved.values())
                        self._unsaved.clear()
                    else:
                        error = self._unsaved.pop(doc.get("run_start", ""), None)
                        errors = [] if error is None else [error]
                if len(errors) == 1:
                    raise errors[0]
                if errors:
                    raise CatalogWriteError("; ".join(str(e) for e in errors))

        return check

    def _archive(self, run: _OpenRun) -> None:
        if self.archive_dir is None:
            return
        try:
            archive_documents(parse_journal(run.journal.path.read_bytes(), run.journal.path),
                              self.archive_dir, run.uid)
        except Exception:  # the run is in the catalog: only the quick replay copy is missing
            logger.exception("documents of run %s not archived in %s", run.uid,
                             self.archive_dir)

    @property
    def open_runs(self) -> list[str]:
        """uids of the runs started and not yet stopped."""
        with self._lock:
            return list(self._runs)


def _check_batch_size(size: object) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")


def catalog_writer(
    client_or_path: Any = None,
    *,
    api_key: str | None = None,
    batch_size: int | Callable[[Mapping[str, Any]], int] = DEFAULT_BATCH_SIZE,
    journal_dir: str | os.PathLike[str] | None = None,
    fsync: bool = True,
    readable_storage: Iterable[str | os.PathLike[str]] | None = None,
    recover_now: bool = True,
    background: bool = False,
    queued: bool = False,
) -> CatalogWriter:
    """A RunEngine subscriber writing runs to a catalog without losing emitted documents.

    ``RE.subscribe(catalog_writer(path))``. See the module docstring for the durability scheme.

    Parameters
    ----------
    client_or_path
        Catalog folder (default :func:`default_catalog_path`), tiled server address, resolved
        :class:`CatalogTarget`, or an opened tiled container of runs.
    api_key
        For a server address.
    batch_size
        Event rows TiledWriter collects before writing them (how soon other processes see
        rows of a running run), or a function ``start_doc -> int`` choosing it per run, e.g.
        ``lambda start: 1 if start.get("plan_name") == "sims_image" else 100``.
    journal_dir
        Write-ahead journal folder; default :attr:`CatalogTarget.journal_dir`
        (``<catalog>/journal`` for a folder, ``<user data dir>/lltolab/servers/<server>/journal``
        for a server).
    fsync
        fdatasync the journal after every document.
    readable_storage
        Extra readable folders for detector files (see :func:`open_catalog`).
    recover_now
        Replay journals of runs left incomplete by a crash (before any new document reaches
        tiled).
    background
        Return at once and open the catalog (and recover) in a background thread, for a fast
        session start (opening takes seconds). Documents are journaled immediately; the first
        hand-over to tiled waits for the opening (up to 120 s; if it fails the runs stay in the
        journal for :func:`recover`). Only for a folder or address.
    queued
        Hand documents to tiled on a thread of their own (:class:`CatalogWriter`).
    """
    if isinstance(client_or_path, (str, os.PathLike, CatalogTarget)) or client_or_path is None:
        target = resolve_target(client_or_path)
        if journal_dir is None:
            journal_dir = target.journal_dir
        archive_dir = target.folder / ARCHIVE_DIR if target.folder is not None else None

        def open_and_recover() -> Any:
            client = open_catalog(target, api_key=api_key, readable_storage=readable_storage)
            if recover_now:
                recover(client, journal_dir=journal_dir, archive_dir=archive_dir)
            return client

        if background:
            pending: Future = Future()

            def work() -> None:
                try:
                    pending.set_result(open_and_recover())
                except BaseException as exc:  # delivered through the future
                    logger.exception("catalog %s could not be opened", target)
                    pending.set_exception(exc)

            writer = CatalogWriter(
                pending, journal_dir=journal_dir, batch_size=batch_size, fsync=fsync,
                archive_dir=archive_dir, queued=queued,
            )
            threading.Thread(target=work, name="lltolab-catalog-writer", daemon=True).start()
            return writer
        client = open_and_recover()
    else:
        client = client_or_path
        archive_dir = None
        if journal_dir is None:
            journal_dir = journal_dir_of_client(client)
        if recover_now:
            recover(client, journal_dir=journal_dir)
    return CatalogWriter(client, journal_dir=journal_dir, batch_size=batch_size, fsync=fsync,
                         archive_dir=archive_dir, queued=queued)

