"""LabClock, SampleHandler and ExchangeCell: operator steps, lab waits, bluesky conformance."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.protocols import Configurable, Movable, Readable, Stoppable
from ophyd.status import StatusTimeoutError

from lltolab.devices import (
    CallbackConfirmation,
    ExchangeCell,
    FileConfirmation,
    LabClock,
    OperatorCancelled,
    OperatorRefused,
    OperatorRequest,
    OperatorTimeout,
    PromptConfirmation,
    SampleHandler,
    WallClock,
)
from lltolab.diffusion import Microstructure, VirtualSample
from lltolab.sim_devices import VirtualClock, VirtualLab


def _devices(confirmation):
    return [
        LabClock(name="clock", source=VirtualClock(10.0)),
        SampleHandler(name="handler", confirmation=confirmation),
        ExchangeCell(name="cell", confirmation=confirmation),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_conformance(index: int) -> None:
    dev = _devices(CallbackConfirmation(lambda r: None))[index]
    for proto in (Readable, Movable, Stoppable, Configurable):
        assert isinstance(dev, proto)
    assert set(dev.describe()) == set(dev.read())
    assert set(dev.describe_configuration()) == set(dev.read_configuration())
    names = list(dev.describe()) + list(dev.describe_configuration())
    assert len(names) == len(set(names))
    assert all(n.startswith(dev.name) for n in names)


def test_lab_clock_jumps_on_a_virtual_clock_and_is_validated() -> None:
    clock = VirtualClock(1.0)
    dev = LabClock(name="clock", source=clock)
    t0 = dev.time.get()
    dev.set(59 * 3600).wait(timeout=5)
    assert dev.time.get() - t0 == pytest.approx(59 * 3600, abs=1)
    for bad in (-1.0, float("nan"), 61 * 86400):
        with pytest.raises(ValueError, match="duration_s"):
            dev.set(bad)


def test_wall_clock_wait_is_stoppable() -> None:
    dev = LabClock(name="clock", source=WallClock())
    status = dev.set(30.0)
    time.sleep(0.1)
    dev.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        status.wait(timeout=2)


def test_sample_handler_and_cell_in_the_virtual_lab_with_the_run_engine() -> None:
    micro = Microstructure.polycrystal(40e-6, 20e-6, 1e-6, seed=1, origin_m=(-5e-6, 0))
    with VirtualLab(sample=VirtualSample(micro, line_extent_m=(-0.1e-3, 0.3e-3)),
                    time_scale=100.0) as lab:
        handler = SampleHandler(name="handler", confirmation=lab.operator)
        cell = ExchangeCell(name="cell", confirmation=lab.operator)
        clock = LabClock(name="clock", source=lab.clock)
        docs = []
        RE = RunEngine({})
        RE.subscribe(lambda name, doc: docs.append((name, doc)))

        def plan():
            yield from bps.open_run()
            yield from bps.mv(cell, "dip")
            yield from bps.trigger_and_read([cell])
            yield from bps.mv(clock, 3600.0)
            yield from bps.mv(cell, "lift", handler, "sims_stage")
            yield from bps.trigger_and_read([cell, handler], name="after_transfer")
            yield from bps.close_run()

        RE(plan())
        assert lab.location == "sims_stage"
        events = [d for n, d in docs if n == "event"]
        assert events[0]["data"]["cell_immersed"] == 1
        assert events[1]["data"]["cell_immersed"] == 0
        assert events[1]["data"]["handler_location"] == "sims_stage"
        assert events[1]["data"]["cell_lift_time"] >= events[0]["data"]["cell_dip_time"]
        segs = lab.sample.history(lab.flush())
        assert any(s.immersed and s.duration_s >= 3600 for s in segs)
        assert [a for _, a, _ in lab.operator.log] == ["dip", "lift", "move"]


def test_bad_location_fails_before_any_request() -> None:
    asked = []
    handler = SampleHandler(name="h", confirmation=CallbackConfirmation(asked.append))
    with pytest.raises(ValueError, match="glovebox"):
        handler.set("glovebox")
    with pytest.raises(ValueError, match="action must be one of"):
        ExchangeCell(name="c", confirmation=CallbackConfirmation(asked.append)).set("soak")
    assert asked == []


def test_prompt_confirmation_yes_no_and_timeout() -> None:
    answers = iter(["", "n"])
    handler = SampleHandler(name="h", confirmation=PromptConfirmation(
        input_fn=lambda prompt: next(answers), print_fn=lambda s: None))
    handler.set("furnace").wait(timeout=5)
    assert handler.location.get() == "furnace"
    with pytest.raises(OperatorRefused):
        handler.set("storage").wait(timeout=5)
    assert handler.location.get() == "furnace"

    never = threading.Event()
    slow = SampleHandler(name="s", timeout_s=0.3, confirmation=PromptConfirmation(
        input_fn=lambda prompt: never.wait(10) and "", print_fn=lambda s: None))
    with pytest.raises(OperatorTimeout):
        slow.set("bath").wait(timeout=5)


def test_file_confirmation_answered_by_another_process(tmp_path) -> None:
    folder = tmp_path / "operator"
    cell = ExchangeCell(name="cell", confirmation=FileConfirmation(folder, poll_s=0.05),
                        timeout_s=20)
    status = cell.set("dip")
    script = textwrap.dedent(f"""
        import time
        from lltolab.devices import FileConfirmation
        conf = FileConfirmation({str(folder)!r})
        for _ in range(200):
            pending = conf.pending()
            if pending:
                assert pending[0].action == "dip", pending
                conf.answer(pending[0].request_id, confirmed=True, note="done by test")
                break
            time.sleep(0.05)
        else:
            raise SystemExit("no pending request seen")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    status.wait(timeout=10)
    assert cell.immersed.get() == 1
    assert FileConfirmation(folder).pending() == []


