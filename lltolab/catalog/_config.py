"""tiled configuration of an embedded catalog folder, and of a tiled server on PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._target import ASSETS_DIR, CATALOG_DB, FILES_DIR, SETTINGS_FILE, TABLES_DB

__all__ = ["catalog_config", "server_config_yaml"]

#: tiled media-type exporter that makes ``run.documents()`` work
EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"


def sqlite_uri(path: Path) -> str:
    """``sqlite:///`` + absolute path: four slashes on POSIX (``sqlite:////tmp/x.db``)."""
    return "sqlite:///" + path.resolve().as_posix()


def stored_readable(folder: Path) -> list[str]:
    """Remembered readable folders, absolute (those inside ``folder`` are kept relative)."""
    settings = folder / SETTINGS_FILE
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
    return [str(folder / p) if not Path(p).is_absolute() else p for p in readable]


def remember_readable(folder: Path, readable: Sequence[str]) -> None:
    settings = folder / SETTINGS_FILE
    tmp = settings.with_suffix(".tmp")
    kept = []
    for p in readable:  # inside the folder: relative, so that the folder can be moved
        try:
            kept.append(Path(p).relative_to(folder).as_posix())
        except ValueError:
            kept.append(p)
    tmp.write_text(json.dumps({"readable_storage": kept}, indent=1))
    os.replace(tmp, settings)


def readable_storage_of(folder: Path, extra: Iterable[str | os.PathLike[str]] | None, *,
                        remember: bool = True) -> list[str]:
    """The folder's assets dir, the remembered folders and ``extra`` (remembered from now on,
    unless ``remember`` is False)."""
    stored = stored_readable(folder)
    added = [str(Path(p).resolve()) for p in (extra or [])]
    new = [p for p in added if p not in stored]
    if new and remember:
        stored = stored + new
        remember_readable(folder, stored)
    return [str((folder / ASSETS_DIR).resolve()), *stored]


def catalog_config(
    path: str | os.PathLike[str],
    *,
    readable_storage: Iterable[str | os.PathLike[str]] = (),
    init_if_not_exists: bool = True,
    metrics: bool = True,
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
    metrics
        Serve Prometheus metrics at ``/api/v1/metrics`` (tiled's default). The in-process
        catalog turns them off: nothing can scrape it, and every request would pay for them
        (about 1 ms of CPU each).

    Returns
    -------
    dict
        Accepted by ``tiled.server.app.build_app_from_config``; also valid as the content of a
        ``tiled serve config`` YAML file.
    """
    folder = Path(path).resolve()
    return {
        "catalog": {
            "uri": sqlite_uri(folder / CATALOG_DB),
            "writable_storage": [
                str(folder / FILES_DIR),
                sqlite_uri(folder / TABLES_DB),
            ],
            "readable_storage": [str(Path(p).resolve()) for p in readable_storage],
            "init_if_not_exists": init_if_not_exists,
            "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
        },
        "media_types": {"BlueskyRun": {"application/json-seq": EXPORTER}},
        "metrics": {"prometheus": bool(metrics)},
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
        f"    application/json-seq: {EXPORTER}\n"
        "uvicorn:\n"
        f"  host: {json.dumps(host)}\n"
        f"  port: {port}\n"
    )

