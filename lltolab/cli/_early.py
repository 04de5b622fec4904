"""What ``lltolab demo`` analyses while its workflow goes on: each image run, at its stop."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EarlyAnalyses"]

_ANALYSIS_MODULE = "lltolab.run_analysis"

logger = logging.getLogger("lltolab.demo")


class EarlyAnalyses:
    """RunEngine callback: at the stop of each successful ``sims_image`` run, analyse it.

    The run is read from its own documents (:func:`lltolab.run_analysis.load_image_documents`:
    the counts from the HDF5 assets its StreamResource documents name), so nothing waits
    for the catalog writer, which stores the runs on its own thread meanwhile. The
    boundary-step analysis with its figures runs in one worker process
    (:func:`lltolab.run_analysis.analyze_loaded_image`), away from this process, whose
    interpreter the catalog writer, the in-process tiled server and the RunEngine share. The
    first image is also inverted, on a thread here (its sparse factorizations release the
    interpreter).

    Parameters
    ----------
    micrograph : ndarray of bool
        Grain-boundary map of the imaged area (True = boundary).
    figures : path
        Folder of the figures.

    Attributes
    ----------
    image_results : dict of uid -> Future
        Boundary-step results, for ``analyze_runs(image_results=...)``.
    inversions : dict of uid -> Future
        The inversion of the first image, for ``analyze_runs(inversions=...)``.
    plan_names : dict of uid -> str
        The plan name of every run started.

    A run whose documents cannot be read, or that the worker process can no longer take (it
    died), is left out of :attr:`image_results` (a warning says so): ``analyze_runs`` then
    reads it from the catalog, as it does for an analysis that failed in the worker. The
    workflow goes on either way. Call :meth:`close` when done (it waits for the worker
    process to end).
    """

    def __init__(self, micrograph: np.ndarray, figures: str | Path) -> None:
        self.micrograph = np.asarray(micrograph, dtype=bool)
        self.figures = Path(figures)
        self.image_results: dict[str, Future[dict[str, Any]]] = {}
        self.inversions: dict[str, Future[Any]] = {}
        self.plan_names: dict[str, str] = {}
        self._image_uid: str | None = None
        self._image_docs: list[tuple[str, dict]] = []
        # the worker starts (and imports the analysis) now, on the other core
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=importlib.import_module, initargs=(_ANALYSIS_MODULE,))
        self._pool.submit(int, 0)
        # this process's copy of the modules loads off the RunEngine's thread
        threading.Thread(target=importlib.import_module, args=(_ANALYSIS_MODULE,),
                         name="lltolab-analysis-import", daemon=True).start()

    def __call__(self, name: str, doc: dict) -> None:
        from lltolab.vocabulary import PlanName  # noqa: PLC0415

        if name == "start":
            self.plan_names[doc["uid"]] = doc.get("plan_name", "")
            if doc.get("plan_name") == PlanName.SIMS_IMAGE:
                self._image_uid, self._image_docs = doc["uid"], [(name, doc)]
        elif self._image_uid is None:
            return
        elif name in ("descriptor", "stream_resource") and \
                doc.get("run_start", self._image_uid) == self._image_uid:
            self._image_docs.append((name, doc))
        elif name == "stop" and doc.get("run_start") == self._image_uid:
            uid, docs = self._image_uid, self._image_docs
            self._image_uid, self._image_docs = None, []
            if doc.get("exit_status") == "success":
                self._analyse(uid, docs)

    def _analyse(self, uid: str, docs: list[tuple[str, dict]]) -> None:
        from lltolab.run_analysis import (  # noqa: PLC0415
            analyze_loaded_image,
            invert_run_in_background,
            load_image_documents,
        )

        loaded: Future[Any] = Future()
        try:
            loaded.set_result(load_image_documents(docs))
        except Exception as exc:  # noqa: BLE001 - analysed from the catalog at the end instead
            logger.warning("run %s is analysed once stored: its documents could not be read "
                           "(%s)", uid, exc)
            return
        try:
            self.image_results[uid] = self._pool.submit(
                analyze_loaded_image, loaded.result(), figures_dir=self.figures,
                micrograph=self.micrograph)
        except (BrokenProcessPool, RuntimeError) as exc:  # the worker died or was shut down
            logger.warning("run %s is analysed once stored: the analysis worker is gone "
                           "(%s: %s)", uid, type(exc).__name__, exc)
        if not self.inversions:
            self.inversions[uid] = invert_run_in_background(
                None, uid, micrograph=self.micrograph, loaded=loaded)

    def close(self) -> None:
        """Drop analyses not started, wait for the running one, end the worker process."""
        self._pool.shutdown(wait=True, cancel_futures=True)
