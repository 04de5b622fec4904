"""Simulated instruments for tests, started and closed in one place."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lltolab.sim_devices import (
    EurothermSimulator,
    LakeShoreSimulator,
    SurfaceLabSimulator,
    VirtualClock,
)

from ._doubles import ErfcSample

__all__ = ["SIMULATORS", "open_simulator", "free_port"]

SIMULATORS = ("lakeshore", "eurotherm", "surfacelab")
"""The kinds :func:`open_simulator` builds."""


@contextmanager
def open_simulator(
    kind: str, *, clock: VirtualClock | None = None,
    export_folder: str | os.PathLike[str] | None = None, **options: Any,
) -> Iterator[Any]:
    """A started simulator on 127.0.0.1, closed on exit.

    Parameters
    ----------
    kind : str
        ``"lakeshore"`` (LakeShoreSimulator), ``"eurotherm"`` (EurothermSimulator) or
        ``"surfacelab"`` (SurfaceLabSimulator imaging an :class:`ErfcSample` unless
        ``sample=`` is given).
    clock : VirtualClock, optional
        The lab clock (default: a new one at one lab second per wall second).
    export_folder : path, optional
        Where the simulated SurfaceLab writes (required for ``"surfacelab"``).
    **options
        Keyword arguments of the simulator's constructor.
    """
    if kind not in SIMULATORS:
        raise ValueError(f"kind must be one of {SIMULATORS}, got {kind!r}")
    clock = clock if clock is not None else VirtualClock()
    if kind == "lakeshore":
        with LakeShoreSimulator(clock=clock, **options) as sim:
            yield sim
    elif kind == "eurotherm":
        sim = EurothermSimulator(clock, **options).start()
        try:
            yield sim
        finally:
            sim.close()
    else:
        if export_folder is None:
            raise ValueError("a simulated SurfaceLab needs export_folder")
        sample = options.pop("sample", None) or ErfcSample()
        yield SurfaceLabSimulator(sample, clock, Path(export_folder), **options)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
