"""One session factory: RunEngine, devices, catalog, callbacks, suspenders, persistent md.

Used alike by IPython (``from lltolab.session import start; s = start()``), the ``lltolab``
CLI and the tests::

    s = start(sim=True, catalog="~/lltolab-demo", sample_id="LLTO-A1")
    s.RE(s.plans.exchange_quench_image_anneal_reimage(**s.workflow_devices(), record=s.record))

``start(config)`` builds real devices from a TOML file of resource strings, ports, limits and
the export folder (see :func:`example_config` and :mod:`lltolab.config`); ``start()`` (or
``start(sim=True)``) builds the same device classes against the virtual lab's simulated
instruments on 127.0.0.1. A configuration file never silently runs the simulator.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lltolab._ast_lock import serialize_ast_parse
from lltolab.config import SessionConfig, example_config, load_config
from lltolab.vocabulary import (  # noqa: F401 - STAGE_IMAGING_MAX_K: kept importable here
    IMAGING_PLANS,
    STAGE_IMAGING_MAX_K,
    WORKFLOW_DEVICES,
    DeviceName,
)

__all__ = ["Session", "start", "example_config", "require_sample_id"]

logger = logging.getLogger("lltolab.session")

SIM_POLL_S = 5.0
"""Lab seconds between temperature polls of the simulated instruments on a stepped clock."""
SUSPENDED_STEP_S = 10.0
"""Lab seconds that pass per watchdog poll while a run is suspended on a stepped clock."""
SIM_FURNACE_BAUD = 19200
"""Baud rate of the simulated furnace link: the Eurotherm 2000/3200's fastest. minimalmodbus
waits 3.5 character times of silence before each request (2.0 ms at 19200, 4.0 ms at 9600)."""
SIM_FURNACE_TIMEOUT_S = 2.0
"""Per-transaction timeout (s) of the simulated furnace link, as the cryostage's. The simulated
controller answers from this process, which it shares with the twin and the catalog: a busy
moment there can hold a transaction longer than a real controller's 0.5 s."""


def require_sample_id(md: Mapping[str, Any]) -> None:
    """RunEngine metadata validator: every run must name its sample (``sample_id``)."""
    sid = md.get("sample_id")
    if not isinstance(sid, str) or not sid.strip():
        raise ValueError(
            "run metadata must include a non-empty 'sample_id' (got "
            f"{sid!r}); pass md={{'sample_id': ...}} or set RE.md['sample_id']"
        )


