"""lltolab.catalog: run storage in an embedded tiled catalog (a folder) or a tiled server.

* :mod:`._target` — one resolution of a catalog target (:func:`resolve_target`): folder or
  server address, and where its journal and session state live;
* :mod:`._config`, :mod:`._open` — tiled configuration and opening (:func:`open_catalog`);
* :mod:`._writer`, :mod:`._journal`, :mod:`._recovery` — the durable write-ahead writer, a
  RunEngine callback that loses no emitted document on kill -9 (:func:`catalog_writer`), and
  the recovery of interrupted runs (:func:`recover`);
* :mod:`._listing` — listing (:func:`list_runs`) and replay (:func:`replay`).

An ``http(s)://`` address opens a tiled server instead of a folder (scale-out: the same writer
and readers; :func:`server_config_yaml` renders a ``tiled serve config`` file for PostgreSQL).
"""

from ._config import catalog_config, server_config_yaml
from ._journal import read_journal
from ._listing import RunSummary, format_runs, list_runs, replay
from ._open import close_catalogs, open_catalog, warm_up
from ._recovery import RECOVERED_REASON, recover
from ._target import CatalogTarget, default_catalog_path, is_server_uri, resolve_target
from ._writer import DEFAULT_BATCH_SIZE, CatalogWriter, catalog_writer

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RECOVERED_REASON",
    "CatalogTarget",
    "CatalogWriter",
    "RunSummary",
    "catalog_config",
    "catalog_writer",
    "close_catalogs",
    "default_catalog_path",
    "format_runs",
    "is_server_uri",
    "list_runs",
    "open_catalog",
    "read_journal",
    "recover",
    "replay",
    "resolve_target",
    "server_config_yaml",
    "warm_up",
]
