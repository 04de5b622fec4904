"""Write-ahead journal: one append-only, fdatasync-ed JSON-lines file per run being written."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._locks import FileLock

__all__ = ["read_journal"]

logger = logging.getLogger("lltolab.catalog")


def json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"document value of type {type(obj).__name__} is not JSON serialisable")


class Journal:
    """Append-only JSON-lines file of one run's documents, locked while the run is open."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held for the run
        if not FileLock(self._file).try_acquire():
            self._file.close()
            raise RuntimeError(f"journal {path} is locked by another writer")

    def append(self, name: str, doc: Mapping[str, Any]) -> None:
        line = json.dumps({"name": name, "doc": doc}, default=json_default).encode() + b"\n"
        view = memoryview(line)
        while view:
            view = view[self._file.write(view) :]
        if self._fsync:
            (getattr(os, "fdatasync", None) or os.fsync)(self._file.fileno())

    def close(self, *, delete: bool) -> None:
        self._file.close()
        if delete:
            self.path.unlink(missing_ok=True)


class CorruptJournal(ValueError):
    """A journal file that cannot be parsed."""


def read_journal(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """Documents of a journal file, in order; a torn last line (crash mid-write) is dropped.

    Raises
    ------
    ValueError
        If a line other than the last is not a ``{"name": ..., "doc": ...}`` JSON object.
    """
    return parse_journal(Path(path).read_bytes(), Path(path))


def salvage_journal(data: bytes, p: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[bytes]]:
    """Every readable document of a journal, and the unreadable lines (for recovery)."""
    docs: list[tuple[str, dict[str, Any]]] = []
    bad: list[bytes] = []
    for i, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            name, doc = item["name"], item["doc"]
            if not isinstance(name, str) or not isinstance(doc, dict):
                raise TypeError("name must be a string and doc an object")
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("journal %s: line %d is unreadable (%s); kept aside", p, i + 1, exc)
            bad.append(line)
            continue
        docs.append((name, doc))
    return docs, bad


def parse_journal(data: bytes, p: Path) -> list[tuple[str, dict[str, Any]]]:
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
            raise CorruptJournal(f"journal {p}: line {i + 1} is not a document: {exc}") from exc
        docs.append((name, doc))
    return docs

