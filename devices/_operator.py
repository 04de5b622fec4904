"""Operator steps: actions a person performs (dip, lift, transfer) and confirms.

A device that needs a person builds an :class:`OperatorRequest` and hands it to a pluggable
*confirmation*: anything with ``confirm(request, *, timeout_s, cancel)`` that returns once the
step is done and raises otherwise. Provided here:

- :class:`PromptConfirmation` asks at the terminal / IPython prompt;
- :class:`FileConfirmation` posts the request into a folder and waits for an answer file that
  another process writes (``FileConfirmation.answer``), so queued plans can wait for a person;
- :class:`CallbackConfirmation` calls a function (scripts; the virtual lab's simulated operator
  has the same interface).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ophyd import DeviceStatus

__all__ = [
    "OperatorRequest",
    "Confirmation",
    "OperatorTimeout",
    "OperatorRefused",
    "OperatorCancelled",
    "PromptConfirmation",
    "FileConfirmation",
    "CallbackConfirmation",
    "start_operator_step",
]


class OperatorTimeout(TimeoutError):
    """Nobody confirmed the operator step in time."""


class OperatorRefused(RuntimeError):
    """The operator declined the step."""


class OperatorCancelled(RuntimeError):
    """The step was cancelled (stop/abort) before it was confirmed."""


@dataclass(frozen=True)
class OperatorRequest:
    """One step for a person to do and confirm.

    Parameters
    ----------
    action : str
        Machine-readable action (``move``, ``dip``, ``lift``).
    message : str
        What to do, for a person.
    params : dict
        Action parameters (e.g. ``{"location": "furnace"}``).
    request_id : str
        Unique id (generated).
    created : float
        Unix time of the request.
    """

    action: str
    message: str
    params: dict[str, Any] = field(default_factory=dict)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: float = field(default_factory=time.time)


class Confirmation(Protocol):
    """Anything that can get an operator step done."""

    def confirm(
        self, request: OperatorRequest, *, timeout_s: float, cancel: threading.Event
    ) -> None:
        """Return when ``request`` is done; raise on refusal, timeout or cancel."""


def _check_timeout(timeout_s: float) -> float:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a finite number of seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


class PromptConfirmation:
    """Ask at the terminal: Enter or ``y`` confirms, ``n`` refuses.

    Parameters
    ----------
    input_fn, print_fn : callable
        Line input and output (default: ``input`` and ``print``).
    """

    def __init__(
        self,
        *,
        input_fn: Callable[[str], str] = input,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        self._input = input_fn
        self._print = print_fn

    def confirm(
        self, request: OperatorRequest, *, timeout_s: float, cancel: threading.Event
    ) -> None:
        """Prompt and wait (the prompt runs in a helper thread so the wait stays bounded)."""
        timeout_s = _check_timeout(timeout_s)
        answer: list[str] = []
        got = threading.Event()

        def ask() -> None:
            try:
                answer.append(self._input(f"[operator] {request.message} - done? [Y/n] "))
            except EOFError:
                answer.append("n")
            got.set()

        threading.Thread(target=ask, daemon=True, name="operator-prompt").start()
        deadline = time.monotonic() + timeout_s
        while not got.wait(0.05):
            if cancel.is_set():
                raise OperatorCancelled(f"operator step {request.action!r} cancelled")
            if time.monotonic() > deadline:
                raise OperatorTimeout(
                    f"operator step {request.action!r} not confirmed within {timeout_s} s"
                )
        if answer[0].strip().lower() not in ("", "y", "yes"):
            raise OperatorRefused(f"operator refused {request.action!r}: {answer[0]!r}")


class FileConfirmation:
    """Requests as JSON files in ``folder/pending``; answers as ``folder/answers/<id>.json``.

    Another process (a second IPython, a web form, ``FileConfirmation(folder).answer(...)``)
    lists :meth:`pending` requests and writes an answer. Polling period ``poll_s``.
    """

    def __init__(self, folder: str | os.PathLike[str], *, poll_s: float = 0.1) -> None:
        self.folder = Path(folder)
        self.poll_s = _check_timeout(poll_s)
        (self.folder / "pending").mkdir(parents=True, exist_ok=True)
        (self.folder / "answers").mkdir(parents=True, exist_ok=True)

    def confirm(
        self, request: OperatorRequest, *, timeout_s: float, cancel: threading.Event
    ) -> None:
        """Post ``request`` and wait for its answer file."""
        timeout_s = _check_timeout(timeout_s)
        pending = self.folder / "pending" / f"{request.request_id}.json"
        answer = self.folder / "answers" / f"{request.request_id}.json"
        _atomic_json(pending, asdict(request))
        deadline = time.monotonic() + timeout_s
        try:
            while not answer.exists():
                if cancel.wait(self.poll_s):
                    raise OperatorCancelled(f"operator step {request.action!r} cancelled")
                if time.monotonic() > deadline:
                    raise OperatorTimeout(
                        f"operator step {request.action!r} (id {request.request_id}) not "
                        f"confirmed within {timeout_s} s; answer file {answer}"
                    )
            reply = json.loads(answer.read_text())
        finally:
            pending.unlink(missing_ok=True)
        if not reply.get("confirmed", False):
            raise OperatorRefused(
                f"operator refused {request.action!r}: {reply.get('note', '')!r}"
            )

    def pending(self) -> list[OperatorRequest]:
        """Requests waiting for an answer, oldest first."""
        out = []
        for path in sorted((self.folder / "pending").glob("*.json")):
            try:
                out.append(OperatorRequest(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being written or removed meanwhile
        return sorted(out, key=lambda r: r.created)

    def answer(self, request_id: str, *, confirmed: bool = True, note: str = "") -> None:
        """Answer a pending request (from any process)."""
        _atomic_json(self.folder / "answers" / f"{request_id}.json",
                     {"confirmed": bool(confirmed), "note": note, "time": time.time()})


class CallbackConfirmation:
    """Confirm by calling ``fn(request)`` (which does the step or raises)."""

    def __init__(self, fn: Callable[[OperatorRequest], None]) -> None:
        self._fn = fn

    def confirm(
        self, request: OperatorRequest, *, timeout_s: float, cancel: threading.Event
    ) -> None:
        """Call the function unless already cancelled."""
        _check_timeout(timeout_s)
        if cancel.is_set():
            raise OperatorCancelled(f"operator step {request.action!r} cancelled")
        self._fn(request)


def start_operator_step(
    device: Any,
    confirmation: Confirmation,
    request: OperatorRequest,
    timeout_s: float,
    on_done: Callable[[], None],
) -> tuple[DeviceStatus, threading.Event]:
    """Run ``confirmation.confirm`` in a thread; finish a status (``on_done`` first on success).

    Returns the status and the cancel event (set it to cancel the step).
    """
    timeout_s = _check_timeout(timeout_s)
    status = DeviceStatus(device, timeout=timeout_s + 5.0)
    cancel = threading.Event()

    def run() -> None:
        try:
            confirmation.confirm(request, timeout_s=timeout_s, cancel=cancel)
            on_done()
        except BaseException as exc:  # noqa: BLE001 - any failure fails the status
            if not status.done:
                status.set_exception(exc)
            return
        if not status.done:
            status.set_finished()

    threading.Thread(target=run, daemon=True, name=f"operator-{request.action}").start()
    return status, cancel


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
