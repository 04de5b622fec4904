"""lltolab.testing: shared parts of the test suite (simulators, test doubles, ports).

The doubles have real behaviour (an analytic sample, a hand-driven wall clock), so tests use
them in place of lab hardware, not in place of the code under test. The pytest fixtures built
on them live in the repository's ``tests/conftest.py``.
"""

from ._doubles import ErfcSample, HistorySegment, ManualWall
from ._exports import image_sidecar, write_image_export
from ._simulators import SIMULATORS, free_port, open_simulator

__all__ = [
    "ErfcSample",
    "HistorySegment",
    "ManualWall",
    "SIMULATORS",
    "open_simulator",
    "free_port",
    "image_sidecar",
    "write_image_export",
]
