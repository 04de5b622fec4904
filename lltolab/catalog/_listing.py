"""Reading runs back: listing (``lltolab runs``) and replaying documents to callbacks.

Replay: ``run.documents()`` rebuilds documents from the stored data (new event uids,
StreamResource/StreamDatum order differs from the original); :func:`replay` feeds them to
callbacks such as ``LiveTable`` or ``BestEffortCallback``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ReplayTable", "RunSummary", "format_runs", "list_runs", "newest_scan_id", "replay"]



Callback = Callable[[str, dict[str, Any]], Any]


def replay(run: Any, callbacks: Callback | Iterable[Callback]) -> int:
    """Feed the documents of a stored run to callbacks (e.g. ``LiveTable``, BEC).

    Documents are rebuilt by the json-seq exporter: event uids are new and StreamResource /
    StreamDatum documents come in a different order than at acquisition. The empty stop
    document the exporter yields for a run without a stop is skipped.

    Returns
    -------
    int
        Number of documents delivered (to each callback).
    """
    cbs = [callbacks] if callable(callbacks) else list(callbacks)
    if not cbs:
        raise ValueError("replay needs at least one callback, got none")
    n = 0
    for name, doc in run.documents():
        if name == "stop" and not doc:
            continue
        for cb in cbs:
            cb(name, doc)
        n += 1
    return n


@dataclass(frozen=True)
class RunSummary:
    """One line of ``lltolab runs``.

    ``start_time`` is a POSIX timestamp (s); ``exit_status`` is None while a run has no stop
    document (running, or crashed and not yet recovered); ``interrupted`` is True for such a
    run that no live writer holds any more (crashed: :func:`recover` completes it).
    """

    scan_id: int | None
    uid: str
    plan_name: str | None
    sample_id: str | None
    start_time: float | None
    exit_status: str | None
    interrupted: bool = False

    def as_row(self) -> str:
        """Fixed-width text row (header: :func:`format_runs`)."""
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start_time))
            if self.start_time is not None else "-"
        )
        return (
            f"{self.scan_id if self.scan_id is not None else '-':>6}  {self.uid[:8]}  "
            f"{when:19}  {self.plan_name or '-':28.28}  {self.sample_id or '-':16.16}  "
            f"{self.exit_status or ('interrupted' if self.interrupted else 'open')}"
        )


def sample_id_of(start: Mapping[str, Any]) -> str | None:
    """The sample id a start document names (``sample_id``, or ``sample`` / its id)."""
    for key in ("sample_id", "sample"):
        value = start.get(key)
        if isinstance(value, Mapping):
            value = value.get("id", value.get("sample_id", value.get("name")))
        if value not in (None, ""):
            return str(value)
    return None


def list_runs(catalog: Any, n: int = 20) -> list[RunSummary]:
    """Summaries of the ``n`` newest runs, oldest first.

    Parameters
    ----------
    catalog
        An opened container of runs (:func:`open_catalog`).
    n
        How many runs (>= 1).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rows = []
    for uid, run in catalog.items().tail(n):
        md = run.metadata
        start, stop = md.get("start") or {}, md.get("stop") or {}
        rows.append(RunSummary(
            scan_id=start.get("scan_id"),
            uid=start.get("uid", uid),
            plan_name=start.get("plan_name"),
            sample_id=sample_id_of(start),
            start_time=start.get("time"),
            exit_status=stop.get("exit_status"),
        ))
    return rows


def format_runs(rows: Sequence[RunSummary]) -> str:
    """Text table of :func:`list_runs` rows with a header line."""
    header = f"{'scan':>6}  {'uid':8}  {'start':19}  {'plan':28}  {'sample':16}  status"
    return "\n".join([header, *(r.as_row() for r in rows)])


def newest_scan_id(catalog: Any) -> int:
    """scan_id of the newest run of an opened catalog (0 if it holds none or it has none)."""
    for _, run in catalog.items().tail(1):
        value = (run.metadata.get("start") or {}).get("scan_id")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0
    return 0


class ReplayTable:
    """Callback printing a replayed run as a table (bluesky's ``LiveTable``, light to import).

    The columns are the hinted fields of the first descriptor of ``stream`` (else its scalar
    data keys), at most ``max_columns``.
    """

    def __init__(self, stream: str = "primary", max_columns: int = 8) -> None:
        self.stream = stream
        self.max_columns = max_columns
        self._table: Any = None
        self._start: dict[str, Any] | None = None

    def _columns(self, descriptor: Mapping[str, Any]) -> list[str]:
        hinted = [f for hint in (descriptor.get("hints") or {}).values()
                  for f in (hint or {}).get("fields", [])]
        keys = descriptor.get("data_keys") or {}
        scalar = [k for k, v in keys.items() if not v.get("shape")]
        chosen = [f for f in hinted if f in keys and f in scalar] or scalar
        return chosen[: self.max_columns]

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self._start, self._table = dict(doc), None
            print(f"run {doc.get('uid', '?')[:8]}  scan_id {doc.get('scan_id', '-')}  "
                  f"plan {doc.get('plan_name', '-')}  sample {sample_id_of(doc) or '-'}")
        elif name == "descriptor" and self._table is None and \
                doc.get("name", "primary") == self.stream:
            from bluesky.callbacks.core import LiveTable

            self._table = LiveTable(self._columns(doc))
            if self._start is not None:
                self._table("start", self._start)
            self._table(name, doc)
        elif self._table is not None and name in ("descriptor", "event", "event_page", "stop"):
            self._table(name, doc)
        if name == "stop":
            print(f"exit status {doc.get('exit_status', '-')}"
                  + (f": {doc['reason']}" if doc.get("reason") else ""))
