"""The session's RunEngine: a call returns once the catalog holds the runs it took."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bluesky import RunEngine

__all__ = ["StoredRunEngine"]

logger = logging.getLogger("lltolab.session")


class StoredRunEngine(RunEngine):
    """bluesky's RunEngine whose calls end only after the catalog writer has caught up.

    The session's catalog writer journals each document at once and hands it to tiled on a
    thread of its own, so plans never wait for the catalog. ``RE(plan)``, ``RE.resume()``,
    ``RE.stop()``, ``RE.abort()`` and ``RE.halt()`` then call ``flush`` before returning:
    the runs they took are in the catalog, and a run the catalog failed to store raises
    :class:`lltolab.catalog.CatalogWriteError` from that call. If the plan itself raised,
    that exception is raised and a storage failure is logged.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`bluesky.RunEngine`.
    flush : callable, optional
        Waits for the catalog writer (e.g. :meth:`lltolab.catalog.CatalogWriter.flush`).
    """

    def __init__(self, *args: Any, flush: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog_flush = flush

    def _then_flush(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = call(*args, **kwargs)
        except BaseException:
            self._flush_quietly()
            raise
        if self.catalog_flush is not None:
            self.catalog_flush()
        return result

    def _flush_quietly(self) -> None:
        if self.catalog_flush is None:
            return
        try:
            self.catalog_flush()
        except Exception:  # the plan's own exception is the one the caller gets
            logger.exception("catalog writer after a failed RunEngine call")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._then_flush(super().__call__, *args, **kwargs)

    def resume(self) -> Any:
        return self._then_flush(super().resume)

    def stop(self) -> Any:
        return self._then_flush(super().stop)

    def abort(self, reason: str = "") -> Any:
        return self._then_flush(super().abort, reason)

    def halt(self) -> Any:
        return self._then_flush(super().halt)
