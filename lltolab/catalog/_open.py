"""Opening a catalog: an embedded tiled app per folder (built once per process), or a server.

The folder is served in-process: tiled's app (:func:`._tiled_app.build_app`, which spares
FastAPI a per-request cost of tiled's settings override) behind ``Context.from_app``, with
specs ``CatalogOfBlueskyRuns`` and the json-seq exporter of bluesky-tiled-plugins registered for
``BlueskyRun`` so that ``run.documents()`` works. Building the app costs seconds (imports, and on
the first open of a new folder the creation of the database), so it is done lazily, once
per process and folder (:func:`warm_up` starts it in a background thread). SQLite in WAL mode
lets one writer and any number of reader processes share the folder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from ._config import catalog_config, readable_storage_of, sqlite_uri
from ._create_db import create_catalog_database
from ._locks import FileLock
from ._relocate import is_writable, move_paths, readonly_snapshot, relocate_in_place
from ._target import (
    ASSETS_DIR,
    CATALOG_DB,
    FILES_DIR,
    INIT_LOCK,
    INIT_MARKER,
    JOURNAL_DIR,
    CatalogTarget,
    resolve_target,
)
from ._tiled_app import build_app, embedded_context

__all__ = ["CatalogAccessError", "close_catalogs", "init_catalog", "open_catalog",
           "server_exports", "warm_up"]

#: longest wait for another process or thread that is creating / opening the same catalog (s)
OPEN_TIMEOUT_S = 120.0

_clients: dict[tuple[str, tuple[str, ...]], Future] = {}
_clients_lock = threading.Lock()


def _open_local(
    folder: Path, readable_storage: Iterable[str | os.PathLike[str]] | None, create: bool
) -> Any:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"catalog path {folder} exists and is not a folder")
    if not create and not (folder / CATALOG_DB).exists():
        raise ValueError(f"no catalog in {folder} (no {CATALOG_DB}); create=False")
    readonly = folder.exists() and not is_writable(folder)
    if readonly:
        readable = readable_storage_of(folder, None, remember=False)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for sub in (FILES_DIR, ASSETS_DIR, JOURNAL_DIR):
            (folder / sub).mkdir(exist_ok=True)
        relocate_in_place(folder)  # moved or copied since written: fix stored locations
        readable = readable_storage_of(folder, readable_storage)
    key = (str(folder), tuple(readable))
    with _clients_lock:  # one build per process and key; other callers wait for it
        future = _clients.get(key)
        owner = future is None
        if owner:
            future = _clients[key] = Future()
    if owner:
        try:
            future.set_result(_build_readonly(folder, readable) if readonly
                              else _build_local(folder, readable))
        except BaseException as exc:
            with _clients_lock:
                del _clients[key]
            future.set_exception(exc)
    try:
        return future.result(timeout=OPEN_TIMEOUT_S)
    except FutureTimeout:
        raise TimeoutError(
            f"catalog {folder} not opened within {OPEN_TIMEOUT_S} s (another thread opening it)"
        ) from None


def init_catalog(path: str | os.PathLike[str]) -> Path:
    """Create the embedded catalog in folder ``path`` unless it has one already.

    Makes the folder and its sub-folders and, the first time, creates the database as tiled's
    own ``tiled catalog init`` does (in this process, about a second; later calls return at
    once). Threads and processes may call it at the same time: one creates, the others wait
    (at most :data:`OPEN_TIMEOUT_S`). :func:`open_catalog` calls it; calling it early (in a
    background thread) lets that time pass while other work goes on.

    Returns
    -------
    Path
        The catalog folder (absolute).

    Raises
    ------
    CatalogAccessError
        If the database cannot be created (the tool's error text is in the message).
    ValueError
        If ``path`` exists and is not a folder.
    """
    folder = Path(path).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"catalog path {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in (FILES_DIR, ASSETS_DIR, JOURNAL_DIR):
        (folder / sub).mkdir(exist_ok=True)
    with open(folder / INIT_LOCK, "a+") as lockfile:  # one creator across processes
        FileLock(lockfile).acquire_within(OPEN_TIMEOUT_S, f"catalog {folder}")
        if (folder / INIT_MARKER).exists() and (folder / CATALOG_DB).exists():
            return folder
        try:
            create_catalog_database(sqlite_uri(folder / CATALOG_DB), OPEN_TIMEOUT_S)
        except RuntimeError as exc:
            raise CatalogAccessError(f"catalog {folder} cannot be created: {exc}") from None
        (folder / INIT_MARKER).write_text("tiled catalog initialised\n")
    return folder


def _build_local(folder: Path, readable: list[str]) -> Any:
    from tiled.client import from_context

    init_catalog(folder)
    config = catalog_config(folder, readable_storage=readable, init_if_not_exists=False,
                            metrics=False)
    try:
        app = build_app(config)
    except (OSError, RuntimeError, ImportError) as exc:  # e.g. a corrupt database
        raise CatalogAccessError(
            f"catalog {folder} cannot be opened: {type(exc).__name__}: {exc}"
        ) from exc
    return from_context(embedded_context(app))


def _build_readonly(folder: Path, readable: list[str]) -> Any:
    from tiled.client import from_context

    snap, homes = readonly_snapshot(folder)
    readable = move_paths(readable, homes, str(folder))
    config = catalog_config(snap, readable_storage=[str(folder / FILES_DIR), *readable],
                            init_if_not_exists=False, metrics=False)
    return from_context(embedded_context(build_app(config)))


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
            client = future.result(timeout=OPEN_TIMEOUT_S)
        except Exception:  # never opened: nothing to close
            continue
        client.context.close()
        closed += 1
    return closed


def warm_up(
    path_or_uri: str | os.PathLike[str] | CatalogTarget | None = None,
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
    path_or_uri: str | os.PathLike[str] | CatalogTarget | None = None,
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
        API key of the tiled server (default ``$TILED_API_KEY``; ignored for a folder).
    readable_storage
        Folders with detector files referenced by runs (e.g. the SIMS exports/assets folder);
        remembered in the catalog folder so that every later opening, in any process, can read
        them. Ignored for a server (configured server-side). An app already built in this
        process for the same folder keeps the folders it was built with: pass them at the
        first opening (the session does).
    create
        Create the catalog if the folder holds none; with False a missing catalog raises
        ValueError (for read-only tools such as ``lltolab runs``).

    Raises
    ------
    CatalogAccessError
        A server that is unreachable, is not a tiled server, or refuses the API key (one-line
        message); a ValueError, so the CLI reports it with exit status 2.

    Returns
    -------
    bluesky_tiled_plugins.CatalogOfBlueskyRuns
        Index by uid (or a unique uid prefix of ≥ 5 characters), by positive scan_id, or
        ``[-1]`` for the newest run; ``.search(...)`` with tiled queries.
        The embedded app is built once per process and folder (seconds) and then reused.
    """
    target = resolve_target(path_or_uri)
    if target.is_server:
        assert target.uri is not None
        return _open_server(target.uri, api_key)
    assert target.folder is not None
    return _open_local(target.folder, readable_storage, create)



class CatalogAccessError(ValueError):
    """A catalog server that cannot be used: unreachable, no tiled server, or a bad API key."""


#: longest wait for a tiled server's first answer (s)
SERVER_TIMEOUT_S = 10.0


def check_server(uri: str, api_key: str | None) -> str:
    """Probe the tiled server at ``uri`` once (short timeout) and return the API key to use.

    Raises
    ------
    CatalogAccessError
        Unreachable, not a tiled server, or no key (given or ``$TILED_API_KEY``).
    """
    import httpx

    key = api_key or os.environ.get("TILED_API_KEY") or None
    try:  # tiled's own client retries for long: probe once, briefly
        about = httpx.get(f"{uri}/api/v1/", timeout=SERVER_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise CatalogAccessError(
            f"tiled server {uri} is unreachable: {exc or type(exc).__name__}"
        ) from None
    if about.status_code != 200 or "api_version" not in about.text:
        raise CatalogAccessError(
            f"{uri} is not a tiled server (GET /api/v1/ gave HTTP {about.status_code})"
        )
    if not key:
        raise CatalogAccessError(
            f"tiled server {uri} needs an API key: pass api_key= (CLI: --api-key), set "
            "TILED_API_KEY, or put api_key under [catalog] in the configuration file"
        )
    return key


def _open_server(uri: str, api_key: str | None) -> Any:
    """Client of the tiled server at ``uri``; every failure is a one-line CatalogAccessError."""
    import httpx
    from tiled.client import from_uri

    key = check_server(uri, api_key)

    try:
        return from_uri(uri, api_key=key)
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        if code in (401, 403):
            raise CatalogAccessError(
                f"tiled server {uri} refused the API key (HTTP {code})"
            ) from None
        raise CatalogAccessError(f"tiled server {uri} answered HTTP {code}") from None
    except httpx.HTTPError as exc:
        raise CatalogAccessError(
            f"tiled server {uri} is unreachable: {exc or type(exc).__name__}"
        ) from None


def server_exports(client: Any) -> Path | None:
    """The SIMS export folder a ``lltolab server`` reads from (its root metadata), or None."""
    info = getattr(client, "metadata", {}).get("lltolab") or {}
    folder = info.get("exports") if isinstance(info, dict) else None
    return Path(folder) if isinstance(folder, str) and folder else None
