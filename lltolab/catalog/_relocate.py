"""Catalog folders that are moved, copied, or readable only.

tiled records the location of stored data as absolute URIs (``sqlite://localhost//…/tables.db``
for event tables, ``file://localhost/…/files/…`` for arrays, the same for detector files kept
inside the folder). Opening a folder therefore first finds where it was written (the parent of
its ``tables.db`` asset) and, if that is not where it is now:

* a writable folder has those URIs rewritten in place, once;
* a folder without write permission is opened through a private snapshot of its two SQLite
  databases in a temporary folder (rewritten there); arrays and detector files are read in
  place. SQLite is opened ``immutable`` for the copy, as nothing can write to such a folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote

from ._target import CATALOG_DB, TABLES_DB

__all__ = ["is_writable", "readonly_snapshot", "relocate_in_place"]

_SQLITE_PREFIX = "sqlite://localhost/"
_FILE_PREFIX = "file://localhost"


def is_writable(folder: Path) -> bool:
    """True when this process may create files in ``folder`` and write its catalog database."""
    db = folder / CATALOG_DB
    return os.access(folder, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def _homes(con: sqlite3.Connection) -> set[str]:
    """Folders the catalog's ``tables.db`` assets say it was written in."""
    rows = con.execute("SELECT data_uri FROM assets WHERE data_uri LIKE ?",
                       (f"{_SQLITE_PREFIX}%/{TABLES_DB}",)).fetchall()
    return {str(Path(uri[len(_SQLITE_PREFIX):]).parent) for (uri,) in rows}


def _rewrite(con: sqlite3.Connection, old: str, new: str, tables: str | None = None) -> int:
    """Point every asset URI under ``old`` to ``new`` (and ``tables.db`` to ``tables``)."""
    changed = 0
    if tables is not None:
        changed += con.execute(
            "UPDATE assets SET data_uri = ? WHERE data_uri = ?",
            (f"{_SQLITE_PREFIX}{tables}", f"{_SQLITE_PREFIX}{old}/{TABLES_DB}"),
        ).rowcount
    for prefix in (_SQLITE_PREFIX, _FILE_PREFIX):
        src, dst = f"{prefix}{old}/", f"{prefix}{new}/"
        changed += con.execute(
            "UPDATE assets SET data_uri = ? || substr(data_uri, ?) "
            "WHERE substr(data_uri, 1, ?) = ?",
            (dst, len(src) + 1, len(src), src),
        ).rowcount
    return changed


def move_paths(paths: list[str], homes: set[str], here: str) -> list[str]:
    """``paths`` with those under one of the old ``homes`` moved under ``here``."""
    moved = []
    for p in paths:
        for old in homes:
            if p == old or p.startswith(old + "/"):
                p = here + p[len(old):]
                break
        moved.append(p)
    return moved


def relocate_in_place(folder: Path) -> int:
    """Rewrite the asset URIs of a writable catalog folder that was moved or copied.

    Returns
    -------
    int
        Number of asset URIs rewritten (0 when the folder is where it was written).
    """
    db = folder / CATALOG_DB
    if not db.exists():
        return 0
    here = str(folder)
    try:
        with sqlite3.connect(db, timeout=30.0) as con:
            try:
                homes = _homes(con) - {here}
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # nothing stored yet
                    return 0
                raise
            changed = sum(_rewrite(con, old, here) for old in homes)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"catalog database {db} is unreadable: {exc}") from None
    if homes:
        from ._config import remember_readable, stored_readable

        remember_readable(folder, move_paths(stored_readable(folder), homes, here))
    return changed


_snapshots: list[str] = []


def _cleanup() -> None:
    for path in _snapshots:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup)


def _copy_db(src: Path, dst: Path) -> None:
    source = sqlite3.connect(f"file:{quote(str(src))}?immutable=1", uri=True)
    try:
        with sqlite3.connect(dst) as target:
            source.backup(target)
    finally:
        source.close()


def readonly_snapshot(folder: Path) -> tuple[Path, set[str]]:
    """A temporary folder with rewritten copies of ``catalog.db`` and ``tables.db`` of a
    catalog folder that cannot be written (removed at interpreter exit), and the folders the
    catalog was written in.

    Raises
    ------
    ValueError
        If the folder holds no catalog.
    """
    if not (folder / CATALOG_DB).is_file():
        raise ValueError(f"no catalog in {folder} (no {CATALOG_DB}); the folder is read-only")
    snap = Path(tempfile.mkdtemp(prefix="lltolab-readonly-"))
    _snapshots.append(str(snap))
    try:
        return _snapshot_into(folder, snap)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"catalog database in {folder} is unreadable: {exc}") from None


def _snapshot_into(folder: Path, snap: Path) -> tuple[Path, set[str]]:
    _copy_db(folder / CATALOG_DB, snap / CATALOG_DB)
    tables = snap / TABLES_DB
    if (folder / TABLES_DB).is_file():
        _copy_db(folder / TABLES_DB, tables)
    (snap / "files").mkdir()
    here = str(folder)
    with sqlite3.connect(snap / CATALOG_DB) as con:
        con.execute("PRAGMA journal_mode=DELETE")
        try:
            homes = _homes(con)
        except sqlite3.OperationalError:  # no assets table yet: nothing stored
            homes = set()
        for old in homes | {here}:
            _rewrite(con, old, here, tables=str(tables))
    return snap, homes - {here}
