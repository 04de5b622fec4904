"""Property-based fuzzing of both instrument links against the real device classes.

A :class:`~lltolab.devices.CryoStage` talks pyvisa-py to the Lake Shore simulator and a
:class:`~lltolab.devices.Furnace` talks Modbus RTU (pyserial ``socket://``) to the Eurotherm
simulator, both on a frozen lab clock without reading noise, so every correct answer is known.
Hypothesis draws sequences of (reply fault, device operation): framing faults (duplicated,
extra, partial, late, missing replies, dropped connections) and byte-level mutations of the
reply. The properties:

* every operation either returns the correct value or raises the project's
  :class:`~lltolab.comm.InstrumentError` (a mutated reply that is itself a well-formed,
  physically possible answer may be returned: nothing on a line protocol without a checksum
  can tell it apart, so then only physical possibility is required);
* no value returned is physically impossible (non-finite, at or below 0 K, out of range);
* nothing but a project exception escapes;
* the next, clean queries return their own correct answers.

The default run tries a few hundred cases (seconds); ``pytest -m slow`` tries thousands.
Outcome counts are printed at the end of the module (``pytest -s``) and written as JSON to
the file named by ``LLTOLAB_FUZZ_REPORT`` if set.
"""

from __future__ import annotations

import collections
import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lltolab.comm import InstrumentError
from lltolab.devices import CryoStage, Furnace
from lltolab.sim_devices import (
    REPLY_FAULTS,
    RTU_REPLY_FAULTS,
    EurothermSimulator,
    LakeShoreSimulator,
    VirtualClock,
    crc16,
)

pytestmark = pytest.mark.timeout(900)

VISA_TIMEOUT_S = 0.25
MODBUS_TIMEOUT_S = 0.15
STAGE_K = 295.0
C = 273.15
DEFAULT_EXAMPLES = 100
SLOW_EXAMPLES = 600

OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _settings(examples: int):  # noqa: ANN202 - hypothesis settings decorator
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture],
                    database=None)


