"""Recovery: rewrite into the catalog the journaled runs it lacks or holds without a stop.

:func:`recover` replays every unlocked journal whose run is missing or lacks a stop document: a
partial run is deleted and rewritten from the journal with its original uids, closed with
``exit_status='fail'`` and ``reason='recovered after crash'`` when the stop never came. It runs
automatically whenever a writer is created for a catalog. If tiled fails during a run (e.g. a
server outage) the journal keeps the documents; the run is rewritten at stop or at the next
:func:`recover`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._journal import CorruptJournal, json_default, salvage_journal
from ._locks import FileLock
from ._open import open_catalog
from ._quick import ARCHIVE_DIR, archive_documents
from ._target import JOURNAL_DIR, CatalogTarget, resolve_target, server_state_root

__all__ = ["RECOVERED_REASON", "recover"]

logger = logging.getLogger("lltolab.catalog")

#: ``reason`` of the stop document written by :func:`recover` for a run that never stopped.
RECOVERED_REASON = "recovered after crash"
#: batch size used when rewriting runs from a journal (the whole run at once)
_RECOVERY_BATCH_SIZE = 10_000


def make_tiled_writer(client: Any, batch_size: int) -> Any:
    """bluesky-tiled-plugins' ``TiledWriter`` on ``client`` with ``batch_size`` rows per write."""
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(client, batch_size=batch_size)


def journal_dir_of_client(client: Any) -> Path:
    """Journal folder for an opened client given without its target (by its address)."""
    return server_state_root(str(getattr(client, "uri", "client"))) / JOURNAL_DIR


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


def _writable_documents(
    docs: list[tuple[str, dict[str, Any]]], path: Path
) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """The documents of a salvaged journal that form a run (a start first, its descriptors
    and resources before what refers to them), and those set aside.

    A lost start document is replaced by a minimal one (uid from the other documents or the
    file name, earliest time, ``recovered_without_start=True``).
    """
    starts = [d for n, d in docs if n == "start"]
    if starts:
        start = starts[0]
    else:
        uids = {d.get("run_start") for n, d in docs if n in ("descriptor", "stop")}
        uids.discard(None)
        if len(uids) == 1 and isinstance(next(iter(uids)), str):
            uid = uids.pop()
        elif _UUID.fullmatch(path.stem):
            uid = path.stem
        else:
            return [], docs
        times = [float(d["time"]) for _, d in docs if isinstance(d.get("time"), (int, float))]
        start = {"uid": uid, "time": min(times) if times else time.time(),
                 "recovered_without_start": True}
    keep: list[tuple[str, dict[str, Any]]] = [("start", start)]
    aside: list[tuple[str, dict[str, Any]]] = []
    known = {start["uid"]}
    for name, doc in docs:
        if name == "start":
            if doc is not start:
                aside.append((name, doc))
            continue
        if name in ("event", "event_page", "stream_datum", "datum", "datum_page"):
            ref = doc.get("descriptor") if name.startswith("event") else \
                doc.get("stream_resource", doc.get("resource"))
            if ref not in known:
                aside.append((name, doc))
                continue
        if name in ("descriptor", "resource", "stream_resource"):
            known.add(doc.get("uid"))
        keep.append((name, doc))
    return keep, aside


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def recover_journal(client: Any, path: Path, archive_dir: Path | None = None) -> str | None:
    """Rewrite the run of one journal if the catalog lacks it or its stop; None if skipped."""
    with open(path, "r+b") as handle:
        if not FileLock(handle).try_acquire():
            return None  # the run is being written right now
        handle.seek(0)
        docs, bad = salvage_journal(handle.read(), path)
        if not docs and not bad:
            handle.close()
            path.unlink(missing_ok=True)
            return None
        docs, aside = _writable_documents(docs, path)
        if not docs:
            raise CorruptJournal(f"journal {path} holds no document of a run")
        if bad or aside:  # every readable line goes into the catalog; the rest is kept here
            kept = path.with_suffix(".unreadable")
            kept.write_bytes(b"\n".join([*bad, *(json.dumps({"name": n, "doc": d},
                                                             default=json_default).encode()
                                                  for n, d in aside)]) + b"\n")
            logger.warning("journal %s: %d unreadable line(s) and %d document(s) of an unknown "
                           "stream kept in %s", path, len(bad), len(aside), kept)
        uid = docs[0][1]["uid"]
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
            writer = make_tiled_writer(client, _RECOVERY_BATCH_SIZE)
            for name, doc in docs:
                writer(name, doc)
            recovered = uid
            if archive_dir is not None:
                try:
                    archive_documents(docs, archive_dir, uid)
                except Exception:  # the run is in the catalog; only the quick copy is missing
                    logger.exception("documents of run %s not archived", uid)
            logger.warning("run %s rewritten from journal %s (%d documents)", uid, path, len(docs))
    path.unlink(missing_ok=True)
    return recovered


def recover(
    catalog: Any = None,
    *,
    journal_dir: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    archive_dir: str | os.PathLike[str] | None = None,
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
    archive_dir
        Where to keep the documents of each rewritten run (default: ``<folder>/documents`` for
        a catalog folder, none otherwise).

    Returns
    -------
    list of str
        uids of the runs rewritten. Journals of runs being written by a live writer (locked)
        are left alone; journals of runs already complete are deleted; a journal that cannot
        be parsed is renamed ``*.bad`` (logged); one whose rewrite fails (e.g. server down) is
        kept for the next call (logged).
    """
    if isinstance(catalog, (str, os.PathLike, CatalogTarget)) or catalog is None:
        target = resolve_target(catalog)
        client = open_catalog(target, api_key=api_key)
        if journal_dir is None:
            journal_dir = target.journal_dir
        if archive_dir is None and target.folder is not None:
            archive_dir = target.folder / ARCHIVE_DIR
    else:
        client = catalog
        if journal_dir is None:
            journal_dir = journal_dir_of_client(client)
    jdir = Path(journal_dir)
    if not jdir.is_dir():
        return []
    recovered = []
    for path in sorted(jdir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        try:
            uid = recover_journal(client, path,
                                  Path(archive_dir) if archive_dir is not None else None)
        except CorruptJournal:  # not a journal of ours: set aside, never block writing
            logger.exception("journal %s is unreadable; renamed to *.bad", path)
            path.rename(path.with_suffix(".bad"))
            continue
        except Exception:  # e.g. the server is down: keep the journal for the next attempt
            logger.exception("run of journal %s could not be rewritten now", path)
            continue
        if uid is not None:
            recovered.append(uid)
    return recovered

