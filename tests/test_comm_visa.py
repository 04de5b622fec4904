"""VisaLineTransport over real pyvisa-py against loopback servers; reply parsing helpers."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from lltolab.comm import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
    VisaLineTransport,
    parse_fields,
    parse_float,
    parse_floats,
    parse_int,
)
from lltolab.testing import free_port

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.simulator("lakeshore", time_scale=1.0, seed=1)]

TIMEOUT_S = 0.3


@pytest.fixture
def link(sim):
    t = VisaLineTransport(sim.resource, timeout_s=TIMEOUT_S)
    yield t
    t.close()


class BytesServer:
    """A one-connection loopback server answering every line with fixed raw bytes."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(5)
        with conn:
            try:
                while conn.recv(1024):
                    conn.sendall(self.reply)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(6)


# ---------------------------------------------------------------------- normal use
def test_query_and_write(sim, link):
    assert link.query("*IDN?").startswith("LSCI,MODEL336")
    link.write("SETP 1,123.25")
    assert parse_float(link.query("SETP? 1")) == 123.25
    assert link.is_open
    assert "open" in repr(link)
    link.close()
    assert not link.is_open
    link.close()  # twice is fine


def test_context_manager_and_lazy_open(sim):
    with VisaLineTransport(sim.resource, timeout_s=TIMEOUT_S) as t:
        assert not t.is_open
        assert t.query("RANGE? 1") == "0"
    assert not t.is_open