@dataclass
class Session:
    """What :func:`start` builds.

    Attributes
    ----------
    RE : bluesky.RunEngine
    catalog : tiled container of runs (see :func:`lltolab.catalog.open_catalog`)
    catalog_path : str
        Folder or server address of the catalog.
    devices : dict
        ``cell``, ``handler``, ``clock``, ``stage``, ``furnace``, ``sims``, ``record``.
    lab : VirtualLab or None
        The simulated lab when ``sim=True``.
    record : SampleRecord
        The sample's id and thermal history.
    writer : lltolab.catalog.CatalogWriter
        The catalog writer (journal, then tiled on its own thread): ``writer.wait_stored(uid)``
        waits for one run, ``writer.flush()`` for all.
    """

    RE: Any
    catalog: Any
    catalog_path: str
    devices: dict[str, Any]
    lab: Any = None
    record: Any = None
    stage_alarm: Any = None
    bec: Any = None
    writer: Any = None
    _closers: list[Any] = field(default_factory=list, repr=False)

    @property
    def plans(self) -> Any:
        """The :mod:`lltolab.plans` module."""
        import lltolab.plans as plans  # noqa: PLC0415

        return plans

    def workflow_devices(self) -> dict[str, Any]:
        """The devices the workflow plans and the campaign take, by parameter name."""
        return {n: self.devices[n] for n in WORKFLOW_DEVICES}

    def close(self) -> None:
        """Stop background threads, close links and the simulated lab."""
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - close everything we can, say what failed
                logger.warning("closing the session: %s: %s: %s",
                               getattr(closer, "__name__", repr(closer)),
                               type(exc).__name__, exc)
        self._closers.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LazyCatalog:
    """The catalog client, opened on first use (opening costs seconds of imports)."""

    def __init__(self, opener: Any) -> None:
        self._opener = opener
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The opened tiled container of runs."""
        with self._lock:
            if self._client is None:
                self._client = self._opener()
            return self._client

    def __getitem__(self, key: Any) -> Any:
        return self.client()[key]

    def __len__(self) -> int:
        return len(self.client())

    def __iter__(self) -> Any:
        return iter(self.client())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)


def _server_export_folder(server: Any, uri: str) -> Path:
    """The folder a ``lltolab server`` reads SIMS exports from, checked writable here."""
    from lltolab.catalog import server_exports  # noqa: PLC0415

    folder = server_exports(server)
    if folder is None:
        raise ValueError(f"tiled server {uri} does not name the folder it reads SIMS exports "
                         "from; pass export_folder= (a folder in its readable storage)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"the export folder {folder} of tiled server {uri} is not usable "
                         f"here ({exc.strerror}); pass export_folder= (a folder the server "
                         "reads, e.g. a shared mount)") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"the export folder {folder} of tiled server {uri} is not writable "
                         "here; pass export_folder= (a folder the server reads)")
    return folder


def start(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    sim: bool | None = None,
    catalog: str | os.PathLike[str] | None = None,
    sample_id: str | None = None,
    seed: int = 0,
    time_scale: float | None = None,
    callbacks: bool = True,
    lab: Any = None,
    export_folder: str | os.PathLike[str] | None = None,
    plots: bool = False,
    api_key: str | None = None,
) -> Session:
    """Build a session.

    Inside ``lltolab shell`` this returns the shell's own session (its ``RE``, devices and
    catalog) instead of building a second lab and RunEngine.

    Parameters
    ----------
    config : path, mapping, SessionConfig or None
        TOML configuration of the real instruments (:func:`example_config`,
        :class:`lltolab.config.SessionConfig`).
    sim : bool or None
        Simulated lab or real instruments. ``None`` (default): simulated exactly when no
        ``config`` is given. An explicit ``sim=True`` with a ``config`` simulates the
        instruments and takes only the config's ``[sample]``, ``[catalog]`` and
        ``[suspenders]`` (its instrument sections are still checked for valid keys).
    catalog : path or URI, optional
        Catalog folder or tiled server address (default: config, else the user data dir).
    sample_id : str, optional
        Sample id put into ``RE.md`` (persisted).
    seed : int
        Virtual sample seed (sim).
    time_scale : float or None
        None (default): a simulated lab whose time passes only when a device waits (moves,
        polls, lab waits, acquisitions, suspensions): a seed then reproduces the same sample,
        counts and values on any machine at any speed. A number: lab seconds per wall second
        (a free-running lab, e.g. to watch the stage cool in real time).
    callbacks : bool
        Subscribe the BestEffortCallback and progress bars (off for quiet scripts).
    lab : VirtualLab, optional
        Use this simulated lab instead of building one (sim).
    export_folder : path, optional
        Where the simulated SurfaceLab exports (sim); default ``<catalog>/sim-exports`` so
        the stored runs' image files outlive the session, or for a server the folder it reads
        exports from (``lltolab server --exports``).
    api_key : str, optional
        API key of a tiled server catalog (default: ``[catalog] api_key`` of the
        configuration, else ``$TILED_API_KEY``). The server is checked before anything else
        is built: unreachable, or a missing or refused key, raises
        :class:`lltolab.catalog.CatalogAccessError` (a ValueError).

    plots : bool
        Live plots of the BestEffortCallback (with ``callbacks``); ``s.bec.enable_plots()``
        switches them on later.

    Session state (scan_id counter, persistent metadata, sample records) belongs to the
    catalog target (:attr:`lltolab.catalog.CatalogTarget.state_dir`); several sessions may
    write to one target at once, each with its own sample, and get distinct scan_ids.
    """
    if _SHELL_SESSION is not None:
        import sys  # noqa: PLC0415

        print("lltolab shell: start() returns the shell's session (catalog "
              f"{_SHELL_SESSION.catalog_path})", file=sys.stderr)
        return _SHELL_SESSION
    if not isinstance(plots, bool):
        raise ValueError(f"plots must be True or False, got {plots!r}")
    # the catalog writer, the queue worker and tiled parse Python source on several threads
    serialize_ast_parse()
    # heavy imports kept out of module import
    from lltolab._collector_pause import CollectorPause  # noqa: PLC0415
    from lltolab._stored_run_engine import StoredRunEngine  # noqa: PLC0415
    from lltolab.catalog import (  # noqa: PLC0415
        OPEN_TIMEOUT_S,
        PersistentMetadata,
        ScanIdCounter,
        catalog_writer,
        newest_scan_id,
        open_catalog,
        resolve_target,
        sample_record_path,
    )
    from lltolab.devices import SampleRecord  # noqa: PLC0415

    cfg = load_config(config)
    if sim is None:
        sim = config is None
    if not sim:
        cfg.require_instruments()
    if time_scale is not None and (isinstance(time_scale, bool) or not (
            isinstance(time_scale, int | float) and math.isfinite(time_scale)
            and time_scale > 0)):
        raise ValueError(f"time_scale must be a finite number > 0 or None, got {time_scale!r}")
    cat_cfg = cfg.get("catalog", {})
    target = resolve_target(catalog or cat_cfg.get("uri") or cat_cfg.get("path"))
    state_dir = target.state_dir
    key = api_key or cat_cfg.get("api_key") or os.environ.get("TILED_API_KEY") or None
    server = open_catalog(target, api_key=key) if target.is_server else None  # fail early

    closers: list[Any] = []
    new_lab = sim and lab is None
    if sim:
        if export_folder is None:
            export_folder = (target.sim_exports_dir if server is None
                             else _server_export_folder(server, target.location))
        devices, lab = _sim_devices(seed, time_scale, lab, export_folder)
        closers.append(lab.close)
    else:
        devices = _real_devices(cfg, operator_folder=state_dir / "operator")
        lab = None
    for dev in devices.values():
        if hasattr(dev, "close"):
            closers.append(dev.close)

    md = PersistentMetadata(state_dir / "md.json")
    sid = sample_id or cfg.sample.id or md.get("sample_id") or None
    record = SampleRecord(name=DeviceName.RECORD, path=sample_record_path(state_dir, sid))
    if sid and sid != record.sample_id.get():
        record.reset(sid)
    if sim:
        _match_virtual_sample(record, lab, new_lab, state_dir / "samples" / "archived")
    devices[DeviceName.RECORD] = record

    counter = ScanIdCounter(state_dir, floor=(lambda: newest_scan_id(server))
                            if server is not None else None)
    RE = StoredRunEngine(md, scan_id_source=counter)
    if RE.md.get("scan_id") != counter.last():
        RE.md["scan_id"] = counter.last()
    RE.md_validator = require_sample_id
    if record.sample_id.get():
        RE.md["sample_id"] = record.sample_id.get()
    if sim:
        RE.md["simulated"] = True

    sims = devices[DeviceName.SIMS]
    readable = [str(sims.asset_dir)] if hasattr(sims, "asset_dir") else []
    writer = catalog_writer(server if server is not None else target, api_key=key,
                            journal_dir=target.journal_dir,
                            readable_storage=readable or None, background=server is None,
                            batch_size=lambda start: 1 if start.get("plan_name") in
                            IMAGING_PLANS else 1000, queued=True)
    RE.subscribe(writer)
    RE.catalog_flush = writer.flush  # an RE call returns once its runs are stored
    # no full collections while tiled's imports grow the heap (see lltolab._collector_pause)
    opening = writer.opening
    pause = CollectorPause(opening, limit_s=OPEN_TIMEOUT_S) if opening is not None else None
    client = _LazyCatalog(lambda: server if server is not None else
                          open_catalog(target, readable_storage=readable or None))

    bec = None
    if callbacks:
        from bluesky.utils import ProgressBarManager  # noqa: PLC0415

        from lltolab._feedback import LazyBestEffortCallback  # noqa: PLC0415

        bec = LazyBestEffortCallback(plots=plots)
        RE.subscribe(bec)
        RE.waiting_hook = ProgressBarManager()

    session = Session(RE=RE, catalog=client, catalog_path=str(target), devices=devices,
                      lab=lab, record=record, bec=bec, writer=writer, _closers=closers)

    def store_what_is_queued() -> None:
        """The documents still queued reach tiled (or stay in the journal, said here)."""
        try:
            writer.flush(timeout_s=60.0)
        except Exception as exc:
            raise RuntimeError(f"{exc} (the documents are kept in {writer.journal_dir}; "
                               "lltolab.catalog.recover() writes them)") from exc

    closers.insert(0, store_what_is_queued)
    closers.insert(0, RE.md.flush)  # persist scan_id etc. now, not at interpreter exit
    if pause is not None:
        closers.insert(0, pause.release)  # last: what the pause froze is collectable again
    max_k = cfg.suspenders.stage_imaging_max_K
    _install_stage_suspender(session, max_k, poll_s=(0.02 if lab is not None and
                                                      lab.clock.stepped else 0.1)
                             if sim else 2.0)
    # last subscriber: a run the catalog failed to store raises at its stop (after every
    # other callback saw the stop), so the RE call reports it
    RE.subscribe(writer.failure_check())
    return session


_SHELL_SESSION: Session | None = None


def use_shell_session(session: Session | None) -> None:
    """Make :func:`start` return ``session`` (``lltolab shell``); None ends that."""
    global _SHELL_SESSION
    _SHELL_SESSION = session


def _match_virtual_sample(record: Any, lab: Any, new_lab: bool, archive: Path) -> None:
    """Start the record anew when its history cannot be the simulated lab's sample's.

    A virtual lab's sample lives as long as the lab: a lab built here holds a new sample at
    lab time 0, and a lab whose clock is behind the record's last segment holds another one
    than the record describes. Continuing such a record would give the analyses a thermal
    history the sample never had. The old history is kept in a file in ``archive``.
    """
    history = record.history()
    if not history:
        return
    now_s = float(lab.clock.now())
    last_s = max(seg["end_s"] for seg in history)
    if not new_lab and last_s <= now_s:
        return
    kept = record.archive(archive)
    logger.info("sample %s: the simulated lab holds a new sample (lab time %.0f s); the "
                "previous record (%d segments up to %.0f s lab time) is kept in %s",
                record.sample_id.get(), now_s, len(history), last_s, kept)


def _sim_devices(seed: int, time_scale: float | None, lab: Any,
                 export_folder: str | os.PathLike[str] | None) -> tuple[dict[str, Any], Any]:
    from lltolab.devices import (  # noqa: PLC0415
        CryoStage,
        ExchangeCell,
        Furnace,
        LabClock,
        SampleHandler,
        SurfaceLabExport,
    )
    from lltolab.sim_devices import VirtualLab  # noqa: PLC0415

    if lab is None:
        lab = VirtualLab(seed=seed, time_scale=time_scale, export_folder=export_folder)
    lab.start()
    scale = lab.clock.time_scale
    if scale is None:  # moves settle, poll and time out in lab seconds on the lab clock
        timing: dict[str, Any] = {"clock": lab.clock, "poll_period": SIM_POLL_S}
        lab_s, margin = 1.0, 0.0
    else:
        lab_s = 1.0 / scale  # wall seconds per lab second
        timing = {"poll_period": min(0.5, max(0.02, 5 * lab_s))}
        margin = 30.0
    devices = {
        DeviceName.STAGE: CryoStage(lab.stage.resource, name=DeviceName.STAGE, heater_range=3,
                                    settle_time=60 * lab_s, timeout=3600 * lab_s + margin,
                                    tolerance=0.5, **timing),
        DeviceName.FURNACE: Furnace(lab.furnace.url, name=DeviceName.FURNACE,
                                    baudrate=SIM_FURNACE_BAUD,
                                    timeout_s=SIM_FURNACE_TIMEOUT_S, settle_time=60 * lab_s,
                                    timeout=7200 * lab_s + margin, tolerance=1.0, **timing),
        DeviceName.SIMS: SurfaceLabExport(lab.export_folder, name=DeviceName.SIMS,
                                          request=lab.sims.request, timeout_s=120.0,
                                          poll_s=0.02, sidecar_grace_s=5.0),
        DeviceName.CLOCK: LabClock(name=DeviceName.CLOCK, source=lab.clock),
        DeviceName.HANDLER: SampleHandler(name=DeviceName.HANDLER, confirmation=lab.operator,
                                          timeout_s=60),
        DeviceName.CELL: ExchangeCell(name=DeviceName.CELL, confirmation=lab.operator,
                                      timeout_s=60),
    }
    # a stage waiting for its sample sits at room temperature, heater on (over the wire)
    devices[DeviceName.STAGE].heater_range.put(3)
    devices[DeviceName.STAGE].setpoint.put(lab.room_K)
    return devices, lab


def _real_devices(cfg: SessionConfig, operator_folder: Path | None = None) -> dict[str, Any]:
    from lltolab.devices import (  # noqa: PLC0415
        CryoStage,
        ExchangeCell,
        FileConfirmation,
        Furnace,
        LabClock,
        PromptConfirmation,
        SampleHandler,
        SurfaceLabExport,
        default_confirmation,
    )

    cfg.require_instruments()
    cs, fu, si, op = cfg.cryostage, cfg.furnace, cfg.sims, cfg.operator
    confirmation: Any
    if op.confirmation == "auto":  # prompt in an interactive shell, else answer files
        folder = op.folder or operator_folder
        confirmation = default_confirmation(Path(folder).expanduser() if folder else None)
    elif op.confirmation == "prompt":
        confirmation = PromptConfirmation()
    else:
        confirmation = FileConfirmation(op.folder)
    return {
        DeviceName.STAGE: CryoStage(cs.resource, name=DeviceName.STAGE, limits=cs.limits_K,
                                    tolerance=cs.tolerance_K, settle_time=cs.settle_time_s,
                                    timeout=cs.timeout_s, heater_range=cs.heater_range),
        DeviceName.FURNACE: Furnace(fu.port, name=DeviceName.FURNACE,
                                    slave_address=fu.slave_address, baudrate=fu.baudrate,
                                    limits=fu.limits_K, tolerance=fu.tolerance_K,
                                    settle_time=fu.settle_time_s, timeout=fu.timeout_s),
        DeviceName.SIMS: SurfaceLabExport(si.export_folder, name=DeviceName.SIMS,
                                          timeout_s=si.timeout_s,
                                          field_of_view_um=si.field_of_view_um,
                                          n_pulses=si.n_pulses),
        DeviceName.CLOCK: LabClock(name=DeviceName.CLOCK),
        DeviceName.HANDLER: SampleHandler(name=DeviceName.HANDLER, confirmation=confirmation),
        DeviceName.CELL: ExchangeCell(name=DeviceName.CELL, confirmation=confirmation),
    }


def _install_stage_suspender(session: Session, max_k: float, *, poll_s: float) -> None:
    """Suspend imaging runs while the stage is warmer than ``max_k`` (LN₂ run-out).

    A watchdog reads the stage during image / line-profile runs (not those started with
    ``allow_unfrozen=True``, which would never resume) and drives a soft ``stage_alarm``
    signal; bluesky's SuspendBoolHigh suspends on it and resumes (from the last checkpoint:
    the acquisition is repeated) once the stage is cold again. Every reading goes into the
    sample record's temperature log, and every warm interval into its suspensions, so the
    image run can put the real stage temperatures into the thermal history.

    On a stepped lab clock the watchdog reads the stage at the end of every jump of lab time
    (lab time is what warms the stage), and while the run is suspended it lets lab time pass
    in steps of :data:`SUSPENDED_STEP_S`: the suspension lasts as long in lab time, and ends at
    the same lab time, however fast the machine is.
    """
    from bluesky.suspenders import SuspendBoolHigh  # noqa: PLC0415
    from ophyd import Signal  # noqa: PLC0415

    alarm = Signal(name="stage_alarm", value=0)
    session.stage_alarm = alarm
    stage = session.devices[DeviceName.STAGE]
    clock = session.devices[DeviceName.CLOCK]
    record = session.record
    lab = session.lab
    stepped = lab is not None and lab.clock.stepped
    armed = threading.Event()
    suspended = threading.Event()  # the RunEngine is waiting for the stage to cool
    stop = threading.Event()
    lock = threading.RLock()
    warm_since: list[float] = []  # lab time the stage went warm (empty while cold)

    def check() -> None:
        """Read the stage once: log the reading, raise or clear the alarm."""
        with lock:
            try:
                now = float(clock.source.now())
            except Exception:  # noqa: BLE001 - a reading without a time is not logged
                now = math.nan
            try:
                temp = float(stage.readback.get())
            except Exception:  # noqa: BLE001 - a failed read is a warm stage for imaging
                temp = math.inf
            if record is not None and math.isfinite(now) and math.isfinite(temp):
                record.log_temperature(now, temp)
            warm = not temp <= max_k
            if warm and not warm_since:
                warm_since.append(now)
            elif not warm and warm_since:
                suspended.clear()
                start_s = warm_since.pop()
                if record is not None and math.isfinite(start_s) and math.isfinite(now):
                    record.log_suspension(start_s, now)
            alarm.put(1 if warm else 0)

    def on_doc(name: str, doc: Mapping[str, Any]) -> None:
        if name == "start" and doc.get("plan_name") in IMAGING_PLANS:
            # an image the user chose to take unfrozen (allow_unfrozen) would otherwise wait
            # forever for a stage that was never meant to be cold
            if not doc.get("plan_args", {}).get("allow_unfrozen"):
                armed.set()
        elif name == "stop":
            armed.clear()
            suspended.clear()
            with lock:
                warm_since.clear()
            alarm.put(0)

    def on_jump(start_s: float, end_s: float) -> None:
        if armed.is_set():
            check()

    def watch() -> None:
        while not stop.wait(poll_s):
            if not armed.is_set():
                continue
            if not stepped:
                check()
            elif alarm.get() == 1 and suspended.is_set():
                lab.pass_time(SUSPENDED_STEP_S)  # the jump's listener reads the stage

    session.RE.subscribe(on_doc)
    def mark_suspended() -> Any:
        suspended.set()  # runs inside the suspension, once the RunEngine stopped the plan
        yield from ()

    session.RE.install_suspender(SuspendBoolHigh(
        alarm, sleep=0.0, pre_plan=mark_suspended, tripped_message=(
            f"stage warmer than {max_k} K during imaging (LN2 run-out?): waiting for it to "
            "cool")))
    if stepped:
        lab.clock.on_jump(on_jump)
    thread = threading.Thread(target=watch, name="stage-watchdog", daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(timeout=5)
        if stepped:
            lab.clock.remove_listener(on_jump)

    session._closers.append(close)
