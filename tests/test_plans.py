"""The plans against the virtual lab: documents, metadata, storage, replay, guards, faults.

One simulated session for the module (real RunEngine, simulated instruments on 127.0.0.1,
catalog in a temporary folder). Every document the RunEngine emits goes through a callback that
validates it against the event-model schemas; tests then check what a run emitted (``docs``)
and what the catalog stored, in this process and in a new one.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from event_model import DocumentNames, schema_validators

from lltolab.catalog import close_catalogs, replay
from lltolab.plans import (
    AnnealAborted,
    QuenchInadequate,
    anneal,
    anneal_duration_for_length,
    arrhenius_campaign,
    exchange_quench_image_anneal_reimage,
    quench,
    sims_image,
    store,
)
from lltolab.session import STAGE_IMAGING_MAX_K, start

pytestmark = pytest.mark.timeout(120)

SAMPLE = "LLTO-test-plans"
PROFILE_MM = [0.5, 1.0, 2.0, 4.0]
QUENCH_K = 163.15


class Validator:
    """RunEngine subscriber: validates every document, keeps them by run uid."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.by_run: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        self.count = 0
        self.starts: list[str] = []
        self._run_of_descriptor: dict[str, str] = {}
        self._run_of_resource: dict[str, str] = {}

    def __call__(self, name: str, doc: dict) -> None:
        self.count += 1
        try:
            schema_validators[DocumentNames[name]].validate(doc)
        except Exception as exc:  # noqa: BLE001 - collected, asserted by the tests
            self.errors.append(f"{name}: {exc}")
        run = self._run_uid(name, doc)
        self.by_run[run].append((name, doc))

    def _run_uid(self, name: str, doc: dict) -> str:
        if name == "start":
            self.starts.append(doc["uid"])
            return doc["uid"]
        if name in ("stop", "descriptor"):
            run = doc["run_start"]
            if name == "descriptor":
                self._run_of_descriptor[doc["uid"]] = run
            return run
        if name == "stream_resource":
            self._run_of_resource[doc["uid"]] = doc["run_start"]
            return doc["run_start"]
        if name == "stream_datum":
            return self._run_of_resource.get(doc["stream_resource"], "?")
        if name == "event":
            return self._run_of_descriptor.get(doc["descriptor"], "?")
        return "?"

    def names(self, uid: str) -> list[str]:
        return [n for n, _ in self.by_run[uid]]

    def start_of(self, uid: str) -> dict:
        return next(d for n, d in self.by_run[uid] if n == "start")

    def stop_of(self, uid: str) -> dict:
        return next(d for n, d in self.by_run[uid] if n == "stop")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plans-catalog")


@pytest.fixture(scope="module")
def session(folder):
    # a free-running lab (600 lab s per wall s): the fault tests below pace LN₂ loss and
    # recovery in wall time while an acquisition runs
    s = start(sim=True, catalog=folder, sample_id=SAMPLE, callbacks=False, time_scale=600.0)
    try:
        yield s
    finally:
        s.close()
        close_catalogs()


@pytest.fixture(scope="module")
def docs(session) -> Validator:
    v = Validator()
    session.RE.subscribe(v)
    return v


@pytest.fixture(scope="module")
def workflow(session, docs) -> list[str]:
    """The standard workflow with short times: exchange, image cycle, anneal, image cycle."""
    s = session
    t0 = time.perf_counter()
    uids = s.RE(exchange_quench_image_anneal_reimage(
        **s.workflow_devices(), exchange_s=6 * 3600.0, anneal_K=473.15, anneal_s=1800.0,
        cycles=1, profile_positions_mm=PROFILE_MM, record=s.record, md={"operator": "pytest"}))
    print(f"\nworkflow: {time.perf_counter() - t0:.1f} s wall, {len(uids)} runs")
    return list(uids)


def _plan_names(docs: Validator, uids) -> list[str]:
    return [docs.start_of(u)["plan_name"] for u in uids]