def test_one_lock_per_link_keeps_replies_paired(sim, link):
    errors: list[str] = []

    def worker(command: str, check) -> None:
        for _ in range(40):
            reply = link.query(command)
            if not check(reply):
                errors.append(f"{command} -> {reply}")

    threads = [
        threading.Thread(target=worker, args=("*IDN?", lambda r: r.startswith("LSCI"))),
        threading.Thread(target=worker, args=("RANGE? 1", lambda r: r == "0")),
        threading.Thread(target=worker, args=("RAMP? 1", lambda r: r == "0,+0.0")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


# ---------------------------------------------------------------------- faults
def test_no_reply_is_a_timeout_quickly(sim, link):
    link.query("*IDN?")
    sim.inject_fault("no_reply")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="no reply"):
        link.query("KRDG? A", idempotent=False)
    assert time.monotonic() - t0 < 3 * TIMEOUT_S + 0.5
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        link.query("KRDG? A")  # idempotent: one retry, then give up
    assert time.monotonic() - t0 < 5 * TIMEOUT_S + 1.0
    sim.clear_fault()
    assert link.query("*IDN?").startswith("LSCI")


def test_late_reply_does_not_desynchronise(sim, link):
    sim.inject_fault("late_reply", delay_s=0.6)
    with pytest.raises(InstrumentTimeout):
        link.query("RANGE? 1", idempotent=False)
    sim.clear_fault()
    time.sleep(0.7)  # the stale "0" would now be waiting on the old session
    assert link.query("*IDN?").startswith("LSCI")
    assert link.reconnects >= 1


def test_drop_between_exchanges_reconnects_transparently(sim, link):
    assert link.query("*IDN?").startswith("LSCI")
    time.sleep(0.05)
    assert sim._server.drop_connections() == 1
    time.sleep(0.05)
    link.write("SETP 1,150")  # nothing was sent on the dead link: safe to reopen and send
    assert link.query("SETP? 1") == "+150.000"
    assert link.reconnects == 1


def test_drop_during_exchange_is_disconnected_and_idempotent_retry_recovers(sim, link):
    link.query("*IDN?")
    sim.inject_fault("late_reply", delay_s=5.0)
    threading.Timer(0.1, sim._server.drop_connections).start()
    with pytest.raises(InstrumentDisconnected, match="dropped"):
        link.query("RANGE? 1", idempotent=False)
    sim.clear_fault()
    # an idempotent query hit by a drop is retried once on a fresh link
    sim.inject_fault("late_reply", delay_s=5.0)
    timer = threading.Timer(0.1, sim._server.drop_connections)
    timer.start()

    def heal():
        time.sleep(0.15)
        sim.clear_fault()

    threading.Thread(target=heal, daemon=True).start()
    assert link.query("RANGE? 1") == "0"
    timer.join()


def test_rejected_reconnect_is_disconnected(sim, link):
    link.query("*IDN?")
    time.sleep(0.05)
    sim.inject_fault("reject_connections")
    sim.inject_fault("drop")
    time.sleep(0.05)
    with pytest.raises(InstrumentError) as info:
        link.query("*IDN?")
    assert isinstance(info.value, InstrumentDisconnected | InstrumentTimeout)
    sim.clear_fault()
    assert link.query("*IDN?").startswith("LSCI")


def test_nothing_listening_is_disconnected():
    t = VisaLineTransport(f"TCPIP::127.0.0.1::{free_port()}::SOCKET", timeout_s=TIMEOUT_S)
    with pytest.raises(InstrumentDisconnected, match="cannot"):
        t.query("*IDN?")
    with pytest.raises(InstrumentDisconnected):
        t.write("*CLS")
    t.close()


def test_bad_resource_is_disconnected():
    t = VisaLineTransport("NOSUCH::thing", timeout_s=TIMEOUT_S)
    with pytest.raises(InstrumentDisconnected):
        t.open()
    t.close()


def test_garbled_reply_is_a_protocol_error(sim, link):
    sim.inject_fault("garbled")
    with pytest.raises(InstrumentProtocolError, match="KRDG"):
        parse_float(link.query("KRDG? A"), what="KRDG?")


def test_undecodable_bytes_are_a_protocol_error():
    server = BytesServer(b"\xff\xfe\x80\r\n")
    t = VisaLineTransport(f"TCPIP::127.0.0.1::{server.port}::SOCKET", timeout_s=TIMEOUT_S)
    try:
        with pytest.raises(InstrumentProtocolError, match="undecodable"):
            t.query("*IDN?")
    finally:
        t.close()
        server.close()


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1"])
def test_bad_timeout(bad):
    with pytest.raises(ValueError, match="timeout_s"):
        VisaLineTransport("TCPIP::127.0.0.1::1::SOCKET", timeout_s=bad)


def test_bad_resource_and_commands(link):
    with pytest.raises(ValueError, match="resource"):
        VisaLineTransport("")
    with pytest.raises(ValueError, match="single line"):
        link.write("SETP 1,2\nRANGE 1,3")
    with pytest.raises(ValueError, match="non-empty"):
        link.query("")


# ---------------------------------------------------------------------- parsing helpers
def test_parse_helpers():
    assert parse_float("+077.350\r\n") == 77.35
    assert parse_int("032") == 32
    assert parse_int("-3") == -3
    assert parse_fields("1, +10.0", 2) == ["1", "+10.0"]
    assert list(parse_floats("+1.0,+2.5,+0.000,-4", 4)) == [1.0, 2.5, 0.0, -4.0]
    for bad in ("", "abc", "nan", "inf", "1.2.3", "?O!Z*"):
        with pytest.raises(InstrumentProtocolError):
            parse_float(bad)
    for bad in ("", "1.5", "x", "+"):
        with pytest.raises(InstrumentProtocolError):
            parse_int(bad)
    with pytest.raises(InstrumentProtocolError, match="expected 2 fields"):
        parse_fields("1,2,3", 2)


# ---------------------------------------------------------------------- MessageSignal
def test_message_signals_over_the_transport(sim, link):
    from ophyd import Component as Cpt
    from ophyd import Device

    from lltolab.comm import MessageSignal, MessageSignalRO

    kelvin = MessageSignalRO(query="KRDG? A", parser=parse_float, transport=link, name="t",
                             units="K", precision=3)
    seen: list[float] = []
    kelvin.subscribe(lambda value, **kw: seen.append(value), run=False)
    value = kelvin.get()
    assert value == pytest.approx(sim.temperature_K, abs=0.1)
    assert seen == [value]
    desc = kelvin.describe()["t"]
    assert desc["units"] == "K" and desc["precision"] == 3 and desc["source"] == "message:KRDG? A"

    class Box(Device):
        rng = Cpt(MessageSignal, query="RANGE? 1", write="RANGE 1,{value:d}", parser=parse_int,
                  value_type=int, limits=(0, 3))

    box = Box(name="box")
    box.transport = link  # the signal finds the transport on its parent
    status = box.rng.set(2)
    status.wait(5)
    assert box.rng.get() == 2
    with pytest.raises(ValueError, match="4 is above the high limit 3"):
        box.rng.set(4)  # raised synchronously, nothing sent
    with pytest.raises(ValueError, match="expected a number"):
        box.rng.put("2")

    lonely = MessageSignalRO(query="*IDN?", name="lonely")
    with pytest.raises(RuntimeError, match="no transport"):
        lonely.get()
    with pytest.raises(ValueError, match="either"):
        MessageSignalRO(query="X?", getter=lambda: 1, name="both")


def test_closing_one_transport_leaves_others_open(sim):
    import pyvisa

    a = VisaLineTransport(sim.resource, timeout_s=TIMEOUT_S)
    b = VisaLineTransport(sim.resource, timeout_s=TIMEOUT_S)
    try:
        assert a.query("*IDN?").startswith("LSCI") and b.query("RANGE? 1") == "0"
        a.close()
        assert b.query("*IDN?").startswith("LSCI")
        # even a third party closing pyvisa's shared resource manager is survived
        pyvisa.ResourceManager("@py").close()
        assert b.query("RANGE? 1") == "0"
        assert a.query("RANGE? 1") == "0"
    finally:
        a.close()
        b.close()
