"""Run catalog: an embedded tiled catalog in a folder, or a tiled server; crash-safe writing.

Layout of a catalog folder (every function takes the folder explicitly; the default is
:func:`default_catalog_path`, ``<user data dir>/lltolab/catalog``)::

    catalog.db            tiled catalog (SQLite, WAL mode): run containers and metadata
    tables.db             tabular event data (SQLite, tiled's writable SQL storage)
    files/                arrays written by tiled (zarr), e.g. large internal event arrays
    assets/               always readable: detector files may be written here
    journal/<uid>.jsonl   write-ahead journal of the runs being written (see below)
    lltolab-catalog.json  extra readable-storage folders (e.g. the SIMS exports/assets folder)

The folder is served in-process: tiled's ``build_app_from_config`` + ``Context.from_app``, with
specs ``CatalogOfBlueskyRuns`` and the json-seq exporter of bluesky-tiled-plugins registered for
``BlueskyRun`` so that ``run.documents()`` works. Building the app costs seconds (imports, and on
the first open of a new folder a ``tiled catalog init`` subprocess), so it is done lazily, once per
process and folder (:func:`warm_up` / ``catalog_writer(..., background=True)`` start it in a
background thread so that a session starts at once). SQLite in WAL mode lets one writer and
any number of reader processes share the folder. An ``http(s)://`` address opens a tiled server
instead (scale-out: the same writer and readers; :func:`server_config_yaml` renders a
``tiled serve config`` file for PostgreSQL).

Durability (kill -9 mid-run loses no emitted document)
-----------------------------------------------------
bluesky-tiled-plugins' ``TiledWriter`` caches event rows and writes them in batches; a crash
loses the cache, and writing every event alone costs ~40-70 ms here (one HTTP/SQL round trip
per row). The writer returned by :func:`catalog_writer` therefore makes durability independent
of batching:

* every document is first appended as one JSON line to ``journal/<start uid>.jsonl`` and
  ``fdatasync``-ed before it is handed to ``TiledWriter`` (a document handed to any later
  subscriber is already on disk); the journal is held under an exclusive lock while its run
  is open and deleted once the stop document is in the catalog;
* ``TiledWriter`` then batches freely: ``batch_size`` only sets how soon other processes see the
  rows of a running run. Default :data:`DEFAULT_BATCH_SIZE` = 100 rows. It may be a function of
  the start document, to choose per run (1 for slow image runs so that each image shows up at
  once, 100 for fast scans).

Measured on the 2-core development machine, ``count([det], 300)`` per event: bare RunEngine
1.35 ms; + plain ``TiledWriter`` (batch 10 000, not crash-safe) 2.6 ms; + ``TiledWriter`` batch 1
44 ms; :func:`catalog_writer` batch 100 with fsync 3.3 ms (2.7 ms without fsync; batch 10:
7.0 ms; batch 1: 41 ms). Opening a catalog: ~4-5 s in a fresh process (mostly imports of tiled's
server stack), ~3 s more on the first open of a new folder (``tiled catalog init``).

* :func:`recover` replays every unlocked journal whose run is missing or lacks a stop
  document: a partial run is deleted and rewritten from the journal with its original uids,
  closed with ``exit_status='fail'`` and ``reason='recovered after crash'`` when the stop never
  came. It runs automatically whenever a writer is created for a catalog. If tiled fails during
  a run (e.g. a server outage) the journal keeps the documents; the run is rewritten at stop
  or at the next :func:`recover`.

Replay: ``run.documents()`` rebuilds documents from the stored data (new event uids,
StreamResource/StreamDatum order differs from the original); :func:`replay` feeds them to
callbacks such as ``LiveTable`` or ``BestEffortCallback``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RECOVERED_REASON",
    "CatalogWriter",
    "RunSummary",
    "catalog_config",
    "catalog_writer",
    "close_catalogs",
    "default_catalog_path",
    "format_runs",
    "list_runs",
    "open_catalog",
    "read_journal",
    "recover",
    "replay",
    "server_config_yaml",
    "warm_up",
]

logger = logging.getLogger(__name__)

#: Event rows (and StreamDatum frames) TiledWriter collects before one write, per run.
DEFAULT_BATCH_SIZE = 100
#: ``reason`` of the stop document written by :func:`recover` for a run that never stopped.
RECOVERED_REASON = "recovered after crash"
#: batch size used when rewriting runs from a journal (the whole run at once)
_RECOVERY_BATCH_SIZE = 10_000

_CATALOG_DB = "catalog.db"
_TABLES_DB = "tables.db"
_FILES_DIR = "files"
_ASSETS_DIR = "assets"
_JOURNAL_DIR = "journal"
_SETTINGS_FILE = "lltolab-catalog.json"
_INIT_MARKER = ".tiled-initialized"
_INIT_LOCK = ".open.lock"
#: longest wait for another process that is creating / opening the same catalog folder (s)
_OPEN_TIMEOUT_S = 120.0
_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"

_clients: dict[tuple[str, tuple[str, ...]], Future] = {}
_clients_lock = threading.Lock()


# --------------------------------------------------------------------------- paths & config


def default_catalog_path() -> Path:
    """Default catalog folder: ``<user data dir>/lltolab/catalog`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("lltolab")) / "catalog"


def _is_uri(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("http://", "https://"))


def _sqlite_uri(path: Path) -> str:
    """``sqlite:///`` + absolute path: four slashes on POSIX (``sqlite:////tmp/x.db``)."""
    return "sqlite:///" + path.resolve().as_posix()


def _stored_readable(folder: Path) -> list[str]:
    settings = folder / _SETTINGS_FILE
    if not settings.exists():
        return []
    try:
        data = json.loads(settings.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"catalog settings file {settings} is unreadable: {exc}") from exc
    readable = data.get("readable_storage", [])
    if not isinstance(readable, list) or not all(isinstance(p, str) for p in readable):
        raise ValueError(
            f"readable_storage in {settings} must be a list of paths, got {readable!r}"
        )
    return readable


def _remember_readable(folder: Path, readable: Sequence[str]) -> None:
    settings = folder / _SETTINGS_FILE
    tmp = settings.with_suffix(".tmp")
    tmp.write_text(json.dumps({"readable_storage": list(readable)}, indent=1))
    os.replace(tmp, settings)


def _readable_storage(folder: Path, extra: Iterable[str | os.PathLike[str]] | None) -> list[str]:
    """The folder's assets dir, the remembered folders and ``extra`` (remembered from now on)."""
    stored = _stored_readable(folder)
    added = [str(Path(p).resolve()) for p in (extra or [])]
    new = [p for p in added if p not in stored]
    if new:
        stored = stored + new
        _remember_readable(folder, stored)
    return [str((folder / _ASSETS_DIR).resolve()), *stored]


def catalog_config(
    path: str | os.PathLike[str],
    *,
    readable_storage: Iterable[str | os.PathLike[str]] = (),
    init_if_not_exists: bool = True,
) -> dict[str, Any]:
    """The tiled configuration (as a dict) of the embedded catalog in folder ``path``.

    Parameters
    ----------
    path
        Catalog folder.
    readable_storage
        Folders from which detector files (e.g. SIMS HDF5 assets) may be registered and read,
        in addition to ``<path>/assets``.
    init_if_not_exists
        Create the catalog database if absent (runs ``tiled catalog init`` in a subprocess).

    Returns
    -------
    dict
        Accepted by ``tiled.server.app.build_app_from_config``; also valid as the content of a
        ``tiled serve config`` YAML file.
    """
    folder = Path(path).resolve()
    return {
        "catalog": {
            "uri": _sqlite_uri(folder / _CATALOG_DB),
            "writable_storage": [
                str(folder / _FILES_DIR),
                _sqlite_uri(folder / _TABLES_DB),
            ],
            "readable_storage": [str(Path(p).resolve()) for p in readable_storage],
            "init_if_not_exists": init_if_not_exists,
            "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
        },
        "media_types": {"BlueskyRun": {"application/json-seq": _EXPORTER}},
    }


def server_config_yaml(
    *,
    catalog_uri: str = "postgresql://lltolab:${LLTOLAB_DB_PASSWORD}@localhost:5432/lltolab",
    tables_uri: str = "postgresql://lltolab:${LLTOLAB_DB_PASSWORD}@localhost:5432/lltolab_tables",
    data_dir: str | os.PathLike[str] = "/srv/lltolab/data",
    readable_storage: Sequence[str | os.PathLike[str]] = ("/srv/lltolab/exports",),
    host: str = "0.0.0.0",
    port: int = 8000,
) -> str:
    """Render a ``tiled serve config`` YAML file for a shared catalog server (PostgreSQL).

    Run the server with ``TILED_SINGLE_USER_API_KEY=<key> tiled serve config <file>`` (create
    the database first, ``tiled catalog init <catalog_uri>`` or keep ``init_if_not_exists``),
    then use ``open_catalog("http://host:8000", api_key=<key>)`` and
    ``catalog_writer("http://host:8000", api_key=<key>)`` from the acquisition and analysis
    machines. ``${VAR}`` placeholders are expanded by tiled from the environment.

    Parameters
    ----------
    catalog_uri
        SQL database of the catalog (``postgresql://user:password@host:port/db``).
    tables_uri
        SQL database for tabular event data (may equal ``catalog_uri``'s server, other db).
    data_dir
        Folder for arrays written by tiled (zarr).
    readable_storage
        Folders with detector files (the SIMS exports/assets folder), as seen by the server.
    host, port
        Where the server listens (``0.0.0.0``: every interface of the server machine).
    """
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
    for name, uri in (("catalog_uri", catalog_uri), ("tables_uri", tables_uri)):
        if not uri.startswith(("postgresql://", "postgresql+asyncpg://", "sqlite:")):
            raise ValueError(f"{name} must be a postgresql:// or sqlite: URI, got {uri!r}")
    readable = "".join(f"\n    - {json.dumps(str(p))}" for p in readable_storage) or " []"
    return (
        "# tiled server for lltolab runs (generated by lltolab.catalog.server_config_yaml)\n"
        "# API key: set TILED_SINGLE_USER_API_KEY in the server's environment.\n"
        "catalog:\n"
        f"  uri: {json.dumps(catalog_uri)}\n"
        "  init_if_not_exists: true\n"
        "  writable_storage:\n"
        f"    - {json.dumps(str(data_dir))}\n"
        f"    - {json.dumps(tables_uri)}\n"
        f"  readable_storage:{readable}\n"
        "  specs:\n"
        "    - name: CatalogOfBlueskyRuns\n"
        '      version: "3.0"\n'
        "media_types:\n"
        "  BlueskyRun:\n"
        f"    application/json-seq: {_EXPORTER}\n"
        "uvicorn:\n"
        f"  host: {json.dumps(host)}\n"
        f"  port: {port}\n"
    )


# --------------------------------------------------------------------------- opening


class _FileLock:
    """Exclusive advisory lock on an open file (flock on POSIX, msvcrt on Windows)."""

    def __init__(self, fileobj: IO[Any]) -> None:
        self._f = fileobj

    def try_acquire(self) -> bool:
        """Take the lock if free; False at once if another holder has it."""
        fd = self._f.fileno()
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            try:
                os.lseek(fd, 0, os.SEEK_SET)  # lock byte 0 (append writes still go to the end)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            except OSError:
                return False
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire_within(self, timeout_s: float, what: str) -> None:
        """Take the lock, polling; raise TimeoutError after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} still locked by another process after {timeout_s} s")
            time.sleep(0.05)


def _open_local(
    folder: Path, readable_storage: Iterable[str | os.PathLike[str]] | None, create: bool
) -> Any:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"catalog path {folder} exists and is not a folder")
    if not create and not (folder / _CATALOG_DB).exists():
        raise ValueError(f"no catalog in {folder} (no {_CATALOG_DB}); create=False")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in (_FILES_DIR, _ASSETS_DIR, _JOURNAL_DIR):
        (folder / sub).mkdir(exist_ok=True)
    readable = _readable_storage(folder, readable_storage)
    key = (str(folder), tuple(readable))
    with _clients_lock:  # one build per process and key; other callers wait for it
        future = _clients.get(key)
        owner = future is None
        if owner:
            future = _clients[key] = Future()
    if owner:
        try:
            future.set_result(_build_local(folder, readable))
        except BaseException as exc:
            with _clients_lock:
                del _clients[key]
            future.set_exception(exc)
    try:
        return future.result(timeout=_OPEN_TIMEOUT_S)
    except FutureTimeout:
        raise TimeoutError(
            f"catalog {folder} not opened within {_OPEN_TIMEOUT_S} s (another thread opening it)"
        ) from None


def _build_local(folder: Path, readable: list[str]) -> Any:
    from tiled.client import Context, from_context
    from tiled.server.app import build_app_from_config

    # Serialise first-time creation between processes; skip the (slow) init subprocess
    # once this folder is known to be initialised.
    with open(folder / _INIT_LOCK, "a+") as lockfile:
        _FileLock(lockfile).acquire_within(_OPEN_TIMEOUT_S, f"catalog {folder}")
        initialised = (folder / _INIT_MARKER).exists() and (folder / _CATALOG_DB).exists()
        config = catalog_config(
            folder, readable_storage=readable, init_if_not_exists=not initialised
        )
        app = build_app_from_config(config)
        if not initialised:
            (folder / _INIT_MARKER).write_text("tiled catalog initialised\n")
    return from_context(Context.from_app(app))


def close_catalogs() -> int:
    """Shut down every embedded catalog app of this process (their clients stop working).

    For test teardown and long-lived processes switching folders; the next
    :func:`open_catalog` builds the app again. Returns how many apps were closed.
    """
    with _clients_lock:
        futures = list(_clients.values())
        _clients.clear()
    closed = 0
    for future in futures:
        try:
            client = future.result(timeout=_OPEN_TIMEOUT_S)
        except Exception:  # never opened: nothing to close
            continue
        client.context.close()
        closed += 1
    return closed


def warm_up(
    path_or_uri: str | os.PathLike[str] | None = None,
    *,
    api_key: str | None = None,
    readable_storage: Iterable[str | os.PathLike[str]] | None = None,
) -> Future:
    """Start opening a catalog in a background thread; later :func:`open_catalog` calls with
    the same arguments return the same client without building it again.

    Returns
    -------
    concurrent.futures.Future
        Resolves to the client (or the opening error).
    """
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(
                open_catalog(path_or_uri, api_key=api_key, readable_storage=readable_storage)
            )
        except BaseException as exc:  # delivered through the future
            future.set_exception(exc)

    threading.Thread(target=work, name="lltolab-catalog-open", daemon=True).start()
    return future


def open_catalog(
    path_or_uri: str | os.PathLike[str] | None = None,
    *,
    api_key: str | None = None,
    readable_storage: Iterable[str | os.PathLike[str]] | None = None,
    create: bool = True,
) -> Any:
    """Open a catalog of bluesky runs.

    Parameters
    ----------
    path_or_uri
        A catalog folder (created if absent; default :func:`default_catalog_path`) or the
        ``http(s)://`` address of a tiled server.
    api_key
        API key of the tiled server (ignored for a folder).
    readable_storage
        Folders with detector files referenced by runs (e.g. the SIMS exports/assets folder);
        remembered in the catalog folder so that every later opening, in any process, can read
        them. Ignored for a server (configured server-side). An app already built in this
        process for the same folder keeps the folders it was built with: pass them at the
        first opening (the session does).
    create
        Create the catalog if the folder holds none; with False a missing catalog raises
        ValueError (for read-only tools such as ``lltolab runs``).

    Returns
    -------
    bluesky_tiled_plugins.CatalogOfBlueskyRuns
        Index by uid (or a unique uid prefix of ≥ 5 characters), by positive scan_id, or
        ``[-1]`` for the newest run; ``.search(...)`` with tiled queries.
        The embedded app is built once per process and folder (seconds) and then reused.
    """
    if _is_uri(path_or_uri):
        from tiled.client import from_uri

        return from_uri(str(path_or_uri), api_key=api_key)
    folder = Path(path_or_uri) if path_or_uri is not None else default_catalog_path()
    return _open_local(folder.expanduser().resolve(), readable_storage, create)


# --------------------------------------------------------------------------- journal


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"document value of type {type(obj).__name__} is not JSON serialisable")


class _Journal:
    """Append-only JSON-lines file of one run's documents, locked while the run is open."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held for the run
        if not _FileLock(self._file).try_acquire():
            self._file.close()
            raise RuntimeError(f"journal {path} is locked by another writer")

    def append(self, name: str, doc: Mapping[str, Any]) -> None:
        line = json.dumps({"name": name, "doc": doc}, default=_json_default).encode() + b"\n"
        view = memoryview(line)
        while view:
            view = view[self._file.write(view) :]
        if self._fsync:
            (getattr(os, "fdatasync", None) or os.fsync)(self._file.fileno())

    def close(self, *, delete: bool) -> None:
        self._file.close()
        if delete:
            self.path.unlink(missing_ok=True)


class _CorruptJournal(ValueError):
    """A journal file that cannot be parsed."""


def read_journal(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """Documents of a journal file, in order; a torn last line (crash mid-write) is dropped.

    Raises
    ------
    ValueError
        If a line other than the last is not a ``{"name": ..., "doc": ...}`` JSON object.
    """
    return _parse_journal(Path(path).read_bytes(), Path(path))


def _parse_journal(data: bytes, p: Path) -> list[tuple[str, dict[str, Any]]]:
    raw = data.split(b"\n")
    docs: list[tuple[str, dict[str, Any]]] = []
    for i, line in enumerate(raw):
        if not line.strip():
            continue
        last = not any(x.strip() for x in raw[i + 1 :])
        try:
            item = json.loads(line)
            name, doc = item["name"], item["doc"]
        except (ValueError, KeyError, TypeError) as exc:
            if last:
                logger.warning("journal %s: dropping a torn last line (%d bytes)", p, len(line))
                break
            raise _CorruptJournal(f"journal {p}: line {i + 1} is not a document: {exc}") from exc
        docs.append((name, doc))
    return docs


# --------------------------------------------------------------------------- writing


def _make_tiled_writer(client: Any, batch_size: int) -> Any:
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(client, batch_size=batch_size)


@dataclass
class _OpenRun:
    start: Mapping[str, Any]
    journal: _Journal
    writer: Any = None  # the TiledWriter, made at the first hand-over
    broken: bool = False

    @property
    def uid(self) -> str:
        return self.start["uid"]


class CatalogWriter:
    """RunEngine subscriber: journal every document durably, then write it with TiledWriter.

    Create it with :func:`catalog_writer`. Thread-safe; several runs may be open at once.

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
        only process kills); ~0.2-0.6 ms per document on this machine.
    """

    def __init__(
        self,
        client: Any,
        *,
        journal_dir: str | os.PathLike[str],
        batch_size: int | Callable[[Mapping[str, Any]], int] = DEFAULT_BATCH_SIZE,
        fsync: bool = True,
    ) -> None:
        if not callable(batch_size):
            _check_batch_size(batch_size)
        self._client = client
        self.journal_dir = Path(journal_dir)
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._fsync = fsync
        self._writers: dict[int, Any] = {}
        self._runs: dict[str, _OpenRun] = {}
        self._owner: dict[str, str] = {}  # descriptor / resource uid -> run uid
        self._lock = threading.RLock()
        #: uids of runs that TiledWriter failed on (rewritten from the journal at stop)
        self.failed_runs: list[str] = []

    @property
    def client(self) -> Any:
        """The tiled container of runs (waits up to the open timeout for a pending one)."""
        if isinstance(self._client, Future):
            try:
                return self._client.result(timeout=_OPEN_TIMEOUT_S)
            except FutureTimeout:
                raise TimeoutError(f"catalog not open after {_OPEN_TIMEOUT_S} s") from None
        return self._client

    def _writer_for(self, start: Mapping[str, Any]) -> Any:
        size = self._batch_size(start) if callable(self._batch_size) else self._batch_size
        _check_batch_size(size)
        if size not in self._writers:
            self._writers[size] = _make_tiled_writer(self.client, size)
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
                    journal=_Journal(self.journal_dir / f"{doc['uid']}.jsonl", fsync=self._fsync),
                )
            uid = self._run_uid(name, doc)
            run = self._runs.get(uid) if uid else None
            if run is None:
                logger.warning("catalog writer: %s document of no open run ignored", name)
                return
            if name in ("descriptor", "resource", "stream_resource"):
                self._owner[doc["uid"]] = run.uid
            # Durable first: a crash from here on cannot lose this document.
            run.journal.append(name, doc)
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
            if name == "stop":
                self._finish(run)

    def _finish(self, run: _OpenRun) -> None:
        del self._runs[run.uid]
        for key in [k for k, v in self._owner.items() if v == run.uid]:
            del self._owner[key]
        if not run.broken:
            run.journal.close(delete=True)
            return
        run.journal.close(delete=False)
        try:
            _recover_journal(self.client, run.journal.path)
        except Exception:
            logger.exception(
                "run %s could not be rewritten from its journal now; "
                "lltolab.catalog.recover() will retry", run.uid,
            )

    @property
    def open_runs(self) -> list[str]:
        """uids of the runs started and not yet stopped."""
        with self._lock:
            return list(self._runs)


def _check_batch_size(size: object) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")


def _default_journal_dir(uri: str) -> Path:
    import platformdirs

    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in uri.split("://", 1)[-1])
    return Path(platformdirs.user_data_dir("lltolab")) / "journal" / safe


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
) -> CatalogWriter:
    """A RunEngine subscriber writing runs to a catalog without losing emitted documents.

    ``RE.subscribe(catalog_writer(path))``. See the module docstring for the durability scheme.

    Parameters
    ----------
    client_or_path
        Catalog folder (default :func:`default_catalog_path`), tiled server address, or an
        opened tiled container of runs.
    api_key
        For a server address.
    batch_size
        Event rows TiledWriter collects before writing them (how soon other processes see
        rows of a running run), or a function ``start_doc -> int`` choosing it per run, e.g.
        ``lambda start: 1 if start.get("plan_name") == "sims_image" else 100``.
    journal_dir
        Write-ahead journal folder; default ``<catalog>/journal`` for a folder, else
        ``<user data dir>/lltolab/journal/<server>``.
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
    """
    if isinstance(client_or_path, (str, os.PathLike)) or client_or_path is None:
        target = client_or_path
        if journal_dir is None:
            if _is_uri(target):
                journal_dir = _default_journal_dir(str(target))
            else:
                folder = Path(target) if target is not None else default_catalog_path()
                journal_dir = folder.expanduser().resolve() / _JOURNAL_DIR

        def open_and_recover() -> Any:
            client = open_catalog(target, api_key=api_key, readable_storage=readable_storage)
            if recover_now:
                recover(client, journal_dir=journal_dir)
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
                pending, journal_dir=journal_dir, batch_size=batch_size, fsync=fsync
            )
            threading.Thread(target=work, name="lltolab-catalog-writer", daemon=True).start()
            return writer
        client = open_and_recover()
    else:
        client = client_or_path
        if journal_dir is None:
            journal_dir = _default_journal_dir(str(getattr(client, "uri", "client")))
        if recover_now:
            recover(client, journal_dir=journal_dir)
    return CatalogWriter(client, journal_dir=journal_dir, batch_size=batch_size, fsync=fsync)


# --------------------------------------------------------------------------- recovery


def _num_events(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    stream_of = {d["uid"]: d.get("name", "primary") for n, d in docs if n == "descriptor"}
    counts: Counter[str] = Counter()
    for name, doc in docs:
        if name == "event":
            counts[stream_of.get(doc["descriptor"], "primary")] += 1
        elif name == "event_page":
            counts[stream_of.get(doc["descriptor"], "primary")] += len(doc.get("seq_num", []))
    return dict(counts)


def _lookup(client: Any, uid: str) -> Any | None:
    """The run whose start uid is exactly ``uid`` (no partial-uid or scan_id magic)."""
    from tiled.queries import Eq

    runs = client.search(Eq("start.uid", uid)).values().head(1)
    return runs[0] if runs else None


def _recover_journal(client: Any, path: Path) -> str | None:
    """Rewrite the run of one journal if the catalog lacks it or its stop; None if skipped."""
    with open(path, "r+b") as handle:
        if not _FileLock(handle).try_acquire():
            return None  # the run is being written right now
        handle.seek(0)
        docs = _parse_journal(handle.read(), path)
        if not docs:
            handle.close()
            path.unlink(missing_ok=True)
            return None
        name, start = docs[0]
        if name != "start":
            raise _CorruptJournal(f"journal {path} does not begin with a start document")
        uid = start["uid"]
        existing = _lookup(client, uid)
        if existing is not None and existing.metadata.get("stop"):
            recovered = None  # complete already: the crash came after the stop was written
        else:
            if existing is not None:
                client.delete_contents(uid, recursive=True, external_only=False)
            if docs[-1][0] != "stop":
                docs.append(("stop", {
                    "uid": str(uuid.uuid4()),
                    "time": max(float(d.get("time", 0.0)) for _, d in docs) or time.time(),
                    "run_start": uid,
                    "exit_status": "fail",
                    "reason": RECOVERED_REASON,
                    "num_events": _num_events(docs),
                }))
            writer = _make_tiled_writer(client, _RECOVERY_BATCH_SIZE)
            for name, doc in docs:
                writer(name, doc)
            recovered = uid
            logger.warning("run %s rewritten from journal %s (%d documents)", uid, path, len(docs))
    path.unlink(missing_ok=True)
    return recovered


def recover(
    catalog: Any = None,
    *,
    journal_dir: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
) -> list[str]:
    """Write into the catalog the journaled runs it lacks or has without a stop document.

    Parameters
    ----------
    catalog
        Catalog folder (default :func:`default_catalog_path`), server address or opened
        container of runs.
    journal_dir
        Journal folder (default as in :func:`catalog_writer`).
    api_key
        For a server address.

    Returns
    -------
    list of str
        uids of the runs rewritten. Journals of runs being written by a live writer (locked)
        are left alone; journals of runs already complete are deleted; a journal that cannot
        be parsed is renamed ``*.bad`` (logged); one whose rewrite fails (e.g. server down) is
        kept for the next call (logged).
    """
    if isinstance(catalog, (str, os.PathLike)) or catalog is None:
        client = open_catalog(catalog, api_key=api_key)
        if journal_dir is None:
            if _is_uri(catalog):
                journal_dir = _default_journal_dir(str(catalog))
            else:
                folder = Path(catalog) if catalog is not None else default_catalog_path()
                journal_dir = folder.expanduser().resolve() / _JOURNAL_DIR
    else:
        client = catalog
        if journal_dir is None:
            journal_dir = _default_journal_dir(str(getattr(client, "uri", "client")))
    jdir = Path(journal_dir)
    if not jdir.is_dir():
        return []
    recovered = []
    for path in sorted(jdir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        try:
            uid = _recover_journal(client, path)
        except _CorruptJournal:  # not a journal of ours: set aside, never block writing
            logger.exception("journal %s is unreadable; renamed to *.bad", path)
            path.rename(path.with_suffix(".bad"))
            continue
        except Exception:  # e.g. the server is down: keep the journal for the next attempt
            logger.exception("run of journal %s could not be rewritten now", path)
            continue
        if uid is not None:
            recovered.append(uid)
    return recovered


# --------------------------------------------------------------------------- reading


Callback = Callable[[str, dict[str, Any]], Any]


def replay(run: Any, callbacks: Callback | Iterable[Callback]) -> int:
    """Feed the documents of a stored run to callbacks (e.g. ``LiveTable``, BEC).

    Documents are rebuilt by the json-seq exporter: event uids are new and StreamResource /
    StreamDatum documents come in a different order than at acquisition. The empty stop
    document the exporter yields for a run without a stop is skipped.

    Returns
    -------
    int
        Number of documents delivered (to each callback).
    """
    cbs = [callbacks] if callable(callbacks) else list(callbacks)
    if not cbs:
        raise ValueError("replay needs at least one callback, got none")
    n = 0
    for name, doc in run.documents():
        if name == "stop" and not doc:
            continue
        for cb in cbs:
            cb(name, doc)
        n += 1
    return n


@dataclass(frozen=True)
class RunSummary:
    """One line of ``lltolab runs``.

    ``start_time`` is a POSIX timestamp (s); ``exit_status`` is None while a run has no stop
    document (running, or crashed and not yet recovered).
    """

    scan_id: int | None
    uid: str
    plan_name: str | None
    sample_id: str | None
    start_time: float | None
    exit_status: str | None

    def as_row(self) -> str:
        """Fixed-width text row (header: :func:`format_runs`)."""
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start_time))
            if self.start_time is not None else "-"
        )
        return (
            f"{self.scan_id if self.scan_id is not None else '-':>6}  {self.uid[:8]}  "
            f"{when:19}  {self.plan_name or '-':28.28}  {self.sample_id or '-':16.16}  "
            f"{self.exit_status or 'open'}"
        )


def _sample_id(start: Mapping[str, Any]) -> str | None:
    for key in ("sample_id", "sample"):
        value = start.get(key)
        if isinstance(value, Mapping):
            value = value.get("id", value.get("sample_id", value.get("name")))
        if value not in (None, ""):
            return str(value)
    return None


def list_runs(catalog: Any, n: int = 20) -> list[RunSummary]:
    """Summaries of the ``n`` newest runs, oldest first.

    Parameters
    ----------
    catalog
        An opened container of runs (:func:`open_catalog`).
    n
        How many runs (>= 1).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rows = []
    for uid, run in catalog.items().tail(n):
        md = run.metadata
        start, stop = md.get("start") or {}, md.get("stop") or {}
        rows.append(RunSummary(
            scan_id=start.get("scan_id"),
            uid=start.get("uid", uid),
            plan_name=start.get("plan_name"),
            sample_id=_sample_id(start),
            start_time=start.get("time"),
            exit_status=stop.get("exit_status"),
        ))
    return rows


def format_runs(rows: Sequence[RunSummary]) -> str:
    """Text table of :func:`list_runs` rows with a header line."""
    header = f"{'scan':>6}  {'uid':8}  {'start':19}  {'plan':28}  {'sample':16}  status"
    return "\n".join([header, *(r.as_row() for r in rows)])
