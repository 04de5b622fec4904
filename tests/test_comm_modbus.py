"""ModbusRtuTransport against the simulated Eurotherm: values, validation, faults, reconnect."""

from __future__ import annotations

import threading
import time

import pytest

from lltolab.comm import (
    MODBUS_EXCEPTION_CODES,
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    ModbusRtuTransport,
)
from lltolab.sim_devices import (
    EurothermSimulator,
    ModbusSlaveError,
    RtuSlave,
    register_loop,
    unregister_loop,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.simulator("eurotherm", time_scale=1.0)]

TIMEOUT_S = 0.2


@pytest.fixture(params=["loop_url", "url"])
def transport(request, sim):
    link = ModbusRtuTransport(
        getattr(sim, request.param), slave_address=1, timeout_s=TIMEOUT_S
    )
    yield link
    link.close()


def test_read_and_write_scaled_values(transport, sim):
    assert transport.read_value(1, 1) == pytest.approx(22.0)
    assert isinstance(transport.read_value(1, 1), float)
    transport.write_value(2, 187.3, 1)
    assert transport.read_value(2, 1) == pytest.approx(187.3)
    assert sim.target_setpoint_C == pytest.approx(187.3)
    transport.write_value(11, -12.5, 1, functioncode=16)
    assert transport.read_value(11, 1) == pytest.approx(-12.5)
    assert transport.read_word(11) == 0x10000 - 125  # raw two's complement word
    assert transport.read_word(122) == 0x2408
    assert transport.read_words(1, 2) == [220, 1873]
    assert transport.read_value(1, 1, functioncode=4) == pytest.approx(22.0)


def test_float_registers(transport, sim):
    transport.write_float(0x8000 + 2 * 2, 99.75)
    assert sim.target_setpoint_C == pytest.approx(99.75)
    assert transport.read_float(0x8000 + 2 * 2) == pytest.approx(99.75)


def test_write_words(transport, sim):
    transport.write_words(11, [100, 9000])
    assert (sim.sp_low_C, sim.sp_high_C) == (10.0, 900.0)
    transport.write_word(35, 50)
    assert transport.read_value(35, 1) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda t: t.read_value(-1, 1), "register address"),
        (lambda t: t.read_value(70000, 1), "register address"),
        (lambda t: t.read_value(1, 9), "decimals"),
        (lambda t: t.read_word(1, functioncode=6), "function code"),
        (lambda t: t.read_words(1, 126), "1..125"),
        (lambda t: t.write_value(2, 5000.0, 1), "5000.0 scaled by 10\\*\\*1 is 50000"),
        (lambda t: t.write_value(2, float("nan"), 1), "finite"),
        (lambda t: t.write_word(2, 70000), "0..65535"),
        (lambda t: t.write_value(2, -1.0, 0, signed=False), "unsigned range 0..65535"),
        (lambda t: t.write_float(2, float("inf")), "finite"),
    ],
)
def test_bad_arguments_fail_before_io(sim, call, match):
    sim.no_reply = True  # any I/O would time out instead of raising ValueError
    link = ModbusRtuTransport(sim.loop_url, slave_address=1, timeout_s=TIMEOUT_S)
    try:
        with pytest.raises(ValueError, match=match):
            call(link)
        assert sim.frames_handled == 0
    finally:
        link.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slave_address": 0},
        {"slave_address": 248},
        {"slave_address": 1, "timeout_s": 0},
        {"slave_address": 1, "parity": "X"},
        {"slave_address": 1, "baudrate": -9600},
    ],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        ModbusRtuTransport("simloop://x", **kwargs)


def test_exception_code_becomes_reported_error(transport):
    with pytest.raises(InstrumentReportedError, match="code 2 \\(illegal data address\\)") as e:
        transport.read_value(7, 1)
    assert e.value.code == 2
    with pytest.raises(InstrumentReportedError, match="code 3 \\(illegal data value\\)"):
        transport.write_value(2, 1500.0, 1)  # above the controller's 1200 degC limit
    # the link is still usable
    assert transport.read_value(1, 1) == pytest.approx(22.0)


