"""SurfaceLabExport: the TOF-SIMS as bluesky sees it, through SurfaceLab's export folder.

The IONTOF TOF.SIMS 5 is not remote-controlled; the operator (or a SurfaceLab macro) exports each
acquisition as a BIF6 file plus a JSON sidecar into a folder. ``trigger()`` waits for a new,
complete export, converts it (dead-time-corrected 6Li fraction), writes an HDF5 asset and
makes StreamResource/StreamDatum documents for the images; ``read()`` gives summary values.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from event_model import compose_stream_resource
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from lltolab.comm import InstrumentError, InstrumentTimeout
from lltolab.formats import (
    SIMS_ASSET_MIMETYPE,
    SIMS_IMAGE_DATASETS,
    SIMS_PROFILE_DATASETS,
    ExportFormatError,
    SimsExport,
    bif6_status,
    isotope_fraction_map,
    read_export,
    read_sidecar,
    sidecar_path_for,
    write_sims_asset,
)

__all__ = ["SurfaceLabExport", "LineProfile", "LI6_MASS_U", "LI7_MASS_U", "band_means"]

LI6_MASS_U = 6.015
LI7_MASS_U = 7.016
_MODES = ("image", "line_profile")
#: read() keys (attribute names) per mode
_COMMON_READ = (
    "saturated_pixels", "source_file", "stage_temperature_K", "start_time", "end_time",
)
_IMAGE_READ = ("mean_c", "li6_total", "li7_total", *_COMMON_READ)
_PROFILE_READ = ("n_points", *_COMMON_READ)

RequestHook = Callable[[str, tuple[float, ...] | None], None]


@dataclass(frozen=True)
class LineProfile:
    """The last line profile read: x (mm), corrected 6Li fraction, recorded counts."""

    x_mm: np.ndarray
    c: np.ndarray
    li6_counts: np.ndarray
    li7_counts: np.ndarray


class _ModeSignal(Signal):
    """``"image"`` or ``"line_profile"``."""

    def check_value(self, value: Any) -> None:
        if value not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {value!r}")


def band_means(c: np.ndarray, n_bands: int, axis: int) -> np.ndarray:
    """Mean of ``c`` (NaN ignored) in ``n_bands`` contiguous bands along ``axis``."""
    n = c.shape[axis]
    edges = np.linspace(0, n, min(n_bands, n) + 1).round().astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        block = c[a:b] if axis == 0 else c[:, a:b]
        finite = block[np.isfinite(block)]
        out.append(float(finite.mean()) if finite.size else math.nan)
    return np.asarray(out)


class SurfaceLabExport(Device):
    """ophyd v1 detector reading SurfaceLab BIF6 exports (+ sidecar) from a folder.

    Parameters
    ----------
    export_folder : path-like
        Folder SurfaceLab exports into (watched, never modified).
    name : str
        ophyd name; data keys are ``{name}_mean_c`` etc.
    asset_dir : path-like, optional
        Where HDF5 assets go (default ``export_folder / "lltolab_assets"``).
    image_pattern : str
        Glob of export files in ``export_folder`` (default ``"*.bif6"``).
    sidecar_pattern : str
        Sidecar name from the BIF6 ``{stem}``/``{name}`` (default ``"{stem}.json"``).
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
        How long a complete BIF6 may wait for its sidecar before "sidecar missing" (s).
    poll_s : float
        Folder polling interval (s).
    request : callable, optional
        ``request(kind, positions_mm)`` called when a trigger starts, e.g. a prompt to the
        operator or the simulated SurfaceLab; it runs in its own thread while the folder is
        watched (``timeout_s`` still bounds the trigger; an exception in it fails the trigger
        as InstrumentError). With it, only files appearing after the call count as new;
        without it, any export not consumed before (and not present at construction).

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
    # --- configuration: acquisition settings from the sidecar
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
        sidecar_pattern: str = "{stem}.json",
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
        **kwargs: Any,
    ) -> None:
        super().__init__("", name=name, **kwargs)
        folder = Path(export_folder)
        if not folder.is_dir():
            raise ValueError(f"export_folder {str(folder)!r} is not an existing folder")
        for label, v in (("timeout_s", timeout_s), ("poll_s", poll_s),
                         ("sidecar_grace_s", sidecar_grace_s)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{label} must be a finite number > 0 s, got {v!r}")
        if not (isinstance(n_bands, int) and 1 <= n_bands <= 4096):
            raise ValueError(f"n_bands must be an integer in [1, 4096], got {n_bands!r}")
        for label, w in (("li6_window_u", li6_window_u), ("li7_window_u", li7_window_u)):
            if w is not None and not (len(w) == 2 and w[0] < w[1]):
                raise ValueError(f"{label} must be (lower, upper) with lower < upper, got {w!r}")
        if "{stem}" not in sidecar_pattern and "{name}" not in sidecar_pattern:
            raise ValueError(
                f"sidecar_pattern {sidecar_pattern!r} must contain {{stem}} or {{name}}"
            )
        self.export_folder = folder
        self.asset_dir = Path(asset_dir) if asset_dir is not None else folder / "lltolab_assets"
        self.image_pattern = image_pattern
        self.sidecar_pattern = sidecar_pattern
        self.li6 = {"mass_u": li6_mass_u, "peak_id": li6_peak_id, "window_u": li6_window_u}
        self.li7 = {"mass_u": li7_mass_u, "peak_id": li7_peak_id, "window_u": li7_window_u}
        self.n_bands = n_bands
        self.timeout_s = float(timeout_s)
        self.sidecar_grace_s = float(sidecar_grace_s)
        self.poll_s = float(poll_s)
        self.request = request
        self._seen: dict[Path, tuple[int, int]] = {}
        self._mark_present_as_seen()
        self._asset_docs: deque[tuple[str, dict]] = deque()
        self._shapes: dict[str, tuple[int, ...]] = {}
        self.row_band_means = np.full(n_bands, math.nan)
        self.column_band_means = np.full(n_bands, math.nan)
        self._band_timestamp = time.time()
        self.last_profile: LineProfile | None = None
        self._n_acquired = 0
        self._abort = threading.Event()
        self.last_export: SimsExport | None = None
        self.last_asset: Path | None = None

    # ------------------------------------------------------------------ bluesky interface
    def trigger(self) -> DeviceStatus:
        """Wait (in a thread) for a new complete export, read it, write the asset.

        The status fails with :class:`lltolab.formats.ExportFormatError` (malformed export:
        nothing is updated or written) or :class:`lltolab.comm.InstrumentTimeout`.
        """
        status = DeviceStatus(self)
        mode = self.mode.get()
        positions = tuple(float(x) for x in np.atleast_1d(self.positions_mm.get()))
        self._abort.clear()
        self._asset_docs.clear()  # documents of an export never read are dropped
        if self.request is not None:
            self._mark_present_as_seen()
        worker = threading.Thread(
            target=self._acquire, args=(status, mode, positions or None),
            name=f"{self.name}-trigger", daemon=True,
        )
        worker.start()
        return status

    def stop(self, *, success: bool = False) -> None:
        """Abandon a pending trigger (its status fails)."""
        self._abort.set()
        super().stop(success=success)

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
    def _band_values(self) -> dict[str, float]:
        out = {}
        for label, values in (("row", self.row_band_means), ("column", self.column_band_means)):
            for k, v in enumerate(values):
                out[f"{self.name}_c_{label}_band_{k}"] = float(v)
        return out

    def _read_keys(self) -> set[str]:
        attrs = _IMAGE_READ if self.mode.get() == "image" else _PROFILE_READ
        return {getattr(self, a).name for a in attrs}

    def _exports(self) -> list[Path]:
        return sorted(p for p in self.export_folder.glob(self.image_pattern) if p.is_file())

    def _identity(self, path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _mark_present_as_seen(self) -> None:
        for p in self._exports():
            ident = self._identity(p)
            if ident is not None:
                self._seen[p] = ident

    def _acquire(
        self, status: DeviceStatus, mode: str, positions: tuple[float, ...] | None
    ) -> None:
        request_error: list[BaseException] = []
        if self.request is not None:
            hook = self.request

            def run_request() -> None:
                try:
                    hook(mode, positions)
                except Exception as exc:  # noqa: BLE001 - re-raised by the poller
                    request_error.append(exc)

            threading.Thread(target=run_request, name=f"{self.name}-request",
                             daemon=True).start()
        try:
            self._wait_and_convert(mode, positions, request_error)
        except Exception as exc:  # noqa: BLE001 - surfaced through the status
            status.set_exception(exc)
        else:
            status.set_finished()

    def _wait_and_convert(
        self, mode: str, positions: tuple[float, ...] | None,
        request_error: list[BaseException],
    ) -> None:
        deadline = time.monotonic() + self.timeout_s
        waiting: dict[Path, str] = {}
        while True:
            if request_error:
                raise InstrumentError(
                    f"{self.name}: the acquisition request failed: {request_error[0]}"
                ) from request_error[0]
            if self._abort.is_set():
                raise InstrumentError(f"{self.name}: trigger stopped before an export arrived")
            for path in self._exports():
                ident = self._identity(path)
                if ident is None or self._seen.get(path) == ident:
                    continue
                ready = self._check_ready(path, ident, mode, waiting)
                if ready:
                    self._seen[path] = ident
                    self._convert(path, mode, positions)
                    return
            if time.monotonic() > deadline:
                detail = "; ".join(f"{p.name}: {why}" for p, why in waiting.items())
                raise InstrumentTimeout(
                    f"{self.name}: no new complete {mode} export matching {self.image_pattern!r} "
                    f"in {self.export_folder} within {self.timeout_s:g} s"
                    + (f" (pending: {detail})" if detail else "")
                )
            time.sleep(self.poll_s)

    def _check_ready(
        self, path: Path, ident: tuple[int, int], mode: str, waiting: dict[Path, str]
    ) -> bool:
        """True when ``path`` is a complete export of ``mode`` with its sidecar.

        Raises ExportFormatError for defects waiting cannot repair (the file is then marked
        seen so a later trigger does not trip over it again).
        """
        try:
            state, size, expected = bif6_status(path)
        except FileNotFoundError:
            return False
        except ExportFormatError:
            self._seen[path] = ident
            raise
        if state != "complete":
            waiting[path] = f"incomplete, {size} of {expected or '?'} bytes"
            return False
        sc = sidecar_path_for(path, self.sidecar_pattern)
        age = time.time() - ident[0] / 1e9
        if not sc.exists():
            if age > self.sidecar_grace_s:
                self._seen[path] = ident
                raise ExportFormatError(
                    path, f"sidecar missing: no {sc.name} within {self.sidecar_grace_s:g} s"
                )
            waiting[path] = f"complete, waiting for sidecar {sc.name}"
            return False
        try:
            sidecar = read_sidecar(sc)
        except ExportFormatError:
            sc_age = time.time() - sc.stat().st_mtime
            if sc_age <= self.sidecar_grace_s:  # may still be being written
                waiting[path] = f"sidecar {sc.name} not yet valid"
                return False
            self._seen[path] = ident
            raise
        if sidecar.kind != mode:
            waiting.pop(path, None)
            return False  # an export of the other kind: left for a trigger in that mode
        return True

    def _convert(self, path: Path, mode: str, positions: tuple[float, ...] | None) -> None:
        export = read_export(path, sidecar_pattern=self.sidecar_pattern)
        im6 = export.select(**self.li6)
        im7 = export.select(**self.li7)
        if im6 is im7:
            raise ExportFormatError(path, "6Li and 7Li selection picked the same image")
        i6, i7 = im6.counts, im7.counts
        sc = export.sidecar
        n = sc.pulses_per_pixel
        c, saturated = isotope_fraction_map(i6, i7, n)
        if mode == "line_profile":
            x = np.asarray(sc.positions_mm, dtype=float)
            if positions is not None and (
                len(positions) != len(x) or not np.allclose(positions, x, atol=1e-6)
            ):
                raise ExportFormatError(
                    export.sidecar_path,
                    f"line-profile positions {list(x)} mm contradict the requested "
                    f"{list(positions)} mm",
                )
            profile = LineProfile(x, c[0].copy(), i6[0].copy(), i7[0].copy())
            arrays = {"profile_x_mm": profile.x_mm, "profile_c": profile.c,
                      "profile_li6_counts": profile.li6_counts,
                      "profile_li7_counts": profile.li7_counts}
            asset = self._write_asset(export, arrays)
            self._publish_common(export, int(saturated.sum()))
            self.n_points.put(len(x))
            self.last_profile = profile
        else:
            asset = self._write_asset(
                export, {"li6_counts": i6, "li7_counts": i7, "c_fraction": c})
            finite = c[np.isfinite(c)]
            self._publish_common(export, int(saturated.sum()))
            self.mean_c.put(float(finite.mean()) if finite.size else math.nan)
            self.li6_total.put(int(i6.sum(dtype=np.int64)))
            self.li7_total.put(int(i7.sum(dtype=np.int64)))
            self.row_band_means = band_means(c, self.n_bands, axis=0)
            self.column_band_means = band_means(c, self.n_bands, axis=1)
            self._band_timestamp = time.time()
            arrays = {"li6_counts": i6, "li7_counts": i7, "c_fraction": c}
        shape = np.shape(next(iter(arrays.values())))
        self._shapes[mode] = shape
        self._stash_asset_docs(asset, arrays, shape)
        self._n_acquired += 1
        self.last_export = export
        self.last_asset = asset

    def _publish_common(self, export: SimsExport, n_saturated: int) -> None:
        sc = export.sidecar
        self.source_file.put(str(export.bif6_path))
        self.saturated_pixels.put(n_saturated)
        self.stage_temperature_K.put(float(sc.stage_temperature_K))
        self.start_time.put(sc.start_time)
        self.end_time.put(sc.end_time)
        self.field_of_view_x_um.put(float(sc.field_of_view_um[0]))
        self.field_of_view_y_um.put(float(sc.field_of_view_um[1]))
        self.pixels_x.put(int(sc.pixels[0]))
        self.pixels_y.put(int(sc.pixels[1]))
        self.shots_per_pixel.put(sc.shots_per_pixel)
        self.scans.put(sc.scans)
        self.pulses_per_pixel.put(sc.pulses_per_pixel)
        self.primary_species.put(sc.primary_species)
        self.primary_energy_keV.put(float(sc.primary_energy_keV))
        self.primary_current_pA.put(float(sc.primary_current_pA))
        self.dose_ions_per_cm2.put(float(sc.dose_ions_per_cm2))

    def _write_asset(self, export: SimsExport, arrays: Mapping[str, np.ndarray]) -> Path:
        self.asset_dir.mkdir(parents=True, exist_ok=True)
        dest = self.asset_dir / f"{export.bif6_path.stem}_{uuid.uuid4().hex[:12]}.h5"
        return write_sims_asset(
            dest, arrays,
            attrs={"bif6_path": str(export.bif6_path),
                   "sidecar_path": str(export.sidecar_path),
                   "sidecar": export.sidecar.to_dict()},
        )

    def _stash_asset_docs(
        self, asset: Path, arrays: Mapping[str, np.ndarray], shape: Sequence[int]
    ) -> None:
        for ds in arrays:
            bundle = compose_stream_resource(
                mimetype=SIMS_ASSET_MIMETYPE,
                uri=f"file://localhost{asset.resolve()}",
                data_key=f"{self.name}_{ds}",
                parameters={"dataset": f"/{ds}", "chunk_shape": [1, *shape]},
            )
            self._asset_docs.append(("stream_resource", bundle.stream_resource_doc))
            datum = bundle.compose_stream_datum(indices={"start": 0, "stop": 1})
            self._asset_docs.append(("stream_datum", datum))
