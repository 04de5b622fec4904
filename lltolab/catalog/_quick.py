"""Quick reads of a catalog target for the command line, without tiled's client or server stack.

Importing tiled's server (to open a folder) or its client (which loads dask, xarray, pandas)
costs seconds; listing runs and replaying one must answer at once. So:

* a folder's ``catalog.db`` is read with :mod:`sqlite3`, read-only (``immutable`` when the
  folder is not writable), and a run is replayed from its document archive
  ``documents/<uid>.jsonl.gz`` (the exact documents the RunEngine emitted, written by
  :class:`~lltolab.catalog.CatalogWriter` when the run is in the catalog);
* a server is asked with plain HTTP: one ``/api/v1/search/`` request selecting only the
  summary fields, and the run's json-seq export (``/api/v1/container/full/<uid>``) for a
  replay.

Everything else (and runs without an archive) goes through tiled as usual.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._listing import RunSummary, sample_id_of
from ._locks import FileLock
from ._target import CATALOG_DB, JOURNAL_DIR, CatalogTarget, resolve_target

__all__ = ["iter_documents", "parse_run_ref", "quick_list", "quick_uid"]

#: sub-folder of a catalog folder holding the gzip-ed JSON-lines documents of each stored run
ARCHIVE_DIR = "documents"
_SELECT = ("{start: {uid: start.uid, scan_id: start.scan_id, plan_name: start.plan_name, "
           "sample_id: start.sample_id, sample: start.sample, time: start.time}, "
           "stop: {exit_status: stop.exit_status}}")
_PAGE = 300  # tiled's largest page


# --------------------------------------------------------------------------- folder (SQLite)


def _connect(folder: Path) -> sqlite3.Connection:
    db = folder / CATALOG_DB
    if not db.is_file():
        raise ValueError(f"no catalog in {folder} (no {CATALOG_DB})")
    writable = os.access(folder, os.W_OK) and os.access(db, os.W_OK)
    mode = "mode=ro" if writable else "immutable=1"
    return sqlite3.connect(f"file:{quote(str(db))}?{mode}", uri=True, timeout=10.0)


_COLUMNS = (
    "key, json_extract(metadata, '$.start.scan_id'), json_extract(metadata, '$.start.plan_name'),"
    " json_extract(metadata, '$.start.sample_id'), json_extract(metadata, '$.start.sample'),"
    " json_extract(metadata, '$.start.time'), json_extract(metadata, '$.stop.exit_status'),"
    " json_extract(metadata, '$.start.uid')"
)
_RUNS = "FROM nodes WHERE parent = (SELECT id FROM nodes WHERE parent IS NULL)"


def _row(row: tuple[Any, ...]) -> RunSummary:
    key, scan_id, plan, sid, sample, when, status, uid = row
    if isinstance(sample, str) and sample.startswith("{"):
        sample = json.loads(sample)
    start = {"sample_id": sid, "sample": sample}
    return RunSummary(scan_id=scan_id, uid=uid or key, plan_name=plan,
                      sample_id=sample_id_of(start), start_time=when, exit_status=status)


def _query(folder: Path, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Rows of a read-only query; an unreadable database is a one-line ValueError."""
    try:
        with _connect(folder) as con:
            return con.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise ValueError(f"catalog database {folder / CATALOG_DB} is unreadable: {exc}") from None


def _sql_list(folder: Path, n: int) -> list[RunSummary]:
    rows = _query(folder, f"SELECT {_COLUMNS} {_RUNS} ORDER BY id DESC LIMIT ?", (n,))
    out = [_row(r) for r in reversed(rows)]
    return [replace(r, interrupted=_interrupted(folder, r.uid)) if r.exit_status is None else r
            for r in out]


def _interrupted(folder: Path, uid: str) -> bool:
    """True when no live writer holds the journal of an unstopped run (it crashed)."""
    journal = folder / JOURNAL_DIR / f"{uid}.jsonl"
    try:
        with open(journal, "rb") as handle:
            return FileLock(handle).try_acquire()  # released at close
    except FileNotFoundError:
        return True  # written by no journaling writer, or its journal was lost
    except OSError:
        return False


