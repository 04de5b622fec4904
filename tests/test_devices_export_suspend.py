"""Repeated LN₂ loss during one SIMS image run on the virtual lab: one good image in the end.

The session's stage-warm suspender (a watchdog on the real CryoStage over its VISA link to the
simulated Lake Shore) suspends the RunEngine each time the stage warms above
``STAGE_IMAGING_MAX_K``; the RunEngine then pauses the SurfaceLabExport, which ends the
acquisition in flight, and on resume repeats the trigger from the plan's checkpoint.
"""

from __future__ import annotations

import threading
import time

import pytest

from lltolab.catalog import close_catalogs
from lltolab.plans import quench, sims_image
from lltolab.session import STAGE_IMAGING_MAX_K, start

pytestmark = pytest.mark.timeout(300)

QUENCH_K = 163.15


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    # free-running lab clock: the helper threads below inject and clear the fault in wall time
    s = start(sim=True, catalog=tmp_path_factory.mktemp("suspend-catalog"),
              sample_id="LLTO-suspend", callbacks=False, time_scale=600.0)
    try:
        yield s
    finally:
        s.close()
        close_catalogs()


def _image_with_ln2_losses(s, n_losses: int) -> tuple[str, list, list[str], list[str]]:
    """Run sims_image; LN₂ runs out at the start of each of the first ``n_losses``
    acquisitions (held until the warm stage trips the alarm) and comes back 0.3 s after each
    suspension. Returns (uid, documents, acquisition kinds requested, RunEngine states)."""
    dv = s.devices
    s.RE(quench(dv["stage"], dv["clock"], QUENCH_K))
    docs: list[tuple[str, dict]] = []
    states: list[str] = []
    suspensions = threading.Semaphore(0)
    done = threading.Event()

    def state_hook(new: str, old: str) -> None:
        states.append(new)
        if new == "suspending":
            suspensions.release()

    def restore_ln2() -> None:
        for _ in range(n_losses):
            while not suspensions.acquire(timeout=0.1):
                if done.is_set():
                    return
            time.sleep(0.3)
            s.lab.stage.clear_fault("ln2_empty")

    original_request = dv["sims"].request
    calls: list[str] = []

    def request(kind, positions_mm):
        calls.append(kind)
        if len(calls) <= n_losses:  # LN₂ runs out during this acquisition
            s.lab.stage.inject_fault("ln2_empty")
            t_end = time.monotonic() + 60
            while s.stage_alarm.get() != 1 and time.monotonic() < t_end:
                time.sleep(0.02)
        return original_request(kind, positions_mm)

    helper = threading.Thread(target=restore_ln2, daemon=True)
    helper.start()
    token = s.RE.subscribe(lambda name, doc: docs.append((name, doc)))
    s.RE.state_hook = state_hook
    dv["sims"].request = request
    try:
        (uid,) = s.RE(sims_image(dv["sims"], dv["stage"], dv["clock"], record=s.record))
    finally:
        done.set()
        dv["sims"].request = original_request
        s.RE.state_hook = None
        s.RE.unsubscribe(token)
        s.lab.stage.clear_fault()
        helper.join(timeout=5)
    return uid, docs, calls, states


@pytest.mark.parametrize("n_losses", [pytest.param(2, marks=pytest.mark.slow),
                                      pytest.param(3, marks=pytest.mark.slow)])
def test_repeated_ln2_loss_ends_in_one_good_image(session, n_losses):
    s = session
    n_before = s.devices["sims"].get_index()
    uid, docs, calls, states = _image_with_ln2_losses(s, n_losses)
    assert states.count("suspending") == n_losses
    assert states[-1] == "idle"
    assert len(calls) == n_losses + 1  # each interruption repeated the acquisition once
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success", stop.get("reason")
    assert [n for n, _ in docs].count("start") == 1
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 1
    # the image published is the last (cold) acquisition, read once
    assert events[0]["data"]["sims_stage_temperature_K"] < STAGE_IMAGING_MAX_K
    assert events[0]["data"]["stage"] < STAGE_IMAGING_MAX_K
    assert events[0]["data"]["sims_source_file"] == str(s.lab.sims.last_export)
    assert s.devices["sims"].get_index() == n_before + 1
    resources = [d for n, d in docs if n == "stream_resource"]
    datums = [d for n, d in docs if n == "stream_datum"]
    assert len(resources) == 3 and len(datums) == 3
    assert s.stage_alarm.get() == 0
