"""Analysis of stored runs: load images / line profiles from the catalog, call lltolab.analysis.

``analyze_runs(catalog, refs)`` is what ``lltolab analyze RUN...`` and ``lltolab demo`` call:
image runs get the boundary-step analysis (C map with boundaries, D_gb/δ per boundary), a
line-profile run the erfc fit of eq. 4 (exchange time from its thermal history), and two or
more line-profile runs the sealed time-evolution fit between consecutive ones; when the runs
represent two or more temperatures (a campaign) the Arrhenius analysis of D_eff, (l/δ)D_gb and
D_bulk follows (with its plot).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import numpy as np

from lltolab.analysis import (
    analyze_campaign,
    analyze_image,
    analyze_profiles,
    inversion_report,
    invert_image,
    preferred_dgb_over_delta,
)
from lltolab.diffusion import BulkDiffusivity
from lltolab.vocabulary import ROOM_K, WARM_SOURCES, DataKey, DeviceName, PlanName, SegmentSource

__all__ = ["LoadedImage", "LoadedProfile", "analyze_image_run_in_background",
           "analyze_loaded_image", "analyze_profile_step", "analyze_runs",
           "invert_run_in_background", "load_image", "load_image_documents",
           "load_image_run_in_background", "load_profile", "load_profile_documents",
           "report_inversion", "represented_temperature_K"]

PREPARED_TIMEOUT_S = 600.0
"""Longest wait (s) for an image analysis started in the background."""
INVERSION_TIMEOUT_S = 3600.0
"""Longest wait (s) for an inversion (minutes of CPU on a large image with a long history)."""

SAMPLE_EXTENT_CM = (-0.1, 0.9)
"""x extent of the sample strip (cm): 1 mm immersed, 9 mm above the liquid level."""


logger = logging.getLogger(__name__)

_T = TypeVar("_T")

LoadedImage = tuple[Mapping[str, Any], dict[str, Any]]
"""A stored image run as read once: its start document and :func:`load_image`'s dict."""

LoadedProfile = tuple[Mapping[str, Any], np.ndarray, np.ndarray]
"""A stored line-profile run as read once: its start document, x (cm) and C of its points."""


def represented_temperature_K(history: Sequence[dict[str, Any]]) -> float:
    """Temperature (K) of the last diffusion stage (exchange, anneal, storage) in a history."""
    for seg in reversed(history):
        if seg.get("source") in WARM_SOURCES:
            return float(seg["temperature_K"])
    return ROOM_K


def _warm_time_s(history: Sequence[dict[str, Any]], source: str) -> float:
    return float(sum(s["end_s"] - s["start_s"] for s in history if s.get("source") == source))


def _last_event(stream: Any, key: str) -> np.ndarray:
    """The last event's value of one data key (only that key is read from the catalog).

    An array-valued key is a node of its own under the stream, found with one lookup; the
    stream's flat view, which also finds the columns of its event table, costs two listings
    of the stream per key, so it is the fallback.
    """
    base = getattr(stream, "base", None)
    node = None
    if base is not None:
        try:
            node = base[key]
        except KeyError:
            node = None
    if node is None:
        node = stream[key]
    return np.asarray(node.read())[-1]


def load_image(run: Any) -> dict[str, Any]:
    """Counts, pulses and pixel pitch of a ``sims_image`` run."""
    stream = run["primary"]
    return _image(_last_event(stream, DataKey.LI6_COUNTS), _last_event(stream, DataKey.LI7_COUNTS),
                  stream.metadata.get("configuration", {}))


