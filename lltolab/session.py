"""One session factory: RunEngine, devices, catalog, callbacks, suspenders, persistent md.

Used alike by IPython (``from lltolab.session import start; s = start()``), the ``lltolab``
CLI and the tests::

    s = start(sim=True, catalog="~/lltolab-demo", sample_id="LLTO-A1")
    s.RE(s.plans.exchange_quench_image_anneal_reimage(**s.workflow_devices(), record=s.record))

``start(config)`` builds real devices from a TOML file of resource strings, ports, limits and
the export folder (see :func:`example_config`); ``start(sim=True)`` builds the same device
classes against the virtual lab's simulated instruments on 127.0.0.1.
"""

from __future__ import annotations

import math
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Session", "start", "example_config", "require_sample_id"]

STAGE_IMAGING_MAX_K = 173.15
"""Imaging suspends while the stage is warmer than this (K), e.g. when LN₂ runs out."""
IMAGING_PLANS = ("sims_image", "sims_line_profile")
SIM_POLL_S = 5.0
"""Lab seconds between temperature polls of the simulated instruments on a stepped clock."""
SUSPENDED_STEP_S = 10.0
"""Lab seconds that pass per watchdog poll while a run is suspended on a stepped clock."""


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
    """

    RE: Any
    catalog: Any
    catalog_path: str
    devices: dict[str, Any]
    lab: Any = None
    record: Any = None
    stage_alarm: Any = None
    _closers: list[Any] = field(default_factory=list, repr=False)

    @property
    def plans(self) -> Any:
        """The :mod:`lltolab.plans` module."""
        import lltolab.plans as plans  # noqa: PLC0415

        return plans

    def workflow_devices(self) -> dict[str, Any]:
        """The devices the card's workflow and the campaign take, by parameter name."""
        names = ("cell", "handler", "clock", "stage", "furnace", "sims")
        return {n: self.devices[n] for n in names}

    def close(self) -> None:
        """Stop background threads, close links and the simulated lab."""
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # noqa: BLE001 - close everything we can
                pass
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


def example_config() -> str:
    """A commented TOML configuration for the real instruments."""
    return '''\
# lltolab session configuration (real instruments)
[sample]
id = "LLTO-2026-01"

[catalog]
path = "~/lltolab/catalog"      # or: uri = "http://tiled.lab:8000/api"; api_key = "..."

[cryostage]
resource = "TCPIP::192.168.1.20::7777::SOCKET"
limits_K = [77.0, 400.0]
tolerance_K = 0.5
settle_time_s = 60.0
timeout_s = 3600.0
heater_range = 3

[furnace]
port = "/dev/ttyUSB0"
slave_address = 1
limits_K = [273.15, 773.15]
tolerance_K = 1.0
settle_time_s = 120.0
timeout_s = 7200.0

[sims]
export_folder = "D:/SurfaceLab/exports"
timeout_s = 28800.0

[operator]
confirmation = "prompt"         # or "file" (another process answers), with folder = "..."

[suspenders]
stage_imaging_max_K = 173.15
'''


