"""Python's cyclic garbage collector, paused while a session's catalog opens.

Opening an embedded catalog imports tiled's server stack (about 2500 modules, with dask,
xarray and pandas) on a background thread while the session's first runs go on. The heap
grows from about 100 000 to 500 000 tracked objects meanwhile, and each 25 % growth triggers
a full collection: 8 of them in ``lltolab demo``'s process, 1.4 s of CPU in all, each holding
the interpreter lock (and so every thread of the process: the RunEngine, the catalog writer)
for up to 0.4 s, and freeing almost nothing (20-400 objects each).

:class:`CollectorPause` disables automatic collection for that time. Once the catalog is
open it freezes the objects made so far (``gc.freeze``: later full collections skip them,
they are the session's and the libraries' long-lived objects) and enables collection again.
When the session closes it unfreezes them, so that whatever of them has become garbage in
the meantime is collected as usual. A collector the caller had disabled is left alone.
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import Future
from typing import Any

__all__ = ["CollectorPause"]


class CollectorPause:
    """Automatic garbage collection paused until a future resolves (or ``limit_s`` passes).

    Parameters
    ----------
    until : concurrent.futures.Future
        E.g. the catalog writer's opening of its catalog; success or failure alike ends the
        pause.
    limit_s : float
        Longest pause (s): collection resumes then even if ``until`` has not resolved.

    Call :meth:`release` when the work it served is over (the session's close): it resumes
    collection if still paused and unfreezes what the pause froze. Both are idempotent.
    """

    def __init__(self, until: Future[Any], *, limit_s: float) -> None:
        if not limit_s > 0:
            raise ValueError(f"limit_s must be > 0 s, got {limit_s!r}")
        self._lock = threading.Lock()
        self.paused = gc.isenabled()
        """Whether collection is paused by this object now (never, if the caller had
        disabled the collector already)."""
        self.froze = False
        """Whether the resume froze the objects made so far (undone by :meth:`release`)."""
        self._timer: threading.Timer | None = None
        if not self.paused:
            return
        gc.disable()
        self._timer = threading.Timer(limit_s, self.resume)
        self._timer.name = "lltolab-collector-resume"
        self._timer.daemon = True
        self._timer.start()
        until.add_done_callback(lambda _: self.resume())

    def resume(self) -> None:
        """Freeze the objects made so far and enable collection again (once)."""
        with self._lock:
            if not self.paused:
                return
            self.paused = False
            if self._timer is not None:
                self._timer.cancel()
            gc.freeze()
            self.froze = True
            gc.enable()

    def release(self) -> None:
        """Resume collection if still paused, and unfreeze what the resume froze."""
        self.resume()
        with self._lock:
            if self.froze:
                self.froze = False
                gc.unfreeze()
