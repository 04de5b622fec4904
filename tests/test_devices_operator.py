"""LabClock, SampleHandler and ExchangeCell: operator steps, lab waits, bluesky conformance."""

from __future__ import annotations

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
