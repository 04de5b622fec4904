"""Live feedback in an interactive session: a BestEffortCallback imported on first use.

bluesky's BestEffortCallback imports matplotlib's pyplot (about a second); the session
subscribes :class:`LazyBestEffortCallback` instead, which builds the real one at the first
document, so a shell shows its prompt sooner. Plots are off unless asked for
(``start(plots=True)``, ``lltolab shell --plots``, or ``s.bec.enable_plots()``).
"""

import threading
from typing import Any

__all__ = ["LazyBestEffortCallback"]


class LazyBestEffortCallback:
    """A bluesky callback that forwards to a BestEffortCallback built on first use.

    Parameters
    ----------
    plots : bool
        Live plots (needs a matplotlib GUI backend to be seen); the text table is always on.
    """

    def __init__(self, *, plots: bool = False) -> None:
        if not isinstance(plots, bool):
            raise TypeError(f"plots must be True or False, got {plots!r}")
        self._plots = plots
        self._bec: Any = None
        self._lock = threading.Lock()

    @property
    def plots(self) -> bool:
        """Whether live plots are on."""
        return self._plots

    def enable_plots(self) -> None:
        """Switch live plots on (from the next run)."""
        self._plots = True
        if self._bec is not None:
            self._bec.enable_plots()

    def disable_plots(self) -> None:
        """Switch live plots off (from the next run)."""
        self._plots = False
        if self._bec is not None:
            self._bec.disable_plots()

    @property
    def callback(self) -> Any:
        """The BestEffortCallback (built now if needed)."""
        with self._lock:
            if self._bec is None:
                from bluesky.callbacks.best_effort import BestEffortCallback  # noqa: PLC0415

                bec = BestEffortCallback()
                if not self._plots:
                    bec.disable_plots()
                self._bec = bec
            return self._bec

    def __call__(self, name: str, doc: Any) -> Any:
        return self.callback(name, doc)
