"""Fixtures shared by the test modules (built on :mod:`lltolab.testing`).

``sim`` is the simulated instrument a module names with a marker, e.g.::

    pytestmark = pytest.mark.simulator("lakeshore", time_scale=200.0, seed=2)

(kinds: ``lakeshore``, ``eurotherm``, ``surfacelab``; keyword arguments go to the simulator,
except ``time_scale``, the speed of the ``clock`` fixture, and ``manual_wall=True``, which
drives the clock by the ``wall`` fixture instead of the real wall clock). A simulated SurfaceLab
exports into ``tmp_path / "export"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lltolab.sim_devices import VirtualClock
from lltolab.testing import ManualWall, open_simulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "simulator(kind, **options): the simulated instrument of the sim fixture")


def _simulator_marker(request: pytest.FixtureRequest) -> tuple[str | None, dict[str, Any]]:
    marker = request.node.get_closest_marker("simulator")
    if marker is None:
        return None, {}
    return marker.args[0], dict(marker.kwargs)


@pytest.fixture
def wall() -> ManualWall:
    """A wall clock the test advances by hand (``wall.t += dt``)."""
    return ManualWall()


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The lab clock of the module's simulator (see the module docstring)."""
    _, options = _simulator_marker(request)
    if options.get("manual_wall"):
        return VirtualClock(wall=request.getfixturevalue("wall"))
    return VirtualClock(time_scale=float(options.get("time_scale", 1.0)))


@pytest.fixture
def sim(request: pytest.FixtureRequest, clock: VirtualClock, tmp_path) -> Iterator[Any]:
    """The started simulator named by the module's ``simulator`` marker; closed afterwards."""
    kind, options = _simulator_marker(request)
    if kind is None:
        raise pytest.UsageError("the sim fixture needs pytest.mark.simulator(kind, ...)")
    options.pop("time_scale", None)
    options.pop("manual_wall", None)
    if kind == "surfacelab":
        options["export_folder"] = tmp_path / "export"
    with open_simulator(kind, clock=clock, **options) as simulator:
        yield simulator