def test_pending_step_is_cancelled_by_stop(tmp_path) -> None:
    cell = ExchangeCell(name="cell", confirmation=FileConfirmation(tmp_path, poll_s=0.05),
                        timeout_s=20)
    status = cell.set("dip")
    time.sleep(0.1)
    cell.stop()
    with pytest.raises((OperatorCancelled, StatusTimeoutError)):
        status.wait(timeout=5)
    assert cell.immersed.get() == 0


def _wait_pending(conf: FileConfirmation, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = conf.pending()
        if pending:
            return pending
        time.sleep(0.05)
    raise AssertionError("no pending operator step appeared")


def _lltolab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lltolab.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_lltolab_confirm_lists_and_answers_from_another_process(tmp_path) -> None:
    """A pending step is visible to ``lltolab confirm --list`` and answered by its id."""
    folder = tmp_path / "operator"
    conf = FileConfirmation(folder, poll_s=0.05)
    handler = SampleHandler(name="handler", confirmation=conf, timeout_s=60)
    status = handler.set("furnace")
    (request,) = _wait_pending(conf)
    listed = _lltolab("confirm", "--list", "--folder", str(folder), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["request_id"] for r in rows] == [request.request_id]
    assert rows[0]["params"]["location"] == "furnace"
    text = _lltolab("confirm", "--list", "--folder", str(folder))
    assert request.request_id in text.stdout and "furnace" in text.stdout
    unknown = _lltolab("confirm", "abc123", "--yes", "--folder", str(folder))
    assert unknown.returncode == 2 and "no pending operator step" in unknown.stderr
    done = _lltolab("confirm", request.request_id, "--yes", "--folder", str(folder))
    assert done.returncode == 0, done.stderr
    status.wait(timeout=10)
    assert handler.location.get() == "furnace"
    # a refusal fails the step with OperatorRefused
    status = handler.set("storage")
    (request,) = _wait_pending(conf)
    refused = _lltolab("confirm", request.request_id, "--no", "--note", "hot",
                       "--folder", str(folder))
    assert refused.returncode == 0, refused.stderr
    with pytest.raises(OperatorRefused, match="hot"):
        status.wait(timeout=10)
    assert handler.location.get() == "furnace"


def test_unanswered_file_step_times_out_cleanly(tmp_path) -> None:
    conf = FileConfirmation(tmp_path, poll_s=0.05)
    cell = ExchangeCell(name="cell", confirmation=conf, timeout_s=0.5)
    status = cell.set("dip")
    with pytest.raises(OperatorTimeout, match="not confirmed within"):
        status.wait(timeout=10)
    assert conf.pending() == []  # the request is withdrawn
    assert cell.immersed.get() == 0


@pytest.mark.parametrize("bad", ["../evil", "../../answers/x", "/tmp/x", "a/b", "..", "",
                                 "x" * 65, "a b", "a\x00b", "-rf", ".hidden", "ä"])
def test_crafted_request_ids_never_write_outside_the_answers_folder(tmp_path, bad) -> None:
    """Regression: an id like ``../x`` used to write ``folder/x.json`` (outside answers/)."""
    folder = tmp_path / "operator"
    conf = FileConfirmation(folder)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="request id"):
        conf.answer(bad, confirmed=True)
    with pytest.raises(ValueError, match="request id"):
        OperatorRequest("move", "m", request_id=bad)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    if bad in ("../evil", "/tmp/x"):  # the command line refuses it in one line, exit 2
        out = _lltolab("confirm", bad, "--yes", "--folder", str(folder))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert sorted(p for p in tmp_path.rglob("*")) == before


def test_a_crafted_pending_file_is_not_listed(tmp_path) -> None:
    conf = FileConfirmation(tmp_path)
    (tmp_path / "pending").mkdir()
    (tmp_path / "pending" / "ok1.json").write_text(json.dumps(
        {"action": "move", "message": "m", "params": {}, "request_id": "../../evil",
         "created": 0.0}))
    (tmp_path / "pending" / "ok2.json").write_text(json.dumps(
        {"action": "move", "message": "m", "params": {}, "request_id": "other",
         "created": 0.0}))
    assert conf.pending() == []


def test_default_confirmation_uses_answer_files_without_a_terminal(tmp_path) -> None:
    script = textwrap.dedent(f"""
        from lltolab.devices import FileConfirmation, default_confirmation
        conf = default_confirmation({str(tmp_path)!r})
        assert isinstance(conf, FileConfirmation), conf
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                   stdin=subprocess.DEVNULL, capture_output=True)