def _sql_uid(folder: Path, ref: str | int) -> str:
    if isinstance(ref, int) and ref < 0:
        rows = _query(folder, f"SELECT key {_RUNS} ORDER BY id DESC LIMIT 1 OFFSET ?",
                      (-ref - 1,))
    elif isinstance(ref, int):
        rows = _query(folder, f"SELECT key {_RUNS} AND json_extract(metadata, "
                      "'$.start.scan_id') = ? ORDER BY id DESC LIMIT 1", (ref,))
    else:
        rows = _query(folder, f"SELECT key {_RUNS} AND key LIKE ? ESCAPE '\\' LIMIT 2",
                      (_like_prefix(ref),))
        if len(rows) > 1:
            raise ValueError(f"run {ref!r} matches several runs; give more of the uid")
    if not rows:
        raise ValueError(f"no run {ref!r} in {folder}")
    return str(rows[0][0])


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --------------------------------------------------------------------------- server (HTTP)


def _http(target: CatalogTarget, api_key: str | None) -> Any:
    """An httpx client on the server with the key, after the same checks as open_catalog."""
    import httpx

    from ._open import SERVER_TIMEOUT_S, check_server

    key = check_server(str(target.uri), api_key)
    return httpx.Client(base_url=f"{target.uri}/api/v1", timeout=SERVER_TIMEOUT_S,
                        headers={"Authorization": f"Apikey {key}"})