def test_exception_code_table():
    assert MODBUS_EXCEPTION_CODES[1] == "illegal function"
    assert MODBUS_EXCEPTION_CODES[2] == "illegal data address"
    assert MODBUS_EXCEPTION_CODES[3] == "illegal data value"


def test_no_reply_is_a_timeout_and_does_not_hang(transport, sim):
    sim.no_reply = True
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="no reply"):
        transport.read_value(1, 1)
    assert time.monotonic() - t0 < TIMEOUT_S + 1.0
    sim.no_reply = False
    assert transport.read_value(1, 1) == pytest.approx(22.0)


def test_garbled_reply_is_a_protocol_error(transport, sim):
    sim.garble_replies = True
    with pytest.raises(InstrumentProtocolError, match="[Cc]hecksum"):
        transport.read_value(1, 1)
    sim.garble_replies = False
    assert transport.read_value(1, 1) == pytest.approx(22.0)


def test_dropped_link_surfaces_then_reconnects(transport, sim):
    transport.retry_reads = False
    assert transport.read_value(1, 1) == pytest.approx(22.0)
    sim.drop_connections()
    with pytest.raises(InstrumentDisconnected):
        transport.read_value(1, 1)
    assert not transport.is_open
    assert transport.read_value(1, 1) == pytest.approx(22.0)  # reopened
    assert transport.is_open


def test_dropped_link_is_retried_once_for_reads(transport, sim):
    assert transport.read_value(1, 1) == pytest.approx(22.0)
    sim.drop_connections()
    assert transport.read_value(1, 1) == pytest.approx(22.0)


def test_dropped_link_on_a_write_is_not_retried(sim):
    link = ModbusRtuTransport(sim.loop_url, slave_address=1, timeout_s=TIMEOUT_S)
    try:
        link.open()
        sim.drop_connections()
        with pytest.raises(InstrumentDisconnected):
            link.write_value(2, 100.0, 1)
        assert sim.target_setpoint_C == pytest.approx(22.0)
        link.write_value(2, 100.0, 1)
        assert sim.target_setpoint_C == pytest.approx(100.0)
    finally:
        link.close()


@pytest.mark.parametrize("carrier", ["loop_url", "url"])
def test_instrument_gone_is_disconnected(carrier):
    simulator = EurothermSimulator().start()
    url = getattr(simulator, carrier)
    link = ModbusRtuTransport(url, slave_address=1, timeout_s=TIMEOUT_S)
    try:
        assert link.read_value(1, 1) == pytest.approx(22.0)
        simulator.close()
        with pytest.raises(InstrumentDisconnected):
            link.read_value(1, 1)
        with pytest.raises(InstrumentDisconnected, match="cannot open"):
            link.read_value(1, 1)
    finally:
        link.close()
        simulator.close()


def test_missing_serial_port_is_disconnected():
    link = ModbusRtuTransport("/dev/lltolab-no-such-port", slave_address=1, timeout_s=0.1)
    with pytest.raises(InstrumentDisconnected, match="cannot open"):
        link.read_value(1, 1)
    link.close()


def test_closed_transport_raises(sim):
    link = ModbusRtuTransport(sim.loop_url, slave_address=1, timeout_s=TIMEOUT_S)
    link.close()
    with pytest.raises(InstrumentDisconnected, match="closed"):
        link.read_value(1, 1)


def test_wrong_slave_address_times_out(sim):
    with ModbusRtuTransport(sim.loop_url, slave_address=7, timeout_s=TIMEOUT_S) as link:
        with pytest.raises(InstrumentTimeout):
            link.read_value(1, 1)