def frozen_clock() -> VirtualClock:
    return VirtualClock(wall=lambda: 0.0)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    summary = {name: dict(counter) for name, counter in OUTCOMES.items()}
    print("\nfuzz outcomes:", json.dumps(summary, indent=1, sort_keys=True))
    path = os.environ.get("LLTOLAB_FUZZ_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump(summary, fh, indent=1, sort_keys=True)


# ======================================================================== reply mutations
class Sent:
    """Remembers the bytes a mutation sent, to judge a value read from them."""

    def __init__(self) -> None:
        self.data: bytes | None = None


def _mutation(kind: str, arg: bytes, pos: int, sent: Sent, terminated: bool):  # noqa: ANN202
    def fault(reply: bytes) -> bytes:
        if kind == "replace":
            out = arg
        elif kind == "insert":
            at = pos % (len(reply) + 1)
            out = reply[:at] + arg + reply[at:]
        elif kind == "delete":
            at = pos % max(len(reply), 1)
            out = reply[:at] + reply[at + 1 + len(arg) % 3:]
        else:  # "flip"
            at = pos % max(len(reply), 1)
            out = reply[:at] + bytes([reply[at] ^ (arg[0] if arg else 0x55) or 1]) + reply[at + 1:]
        if kind == "replace" and terminated:
            out += b"\r\n"
        sent.data = out
        return out
    return fault


NASTY_LINES = [b"1_77.35", b"inf", b"nan", b"-inf;0", b"+0.000;0", b"-12.5;0", b"9" * 5000,
               b"+295.000;0;0;0", b"\x00\x00", b"+295.000\x00;0", b"\xff\xfe", b" ", b"",
               b"+1e308;0", b"0x10;0", b"+295.000;-1", b"+295.000;256", b"NaN;0", b"1,2,3"]

visa_fault = st.one_of(
    st.sampled_from(sorted(REPLY_FAULTS)).map(lambda f: ("named", f)),
    st.tuples(st.sampled_from(["replace", "insert", "delete", "flip"]),
              st.one_of(st.binary(max_size=24), st.sampled_from(NASTY_LINES)),
              st.integers(0, 40), st.booleans()).map(lambda t: ("mutate", t)),
    st.just(("none", None)),
)
visa_op = st.sampled_from(["position", "setpoint", "heater_output", "heater_status",
                           "input_status", "ramp_rate", "identity", "temperature_C",
                           "put_setpoint"])


@pytest.fixture(scope="module")
def lakeshore():
    with LakeShoreSimulator(clock=frozen_clock(), initial_K=STAGE_K, noise_K=0.0) as sim:
        stage = CryoStage(sim.resource, name="stage", timeout_s=VISA_TIMEOUT_S)
        stage.setpoint.put(150.0)
        state = {"setpoint": 150.0}
        try:
            yield sim, stage, state
        finally:
            stage.close()


def _visa_expected(op: str, state: dict) -> object:
    return {"position": STAGE_K, "setpoint": state["setpoint"], "heater_output": 0.0,
            "heater_status": 0, "input_status": 0, "ramp_rate": 0.0,
            "temperature_C": STAGE_K - C}.get(op)


def _visa_physical(op: str, value: object) -> bool:
    if op == "identity":
        return isinstance(value, str) and value.isprintable()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    low, high = {"position": (0.0, 2000.0), "setpoint": (0.0, 2000.0),
                 "heater_output": (0.0, 100.0), "heater_status": (0, 255),
                 "input_status": (0, 255), "ramp_rate": (0.0, 100.0),
                 "temperature_C": (-C, 2000.0 - C)}[op]
    return (low < value <= high) if op in ("position", "temperature_C") else low <= value <= high


def _run_visa_case(lakeshore, steps) -> None:
    sim, stage, state = lakeshore
    counter = OUTCOMES["lakeshore"]
    for (fault_kind, fault), op in steps:
        counter["cases"] += 1
        sent = Sent()
        if fault_kind == "named":
            sim.queue_reply_fault(fault, delay_s=2 * VISA_TIMEOUT_S)
            label = fault
        elif fault_kind == "mutate":
            kind, arg, pos, terminated = fault
            sim.queue_reply_fault(_mutation(kind, arg, pos, sent, terminated))
            label = f"mutate-{kind}"
        else:
            label = "clean"
        new_setpoint = 100.0 + (counter["cases"] % 50)
        try:
            if op == "put_setpoint":
                stage.setpoint.put(new_setpoint)
                value = None
            elif op == "position":
                value = stage.position
            else:
                value = getattr(stage, op).get()
        except InstrumentError:
            counter[f"{label}: project exception"] += 1
            value = Ellipsis
        # anything else escaping is a failure of the property (pytest reports it)
        sim.clear_fault()
        if op == "put_setpoint":
            # the write may or may not have taken effect if its *ESR? reply was spoilt
            now = stage.setpoint.get()
            assert now in (pytest.approx(state["setpoint"]), pytest.approx(new_setpoint))
            state["setpoint"] = now
            if value is None:
                assert now == pytest.approx(new_setpoint)
                counter[f"{label}: written"] += 1
        elif value is not Ellipsis:
            assert _visa_physical(op, value), (op, value, label)
            expected = _visa_expected(op, state)
            if op == "identity":
                correct = value.startswith("LSCI,MODEL336")
            else:
                correct = value == pytest.approx(expected, abs=1e-9)
            if not correct:
                # only a spoilt line that is itself a well-formed answer may get through
                assert sent.data is not None, (op, value, label)
                counter[f"{label}: well-formed spoilt reply returned"] += 1
            else:
                counter[f"{label}: correct value"] += 1
        # the next, clean queries get their own answers
        assert stage.position == STAGE_K
        assert stage.setpoint.get() == pytest.approx(state["setpoint"])
        assert stage.heater_status.get() == 0


# ======================================================================== Modbus
rtu_fault = st.one_of(
    st.sampled_from(sorted(RTU_REPLY_FAULTS)).map(lambda f: ("named", f)),
    st.tuples(st.sampled_from(["replace", "insert", "delete", "flip"]),
              st.binary(max_size=12), st.integers(0, 20),
              st.just(False)).map(lambda t: ("mutate", t)),
    st.just(("none", None)),
)
rtu_op = st.sampled_from(["position", "setpoint", "working_setpoint", "output", "fault",
                          "status", "ramp_rate", "put_setpoint", "put_ramp"])


def _eurotherm(carrier: str):  # noqa: ANN202 - a fixture body
    sim = EurothermSimulator(frozen_clock()).start()
    furnace = Furnace(getattr(sim, carrier), name="furnace", timeout_s=MODBUS_TIMEOUT_S)
    furnace.refresh_limits()
    state = {"setpoint": 22.0 + C, "ramp": 0.0}
    try:
        yield sim, furnace, state
    finally:
        furnace.close()
        sim.close()


@pytest.fixture(scope="module")
def eurotherm():
    """Over the in-process serial port ``simloop://`` (pyserial, no socket close delay)."""
    yield from _eurotherm("loop_url")


@pytest.fixture(scope="module")
def eurotherm_tcp():
    """Over an RTU-over-TCP bridge, ``socket://127.0.0.1:PORT``."""
    yield from _eurotherm("url")


def _valid_frame(data: bytes | None) -> bool:
    """True if ``data`` happens to be one well-formed frame (a CRC collision of a mutation)."""
    return bool(data) and len(data) >= 4 and crc16(data[:-2]) == int.from_bytes(data[-2:],
                                                                                "little")


def _run_rtu_case(eurotherm, steps) -> None:
    sim, furnace, state = eurotherm
    counter = OUTCOMES["eurotherm"]
    for (fault_kind, fault), op in steps:
        counter["cases"] += 1
        sent = Sent()
        if fault_kind == "named":
            sim.queue_reply_fault(fault, delay_s=2 * MODBUS_TIMEOUT_S)
            label = fault
        elif fault_kind == "mutate":
            kind, arg, pos, terminated = fault
            sim.queue_reply_fault(_mutation(kind, arg, pos, sent, terminated))
            label = f"mutate-{kind}"
        else:
            label = "clean"
        new_setpoint = 300.15 + (counter["cases"] % 40)
        new_ramp = float(counter["cases"] % 7)
        expected = {"position": 22.0 + C, "setpoint": state["setpoint"],
                    "working_setpoint": sim.model.working_setpoint_K, "output": None,
                    "fault": "",
                    "status": 0, "ramp_rate": state["ramp"]}
        try:
            value: object
            if op == "put_setpoint":
                furnace.setpoint.put(new_setpoint)
                value = None
            elif op == "put_ramp":
                furnace.ramp_rate.put(new_ramp)
                value = None
            elif op == "position":
                value = furnace.position
            else:
                value = getattr(furnace, op).get()
        except InstrumentError:
            counter[f"{label}: project exception"] += 1
            value = Ellipsis
        sim.clear_reply_faults()
        if op == "put_setpoint":
            now = furnace.setpoint.get()
            assert now in (pytest.approx(state["setpoint"]), pytest.approx(new_setpoint))
            state["setpoint"] = now
            if value is None:
                assert now == pytest.approx(new_setpoint)
                counter[f"{label}: written"] += 1
        elif op == "put_ramp":
            now = furnace.ramp_rate.get()
            assert now in (pytest.approx(state["ramp"]), pytest.approx(new_ramp))
            state["ramp"] = now
            if value is None:
                assert now == pytest.approx(new_ramp)
                counter[f"{label}: written"] += 1
        elif value is not Ellipsis:
            if op in ("position", "setpoint", "working_setpoint"):
                assert math.isfinite(value) and value > 0, (op, value)
            want = expected[op]
            if op == "output":
                correct = -100.0 <= value <= 100.0 and value == pytest.approx(
                    sim.model.output_percent, abs=0.051)
            elif isinstance(want, float):
                correct = value == pytest.approx(want, abs=0.051)
            else:
                correct = value == want
            if not correct:
                assert _valid_frame(sent.data), (op, value, label)
                counter[f"{label}: well-formed spoilt reply returned"] += 1
            else:
                counter[f"{label}: correct value"] += 1
        # the next, clean transactions get their own answers
        assert furnace.position == pytest.approx(22.0 + C, abs=0.051)
        assert furnace.setpoint.get() == pytest.approx(state["setpoint"], abs=0.051)
        assert furnace.status.get() == 0


# ======================================================================== the tests
visa_steps = st.lists(st.tuples(visa_fault, visa_op), min_size=1, max_size=3)
rtu_steps = st.lists(st.tuples(rtu_fault, rtu_op), min_size=1, max_size=3)


@_settings(DEFAULT_EXAMPLES)
@given(steps=visa_steps)
def test_fuzz_lakeshore_link(lakeshore, steps):
    _run_visa_case(lakeshore, steps)


@_settings(DEFAULT_EXAMPLES)
@given(steps=rtu_steps)
def test_fuzz_eurotherm_link(eurotherm, steps):
    _run_rtu_case(eurotherm, steps)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES)
@given(steps=visa_steps)
def test_fuzz_lakeshore_link_long(lakeshore, steps):
    _run_visa_case(lakeshore, steps)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES)
@given(steps=rtu_steps)
def test_fuzz_eurotherm_link_long(eurotherm, steps):
    _run_rtu_case(eurotherm, steps)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES // 3)
@given(steps=rtu_steps)
def test_fuzz_eurotherm_link_over_tcp(eurotherm_tcp, steps):
    _run_rtu_case(eurotherm_tcp, steps)