def _image(i6: np.ndarray, i7: np.ndarray, configuration: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`load_image`'s dict from the counts and the primary stream's configuration."""
    conf = configuration.get(DeviceName.SIMS, {}).get("data", {})
    fov_um = (float(conf.get(DataKey.FIELD_OF_VIEW_X_UM, 500.0)),
              float(conf.get(DataKey.FIELD_OF_VIEW_Y_UM, 200.0)))
    ny, nx = i6.shape
    return {"i6": i6, "i7": i7, "n_pulses": int(conf.get(DataKey.PULSES_PER_PIXEL)),
            "pixel_um": (fov_um[0] / nx, fov_um[1] / ny)}


def load_image_documents(documents: Sequence[tuple[str, Mapping[str, Any]]]) -> LoadedImage:
    """A ``sims_image`` run's start document and image from its documents, as emitted.

    For a run that the catalog may not hold yet (e.g. in a RunEngine callback at its stop
    document): the counts are read from the HDF5 asset files named by the run's
    StreamResource documents, the files the catalog serves them from, and the configuration
    from its primary descriptor. Only start, descriptor and stream_resource documents are
    used. The result equals what :func:`load_image_run_in_background` reads from the catalog.

    Raises
    ------
    ValueError
        Not a ``sims_image`` run, or no primary descriptor or no asset of the counts.
    """
    start, configuration, (i6, i7) = _from_assets(
        documents, PlanName.SIMS_IMAGE, (DataKey.LI6_COUNTS, DataKey.LI7_COUNTS))
    return start, _image(i6, i7, configuration)


def load_profile_documents(documents: Sequence[tuple[str, Mapping[str, Any]]]
                           ) -> LoadedProfile:
    """A ``sims_line_profile`` run's start document, x (cm) and C from its documents.

    The counterpart of :func:`load_image_documents` (the same documents are used): the
    points are read from the HDF5 assets that the catalog serves them from, so the result
    equals :func:`load_profile` of the stored run.

    Raises
    ------
    ValueError
        Not a ``sims_line_profile`` run, or no primary descriptor or no asset of x or C.
    """
    start, _, (x_mm, c) = _from_assets(
        documents, PlanName.SIMS_LINE_PROFILE, (DataKey.PROFILE_X_MM, DataKey.PROFILE_C))
    return start, x_mm.ravel() * 0.1, c.ravel()


def _from_assets(documents: Sequence[tuple[str, Mapping[str, Any]]], plan: str,
                 keys: Sequence[str]
                 ) -> tuple[Mapping[str, Any], Mapping[str, Any], list[np.ndarray]]:
    """The start document, primary configuration and last frame of ``keys`` of a ``plan``
    run, from its start, descriptor and stream_resource documents."""
    start: Mapping[str, Any] | None = None
    configuration: Mapping[str, Any] | None = None
    resources: dict[str, Mapping[str, Any]] = {}
    for name, doc in documents:
        if name == "start":
            start = doc
        elif name == "descriptor" and doc.get("name") == "primary" and configuration is None:
            configuration = doc.get("configuration", {})
        elif name == "stream_resource":
            resources[doc["data_key"]] = doc  # the last asset of a key holds the last frame
    if start is None or start.get("plan_name") != plan:
        found = None if start is None else start.get("plan_name")
        raise ValueError(f"the documents are of a {found!r} run, not a {plan} run")
    missing = [k for k in keys if k not in resources]
    if configuration is None or missing:
        raise ValueError(f"run {start['uid']}: its documents lack "
                         f"{'the primary descriptor' if configuration is None else missing}")
    return start, configuration, [_asset_frame(resources[k]) for k in keys]


def _asset_frame(resource: Mapping[str, Any]) -> np.ndarray:
    """The last frame of the dataset a StreamResource document names (a local HDF5 file)."""
    import h5py  # noqa: PLC0415 - only this reading path needs it

    url = urlparse(resource["uri"])
    with h5py.File(Path(unquote(url.path)), "r") as f:
        return np.asarray(f[resource["parameters"]["dataset"]][-1])


def load_profile(run: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x_cm, C) of a ``sims_line_profile`` run."""
    stream = run["primary"]
    x_mm = _last_event(stream, DataKey.PROFILE_X_MM).ravel()
    c = _last_event(stream, DataKey.PROFILE_C).ravel()
    return x_mm * 0.1, c


def analyze_runs(
    catalog: Any, refs: Sequence[str | int], *, figures_dir: str | Path | None = None,
    micrograph: str | Path | None = None, bulk: BulkDiffusivity | None = None,
    fit_x0: bool = False,
    invert: bool | Collection[str] = True,
    inversions: Mapping[str, Future[Any]] | None = None,
    image_results: Mapping[str, Future[dict[str, Any]]] | None = None,
    profile_results: Mapping[tuple[str | None, str], Future[list[dict[str, Any]]]]
    | None = None,
    inversion_reports: Mapping[str, Future[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Analyse image and line-profile runs (by uid or scan_id); one result dict per analysis.

    Parameters
    ----------
    catalog : tiled container of runs
    refs : uids (or unique prefixes) or scan_ids
    figures_dir : path, optional
        Where PNG figures go (named after run and quantity).
    micrograph : path, optional
        ``.npy`` grain-boundary map of the imaged area (the etched micrograph).
    bulk : BulkDiffusivity, optional
        D*_bulk(T) used for D_gb/δ at the temperature each map represents.
    fit_x0 : bool
        Fit an origin shift (meniscus) in the erfc fit. Off by default: the extra freedom
        trades against D (on the twin, which has no meniscus, it biased D_eff up to 15 % low).
    invert : bool or collection of uids
        Also fit the twin's forward model to each whole image (``inversion`` in the image's
        result, beside the boundary steps; ``dgb_over_delta_cm_s`` and
        ``dgb_over_delta_method`` say which one is reported); a collection: only to the image
        runs with these uids.
    inversions : mapping of uid to Future, optional
        Inversions already under way (:func:`invert_run_in_background`, e.g. started while
        the workflow went on); their image runs use them instead of fitting again.
    image_results : mapping of uid to Future, optional
        Boundary-step analyses of image runs already under way
        (:func:`analyze_image_run_in_background`); used instead of analysing again. One
        that failed (e.g. its worker process died) is logged and its run analysed here.
    profile_results : mapping of (uid before, uid) to Future, optional
        Analyses of line-profile runs already under way (:func:`analyze_profile_step` with
        ``fit_x0=False``), keyed by the uid of the line-profile run before it among ``refs``
        (None for the first) and its own uid; used instead of analysing again when the key
        matches, else (or when one failed, which is logged) the run is analysed here.
    inversion_reports : mapping of uid to Future, optional
        The ``inversion`` entries of image runs already under way (:func:`report_inversion`
        of the inversion given in ``inversions`` and the result given in ``image_results``);
        used instead of reporting those inversions here (one that failed is made again).
    """
    bulk = bulk or BulkDiffusivity.paper_default()
    boundary_map = _micrograph(micrograph)
    results: list[dict[str, Any]] = []
    profiles: list[_ProfileRun] = []
    # inversions (minutes of CPU, mostly in sparse LU that releases the GIL) run in a thread
    # beside the boundary steps, profiles and figures; their results join at the end
    pending: list[tuple[dict[str, Any], str, Future[Any]]] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inversion")
    try:
        for ref in refs:
            run = _run(catalog, ref)
            start = run.metadata["start"]
            name = f"scan{start.get('scan_id')}_{start['uid'][:8]}"
            history = start.get("thermal_history", [])
            plan = start.get("plan_name")
            if plan == PlanName.SIMS_IMAGE:
                uid = start["uid"]
                prepared = image_results.get(uid) if image_results is not None else None
                given = inversions.get(uid) if inversions is not None else None
                wanted = given is None and (invert is True or (
                    not isinstance(invert, bool) and uid in invert))
                img = load_image(run) if prepared is None or wanted else None
                job = given
                if wanted and img is not None:  # the fit runs while the steps are analysed
                    job = pool.submit(_invert, img, history, represented_temperature_K(history),
                                      _matching(boundary_map, img["i6"].shape), bulk)
                res = _prepared_result(prepared, uid) if prepared is not None else None
                if res is None:
                    img = img if img is not None else load_image(run)
                    res = _image_result(img, start, boundary_map, bulk, figures_dir)
                if job is not None:
                    pending.append((res, name, job))
                results.append(res)
            elif plan == PlanName.SIMS_LINE_PROFILE:
                profiles.append(_ProfileRun(run, start))
            else:
                raise ValueError(f"run {ref!r} is a {plan!r} run; analyze takes "
                                 f"{PlanName.SIMS_IMAGE} and {PlanName.SIMS_LINE_PROFILE} runs")
        _profile_results(profiles, results, fit_x0, figures_dir,
                         profile_results if not fit_x0 else None)
        for res, name, job in pending:
            report = inversion_reports.get(res["uid"]) if inversion_reports else None
            _add_inversion(res, name, job, figures_dir, report)
    finally:  # on an error: the queued inversions are dropped, a running one is waited for
        pool.shutdown(wait=True, cancel_futures=True)
    campaign = _campaign_points(results, bulk)
    if len(campaign) >= 2:
        res = analyze_campaign(campaign, run="campaign", figures_dir=figures_dir)
        res["kind"] = "campaign"
        results.append(res)
    return results


def _prepared_result(job: Future[_T], uid: str) -> _T | None:
    """The result of run ``uid``'s background analysis, or None if it failed (the failure
    is logged: the run is then analysed again)."""
    try:
        return job.result(timeout=PREPARED_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - analysed again here, from the catalog
        logger.warning("the background analysis of run %s failed (%s: %s); analysing it "
                       "again from the catalog", uid, type(exc).__name__, exc)
        return None


def _run(catalog: Any, ref: str | int) -> Any:
    """The run a uid (prefix) or scan_id names."""
    return catalog[int(ref) if str(ref).isdigit() else ref]


def _matching(boundary_map: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The micrograph if it is on the image's pixels, else None."""
    return boundary_map if boundary_map is not None and boundary_map.shape == shape else None


def _image_result(img: dict[str, Any], start: Mapping[str, Any],
                  boundary_map: np.ndarray | None, bulk: BulkDiffusivity,
                  figures_dir: str | Path | None) -> dict[str, Any]:
    """The boundary-step analysis of one image run (its result dict, figures written)."""
    history = start.get("thermal_history", [])
    temp = represented_temperature_K(history)
    res = analyze_image(i6=img["i6"], i7=img["i7"], n_pulses=img["n_pulses"],
                        pixel_um=img["pixel_um"], run=f"scan{start.get('scan_id')}_"
                        f"{start['uid'][:8]}", d_bulk=float(bulk(temp)) * 1e4,
                        temperature_K=temp,
                        boundary_map=_matching(boundary_map, img["i6"].shape),
                        figures_dir=figures_dir)
    res["uid"] = start["uid"]
    res["pixel_um"] = [float(v) for v in img["pixel_um"]]
    return res


def _load_image_run(catalog: Any, ref: str | int,
                    wait_for: Callable[[], object] | None) -> LoadedImage:
    """A stored image run's start document and image (read after ``wait_for``)."""
    if wait_for is not None:
        wait_for()
    run = _run(catalog, ref)
    start = run.metadata["start"]
    if start.get("plan_name") != PlanName.SIMS_IMAGE:
        raise ValueError(f"run {ref!r} is a {start.get('plan_name')!r} run, not a "
                         f"{PlanName.SIMS_IMAGE} run")
    return start, load_image(run)


def _in_background(work: Callable[[], Any], name: str) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # delivered through the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def load_image_run_in_background(
    catalog: Any, ref: str | int, *, wait_for: Callable[[], object] | None = None,
) -> Future[LoadedImage]:
    """Start reading one stored image run in a thread of its own.

    For analyses of one run that should share one read of it: pass the returned future as
    ``loaded`` to :func:`analyze_image_run_in_background` and :func:`invert_run_in_background`.
    ``wait_for`` is called on the background thread before the run is read (as there).

    Returns
    -------
    concurrent.futures.Future
        Resolves to (start document, :func:`load_image`'s dict), or to the error raised
        (``ValueError`` for a run that is not a ``sims_image`` run).
    """
    return _in_background(lambda: _load_image_run(catalog, ref, wait_for),
                          "lltolab-image-read")


def analyze_loaded_image(
    loaded: LoadedImage, *, figures_dir: str | Path | None = None,
    micrograph: str | Path | np.ndarray | None = None, bulk: BulkDiffusivity | None = None,
) -> dict[str, Any]:
    """The boundary-step analysis of an image run already read (figures written).

    ``loaded`` is what :func:`load_image_documents` or :func:`load_image_run_in_background`
    gives; the result is the dict :func:`analyze_runs` reports for that run (pass it there in
    ``image_results``). A module-level function of picklable arguments, so that it can run in
    a worker process (``concurrent.futures.ProcessPoolExecutor``).
    """
    start, img = loaded
    return _image_result(img, start, _micrograph(micrograph),
                         bulk or BulkDiffusivity.paper_default(), figures_dir)


def _loaded(catalog: Any, ref: str | int, wait_for: Callable[[], object] | None,
            loaded: Future[LoadedImage] | None) -> LoadedImage:
    if loaded is not None:
        return loaded.result(timeout=PREPARED_TIMEOUT_S)
    return _load_image_run(catalog, ref, wait_for)


def analyze_image_run_in_background(
    catalog: Any, ref: str | int, *, figures_dir: str | Path | None = None,
    micrograph: str | Path | np.ndarray | None = None, bulk: BulkDiffusivity | None = None,
    wait_for: Callable[[], object] | None = None,
    loaded: Future[LoadedImage] | None = None,
) -> Future[dict[str, Any]]:
    """Start the boundary-step analysis of one stored image run in a thread of its own.

    The counterpart of :func:`invert_run_in_background` for the paper's method: pass the
    returned future to :func:`analyze_runs` as ``image_results={uid: future}``; it resolves
    to the result dict that :func:`analyze_runs` reports for that run (figures written).
    ``loaded``: the run as :func:`load_image_run_in_background` reads it; then it is not
    read again (``catalog``, ``ref`` and ``wait_for`` are not used).
    """
    bulk = bulk or BulkDiffusivity.paper_default()

    def work() -> dict[str, Any]:
        start, img = _loaded(catalog, ref, wait_for, loaded)
        return _image_result(img, start, _micrograph(micrograph), bulk, figures_dir)

    return _in_background(work, "lltolab-image-analysis")


def _micrograph(micrograph: str | Path | np.ndarray | None) -> np.ndarray | None:
    if micrograph is None:
        return None
    if isinstance(micrograph, np.ndarray):
        return np.asarray(micrograph, dtype=bool)
    return np.load(micrograph)


def _invert(img: dict[str, Any], history: Sequence[dict[str, Any]], temp: float,
            boundary_map: np.ndarray | None, bulk: BulkDiffusivity,
            workers: int | None = None) -> Any:
    return invert_image(img["i6"], img["i7"], history=history, temperature_K=temp,
                        pixel_um=img["pixel_um"], n_pulses=img["n_pulses"],
                        boundary_map=boundary_map, bulk=bulk, workers=workers)


def invert_run_in_background(
    catalog: Any, ref: str | int, *, micrograph: str | Path | np.ndarray | None = None,
    bulk: BulkDiffusivity | None = None, wait_for: Callable[[], object] | None = None,
    workers: int | None = 1, loaded: Future[LoadedImage] | None = None,
) -> Future[Any]:
    """Start the model-based inversion of one stored image run in a thread of its own.

    For a run that is already complete in the catalog (e.g. from a callback on its stop
    document while later runs are still being taken). Pass the returned future to
    :func:`analyze_runs` as ``inversions={uid: future}``. ``micrograph``: the ``.npy`` file
    of the etched micrograph, or its boolean array (True = boundary). ``wait_for`` is called
    on the background thread before the run is read, e.g. ``lambda:
    session.writer.wait_stored(uid)`` for a run whose documents are still on their way to
    the catalog. ``workers``: threads of the forward model (``invert_image``); the default 1
    leaves the other core to the acquisition this runs beside (None: as many as the cores
    allow, up to 2). The estimates do not depend on it. ``loaded``: the run as
    :func:`load_image_run_in_background` reads it, shared with the run's boundary-step
    analysis; then it is not read again (``catalog``, ``ref`` and ``wait_for`` are not used).

    Returns
    -------
    concurrent.futures.Future
        Resolves to the :class:`lltolab.analysis.ImageInversion`, or to the error raised.
    """
    bulk = bulk or BulkDiffusivity.paper_default()

    def work() -> Any:
        start, img = _loaded(catalog, ref, wait_for, loaded)
        history = start.get("thermal_history", [])
        return _invert(img, history, represented_temperature_K(history),
                       _matching(_micrograph(micrograph), img["i6"].shape), bulk, workers)

    return _in_background(work, "lltolab-inversion")


class _ProfileRun:
    """A line-profile run among the refs of :func:`analyze_runs`, read from the catalog only
    when its points are needed."""

    def __init__(self, run: Any, start: Mapping[str, Any]) -> None:
        self.run, self.start = run, start
        self._loaded: LoadedProfile | None = None

    @property
    def uid(self) -> str:
        return self.start["uid"]

    def loaded(self) -> LoadedProfile:
        if self._loaded is None:
            self._loaded = (self.start, *load_profile(self.run))
        return self._loaded


def _profile_results(profiles: Sequence[_ProfileRun], results: list[dict[str, Any]],
                     fit_x0: bool, figures_dir: str | Path | None,
                     prepared: Mapping[tuple[str | None, str], Future[list[dict[str, Any]]]]
                     | None) -> None:
    """:func:`analyze_profile_step` of each profile after the one before it (appended to
    ``results``), taken from ``prepared`` where it was done already."""
    for i, current in enumerate(profiles):
        previous = profiles[i - 1] if i else None
        job = (prepared or {}).get((previous.uid if previous else None, current.uid))
        found = _prepared_result(job, current.uid) if job is not None else None
        if found is None:
            before = previous.loaded() if previous is not None else None
            found = analyze_profile_step(current.loaded(), before, fit_x0=fit_x0,
                                         figures_dir=figures_dir)
        results.extend(found)


def analyze_profile_step(current: LoadedProfile, previous: LoadedProfile | None = None, *,
                         fit_x0: bool = False, figures_dir: str | Path | None = None,
                         ) -> list[dict[str, Any]]:
    """The analyses of one line-profile run in a sequence (figures written).

    The first profile (``previous`` None) taken after an exchange and before any anneal gets
    the erfc fit of eq. 4 (its exchange time from its thermal history); a later one the
    sealed time-evolution fit from ``previous`` over the anneal (else storage) time between
    the two. These are the profile results of :func:`analyze_runs` for that run, which takes
    them as ``profile_results`` keyed by (previous uid or None, uid). A module-level function
    of picklable arguments (:func:`load_profile_documents` reads them), so that it can run in
    a worker process.

    Returns
    -------
    list of dict
        No result (nothing to fit) or one of :func:`lltolab.analysis.analyze_profiles`, with
        ``uid`` and ``temperature_K`` (and ``from_uid`` for a time evolution).
    """
    start, x_cm, c = current
    history = start.get("thermal_history", [])
    name = f"scan{start.get('scan_id')}_{start['uid'][:8]}"
    if previous is None:
        exchange_s = _warm_time_s(history, SegmentSource.ISOTOPE_EXCHANGE)
        if exchange_s <= 0 or _warm_time_s(history, SegmentSource.ANNEAL) != 0:
            return []
        res = analyze_profiles(x_cm, [c], run=name, exchange_s=exchange_s, fit_x0=fit_x0,
                               figures_dir=figures_dir)
        res.update(uid=start["uid"], temperature_K=represented_temperature_K(history))
        return [res]
    prev_start, x0, c_prev = previous
    before = prev_start.get("thermal_history", [])
    anneal_s = (_warm_time_s(history, SegmentSource.ANNEAL)
                - _warm_time_s(before, SegmentSource.ANNEAL))
    store_s = (_warm_time_s(history, SegmentSource.STORE)
               - _warm_time_s(before, SegmentSource.STORE))
    dt = anneal_s if anneal_s > 0 else store_s
    if dt <= 0:
        return []
    res = analyze_profiles([x0, x_cm], [c_prev, c], [0.0, dt], run=name,
                           domain_cm=SAMPLE_EXTENT_CM, outside=(0.95, None),
                           figures_dir=figures_dir)
    res.update(uid=start["uid"], temperature_K=represented_temperature_K(history),
               from_uid=prev_start["uid"])
    return [res]


def _campaign_points(results: Sequence[dict[str, Any]],
                     bulk: BulkDiffusivity) -> list[dict[str, Any]]:
    """One point per represented temperature (K, rounded to 0.1 K) from image/profile results."""
    points: dict[float, dict[str, Any]] = {}
    for r in results:
        temp = r.get("temperature_K")
        if temp is None:
            continue
        key = round(float(temp), 1)
        pt = points.setdefault(key, {"temperature_K": float(temp),
                                     "d_bulk_cm2_s": float(bulk(float(temp))) * 1e4})
        # a non-positive median (no resolvable step, e.g. after a hot anneal evened the
        # grains out) or D is not a rate to put on an Arrhenius plot: leave it out
        dgb = r.get("median_dgb_over_delta_cm_s") if r["kind"] == "image" else None
        d_eff = r.get("d_eff_cm2_s") if r["kind"] == "profiles" else None
        if dgb is not None and dgb > 0:
            pt["dgb_over_delta_cm_s"] = dgb
        if d_eff is not None and d_eff > 0:
            pt["d_eff_cm2_s"] = d_eff
    return [pt for _, pt in sorted(points.items())]


def report_inversion(image_result: Mapping[str, Any], inversion: Any, *,
                     figures_dir: str | Path | None = None) -> dict[str, Any]:
    """The ``inversion`` entry of an image run's result: the summary of a finished fit of it
    and its figure (:func:`lltolab.analysis.inversion_report`, beside the boundary-step median
    of ``image_result``, the run's boundary-step result).

    A module-level function of picklable arguments, so that it can run in a worker process;
    :func:`analyze_runs` takes its result as ``inversion_reports``.
    """
    return inversion_report(inversion, pixel_um=tuple(image_result["pixel_um"]),
                            run=image_result["run"], figures_dir=figures_dir,
                            step_median_cm_s=image_result.get("median_dgb_over_delta_cm_s"))


def _add_inversion(res: dict[str, Any], name: str, job: Future[Any],
                   figures_dir: str | Path | None,
                   report: Future[dict[str, Any]] | None = None) -> None:
    """The inversion's result beside the boundary steps (in place), once its fit is done;
    ``report``: that result made already, unless it failed."""
    inv = None
    if report is not None:
        try:
            inv = report.result(timeout=INVERSION_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - made again below from the fit itself
            if job.done() and job.exception() is None:
                logger.warning("the background report of the inversion of run %s failed "
                               "(%s: %s); making it again", res["uid"], type(exc).__name__,
                               exc)
    if inv is None:
        inv = _inversion_entry(res, name, job, figures_dir)
    res["inversion"] = inv
    res["figures"] = list(res.get("figures", [])) + inv.get("figures", [])
    res.update(preferred_dgb_over_delta(res))


def _inversion_entry(res: dict[str, Any], name: str, job: Future[Any],
                     figures_dir: str | Path | None) -> dict[str, Any]:
    """The ``inversion`` entry of ``res`` from the fit ``job`` (an error entry if it has none)."""
    try:
        return report_inversion({**res, "run": name}, job.result(timeout=INVERSION_TIMEOUT_S),
                                figures_dir=figures_dir)
    except ValueError as exc:  # e.g. a run without a thermal history: steps only
        return {"method": "inversion", "converged": False, "error": str(exc), "figures": []}
    except TimeoutError:
        return {"method": "inversion", "converged": False, "figures": [],
                "error": f"no result within {INVERSION_TIMEOUT_S} s"}