def test_transports_on_one_link_share_it_and_serialise(sim):
    """Two transports naming one port share the link; concurrent use never mixes frames."""
    a = ModbusRtuTransport(sim.url, slave_address=1, timeout_s=1.0)
    b = ModbusRtuTransport(sim.url, slave_address=1, timeout_s=1.0)
    errors: list[BaseException] = []

    def hammer(link: ModbusRtuTransport, address: int, expected: float) -> None:
        try:
            for _ in range(30):
                assert link.read_value(address, 1) == pytest.approx(expected)
        except (AssertionError, InstrumentError) as exc:
            errors.append(exc)

    try:
        a.write_value(2, 150.0, 1)
        a.open()
        assert b.is_open  # same link
        threads = [
            threading.Thread(target=hammer, args=(a, 2, 150.0)),
            threading.Thread(target=hammer, args=(b, 122, 0x2408 / 10)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors
        a.close()
        assert b.read_value(2, 1) == pytest.approx(150.0)  # b keeps the link
    finally:
        a.close()
        b.close()


def test_reconnect_method(transport):
    transport.open()
    transport.reconnect()
    assert transport.is_open
    assert transport.read_value(1, 1) == pytest.approx(22.0)


def test_late_reply_never_answers_the_next_request(transport, sim):
    """A reply arriving after the timeout must not be taken for the next request's answer."""
    sim.reply_delay_s = TIMEOUT_S + 0.15
    with pytest.raises(InstrumentTimeout):
        transport.read_value(1, 1)  # PV, 22.0 degC, answered late
    sim.reply_delay_s = 0.0
    for _ in range(3):
        assert transport.read_value(12, 1) == pytest.approx(1200.0)  # SP high limit
        time.sleep(0.1)  # let the late PV reply land somewhere
    assert transport.read_value(1, 1) == pytest.approx(22.0)


def test_each_transport_keeps_its_own_timeout_on_a_shared_link(sim):
    slow = ModbusRtuTransport(sim.loop_url, slave_address=1, timeout_s=1.0)
    fast = ModbusRtuTransport(sim.loop_url, slave_address=1, timeout_s=0.1)
    try:
        slow.open()
        sim.no_reply = True
        t0 = time.monotonic()
        with pytest.raises(InstrumentTimeout):
            fast.read_value(1, 1)
        assert time.monotonic() - t0 < 0.6
    finally:
        slow.close()
        fast.close()


class _RefusingSlave(RtuSlave):
    """Answers every read with one Modbus exception code."""

    def __init__(self, code: int) -> None:
        super().__init__(1)
        self.code = code

    def read_registers(self, address: int, count: int, function: int) -> list[int]:
        raise ModbusSlaveError(self.code)


@pytest.mark.parametrize("code", [1, 2, 3, 4, 6, 7, 8, 10, 11, 12])
def test_every_exception_code_is_named(code):
    url = register_loop(f"refusing-{code}", _RefusingSlave(code))
    try:
        with ModbusRtuTransport(url, slave_address=1, timeout_s=0.05) as link:
            with pytest.raises(InstrumentReportedError) as caught:
                link.read_word(1)
        assert caught.value.code == code
        meaning = MODBUS_EXCEPTION_CODES.get(code, "unknown")
        assert f"Modbus exception code {code} ({meaning})" in str(caught.value)
    finally:
        unregister_loop(f"refusing-{code}")


def test_closing_a_socket_link_does_not_wait_for_pyserials_reconnect_pause(sim):
    """pyserial's socket:// close sleeps 0.3 s after closing the socket; that pause runs off
    the caller's thread, and the port can be opened again at once."""
    assert sim.url.startswith("socket://")
    link = ModbusRtuTransport(sim.url, slave_address=1, timeout_s=1.0)
    assert link.read_value(1, 1) == pytest.approx(22.0)
    t = time.monotonic()
    link.close()
    assert time.monotonic() - t < 0.25
    assert not link.is_open
    with ModbusRtuTransport(sim.url, slave_address=1, timeout_s=1.0) as again:
        assert again.read_value(1, 1) == pytest.approx(22.0)