# --------------------------------------------------------------------------- documents / md
def test_workflow_runs_and_every_document_is_valid(workflow, docs):
    names = _plan_names(docs, workflow)
    assert names == [
        "isotope_exchange",
        "transfer", "quench", "sims_image", "sims_line_profile", "quench", "transfer",
        "anneal",
        "transfer", "quench", "sims_image", "sims_line_profile", "quench", "transfer",
    ]
    assert docs.errors == []
    for uid in workflow:
        kinds = docs.names(uid)
        assert kinds[0] == "start" and kinds[-1] == "stop"
        assert "event" in kinds
        assert docs.stop_of(uid)["exit_status"] == "success"
    image = next(u for u in workflow if docs.start_of(u)["plan_name"] == "sims_image")
    # the image goes to an external HDF5 asset announced by StreamResource / StreamDatum
    assert {"stream_resource", "stream_datum"} <= set(docs.names(image))


def test_start_documents_carry_plan_name_args_and_md(workflow, docs):
    for uid in workflow:
        start_doc = docs.start_of(uid)
        assert isinstance(start_doc["plan_args"], dict)
        assert start_doc["sample_id"] == SAMPLE
        assert start_doc["operator"] == "pytest"
        assert start_doc["workflow"] == "exchange_quench_image_anneal_reimage"
        json.dumps(start_doc["plan_args"])  # JSON-able (queueserver can show it)
    exchange = docs.start_of(workflow[0])
    assert exchange["plan_args"]["duration_s"] == 6 * 3600.0
    assert exchange["plan_args"]["cell"] == "cell"  # devices by name
    anneal_start = docs.start_of(workflow[7])
    assert anneal_start["plan_args"]["temperature_K"] == 473.15
    assert anneal_start["cycle"] == 1
    assert docs.start_of(workflow[1])["cycle"] == 0
    profile = docs.start_of(workflow[4])
    assert profile["plan_args"]["positions_mm"] == PROFILE_MM


def test_image_runs_carry_thermal_history_and_sample_id(workflow, docs):
    images = [u for u in workflow
              if docs.start_of(u)["plan_name"] in ("sims_image", "sims_line_profile")]
    assert len(images) == 4
    lengths = []
    for uid in images:
        start_doc = docs.start_of(uid)
        assert start_doc["sample_id"] == SAMPLE
        history = start_doc["thermal_history"]
        lengths.append(len(history))
        sources = [seg["source"] for seg in history]
        assert sources[0] == "isotope_exchange"
        assert history[0]["immersed"] is True
        assert history[0]["end_s"] - history[0]["start_s"] == pytest.approx(6 * 3600.0, rel=0.01)
        assert sources[-1] == "quench" or sources[-1] == "sims_image"
        assert start_doc["quench_guard"]["ok"] == 1.0
        assert "guard_warning" not in start_doc
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    # the re-image (cycle 1) history holds the anneal at 200 °C
    last = docs.start_of(images[2])["thermal_history"]
    anneals = [seg for seg in last if seg["source"] == "anneal"]
    assert len(anneals) == 1
    assert anneals[0]["temperature_K"] == pytest.approx(473.15, abs=2.0)
    assert anneals[0]["end_s"] - anneals[0]["start_s"] == pytest.approx(1800.0, rel=0.1)


def test_operator_steps_are_timestamped_events(workflow, docs):
    runs = docs.by_run[workflow[0]]
    descriptors = {d["uid"]: d["name"] for n, d in runs if n == "descriptor"}
    operator = [d for n, d in runs if n == "event" and descriptors[d["descriptor"]] == "operator"]
    assert len(operator) == 2  # dip, lift
    assert [e["data"]["cell_immersed"] for e in operator] == [1, 0]  # after dip, after lift
    t_dip, t_lift = (e["data"]["clock_time"] for e in operator)
    assert t_lift - t_dip == pytest.approx(6 * 3600.0, rel=0.01)
    dip = operator[1]["data"]
    assert 0 < dip["cell_dip_time"] <= dip["cell_lift_time"]  # operator confirmation times
    assert all(e["time"] > 0 and e["timestamps"]["cell_immersed"] > 0 for e in operator)


