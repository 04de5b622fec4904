"""Operator steps: actions a person performs (dip, lift, transfer) and confirms.

A device that needs a person builds an :class:`OperatorRequest` and hands it to a pluggable
*confirmation*: anything with ``confirm(request, *, timeout_s, cancel)`` that returns once the
step is done and raises otherwise. Provided here:

- :class:`PromptConfirmation` asks at the terminal / IPython prompt;
- :class:`FileConfirmation` posts the request into a folder and waits for an answer file that
  another process writes (``FileConfirmation.answer``), so queued plans can wait for a person;
- :class:`CallbackConfirmation` calls a function (scripts; the virtual lab's simulated operator
  has the same interface).

:func:`default_confirmation` prompts only in an interactive terminal; anywhere else (a queue
server's worker, a script without a terminal) it posts requests as files, which
``lltolab confirm --list`` shows and ``lltolab confirm ID --yes`` answers.
Request ids are short names (letters, digits, ``-``, ``_``): an id can never name a path outside
the confirmation folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
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
    "check_request_id",
    "default_confirmation",
    "default_operator_folder",
]

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_request_id(request_id: Any) -> str:
    """Return ``request_id`` if it is a valid id (1-64 of ``A-Z a-z 0-9 _ -``, no leading
    ``-``/``_``); ValueError otherwise. Ids become file names, so nothing else is accepted."""
    if not isinstance(request_id, str) or _REQUEST_ID.fullmatch(request_id) is None:
        raise ValueError(
            f"operator request id must be 1-64 letters, digits, '-' or '_' (starting with a "
            f"letter or digit), got {request_id!r}"
        )
    return request_id


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

    def __post_init__(self) -> None:
        check_request_id(self.request_id)


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

    def _make_dirs(self) -> None:
        (self.folder / "pending").mkdir(parents=True, exist_ok=True)
        (self.folder / "answers").mkdir(parents=True, exist_ok=True)

    def confirm(
        self, request: OperatorRequest, *, timeout_s: float, cancel: threading.Event
    ) -> None:
        """Post ``request`` and wait for its answer file."""
        timeout_s = _check_timeout(timeout_s)
        pending = self._path("pending", request.request_id)
        answer = self._path("answers", request.request_id)
        self._make_dirs()
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
                request = OperatorRequest(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # being written or removed meanwhile, or not a request
            if request.request_id == path.stem:
                out.append(request)
        return sorted(out, key=lambda r: r.created)

    def answer(
        self, request_id: str, *, confirmed: bool = True, note: str = "",
        require_pending: bool = False,
    ) -> None:
        """Answer a request (from any process).

        Parameters
        ----------
        request_id : str
            The request's id (validated: it can only name a file inside ``answers``).
        confirmed : bool
            True: the step is done; False: refused (the plan fails with OperatorRefused).
        note : str
            Free text stored with the answer.
        require_pending : bool
            Raise ValueError unless the request is pending now.
        """
        path = self._path("answers", request_id)
        if require_pending and not self._path("pending", request_id).is_file():
            raise ValueError(f"no pending operator step with id {request_id!r} in {self.folder}")
        if not isinstance(note, str):
            raise TypeError(f"note must be a string, got {note!r}")
        self._make_dirs()
        _atomic_json(path, {"confirmed": bool(confirmed), "note": note, "time": time.time()})

    def _path(self, kind: str, request_id: str) -> Path:
        """``folder/<kind>/<id>.json`` for a validated id (never outside the folder)."""
        path = self.folder / kind / f"{check_request_id(request_id)}.json"
        if path.resolve().parent != (self.folder / kind).resolve():
            raise ValueError(f"operator request id {request_id!r} leaves {self.folder / kind}")
        return path


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


def default_operator_folder() -> Path:
    """``<user data dir>/lltolab/catalog/session/operator``: where a session on the default
    catalog posts operator steps (and where ``lltolab confirm`` looks by default)."""
    import platformdirs  # noqa: PLC0415

    return Path(platformdirs.user_data_dir("lltolab")) / "catalog" / "session" / "operator"


def default_confirmation(folder: str | os.PathLike[str] | None = None) -> Confirmation:
    """A terminal prompt in an interactive shell, else :class:`FileConfirmation` in ``folder``
    (default :func:`default_operator_folder`; created when the first step is posted).

    Interactive means stdin and stdout are terminals: a queue server's worker, a pipe or a
    service never waits for a prompt nobody sees.
    """
    if _interactive():
        return PromptConfirmation()
    return FileConfirmation(folder if folder is not None else default_operator_folder())


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


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
