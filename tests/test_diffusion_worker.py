"""The twin's worker process: the same numbers as in this process, errors, loss, shutdown."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import numpy as np
import pytest

from lltolab.diffusion import VirtualSample

# a 60 x 40 µm window: the same code paths as the full sample, seconds less per test
WINDOW_M = (-10e-6, 50e-6, 0.0, 40e-6)
PIECES = [(59 * 3600.0, 295.15, True), (14.4, 295.15, False), (600.0, 163.15, False),
          (3.8 * 3600.0, 473.1, False)]


def _sample() -> VirtualSample:
    return VirtualSample.paper_default(seed=3, window_m=WINDOW_M, line_extent_m=(-2e-4, 1e-3))


def _natural(sample: VirtualSample) -> np.ndarray:
    """The initial network field (natural abundance everywhere)."""
    return np.full(sample.strip.network.n_cells, sample.c0)


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def worker_sample():
    sample = _sample()
    sample.start_worker()
    yield sample
    sample.stop_worker()


def test_worker_field_and_homogenisation_equal_this_process_to_the_last_bit(
        worker_sample: VirtualSample) -> None:
    here = _sample()
    expected = here.integrate_pieces(_natural(here), PIECES)
    got = worker_sample.integrate_pieces(_natural(worker_sample), PIECES)
    assert worker_sample.worker_pid is not None
    assert np.array_equal(got, expected)
    assert worker_sample.strip.d_eff.nodes() == here.strip.d_eff.nodes()
    for temperature_k in (295.15, 473.15):  # the truth comes from the worker's nodes
        assert worker_sample.truth(temperature_k) == here.truth(temperature_k)


def test_sample_history_through_the_worker_equals_this_process() -> None:
    def run(worker: bool) -> tuple[np.ndarray, np.ndarray]:
        sample = _sample()
        if worker:
            sample.start_worker()
        try:
            sample.set_environment(0.0, temperature_K=295.15, immersed=True)
            sample.set_environment(3600.0, temperature_K=295.15, immersed=False)
            sample.set_environment(3700.0, temperature_K=473.15, immersed=False)
            sample.advance_declared()
            return sample.field(7300.0), sample.profile(np.array([0.0, 1e-4]), 7300.0)
        finally:
            sample.stop_worker()

    (f_here, p_here), (f_worker, p_worker) = run(False), run(True)
    assert np.array_equal(f_worker, f_here)
    assert np.array_equal(p_worker, p_here)


def test_an_error_in_the_worker_is_raised_here_with_its_type(
        worker_sample: VirtualSample) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        worker_sample.integrate_pieces(_natural(worker_sample), [(-1.0, 295.15, False)])
    # the worker is still there and still right
    assert worker_sample.worker_pid is not None
    here = _sample()
    assert np.array_equal(worker_sample.integrate_pieces(_natural(worker_sample), PIECES[:2]),
                          here.integrate_pieces(_natural(here), PIECES[:2]))


def test_a_killed_worker_is_reported_and_integration_goes_on_here(
        worker_sample: VirtualSample, caplog: pytest.LogCaptureFixture) -> None:
    pid = worker_sample.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid)
    here = _sample()
    with caplog.at_level(logging.WARNING, logger="lltolab.diffusion"):
        got = worker_sample.integrate_pieces(_natural(worker_sample), PIECES[:2])
    assert np.array_equal(got, here.integrate_pieces(_natural(here), PIECES[:2]))
    assert worker_sample.worker_pid is None
    assert any(f"pid {pid}" in r.getMessage() and "this process" in r.getMessage()
               for r in caplog.records)


def test_a_worker_that_does_not_answer_is_stopped_after_its_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    # a 10 cm strip: its field (~180 kB) is more than a pipe holds, so the request's write
    # itself blocks on the stopped child
    def long_strip() -> VirtualSample:
        return VirtualSample.paper_default(seed=3, window_m=WINDOW_M, line_extent_m=(-1e-3, 0.1))

    sample, here = long_strip(), long_strip()
    assert _natural(sample).nbytes > 150_000
    sample.start_worker(timeout_s=1.0)
    pid = sample.worker_pid
    assert pid is not None
    try:
        sample.integrate_pieces(_natural(sample), PIECES[:1])  # up and answering
        os.kill(pid, signal.SIGSTOP)
        t = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="lltolab.diffusion"):
            got = sample.integrate_pieces(_natural(sample), PIECES[:2])
        assert time.monotonic() - t < 20.0  # 1 s timeout, then the integration here
        assert np.array_equal(got, here.integrate_pieces(_natural(here), PIECES[:2]))
        assert any("did not answer within 1 s" in r.getMessage() for r in caplog.records)
        assert sample.worker_pid is None
        assert _gone(pid)
    finally:
        sample.stop_worker()


def test_ctrl_c_is_left_to_the_parent_and_stop_worker_ends_the_process(
        worker_sample: VirtualSample) -> None:
    pid = worker_sample.worker_pid
    assert pid is not None
    worker_sample.integrate_pieces(_natural(worker_sample), PIECES[:1])  # past its imports
    os.kill(pid, signal.SIGINT)
    assert not _gone(pid, timeout_s=0.5)
    worker_sample.integrate_pieces(_natural(worker_sample), PIECES[:1])
    worker_sample.stop_worker()
    assert worker_sample.worker_pid is None
    assert _gone(pid)
    worker_sample.stop_worker()  # idempotent


def test_wait_worker_tells_when_the_worker_has_built_its_sample() -> None:
    sample = _sample()
    assert sample.wait_worker(timeout_s=0.1) is False  # no worker
    sample.start_worker()
    try:
        assert sample.wait_worker(timeout_s=60.0) is True
        here = _sample()
        assert np.array_equal(sample.integrate_pieces(_natural(sample), PIECES[:1]),
                              here.integrate_pieces(_natural(here), PIECES[:1]))
    finally:
        sample.stop_worker()


def test_a_worker_that_cannot_start_leaves_the_twin_in_this_process(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    sample, here = _sample(), _sample()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING, logger="lltolab.diffusion"):
        sample.start_worker()
    assert sample.worker_pid is None
    assert any("not started" in r.getMessage() for r in caplog.records)
    assert np.array_equal(sample.integrate_pieces(_natural(sample), PIECES[:1]),
                          here.integrate_pieces(_natural(here), PIECES[:1]))
    with pytest.raises(ValueError, match="timeout_s"):
        sample.start_worker(timeout_s=0.0)