def _search(client: Any, uri: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    from ._open import CatalogAccessError

    response = client.get("/search/", params={
        "fields": ["metadata"], "select_metadata": _SELECT, "omit_links": True, **params})
    if response.status_code in (401, 403):
        raise CatalogAccessError(f"tiled server {uri} refused the API key "
                                 f"(HTTP {response.status_code})")
    if response.status_code != 200:
        raise CatalogAccessError(f"tiled server {uri} answered HTTP {response.status_code} "
                                 "to a search")
    return list(response.json()["data"])


def _item_row(item: Mapping[str, Any]) -> RunSummary:
    md = item["attributes"]["metadata"].get("selected", {})
    start, stop = md.get("start") or {}, md.get("stop") or {}
    return RunSummary(scan_id=start.get("scan_id"), uid=start.get("uid") or item["id"],
                      plan_name=start.get("plan_name"), sample_id=sample_id_of(start),
                      start_time=start.get("time"), exit_status=stop.get("exit_status"))


def _http_list(target: CatalogTarget, n: int, api_key: str | None) -> list[RunSummary]:
    rows: list[RunSummary] = []
    with _http(target, api_key) as client:
        while len(rows) < n:
            items = _search(client, str(target.uri), {
                "page[offset]": len(rows), "page[limit]": min(_PAGE, n - len(rows)),
                "sort": "-"})
            rows += [_item_row(i) for i in items]
            if len(items) < min(_PAGE, n - len(rows) + len(items)):
                break
    return rows[::-1]


def _http_uid(target: CatalogTarget, ref: str | int, api_key: str | None) -> str:
    with _http(target, api_key) as client:
        if isinstance(ref, int) and ref < 0:
            items = _search(client, str(target.uri),
                            {"page[offset]": -ref - 1, "page[limit]": 1, "sort": "-"})
        elif isinstance(ref, int):
            items = _search(client, str(target.uri), {
                "page[limit]": 1, "sort": "-", "filter[eq][condition][key]": "start.scan_id",
                "filter[eq][condition][value]": json.dumps(ref)})
        else:
            items = _search(client, str(target.uri), {
                "page[limit]": 2, "filter[like][condition][key]": "start.uid",
                "filter[like][condition][pattern]": json.dumps(_like_prefix(ref))})
            if len(items) > 1:
                raise ValueError(f"run {ref!r} matches several runs; give more of the uid")
    if not items:
        raise ValueError(f"no run {ref!r} in {target.uri}")
    return str(items[0]["id"])


# --------------------------------------------------------------------------- public


def _check_n(n: object) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return n


def quick_list(target: str | os.PathLike[str] | CatalogTarget | None, n: int = 20, *,
               api_key: str | None = None) -> list[RunSummary]:
    """Summaries of the ``n`` newest runs of a folder or server, oldest first (fast)."""
    _check_n(n)
    t = resolve_target(target)
    if t.is_server:
        return _http_list(t, n, api_key)
    assert t.folder is not None
    return _sql_list(t.folder, n)


def parse_run_ref(text: str) -> str | int:
    """A run reference from the command line: an integer (scan_id, or -k for the k-th newest)
    or a uid / uid prefix (≥ 5 characters).

    Raises
    ------
    ValueError
        For 0, an empty text or a uid prefix shorter than 5 characters.
    """
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        if value == 0:
            raise ValueError("run 0 does not exist: scan_ids start at 1; -1 is the newest run")
        return value
    if len(text) < 5:
        raise ValueError(f"run {text!r}: give a scan_id, -k, or at least 5 characters of a uid")
    return text


def quick_uid(target: str | os.PathLike[str] | CatalogTarget | None, ref: str | int, *,
              api_key: str | None = None) -> str:
    """The uid of a run given by scan_id, ``-k`` (k-th newest) or uid prefix (fast)."""
    t = resolve_target(target)
    if t.is_server:
        return _http_uid(t, ref, api_key)
    assert t.folder is not None
    return _sql_uid(t.folder, ref)


def archive_documents(docs: Iterable[tuple[str, Mapping[str, Any]]], archive_dir: Path,
                      uid: str) -> Path:
    """Keep a stored run's documents as ``<archive_dir>/<uid>.jsonl.gz`` (atomic replace)."""
    from ._journal import json_default

    archive_dir.mkdir(parents=True, exist_ok=True)
    final = archive_dir / f"{uid}.jsonl.gz"
    tmp = archive_dir / f".{uid}.{os.getpid()}.tmp"
    with gzip.open(tmp, "wb", compresslevel=3) as dst:
        for name, doc in docs:
            dst.write(json.dumps({"name": name, "doc": doc}, default=json_default).encode()
                      + b"\n")
    os.replace(tmp, final)
    return final


def _iter_json_seq(chunks: Iterator[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *records, buffer = buffer.replace(b"\x1e", b"\n").split(b"\n")
        for record in records:
            if record.strip():
                item = json.loads(record)
                yield item["name"], item["doc"]
    if buffer.strip():
        item = json.loads(buffer)
        yield item["name"], item["doc"]


def iter_documents(target: str | os.PathLike[str] | CatalogTarget | None, uid: str, *,
                   api_key: str | None = None) -> Iterator[tuple[str, dict[str, Any]]] | None:
    """The documents of run ``uid`` without tiled's stack, or None when not available so.

    A folder: from the run's document archive (the original documents); a server: from its
    json-seq export (documents rebuilt by the server).
    """
    t = resolve_target(target)
    if t.is_server:
        def stream() -> Iterator[tuple[str, dict[str, Any]]]:
            from ._open import CatalogAccessError

            with _http(t, api_key) as client, client.stream(
                "GET", f"/container/full/{quote(uid)}",
                params={"format": "application/json-seq"},
                headers={"Accept": "application/json-seq"},
            ) as response:
                if response.status_code != 200:
                    raise CatalogAccessError(f"tiled server {t.uri} answered HTTP "
                                             f"{response.status_code} for run {uid}")
                yield from _iter_json_seq(response.iter_bytes())

        return stream()
    assert t.folder is not None
    path = t.folder / ARCHIVE_DIR / f"{uid}.jsonl.gz"
    if not path.is_file():
        return None

    def read() -> Iterator[tuple[str, dict[str, Any]]]:
        with gzip.open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    item = json.loads(line)
                    yield item["name"], item["doc"]

    return read()
