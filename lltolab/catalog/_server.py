"""``lltolab server``: tiled's own server (FastAPI app + uvicorn) serving an lltolab catalog.

The catalog is a folder (SQLite) or a PostgreSQL database; tabular event data go to a folder's
``tables.db`` or to a PostgreSQL database; arrays written by tiled go to a data folder. The
folder of the SIMS exports (and their HDF5 assets) is readable storage of the server and is
advertised in the root metadata (``metadata["lltolab"]["exports"]``) so that a session on the
same machine, or one mounting the same folder, writes its exports where the server reads them.
An API key is always required.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._config import EXPORTER, catalog_config, readable_storage_of
from ._target import ASSETS_DIR, SIM_EXPORTS_DIR

__all__ = ["ServerSettings", "serve", "server_app_config"]

_SQL_SCHEMES = ("postgresql://", "postgresql+asyncpg://", "postgres://")
#: key of the root metadata that tells clients where the server reads SIMS exports from
SERVER_METADATA_KEY = "lltolab"


def _is_postgres(uri: object) -> bool:
    return isinstance(uri, str) and uri.startswith(_SQL_SCHEMES)


def _check_api_key(key: str) -> str:
    if not isinstance(key, str) or not key.isalnum() or len(key) < 8:
        raise ValueError(
            "API key must be at least 8 letters/digits (tiled accepts alphanumerics only), "
            f"got {key!r}"
        )
    return key


class ServerSettings:
    """What ``lltolab server`` serves, resolved and validated.

    Parameters
    ----------
    catalog : str or path
        Catalog folder, or ``postgresql://user[:password]@host:port/db``.
    tables : str or path, optional
        Tabular storage: a ``postgresql://`` database or a folder (SQLite ``tables.db`` in it).
        Default: the catalog's own database / ``<catalog>/tables.db``.
    data : path, optional
        Folder for arrays written by tiled. Default ``<catalog>/files`` for a folder, else
        ``<user data dir>/lltolab/server-data``.
    exports : path, optional
        Folder the SIMS exports and assets are written to (readable by the server). Default
        ``<catalog>/sim-exports`` for a folder, else ``<data>/exports``.
    api_key : str, optional
        Alphanumeric, ≥ 8 characters; generated when not given.
    """

    def __init__(
        self,
        catalog: str | os.PathLike[str],
        *,
        tables: str | os.PathLike[str] | None = None,
        data: str | os.PathLike[str] | None = None,
        exports: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        import platformdirs

        text = os.fspath(catalog)
        if not text:
            raise ValueError("--catalog is empty; give a folder or a postgresql:// URI")
        self.catalog_uri: str | None = text if _is_postgres(text) else None
        if self.catalog_uri is None and "://" in text:
            raise ValueError(f"catalog {text!r} must be a folder or a postgresql:// URI")
        self.folder = None if self.catalog_uri else Path(text).expanduser().resolve()
        if self.folder is not None and self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"catalog path {self.folder} exists and is not a folder")
        if data is not None:
            self.data = Path(data).expanduser().resolve()
        elif self.folder is not None:
            self.data = self.folder / "files"
        else:
            self.data = Path(platformdirs.user_data_dir("lltolab")) / "server-data"
        if exports is not None:
            self.exports = Path(exports).expanduser().resolve()
        elif self.folder is not None:
            self.exports = self.folder / SIM_EXPORTS_DIR
        else:
            self.exports = self.data / "exports"
        tables_text = os.fspath(tables) if tables is not None else None
        if tables_text is None:
            self.tables = self.catalog_uri or _sqlite(self.folder / "tables.db")  # type: ignore[operator]
        elif _is_postgres(tables_text):
            self.tables = tables_text
        elif "://" in tables_text:
            raise ValueError(f"tables {tables_text!r} must be a folder or a postgresql:// URI")
        else:
            self.tables = _sqlite(Path(tables_text).expanduser().resolve() / "tables.db")
        self.api_key = _check_api_key(api_key) if api_key is not None else secrets.token_hex(16)

    def app_config(self) -> dict[str, Any]:
        """The tiled configuration (dict) of this server."""
        for folder in (self.data, self.exports):
            folder.mkdir(parents=True, exist_ok=True)
        if self.tables.startswith("sqlite:"):
            Path(self.tables.split("sqlite:///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / ASSETS_DIR).mkdir(exist_ok=True)
            readable = readable_storage_of(self.folder, [self.exports])
            config = catalog_config(self.folder, readable_storage=readable)
        else:
            config = {
                "catalog": {
                    "uri": self.catalog_uri,
                    "readable_storage": [str(self.exports)],
                    "init_if_not_exists": True,
                    "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
                },
                "media_types": {"BlueskyRun": {"application/json-seq": EXPORTER}},
            }
        config["catalog"]["writable_storage"] = [str(self.data), self.tables]
        config["catalog"]["metadata"] = {SERVER_METADATA_KEY: {"exports": str(self.exports)}}
        config["authentication"] = {
            "single_user_api_key": self.api_key,
            "allow_anonymous_access": False,
        }
        return config


def _sqlite(path: Path) -> str:
    return "sqlite:///" + path.as_posix()


def server_app_config(settings: ServerSettings) -> dict[str, Any]:
    """tiled configuration of ``settings`` (also valid as a ``tiled serve config`` file)."""
    return settings.app_config()


def serve(
    settings: ServerSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: Callable[[dict[str, str]], None] | None = None,
    startup_timeout_s: float = 300.0,
) -> None:
    """Serve until SIGINT / SIGTERM, then stop cleanly.

    Parameters
    ----------
    settings
        What to serve.
    host, port
        Where to listen (127.0.0.1 unless told otherwise; port 0: a free port).
    ready
        Called once the server accepts connections, with ``{"uri": ..., "api_key": ...}``.
    startup_timeout_s
        Longest wait for the server to start (catalog creation included), s.
    """
    import uvicorn

    from ._tiled_app import build_app

    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
    if port == 0:
        import socket

        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
    app = build_app(settings.app_config())
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="on"))
    info = {"uri": f"http://{host}:{port}", "api_key": settings.api_key}

    def announce() -> None:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if server.should_exit or time.monotonic() > deadline:
                return
            time.sleep(0.05)
        if ready is not None:
            ready(info)

    watcher = threading.Thread(target=announce, name="lltolab-server-ready", daemon=True)
    watcher.start()
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then re-raises the signal into the
    # handlers found at start: make those quiet so that a requested stop exits normally.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    watcher.join(timeout=1.0)


def print_ready(info: dict[str, str]) -> None:
    """``ready`` callback printing the server's address and key as one JSON line."""
    print(json.dumps(info), flush=True)
