"""What ``lltolab demo`` analyses while its workflow goes on: each image and line-profile run,
at its stop."""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import multiprocessing
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLOSE_TIMEOUT_S", "EarlyAnalyses"]

_ANALYSIS_MODULE = "lltolab.run_analysis"
CLOSE_TIMEOUT_S = 120.0
"""Longest wait (s) in :meth:`EarlyAnalyses.close` for the analyses under way in the worker."""
_KILLED_S = 30.0  # longest wait (s) for the pool to notice a killed worker
#: what this process imports on a thread of its own while the workflow goes on: the analysis,
#: and matplotlib's canvas for the figure drawn here at the end (the campaign's Arrhenius plot)
_MODULES_HERE = (_ANALYSIS_MODULE, "matplotlib.figure", "matplotlib.backends.backend_agg")

logger = logging.getLogger("lltolab.demo")


class EarlyAnalyses:
    """RunEngine callback: at the stop of each successful ``sims_image`` or
    ``sims_line_profile`` run, analyse it.

    The run is read from its own documents (:func:`lltolab.run_analysis.load_image_documents`,
    :func:`~lltolab.run_analysis.load_profile_documents`: the data from the HDF5 assets its
    StreamResource documents name), so nothing waits for the catalog writer, which stores the
    runs on its own thread meanwhile. The analyses with their figures run in one worker
    process (:func:`lltolab.run_analysis.analyze_loaded_image`, a profile's
    :func:`~lltolab.run_analysis.analyze_profile_step` after the profile before it), away
    from this process, whose interpreter the catalog writer, the in-process tiled server and
    the RunEngine share. The first image is also inverted, on a thread here (its sparse
    factorizations release the interpreter).

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
    profile_results : dict of (uid before, uid) -> Future
        Line-profile analyses, for ``analyze_runs(profile_results=...)``.
    inversion_reports : dict of uid -> Future
        The report of the first image's inversion with its figure, made in the worker once
        the fit and the image's analysis are done, for
        ``analyze_runs(inversion_reports=...)``.
    plan_names : dict of uid -> str
        The plan name of every run started.

    A run whose documents cannot be read, or that the worker process can no longer take (it
    died), is left out of :attr:`image_results` or :attr:`profile_results` (a warning says
    so; after a profile that could not be read, no later profile is analysed here either):
    ``analyze_runs`` then reads it from the catalog, as it does for an analysis that failed
    in the worker. The workflow goes on either way. Call :meth:`close` when done (it waits
    for the worker process to end, at most :data:`CLOSE_TIMEOUT_S` for an analysis under way).
    """

    def __init__(self, micrograph: np.ndarray, figures: str | Path) -> None:
        self.micrograph = np.asarray(micrograph, dtype=bool)
        self.figures = Path(figures)
        self.image_results: dict[str, Future[dict[str, Any]]] = {}
        self.inversions: dict[str, Future[Any]] = {}
        self.profile_results: dict[tuple[str | None, str], Future[list[dict[str, Any]]]] = {}
        self.inversion_reports: dict[str, Future[dict[str, Any]]] = {}
        self.plan_names: dict[str, str] = {}
        self._run_uid: str | None = None  # the image or profile run being collected
        self._run_docs: list[tuple[str, dict]] = []
        self._profiles: list[Any] | None = []  # profiles read so far; None: one was not
        # the worker starts (and imports the analysis) now, on the other core
        before = set(multiprocessing.active_children())
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=importlib.import_module, initargs=(_ANALYSIS_MODULE,))
        #: everything handed to the worker; the first starts its process, here and now
        self._jobs: list[Future[Any]] = [self._pool.submit(int, 0)]
        #: the worker process (to end it should it hang, even in its imports)
        self._workers = [p for p in multiprocessing.active_children() if p not in before]
        # this process's copy of the modules loads off the RunEngine's thread
        threading.Thread(target=_import_all, args=(_MODULES_HERE,),
                         name="lltolab-analysis-import", daemon=True).start()

    def __call__(self, name: str, doc: dict) -> None:
        from lltolab.vocabulary import PlanName  # noqa: PLC0415

        if name == "start":
            self.plan_names[doc["uid"]] = doc.get("plan_name", "")
            if doc.get("plan_name") in (PlanName.SIMS_IMAGE, PlanName.SIMS_LINE_PROFILE):
                self._run_uid, self._run_docs = doc["uid"], [(name, doc)]
        elif self._run_uid is None:
            return
        elif name in ("descriptor", "stream_resource") and \
                doc.get("run_start", self._run_uid) == self._run_uid:
            self._run_docs.append((name, doc))
        elif name == "stop" and doc.get("run_start") == self._run_uid:
            uid, docs = self._run_uid, self._run_docs
            self._run_uid, self._run_docs = None, []
            if doc.get("exit_status") != "success":
                return
            if self.plan_names[uid] == PlanName.SIMS_IMAGE:
                self._analyse(uid, docs)
            else:
                self._analyse_profile(uid, docs)

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
        self._submit(self.image_results, uid, uid, analyze_loaded_image, loaded.result(),
                     figures_dir=self.figures, micrograph=self.micrograph)
        if not self.inversions:
            self.inversions[uid] = invert_run_in_background(
                None, uid, micrograph=self.micrograph, loaded=loaded)
            if uid in self.image_results:
                self.inversion_reports[uid] = self._report_later(uid)

    def _report_later(self, uid: str) -> Future[dict[str, Any]]:
        """A future of run ``uid``'s inversion report, made in the worker once its inversion
        and its boundary-step analysis are both done (or of the error that prevented it)."""
        from lltolab.run_analysis import report_inversion  # noqa: PLC0415

        report: Future[dict[str, Any]] = Future()
        fit, steps = self.inversions[uid], self.image_results[uid]
        once = threading.Lock()  # the second of the two callbacks to find both done acts

        def both_done(_: Future[Any]) -> None:
            if not (fit.done() and steps.done()) or not once.acquire(blocking=False):
                return
            failed = fit.exception() or steps.exception()
            if failed is not None:
                report.set_exception(failed)
                return
            try:
                job = self._pool.submit(report_inversion, steps.result(), fit.result(),
                                        figures_dir=self.figures)
                self._jobs.append(job)
            except (BrokenProcessPool, RuntimeError) as exc:  # the worker is gone
                report.set_exception(exc)
                return
            job.add_done_callback(lambda done: _pass_on(done, report))

        fit.add_done_callback(both_done)
        steps.add_done_callback(both_done)
        return report

    def _analyse_profile(self, uid: str, docs: list[tuple[str, dict]]) -> None:
        from lltolab.run_analysis import (  # noqa: PLC0415
            analyze_profile_step,
            load_profile_documents,
        )

        if self._profiles is None:  # an earlier profile is missing: its successor is unknown
            return
        try:
            loaded = load_profile_documents(docs)
        except Exception as exc:  # noqa: BLE001 - analysed from the catalog at the end instead
            logger.warning("run %s and the profiles after it are analysed once stored: its "
                           "documents could not be read (%s)", uid, exc)
            self._profiles = None
            return
        previous = self._profiles[-1] if self._profiles else None
        self._profiles.append(loaded)
        key = (previous[0]["uid"] if previous is not None else None, uid)
        self._submit(self.profile_results, key, uid, analyze_profile_step, loaded, previous,
                     figures_dir=self.figures)

    def _submit(self, into: dict, key: Any, uid: str, fn: Any, *args: Any,
                **kwargs: Any) -> None:
        """``into[key]`` = ``fn(*args, **kwargs)`` in the worker process, unless it is gone."""
        try:
            into[key] = self._pool.submit(fn, *args, **kwargs)
            self._jobs.append(into[key])
        except (BrokenProcessPool, RuntimeError) as exc:  # the worker died or was shut down
            logger.warning("run %s is analysed once stored: the analysis worker is gone "
                           "(%s: %s)", uid, type(exc).__name__, exc)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Drop analyses not started, wait for the running one, end the worker process.

        An analysis still running after ``timeout_s`` seconds (a worker that hangs) is
        abandoned: the worker is killed, and the analysis's future holds the error.

        Raises
        ------
        ValueError
            If ``timeout_s`` is not a finite number of seconds > 0.
        """
        if not 0 < timeout_s < math.inf:
            raise ValueError(f"timeout_s must be finite and > 0 s, got {timeout_s!r}")
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()  # those not handed to the worker yet
        _, running = wait(jobs, timeout=timeout_s)
        if running:
            logger.warning("the analysis worker is still busy after %s s: killing it", timeout_s)
            for process in self._workers:
                with contextlib.suppress(ValueError):  # closed by the pool: gone already
                    process.kill()
            wait(running, timeout=_KILLED_S)  # the pool marks them failed
        self._pool.shutdown(wait=True, cancel_futures=True)  # nothing left running


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)


def _pass_on(done: Future[Any], into: Future[Any]) -> None:
    """Give ``into`` the outcome of ``done``."""
    if done.cancelled():
        into.set_exception(CancelledError())
    elif done.exception() is not None:
        into.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        into.set_result(done.result())
