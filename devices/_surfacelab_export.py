"""SurfaceLabExport: the TOF-SIMS as bluesky sees it, through SurfaceLab's export folder.

The IONTOF TOF.SIMS 5 is not remote-controlled; the operator (or a SurfaceLab macro) exports each
acquisition as a BIF6 file (plus, optionally, a JSON sidecar) into a folder. The device is thin:
``trigger()`` runs one acquisition in a thread through three injected parts, in the shape of a
controller → waiter → reducer → writer chain:

- an :class:`ExportWatcher` finds the new complete export (and sets bad ones aside),
- :func:`lltolab.formats.read_export` reads it with its metadata (sidecar, or the device's
  ``field_of_view_um``/``n_pulses`` configuration for a plain SurfaceLab export),
- an :class:`ExportReducer` computes the dead-time-corrected 6Li fraction and summaries,
- an :class:`ExportAssetWriter` writes the HDF5 asset and its StreamResource/StreamDatum
  documents,

and the device publishes the summary values as signals for ``read()``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from lltolab.comm import InstrumentError, InstrumentTimeout
from lltolab.formats import (
    SIMS_IMAGE_DATASETS,
    SIMS_PROFILE_DATASETS,
    ExportFormatError,
    MetadataFallback,
    SimsExport,
    read_export,
)

from ._export_assets import ExportAssetWriter
from ._export_reducer import (
    LI6_MASS_U,
    LI7_MASS_U,
    ExportReducer,
    LineProfile,
    Reduction,
    band_means,
)
from ._export_watcher import ExportWatcher, ReadyExport

__all__ = ["SurfaceLabExport", "LineProfile", "LI6_MASS_U", "LI7_MASS_U", "band_means"]

_MODES = ("image", "line_profile")
#: read() keys (attribute names) per mode
_COMMON_READ = (
    "saturated_pixels", "source_file", "stage_temperature_K", "start_time", "end_time",
)
_IMAGE_READ = ("mean_c", "li6_total", "li7_total", *_COMMON_READ)
_PROFILE_READ = ("n_points", *_COMMON_READ)
#: how long stop() waits (s, beyond one poll period) for the acquisition thread to end
_STOP_JOIN_S = 2.0

RequestHook = Callable[[str, tuple[float, ...] | None], None]


class _ModeSignal(Signal):
    """``"image"`` or ``"line_profile"``."""

    def check_value(self, value: Any) -> None:
        if value not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {value!r}")


class _Acquisition:
    """One trigger in flight: its status, its threads and whether it was ended early."""

    def __init__(self, status: DeviceStatus, mode: str,
                 positions: tuple[float, ...] | None) -> None:
        self.status = status
        self.mode = mode
        self.positions = positions
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.ended = False
        self.worker: threading.Thread | None = None
        self.request_thread: threading.Thread | None = None
        self.request_error: list[BaseException] = []

    def end(self, exc: BaseException | None = None,
            publish: Callable[[], None] | None = None) -> bool:
        """Finish the status (once): success without ``exc``; True if this call ended it.

        ``publish`` runs under the same lock, only when this call ends the acquisition: a
        result is published if and only if the acquisition was not ended before.
        """
        with self.lock:
            if self.ended:
                return False
            if publish is not None:
                publish()
            self.ended = True
        if exc is None:
            self.status.set_finished()
        else:
            self.status.set_exception(exc)
        return True

    def threads_alive(self) -> list[threading.Thread]:
        return [t for t in (self.worker, self.request_thread) if t is not None and t.is_alive()]


class SurfaceLabExport(Device):
    """ophyd v1 detector reading SurfaceLab BIF6 exports (+ optional sidecar) from a folder.

    Parameters
    ----------
    export_folder : path-like
        Folder SurfaceLab exports into (watched; only bad exports are moved, into its
        ``rejected/`` subfolder).
    name : str
        ophyd name; data keys are ``{name}_mean_c`` etc.
    asset_dir : path-like, optional
        Where HDF5 assets go (default ``export_folder / "lltolab_assets"``).
    image_pattern : str
        Glob of export files in ``export_folder`` (default ``"*.bif6"``).
    sidecar_pattern : str or None
        Sidecar name from the BIF6 ``{stem}``/``{name}`` (default ``"{stem}.json"``); None:
        the exports have no sidecar (needs ``field_of_view_um`` and ``n_pulses``).
    field_of_view_um : (float, float), optional
        Raster size (x, y, µm) of exports that come without a sidecar.
    n_pulses : int, optional
        Pulses per pixel of exports that come without a sidecar (the N of the dead-time
        correction). Give both or neither; with them, a complete BIF6 whose sidecar has not
        appeared within ``sidecar_grace_s`` is acquired with this metadata (stage temperature
        and primary-ion values then read NaN / empty).
    li6_mass_u, li7_mass_u : float
        Masses of 6Li+ and 7Li+ (u) used to pick the images.
    li6_peak_id, li7_peak_id : int, optional
        SurfaceLab peak numbers; when given they select the images (and must contain the mass).
    li6_window_u, li7_window_u : (float, float), optional
        Mass windows (u) in which the image's centre mass must lie (instead of peak ids).
    n_bands : int
        Number of row (and column) bands for the band means in ``read()``.
    timeout_s : float
        How long ``trigger()`` waits for a new complete export (s); a real 5 h image needs
        more than 5 h. Default 8 h.
    sidecar_grace_s : float
        How long a complete BIF6 may wait for its sidecar, and an unreadable sidecar (maybe
        still being written) to become valid, before the export is rejected (s).
    poll_s : float
        Folder polling interval (s).
    request : callable, optional
        ``request(kind, positions_mm)`` called when a trigger starts, e.g. a prompt to the
        operator or the simulated SurfaceLab; it runs in its own thread while the folder is
        watched (``timeout_s`` still bounds the trigger; an exception in it fails the trigger
        as InstrumentError). With it, only files appearing after the call count as new;
        without it, any export not consumed before (and not present at construction).
    rejected_dir : str or path-like or None
        Where bad exports are moved with a ``.reason.txt`` (default ``rejected`` inside the
        export folder); None leaves them in place.
    watcher, reducer, asset_writer : optional
        Injected parts (:class:`ExportWatcher`, :class:`ExportReducer`,
        :class:`ExportAssetWriter`); by default built from the keywords above.

    Notes
    -----
    Image mode: images go to an HDF5 asset (datasets ``li6_counts``, ``li7_counts``,
    ``c_fraction`` of shape (1, ny, nx)) announced by StreamResource/StreamDatum for the data
    keys ``{name}_li6_counts``, ``{name}_li7_counts``, ``{name}_c_fraction``. C is
    I6/(I6+I7) after the Poisson dead-time correction -N ln(1 - I/N); pixels where an isotope
    counted on every pulse (I = N) are saturated: C is NaN there and ``saturated_pixels``
    counts them. ``read()`` also gives ``{name}_c_row_band_{k}`` and
    ``{name}_c_column_band_{k}`` (k < n_bands): mean C over bands of rows (y) and of columns
    (x, the diffusion direction). All inline values are scalars or strings (SQL-table friendly).

    Line-profile mode (``mode`` = ``"line_profile"``, ``positions_mm`` the requested x): the
    arrays ``{name}_profile_x_mm``, ``{name}_profile_c``, ``{name}_profile_li6_counts``,
    ``{name}_profile_li7_counts`` go to an HDF5 asset the same way (shape (n_points,)); the
    last profile is also kept in memory as :attr:`last_profile` for plans. The two modes have
    different data keys: read each mode into its own event stream (or run).

    Only exports of the current mode's kind (sidecar ``kind``) are taken; the others are left
    for a trigger in the other mode. Each asset is a new file; nothing is ever overwritten.

    A bad export (unreadable BIF6 or sidecar, missing masses, contradictory metadata) fails
    the trigger with :class:`lltolab.formats.ExportFormatError` naming file and defect, and
    is moved aside; the next trigger takes the next good export.

    ``stop()`` and ``pause()`` (the RunEngine calls ``pause()`` when it suspends, e.g. on LN₂
    loss) end the acquisition in flight at once: its status fails (``stop()``) or finishes
    without new readings (``pause()``, ``stop(success=True)``), and nothing it read later is
    published. The repeat after a resume first waits for the interrupted acquisition's
    ``request`` to return and ignores what it exported, so each trigger yields one image.
    """

    # --- readings
    mean_c = Cpt(Signal, value=math.nan, kind="hinted", doc="mean 6Li fraction of the image")
    li6_total = Cpt(Signal, value=0, doc="recorded 6Li+ counts, whole image")
    li7_total = Cpt(Signal, value=0, doc="recorded 7Li+ counts, whole image")
    saturated_pixels = Cpt(Signal, value=0, doc="pixels with I = N for 6Li or 7Li")
    source_file = Cpt(Signal, value="", doc="the BIF6 export read")
    stage_temperature_K = Cpt(Signal, value=math.nan, doc="stage temperature (K), sidecar")
    start_time = Cpt(Signal, value="", doc="acquisition start (ISO 8601)")
    end_time = Cpt(Signal, value="", doc="acquisition end (ISO 8601)")
    n_points = Cpt(Signal, value=0, doc="line profile: number of points")
    # --- configuration: device settings
    mode = Cpt(_ModeSignal, value="image", kind="config")
    positions_mm = Cpt(Signal, value=np.zeros(0), kind="config",
                       doc="line profile: requested x positions (mm); empty = any")
    # --- configuration: acquisition settings from the sidecar (or the device's configuration)
    metadata_source = Cpt(Signal, value="", kind="config",
                          doc='"sidecar" or "configuration": where the values below come from')
    field_of_view_x_um = Cpt(Signal, value=math.nan, kind="config")
    field_of_view_y_um = Cpt(Signal, value=math.nan, kind="config")
    pixels_x = Cpt(Signal, value=0, kind="config")
    pixels_y = Cpt(Signal, value=0, kind="config")
    shots_per_pixel = Cpt(Signal, value=0, kind="config")
    scans = Cpt(Signal, value=0, kind="config")
    pulses_per_pixel = Cpt(Signal, value=0, kind="config")
    primary_species = Cpt(Signal, value="", kind="config")
    primary_energy_keV = Cpt(Signal, value=math.nan, kind="config")
    primary_current_pA = Cpt(Signal, value=math.nan, kind="config")
    dose_ions_per_cm2 = Cpt(Signal, value=math.nan, kind="config")

    def __init__(
        self,
        export_folder: str | Path,
        *,
        name: str,
        asset_dir: str | Path | None = None,
        image_pattern: str = "*.bif6",
        sidecar_pattern: str | None = "{stem}.json",
        li6_mass_u: float = LI6_MASS_U,
        li7_mass_u: float = LI7_MASS_U,
        li6_peak_id: int | None = None,
        li7_peak_id: int | None = None,
        li6_window_u: tuple[float, float] | None = None,
        li7_window_u: tuple[float, float] | None = None,
        n_bands: int = 8,
        timeout_s: float = 8 * 3600.0,
        sidecar_grace_s: float = 60.0,
        poll_s: float = 0.2,
        request: RequestHook | None = None,
        field_of_view_um: tuple[float, float] | None = None,
        n_pulses: int | None = None,
        rejected_dir: str | Path | None = "rejected",
        watcher: ExportWatcher | None = None,
        reducer: ExportReducer | None = None,
        asset_writer: ExportAssetWriter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__("", name=name, **kwargs)
        folder = Path(export_folder)
        if not folder.is_dir():
            raise ValueError(f"export_folder {str(folder)!r} is not an existing folder")
        if isinstance(timeout_s, bool) or not (
            isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0
        ):
            raise ValueError(f"timeout_s must be a finite number > 0 s, got {timeout_s!r}")
        if (field_of_view_um is None) != (n_pulses is None):
            raise ValueError(
                "field_of_view_um and n_pulses go together (metadata of exports without a "
                f"sidecar), got field_of_view_um={field_of_view_um!r}, n_pulses={n_pulses!r}"
            )
        self.fallback = (None if n_pulses is None else
                         MetadataFallback(tuple(field_of_view_um), n_pulses))  # type: ignore[arg-type]
        self.watcher = watcher if watcher is not None else ExportWatcher(
            folder, pattern=image_pattern, sidecar_pattern=sidecar_pattern,
            sidecar_grace_s=sidecar_grace_s, poll_s=poll_s,
            sidecar_optional=self.fallback is not None, rejected_dir=rejected_dir,
        )
        if self.watcher.sidecar_optional and self.fallback is None:
            raise ValueError("exports without a sidecar need field_of_view_um and n_pulses")
        self.reducer = reducer if reducer is not None else ExportReducer(
            li6_mass_u=li6_mass_u, li7_mass_u=li7_mass_u, li6_peak_id=li6_peak_id,
            li7_peak_id=li7_peak_id, li6_window_u=li6_window_u, li7_window_u=li7_window_u,
            n_bands=n_bands,
        )
        self.asset_writer = asset_writer if asset_writer is not None else ExportAssetWriter(
            Path(asset_dir) if asset_dir is not None else folder / "lltolab_assets")
        self.export_folder = folder
        self.timeout_s = float(timeout_s)
        self.request = request
        self._asset_docs: deque[tuple[str, dict]] = deque()
        self._shapes: dict[str, tuple[int, ...]] = {}
        self.row_band_means = np.full(self.reducer.n_bands, math.nan)
        self.column_band_means = np.full(self.reducer.n_bands, math.nan)
        self._band_timestamp = time.time()
        self.last_profile: LineProfile | None = None
        self._n_acquired = 0
        self._current: _Acquisition | None = None
        self.last_export: SimsExport | None = None
        self.last_asset: Path | None = None

    # ------------------------------------------------------------------ parts' settings
    @property
    def asset_dir(self) -> Path:
        """Folder of the HDF5 assets."""
        return self.asset_writer.asset_dir

    @property
    def poll_s(self) -> float:
        """Folder polling interval (s)."""
        return self.watcher.poll_s

    @property
    def sidecar_grace_s(self) -> float:
        """Grace period for sidecars (s)."""
        return self.watcher.sidecar_grace_s

    @property
    def n_bands(self) -> int:
        """Number of row (and column) bands in ``read()``."""
        return self.reducer.n_bands

    # ------------------------------------------------------------------ bluesky interface
    def trigger(self) -> DeviceStatus:
        """Wait (in a thread) for a new complete export, read it, write the asset.

        The status fails with :class:`lltolab.formats.ExportFormatError` (malformed export:
        nothing is updated or written, the export is set aside),
        :class:`lltolab.comm.InstrumentTimeout` or :class:`lltolab.comm.InstrumentError`
        (request failed, stopped).
        """
        status = DeviceStatus(self)
        mode = self.mode.get()
        positions = tuple(float(x) for x in np.atleast_1d(self.positions_mm.get()))
        acq = _Acquisition(status, mode, positions or None)
        previous, self._current = self._current, acq
        if previous is not None:
            self._cancel(previous, InstrumentError(
                f"{self.name}: acquisition superseded by a new trigger"), join=False)
        self._asset_docs.clear()  # documents of an export never read are dropped
        acq.worker = threading.Thread(
            target=self._run, args=(acq, previous), name=f"{self.name}-trigger", daemon=True,
        )
        acq.worker.start()
        return status

    def stop(self, *, success: bool = False) -> None:
        """End the acquisition in flight now (its status fails unless ``success``)."""
        acq = self._current
        if acq is not None:
            self._cancel(acq, None if success else InstrumentError(
                f"{self.name}: trigger stopped before an export arrived"))
        super().stop(success=success)

    def pause(self) -> None:
        """End the acquisition in flight without failing its status (RunEngine suspend or
        pause: the plan repeats the trigger from its checkpoint on resume)."""
        acq = self._current
        if acq is not None:
            self._cancel(acq, None)
        super().pause()

    def read(self) -> dict[str, dict[str, Any]]:
        keys = self._read_keys()
        out = {k: v for k, v in super().read().items() if k in keys}
        if self.mode.get() == "image":
            for key, value in self._band_values().items():
                out[key] = {"value": value, "timestamp": self._band_timestamp}
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        keys = self._read_keys()
        out = {k: v for k, v in super().describe().items() if k in keys}
        if self.mode.get() == "image":
            for key in self._band_values():
                out[key] = {"source": f"SIM:{self.name}.bands", "dtype": "number",
                            "dtype_numpy": "<f8", "shape": []}
            datasets, shape, dims = SIMS_IMAGE_DATASETS, self._shapes.get("image"), ["y", "x"]
            shape = shape or (206, 512)
        else:
            n = len(np.atleast_1d(self.positions_mm.get())) or 1
            datasets, dims = SIMS_PROFILE_DATASETS, ["point"]
            shape = self._shapes.get("line_profile") or (n,)
        for ds, dtype in datasets.items():
            out[f"{self.name}_{ds}"] = {
                "source": f"file://{self.asset_dir}",
                "dtype": "array",
                "dtype_numpy": dtype,
                "shape": list(shape),
                "dims": dims,
                "external": "STREAM:",
            }
        return out

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict]]:
        """StreamResource/StreamDatum documents of the last image (each emitted once)."""
        while self._asset_docs:
            yield self._asset_docs.popleft()

    def get_index(self) -> int:
        """Number of exports converted so far."""
        return self._n_acquired

    # ------------------------------------------------------------------ internals
    def _cancel(self, acq: _Acquisition, exc: BaseException | None, *,
                join: bool = True) -> None:
        acq.cancelled.set()
        acq.end(exc)
        worker = acq.worker
        if join and worker is not None and worker is not threading.current_thread():
            worker.join(timeout=self.poll_s + _STOP_JOIN_S)

    def _band_values(self) -> dict[str, float]:
        out = {}
        for label, values in (("row", self.row_band_means), ("column", self.column_band_means)):
            for k, v in enumerate(values):
                out[f"{self.name}_c_{label}_band_{k}"] = float(v)
        return out

    def _read_keys(self) -> set[str]:
        attrs = _IMAGE_READ if self.mode.get() == "image" else _PROFILE_READ
        return {getattr(self, a).name for a in attrs}

    def _run(self, acq: _Acquisition, previous: _Acquisition | None) -> None:
        try:
            self._acquire(acq, previous)
        except Exception as exc:  # noqa: BLE001 - surfaced through the status
            acq.end(exc)

    def _acquire(self, acq: _Acquisition, previous: _Acquisition | None) -> None:
        deadline = time.monotonic() + self.timeout_s
        if previous is not None:
            # an interrupted acquisition must be over (its request returned) before the
            # repeat starts, and what it exported is not this trigger's image
            for thread in previous.threads_alive():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if previous.threads_alive():
                raise InstrumentTimeout(
                    f"{self.name}: the interrupted acquisition's request did not return "
                    f"within {self.timeout_s:g} s"
                )
        if acq.cancelled.is_set():
            return
        if self.request is not None:
            # only what appears after the request is this acquisition's export
            self.watcher.mark_present_as_seen()
            hook = self.request

            def run_request() -> None:
                try:
                    hook(acq.mode, acq.positions)
                except Exception as exc:  # noqa: BLE001 - re-raised by the waiter
                    acq.request_error.append(exc)

            acq.request_thread = threading.Thread(target=run_request,
                                                  name=f"{self.name}-request", daemon=True)
            acq.request_thread.start()

        def check() -> None:
            if acq.request_error:
                err = acq.request_error[0]
                raise InstrumentError(
                    f"{self.name}: the acquisition request failed: {err}") from err

        try:
            ready = self.watcher.wait(acq.mode, deadline=deadline, cancelled=acq.cancelled,
                                      check=check, what=self.name)
        except InstrumentTimeout as exc:
            raise InstrumentTimeout(f"{exc} (timeout_s = {self.timeout_s:g} s)") from None
        if ready is None:
            return  # ended by stop() / pause()
        self.watcher.mark_seen(ready)
        export, reduction = self._read_and_reduce(ready, acq)
        asset = self.asset_writer.write(export, reduction.arrays)
        docs = self.asset_writer.documents(asset, self.name, reduction.arrays)
        if not acq.end(None, publish=lambda: self._publish(export, reduction, asset, docs)):
            asset.unlink(missing_ok=True)  # stopped meanwhile: no result, no orphan asset

    def _read_and_reduce(
        self, ready: ReadyExport, acq: _Acquisition
    ) -> tuple[SimsExport, Reduction]:
        try:
            export = read_export(
                ready.bif6_path, sidecar_pattern=self.watcher.sidecar_pattern or "{stem}.json",
                fallback=self.fallback if ready.sidecar_path is None else None,
                kind=acq.mode, positions_mm=acq.positions,
            )
            return export, self.reducer.reduce(export, acq.mode, acq.positions)
        except ExportFormatError as exc:
            defect = (exc.defect if exc.path == ready.bif6_path
                      else f"{exc.path.name}: {exc.defect}")
            raise self.watcher.set_aside(ready.bif6_path, defect) from None

    def _publish(self, export: SimsExport, red: Reduction, asset: Path,
                 docs: Sequence[tuple[str, dict]]) -> None:
        """Signals, band means and documents of a finished acquisition (runs under the
        acquisition's lock)."""
        meta = export.metadata
        self.source_file.put(str(export.bif6_path))
        self.saturated_pixels.put(red.saturated_pixels)
        self.stage_temperature_K.put(float(meta.stage_temperature_K))
        self.start_time.put(meta.start_time)
        self.end_time.put(meta.end_time)
        self.metadata_source.put(meta.source)
        self.field_of_view_x_um.put(float(meta.field_of_view_um[0]))
        self.field_of_view_y_um.put(float(meta.field_of_view_um[1]))
        self.pixels_x.put(int(meta.pixels[0]))
        self.pixels_y.put(int(meta.pixels[1]))
        self.shots_per_pixel.put(meta.shots_per_pixel)
        self.scans.put(meta.scans)
        self.pulses_per_pixel.put(meta.pulses_per_pixel)
        self.primary_species.put(meta.primary_species)
        self.primary_energy_keV.put(float(meta.primary_energy_keV))
        self.primary_current_pA.put(float(meta.primary_current_pA))
        self.dose_ions_per_cm2.put(float(meta.dose_ions_per_cm2))
        if red.mode == "line_profile":
            assert red.profile is not None
            self.n_points.put(len(red.profile.x_mm))
            self.last_profile = red.profile
        else:
            self.mean_c.put(red.mean_c)
            self.li6_total.put(red.li6_total)
            self.li7_total.put(red.li7_total)
            self.row_band_means = red.row_band_means
            self.column_band_means = red.column_band_means
            self._band_timestamp = time.time()
        self._shapes[red.mode] = red.shape
        self._asset_docs.extend(docs)
        self._n_acquired += 1
        self.last_export = export
        self.last_asset = asset
