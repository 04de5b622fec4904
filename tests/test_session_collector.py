"""The garbage collector paused while a session's catalog opens (lltolab._collector_pause)."""

from __future__ import annotations

import gc
import time
from concurrent.futures import Future

import pytest

from lltolab._collector_pause import CollectorPause


@pytest.fixture(autouse=True)
def _collector_restored():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable() if enabled else gc.disable()


def test_collection_is_paused_until_the_future_resolves_then_frozen_objects_are_skipped(
) -> None:
    gc.enable()
    opening: Future = Future()
    pause = CollectorPause(opening, limit_s=60.0)
    assert pause.paused and not gc.isenabled()
    opening.set_result("client")
    assert gc.isenabled() and pause.froze and gc.get_freeze_count() > 0
    pause.release()
    assert gc.isenabled() and not pause.froze and gc.get_freeze_count() == 0
    pause.release()  # idempotent
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_failed_opening_ends_the_pause_too() -> None:
    gc.enable()
    opening: Future = Future()
    pause = CollectorPause(opening, limit_s=60.0)
    opening.set_exception(RuntimeError("no database"))
    assert gc.isenabled() and not pause.paused
    pause.release()
    assert gc.get_freeze_count() == 0


def test_collection_resumes_after_the_limit_if_the_future_never_resolves() -> None:
    gc.enable()
    pause = CollectorPause(Future(), limit_s=0.2)
    assert not gc.isenabled()
    deadline = time.monotonic() + 10.0
    while not gc.isenabled() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gc.isenabled() and not pause.paused
    pause.release()
    assert gc.get_freeze_count() == 0


def test_a_collector_the_caller_disabled_is_left_alone() -> None:
    gc.disable()
    opening: Future = Future()
    pause = CollectorPause(opening, limit_s=60.0)
    opening.set_result("client")
    pause.release()
    assert not pause.paused and not pause.froze
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_release_before_the_opening_ends_the_pause_and_the_opening_changes_nothing(
) -> None:
    gc.enable()
    opening: Future = Future()
    pause = CollectorPause(opening, limit_s=60.0)
    pause.release()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    opening.set_result("client")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"limit_s must be > 0 s, got 0"):
        CollectorPause(Future(), limit_s=0)
