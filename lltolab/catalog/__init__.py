"""lltolab.catalog: run storage in an embedded tiled catalog (a folder) or a tiled server.

* :mod:`._target` — one resolution of a catalog target (:func:`resolve_target`): folder or
  server address, and where its journal and session state live;
* :mod:`._config`, :mod:`._open` — tiled configuration and opening (:func:`open_catalog`);
* :mod:`._writer`, :mod:`._journal`, :mod:`._recovery` — the durable write-ahead writer, a
  RunEngine callback that loses no emitted document on kill -9 (:func:`catalog_writer`), and
  the recovery of interrupted runs (:func:`recover`);
* :mod:`._listing` — listing (:func:`list_runs`) and replay (:func:`replay`);
* :mod:`._state` — session state of a target shared by concurrent writers (scan_id counter,
  persistent metadata, sample records);
* :mod:`._server`, :mod:`._postgres` — ``lltolab server`` (tiled's server on a folder or on
  PostgreSQL) and a private PostgreSQL cluster for tests and single-machine labs.

An ``http(s)://`` address opens a tiled server instead of a folder (scale-out: the same writer
and readers; :func:`server_config_yaml` renders a ``tiled serve config`` file for PostgreSQL).
"""

from ._config import catalog_config, server_config_yaml
from ._journal import read_journal
from ._listing import ReplayTable, RunSummary, format_runs, list_runs, newest_scan_id, replay
from ._open import (
    OPEN_TIMEOUT_S,
    CatalogAccessError,
    close_catalogs,
    init_catalog,
    open_catalog,
    server_exports,
    warm_up,
)
from ._postgres import PostgresCluster, PostgresUnavailable, find_postgres_bin
from ._quick import iter_documents, parse_run_ref, quick_list, quick_uid
from ._recovery import RECOVERED_REASON, recover
from ._server import ServerSettings, serve
from ._state import PersistentMetadata, ScanIdCounter, sample_record_path
from ._target import CatalogTarget, default_catalog_path, is_server_uri, resolve_target
from ._writer import DEFAULT_BATCH_SIZE, CatalogWriteError, CatalogWriter, catalog_writer

__all__ = [
    "OPEN_TIMEOUT_S",
    "CatalogAccessError",
    "DEFAULT_BATCH_SIZE",
    "RECOVERED_REASON",
    "CatalogTarget",
    "CatalogWriteError",
    "CatalogWriter",
    "PersistentMetadata",
    "PostgresCluster",
    "PostgresUnavailable",
    "ReplayTable",
    "RunSummary",
    "ScanIdCounter",
    "ServerSettings",
    "catalog_config",
    "catalog_writer",
    "close_catalogs",
    "default_catalog_path",
    "find_postgres_bin",
    "format_runs",
    "iter_documents",
    "is_server_uri",
    "list_runs",
    "newest_scan_id",
    "init_catalog",
    "open_catalog",
    "parse_run_ref",
    "quick_list",
    "quick_uid",
    "read_journal",
    "recover",
    "replay",
    "resolve_target",
    "sample_record_path",
    "serve",
    "server_config_yaml",
    "server_exports",
    "warm_up",
]