def _load_config(config: str | os.PathLike[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config).expanduser()
    if not path.is_file():
        raise ValueError(f"configuration file {str(path)!r} does not exist")
    with path.open("rb") as f:
        return tomllib.load(f)


def _persistent_md(folder: Path) -> Any:
    from bluesky.utils import PersistentDict  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    return PersistentDict(str(folder))


def _release_md(md: Any) -> None:
    """Write the persistent md now and never again from this object.

    bluesky's PersistentDict also writes its whole cache when garbage-collected; from a closed
    session that late write would go over the files of a newer session on the same folder
    (stale scan_id, or errors from zict about files the newer one replaced).
    """
    finalizer = getattr(md, "_finalizer", None)
    if finalizer is not None:
        finalizer()  # flushes once; a weakref.finalize never runs twice
    else:
        md.flush()


def start(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    sim: bool = True,
    catalog: str | os.PathLike[str] | None = None,
    sample_id: str | None = None,
    seed: int = 0,
    time_scale: float | None = 600.0,
    callbacks: bool = True,
    lab: Any = None,
    export_folder: str | os.PathLike[str] | None = None,
) -> Session:
    """Build a session.

    Parameters
    ----------
    config : path, mapping or None
        TOML configuration of the real instruments (:func:`example_config`); with
        ``sim=True`` only its ``[sample]``, ``[catalog]`` and ``[suspenders]`` are used.
    sim : bool
        Simulated lab (default) or real instruments.
    catalog : path or URI, optional
        Catalog folder or tiled server address (default: config, else the user data dir).
    sample_id : str, optional
        Sample id put into ``RE.md`` (persisted).
    seed : int
        Virtual sample seed (sim).
    time_scale : float or None
        Lab seconds per wall second of the simulated instruments (sim), or None for a lab
        whose time passes only when a device waits (moves, polls, lab waits, acquisitions,
        suspensions): a seed then reproduces the same sample, counts and values on any
        machine at any speed.
    callbacks : bool
        Subscribe the BestEffortCallback and progress bars (off for quiet scripts).
    lab : VirtualLab, optional
        Use this simulated lab instead of building one (sim).
    export_folder : path, optional
        Where the simulated SurfaceLab exports (sim); default ``<catalog>/sim-exports`` so
        the stored runs' image files outlive the session.
    """
    from bluesky import RunEngine  # noqa: PLC0415 - heavy imports kept out of module import

    from lltolab.catalog import catalog_writer, default_catalog_path, open_catalog  # noqa: PLC0415
    from lltolab.devices import SampleRecord  # noqa: PLC0415

    cfg = _load_config(config)
    if time_scale is not None and (isinstance(time_scale, bool) or not (
            isinstance(time_scale, int | float) and math.isfinite(time_scale)
            and time_scale > 0)):
        raise ValueError(f"time_scale must be a finite number > 0 or None, got {time_scale!r}")
    cat_cfg = cfg.get("catalog", {})
    target = catalog or cat_cfg.get("uri") or cat_cfg.get("path") or default_catalog_path()
    is_uri = str(target).startswith(("http://", "https://"))
    state_dir = (Path(target).expanduser() if not is_uri else default_catalog_path()) / "session"

    closers: list[Any] = []
    if sim:
        if export_folder is None and not is_uri:
            export_folder = Path(target).expanduser() / "sim-exports"
        devices, lab = _sim_devices(seed, time_scale, lab, export_folder)
        closers.append(lab.close)
    else:
        devices = _real_devices(cfg)
        lab = None
    for dev in devices.values():
        if hasattr(dev, "close"):
            closers.append(dev.close)

    record = SampleRecord(name="record", path=state_dir / "sample.json")
    sid = sample_id or cfg.get("sample", {}).get("id")
    if sid and sid != record.sample_id.get():
        record.reset(sid)
    devices["record"] = record

    md = _persistent_md(state_dir / "md")
    closers.append(lambda: _release_md(md))
    RE = RunEngine(md)
    RE.md_validator = require_sample_id
    if record.sample_id.get():
        RE.md["sample_id"] = record.sample_id.get()
    if sim:
        RE.md["simulated"] = True

    readable = [str(devices["sims"].asset_dir)] if hasattr(devices["sims"], "asset_dir") else []
    writer = catalog_writer(str(target), api_key=cat_cfg.get("api_key"),
                            readable_storage=readable or None, background=True,
                            batch_size=lambda start: 1 if start.get("plan_name") in
                            IMAGING_PLANS else 1000)
    RE.subscribe(writer)
    client = _LazyCatalog(lambda: open_catalog(str(target), api_key=cat_cfg.get("api_key"),
                                               readable_storage=readable or None))

    if callbacks:
        from bluesky.callbacks.best_effort import BestEffortCallback  # noqa: PLC0415
        from bluesky.utils import ProgressBarManager  # noqa: PLC0415

        bec = BestEffortCallback()
        bec.disable_plots()
        RE.subscribe(bec)
        RE.waiting_hook = ProgressBarManager()

    session = Session(RE=RE, catalog=client, catalog_path=str(target), devices=devices,
                      lab=lab, record=record, _closers=closers)
    closers.insert(0, RE.md.flush)  # persist scan_id etc. now, not at interpreter exit
    max_k = float(cfg.get("suspenders", {}).get("stage_imaging_max_K", STAGE_IMAGING_MAX_K))
    _install_stage_suspender(session, max_k, poll_s=(0.02 if lab is not None and
                                                      lab.clock.stepped else 0.1)
                             if sim else 2.0)
    return session


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
        "stage": CryoStage(lab.stage.resource, name="stage", heater_range=3,
                           settle_time=60 * lab_s, timeout=3600 * lab_s + margin,
                           tolerance=0.5, **timing),
        "furnace": Furnace(lab.furnace.url, name="furnace", settle_time=60 * lab_s,
                           timeout=7200 * lab_s + margin, tolerance=1.0, **timing),
        "sims": SurfaceLabExport(lab.export_folder, name="sims", request=lab.sims.request,
                                 timeout_s=120.0, poll_s=0.02, sidecar_grace_s=5.0),
        "clock": LabClock(name="clock", source=lab.clock),
        "handler": SampleHandler(name="handler", confirmation=lab.operator, timeout_s=60),
        "cell": ExchangeCell(name="cell", confirmation=lab.operator, timeout_s=60),
    }
    # a stage waiting for its sample sits at room temperature, heater on (over the wire)
    devices["stage"].heater_range.put(3)
    devices["stage"].setpoint.put(lab.room_K)
    return devices, lab


