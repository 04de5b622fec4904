"""Where runs are stored: one resolution of a catalog target (folder or tiled server address).

Layout of a catalog folder::

    catalog.db            tiled catalog (SQLite, WAL mode): run containers and metadata
    tables.db             tabular event data (SQLite, tiled's writable SQL storage)
    files/                arrays written by tiled (zarr), e.g. large internal event arrays
    assets/               always readable: detector files may be written here
    journal/<uid>.jsonl   write-ahead journal of the runs being written
    session/              session state: scan_id counter, persistent metadata, sample records
    sim-exports/          exports of the simulated SurfaceLab (readable by the catalog)
    lltolab-catalog.json  extra readable-storage folders (e.g. the SIMS exports/assets folder)

A tiled server address (``http(s)://…``) keeps its journal and session state in the user data
folder, one sub-folder per server address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CatalogTarget", "default_catalog_path", "is_server_uri", "resolve_target"]

CATALOG_DB = "catalog.db"
TABLES_DB = "tables.db"
FILES_DIR = "files"
ASSETS_DIR = "assets"
JOURNAL_DIR = "journal"
SESSION_DIR = "session"
SIM_EXPORTS_DIR = "sim-exports"
SETTINGS_FILE = "lltolab-catalog.json"
INIT_MARKER = ".tiled-initialized"
INIT_LOCK = ".open.lock"


def default_catalog_path() -> Path:
    """Default catalog folder: ``<user data dir>/lltolab/catalog`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("lltolab")) / "catalog"


def is_server_uri(target: object) -> bool:
    """True for the ``http://`` / ``https://`` address of a tiled server."""
    return isinstance(target, str) and target.startswith(("http://", "https://"))


def server_state_root(uri: str) -> Path:
    import platformdirs

    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in uri.split("://", 1)[-1])
    return Path(platformdirs.user_data_dir("lltolab")) / "servers" / safe


@dataclass(frozen=True)
class CatalogTarget:
    """A resolved catalog target: a folder (absolute) or a tiled server address.

    Attributes
    ----------
    location : str
        The absolute folder path or the server address.
    folder : Path or None
        The catalog folder; None for a server.
    uri : str or None
        The server address; None for a folder.
    """

    location: str
    folder: Path | None = None
    uri: str | None = None

    @property
    def is_server(self) -> bool:
        """True for a tiled server."""
        return self.uri is not None

    @property
    def _state_root(self) -> Path:
        if self.folder is not None:
            return self.folder
        assert self.uri is not None
        return server_state_root(self.uri)

    @property
    def journal_dir(self) -> Path:
        """Write-ahead journal folder of the runs written to this target."""
        return self._state_root / JOURNAL_DIR

    @property
    def state_dir(self) -> Path:
        """Session state (scan_id counter, persistent metadata, sample records)."""
        return self._state_root / SESSION_DIR

    @property
    def sim_exports_dir(self) -> Path | None:
        """Default export folder of the simulated SurfaceLab; None for a server (where the
        exports go is the server's readable storage, configured explicitly)."""
        return self.folder / SIM_EXPORTS_DIR if self.folder is not None else None

    def __str__(self) -> str:
        return self.location


def resolve_target(target: str | os.PathLike[str] | CatalogTarget | None = None) -> CatalogTarget:
    """Resolve a catalog folder, server address or None (:func:`default_catalog_path`).

    Raises
    ------
    ValueError
        For an empty string, an address of another scheme (``ftp://``, ``postgresql://``:
        a database is served by ``lltolab server``), or a path that exists and is not a folder.
    """
    if isinstance(target, CatalogTarget):
        return target
    if target is None:
        target = default_catalog_path()
    if isinstance(target, str):
        text = target.strip()
        if not text:
            raise ValueError("catalog target is an empty string; give a folder or http(s):// URI")
        if is_server_uri(text):
            return CatalogTarget(location=text.rstrip("/"), uri=text.rstrip("/"))
        if "://" in text:
            raise ValueError(
                f"catalog {text!r} is neither a folder nor an http(s):// tiled server address "
                "(serve a database with `lltolab server --catalog postgresql://...`)"
            )
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"catalog target must be a path or URI, got {type(target).__name__}")
    folder = Path(target).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"catalog path {folder} exists and is not a folder")
    return CatalogTarget(location=str(folder), folder=folder)