def test_store_plan(session, docs):
    s = session
    n_before = len(s.record.history())
    (uid,) = s.RE(store(s.devices["clock"], 16 * 86400.0, record=s.record))
    assert docs.errors == []
    assert docs.start_of(uid)["plan_name"] == "store"
    assert docs.stop_of(uid)["exit_status"] == "success"
    seg = s.record.history()[n_before]
    assert seg["source"] == "store"
    assert seg["end_s"] - seg["start_s"] == pytest.approx(16 * 86400.0, rel=1e-3)


# --------------------------------------------------------------------------- storage
def test_stored_runs_read_back_in_a_new_process(workflow, docs, session, folder):
    image = workflow[3]
    profile = workflow[4]
    anneal_uid = workflow[7]
    code = textwrap.dedent("""
        import json, sys
        from lltolab.catalog import open_catalog
        cat = open_catalog(sys.argv[1], create=False)
        image, profile, anneal = sys.argv[2:5]
        run = cat[image]
        c = run["primary"]["sims_c_fraction"].read()
        li6 = run["primary"]["sims_li6_counts"].read()
        table = cat[anneal]["primary"].read()
        prof = cat[profile]["primary"].read()
        print(json.dumps({
            "plan_name": run.metadata["start"]["plan_name"],
            "sample_id": run.metadata["start"]["sample_id"],
            "n_history": len(run.metadata["start"]["thermal_history"]),
            "exit_status": run.metadata["stop"]["exit_status"],
            "c_shape": list(c.shape),
            "c_mean": float(c[~(c != c)].mean()),
            "li6_sum": int(li6.sum()),
            "anneal_furnace": [float(x) for x in table["furnace"].values],
            "profile_x": [float(x) for x in prof["sims_profile_x_mm"].values[0]],
            "n_runs": len(cat),
        }))
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(folder), image, profile, anneal_uid],
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    start_doc = docs.start_of(image)
    assert out["plan_name"] == "sims_image"
    assert out["sample_id"] == SAMPLE
    assert out["n_history"] == len(start_doc["thermal_history"])
    assert out["exit_status"] == "success"
    assert out["c_shape"][0] == 1 and len(out["c_shape"]) == 3 and out["c_shape"][1] > 10
    event = next(d for n, d in docs.by_run[image] if n == "event")
    assert out["c_mean"] == pytest.approx(event["data"]["sims_mean_c"], rel=1e-6)
    assert out["li6_sum"] == event["data"]["sims_li6_total"]
    events = [d for n, d in docs.by_run[anneal_uid] if n == "event"]
    assert out["anneal_furnace"] == pytest.approx([e["data"]["furnace"] for e in events])
    assert len(out["profile_x"]) == len(PROFILE_MM)
    assert out["n_runs"] >= len(workflow)


def test_replay_of_a_stored_run(workflow, docs, session):
    uid = workflow[3]  # an image run, with external data
    run = session.catalog[uid]
    got: list[tuple[str, dict]] = []
    n = replay(run, lambda name, doc: got.append((name, doc)))
    assert n == len(got) > 0
    names = [name for name, _ in got]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("event") + names.count("event_page") >= 1
    assert "stream_resource" in names
    for name, doc in got:
        schema_validators[DocumentNames[name]].validate(doc)
    assert got[0][1]["uid"] == uid
    assert got[0][1]["thermal_history"] == docs.start_of(uid)["thermal_history"]
    assert got[-1][1]["exit_status"] == "success"


# --------------------------------------------------------------------------- guard
def _stage_to(session, temperature_K: float) -> None:
    """Move the stage outside any run (no documents)."""
    import bluesky.plan_stubs as bps  # noqa: PLC0415

    s = session
    s.RE(bps.mv(s.devices["stage"], temperature_K))
    assert abs(s.devices["stage"].readback.get() - temperature_K) < 1.0


def test_guard_refuses_imaging_at_minus_20C(session, docs):
    s = session
    dv = s.devices
    _stage_to(s, 253.15)
    n_docs = docs.count
    with pytest.raises(QuenchInadequate, match="imaging refused"):
        s.RE(sims_image(dv["sims"], dv["stage"], dv["clock"], record=s.record))
    assert docs.count == n_docs  # refused before any document
    assert s.RE.state == "idle"


def test_guard_override_records_a_warning(session, docs):
    s = session
    dv = s.devices
    _stage_to(s, 253.15)
    (uid,) = s.RE(sims_image(dv["sims"], dv["stage"], dv["clock"], allow_unfrozen=True,
                             record=s.record))
    start_doc = docs.start_of(uid)
    assert "half a pixel" in start_doc["guard_warning"]
    assert start_doc["quench_guard"]["ok"] == 0.0
    assert start_doc["plan_args"]["allow_unfrozen"] is True
    assert docs.stop_of(uid)["exit_status"] == "success"
    assert docs.errors == []


# --------------------------------------------------------------------------- suspender
def test_ln2_runout_during_image_suspends_and_resumes(session, docs):
    """LN2 runs out once the image run has started: the stage warms above the threshold,
    the watchdog raises stage_alarm, the RunEngine suspends; LN2 back, the stage re-cools, the
    acquisition is repeated and the run ends in success."""
    s = session
    dv = s.devices
    s.RE(quench(dv["stage"], dv["clock"], QUENCH_K))  # cold, ready to image
    alarms: list[int] = []
    alarm_cid = s.stage_alarm.subscribe(lambda value, **_: alarms.append(int(value)),
                                        run=False)
    states: list[str] = []
    suspended = threading.Event()

    def state_hook(new: str, old: str) -> None:
        states.append(new)
        if new == "suspending":
            suspended.set()

    def restore_ln2() -> None:
        if suspended.wait(timeout=60):
            time.sleep(0.3)
            s.lab.stage.clear_fault("ln2_empty")

    original_request = dv["sims"].request
    calls = []

    def request(kind, positions_mm):
        calls.append(kind)
        if len(calls) == 1:  # first acquisition: hold it until the warm stage trips the alarm
            t_end = time.monotonic() + 20
            while s.stage_alarm.get() != 1 and time.monotonic() < t_end:
                time.sleep(0.02)
        return original_request(kind, positions_mm)

    def on_start(name, doc):
        if name == "start" and doc.get("plan_name") == "sims_image":
            s.lab.stage.inject_fault("ln2_empty")

    helper = threading.Thread(target=restore_ln2, daemon=True)
    helper.start()
    tokens = [s.RE.subscribe(on_start)]
    s.RE.state_hook = state_hook
    dv["sims"].request = request
    try:
        (uid,) = s.RE(sims_image(dv["sims"], dv["stage"], dv["clock"], record=s.record))
    finally:
        dv["sims"].request = original_request
        s.RE.state_hook = None
        for t in tokens:
            s.RE.unsubscribe(t)
        s.lab.stage.clear_fault()
        s.stage_alarm.unsubscribe(alarm_cid)
        helper.join(timeout=5)
    assert suspended.is_set()
    assert "suspending" in states and states[-1] == "idle"
    assert 1 in alarms and alarms[-1] == 0
    assert len(calls) == 2  # the acquisition was repeated after the stage re-cooled
    assert docs.stop_of(uid)["exit_status"] == "success"
    assert docs.names(uid).count("start") == 1
    events = [d for n, d in docs.by_run[uid] if n == "event"]
    assert len(events) == 1
    assert events[0]["data"]["stage"] < STAGE_IMAGING_MAX_K
    assert events[0]["data"]["sims_stage_temperature_K"] < STAGE_IMAGING_MAX_K
    assert s.stage_alarm.get() == 0
    assert docs.errors == []


# --------------------------------------------------------------------------- pause
def test_pause_then_resume(session, docs):
    """Ctrl-C: request_pause from another thread while the furnace heats; resume completes."""
    s = session
    dv = s.devices
    requested = threading.Event()

    def pause_soon() -> None:
        time.sleep(0.5)
        s.RE.request_pause()
        requested.set()

    timer = threading.Thread(target=pause_soon, daemon=True)
    timer.start()
    with pytest.raises(RunEngineInterrupted):
        s.RE(anneal(dv["furnace"], dv["handler"], dv["clock"], 423.15, 1200.0,
                    check_interval_s=600.0, record=s.record))
    timer.join(timeout=5)
    assert requested.is_set()
    assert s.RE.state == "paused"
    uids = s.RE.resume()
    assert s.RE.state == "idle"
    (uid,) = uids
    assert docs.start_of(uid)["plan_name"] == "anneal"
    assert docs.names(uid).count("start") == 1
    assert docs.stop_of(uid)["exit_status"] == "success"
    assert docs.errors == []


# --------------------------------------------------------------------------- anneal fault
def test_furnace_sensor_break_aborts_anneal(session, docs):
    """A sensor break during the hold: AnnealAborted, safe setpoint, run stored as failed
    with its events."""
    s = session
    dv = s.devices
    sets = {"clock": 0}

    def hook(msg):
        if msg.command == "set" and getattr(msg.obj, "name", "") == "clock":
            sets["clock"] += 1
            if sets["clock"] == 2:  # during the hold, after the first check interval
                s.lab.furnace.sensor_break = True

    n_history = len(s.record.history())
    s.RE.msg_hook = hook
    try:
        with pytest.raises(AnnealAborted, match="sensor break"):
            s.RE(anneal(dv["furnace"], dv["handler"], dv["clock"], 473.15, 3600.0,
                        check_interval_s=600.0, safe_K=295.15, record=s.record))
        assert s.lab.furnace.target_setpoint_C == pytest.approx(22.0, abs=0.05)
    finally:
        s.RE.msg_hook = None
        s.lab.furnace.clear_faults()
    uid = docs.starts[-1]
    assert docs.start_of(uid)["plan_name"] == "anneal"
    stop = docs.stop_of(uid)
    assert stop["exit_status"] == "fail"
    assert "sensor break" in stop["reason"]
    events = [d for n, d in docs.by_run[uid] if n == "event"]
    assert len(events) == 2  # before the sample went in, after the first interval
    run = session.catalog[uid]
    assert run.metadata["stop"]["exit_status"] == "fail"
    stored = run["primary"].read()
    assert len(stored["furnace"]) == 2
    assert list(stored["furnace"].values) == pytest.approx([e["data"]["furnace"] for e in events])
    # the sample was taken out and its time in the furnace is in its history
    assert dv["handler"].location.get() == "storage"
    assert s.lab.location == "storage"
    (seg,) = s.record.history()[n_history:]
    assert seg["source"] == "anneal_aborted" and seg["location"] == "furnace"
    assert seg["temperature_K"] == pytest.approx(473.15, abs=2.0)
    assert 600.0 <= seg["end_s"] - seg["start_s"] < 3600.0
    assert docs.errors == []


def test_furnace_fault_while_heating_aborts_anneal(session, docs):
    """A sensor break before the sample goes in: the failed move becomes AnnealAborted, the
    furnace is sent to the safe setpoint, the sample never enters."""
    s = session
    dv = s.devices
    n_history = len(s.record.history())

    def hook(msg):
        if msg.command == "set" and getattr(msg.obj, "name", "") == "furnace":
            s.lab.furnace.sensor_break = True

    s.RE.msg_hook = hook
    try:
        with pytest.raises(AnnealAborted, match="sensor break"):
            s.RE(anneal(dv["furnace"], dv["handler"], dv["clock"], 473.15, 3600.0,
                        safe_K=300.15, record=s.record))
        assert s.lab.furnace.target_setpoint_C == pytest.approx(27.0, abs=0.05)
    finally:
        s.RE.msg_hook = None
        s.lab.furnace.clear_faults()
    uid = docs.starts[-1]
    assert docs.stop_of(uid)["exit_status"] == "fail"
    assert s.lab.location == "storage"
    assert s.record.history()[n_history:] == []  # the sample never went in
    assert docs.errors == []


# --------------------------------------------------------------------------- campaign
def test_anneal_duration_for_length_is_sensible():
    temps = [373.15, 423.15, 473.15, 523.15]
    durations = [anneal_duration_for_length(t, 0.5e-3) for t in temps]
    assert all(math.isfinite(d) and d > 0 for d in durations)
    assert durations == sorted(durations, reverse=True)  # hotter is faster
    # the standard workflow's 3.8 h at 200 °C moves the profile by ~ a mm; 0.5 mm needs hours,
    # not days
    assert 0.1 * 3600 < durations[2] < 48 * 3600
    # t scales with L²
    assert anneal_duration_for_length(473.15, 1e-3) == pytest.approx(4 * durations[2], rel=1e-9)
    with pytest.raises(ValueError, match="target_length_m"):
        anneal_duration_for_length(473.15, 0.0)


@pytest.mark.slow
def test_arrhenius_campaign_with_explicit_durations(session, docs):
    s = session
    temps = [423.15, 473.15]
    durations = [900.0, 600.0]
    uids = s.RE(arrhenius_campaign(**s.workflow_devices(), temperatures_K=temps,
                                   durations_s=durations, exchange_s=3600.0,
                                   profile_positions_mm=None, record=s.record))
    names = _plan_names(docs, uids)
    cycle = ["transfer", "quench", "sims_image", "quench", "transfer"]
    assert names == ["isotope_exchange", *cycle, "anneal", *cycle, "anneal", *cycle]
    for uid in uids:
        start_doc = docs.start_of(uid)
        assert start_doc["campaign_temperatures_K"] == temps
        assert start_doc["campaign_durations_s"] == durations
        assert docs.stop_of(uid)["exit_status"] == "success"
    anneals = [docs.start_of(u) for u in uids if docs.start_of(u)["plan_name"] == "anneal"]
    assert [a["plan_args"]["temperature_K"] for a in anneals] == temps
    assert [a["plan_args"]["duration_s"] for a in anneals] == durations
    assert docs.errors == []


def test_arrhenius_campaign_rejects_bad_input(session):
    dv = session.workflow_devices()
    with pytest.raises(ValueError, match="durations_s"):
        list(arrhenius_campaign(**dv, temperatures_K=[423.15, 473.15], durations_s=[60.0]))
    with pytest.raises(ValueError, match="at least one"):
        list(arrhenius_campaign(**dv, temperatures_K=[]))


def test_arrhenius_campaign_chooses_durations(session):
    """Without durations the plan's metadata holds the predicted ones (capped)."""
    dv = session.workflow_devices()
    plan = arrhenius_campaign(**dv, temperatures_K=[373.15, 473.15], target_length_m=0.5e-3,
                              max_duration_s=7 * 86400.0)
    first = next(plan)  # the exchange run opens first, with the campaign metadata
    plan.close()
    assert first.command == "open_run"
    expected = [min(anneal_duration_for_length(t, 0.5e-3), 7 * 86400.0)
                for t in (373.15, 473.15)]
    assert first.kwargs["campaign_durations_s"] == pytest.approx(expected)
    assert expected[0] > expected[1]
    assert np.all(np.isfinite(expected))