def _real_devices(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from lltolab.devices import (  # noqa: PLC0415
        CryoStage,
        ExchangeCell,
        FileConfirmation,
        Furnace,
        LabClock,
        PromptConfirmation,
        SampleHandler,
        SurfaceLabExport,
    )

    for section, key in (("cryostage", "resource"), ("furnace", "port"),
                         ("sims", "export_folder")):
        if section not in cfg:
            raise ValueError(f"configuration lacks the [{section}] section (see example_config())")
        if not isinstance(cfg[section], Mapping) or not cfg[section].get(key):
            raise ValueError(f"configuration section [{section}] needs {key} = '...' "
                             "(see example_config())")
    cs, fu, si = cfg["cryostage"], cfg["furnace"], cfg["sims"]
    op = cfg.get("operator", {})
    kind = op.get("confirmation", "prompt")
    if kind == "prompt":
        confirmation: Any = PromptConfirmation()
    elif kind == "file":
        if "folder" not in op:
            raise ValueError("[operator] confirmation = 'file' needs folder = '...'")
        confirmation = FileConfirmation(op["folder"])
    else:
        raise ValueError(f"[operator] confirmation must be 'prompt' or 'file', got {kind!r}")
    return {
        "stage": CryoStage(cs["resource"], name="stage",
                           limits=tuple(cs.get("limits_K", (77.0, 500.0))),
                           tolerance=float(cs.get("tolerance_K", 0.5)),
                           settle_time=float(cs.get("settle_time_s", 60.0)),
                           timeout=float(cs.get("timeout_s", 3600.0)),
                           heater_range=cs.get("heater_range")),
        "furnace": Furnace(fu["port"], name="furnace",
                           slave_address=int(fu.get("slave_address", 1)),
                           limits=tuple(fu.get("limits_K", (273.15, 1473.15))),
                           tolerance=float(fu.get("tolerance_K", 1.0)),
                           settle_time=float(fu.get("settle_time_s", 120.0)),
                           timeout=float(fu.get("timeout_s", 7200.0))),
        "sims": SurfaceLabExport(si["export_folder"], name="sims",
                                 timeout_s=float(si.get("timeout_s", 8 * 3600.0))),
        "clock": LabClock(name="clock"),
        "handler": SampleHandler(name="handler", confirmation=confirmation),
        "cell": ExchangeCell(name="cell", confirmation=confirmation),
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
    stage = session.devices["stage"]
    clock = session.devices["clock"]
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
