"""Simulated instruments and the virtual lab (loopback only)."""

from ._clock import VirtualClock
from ._eurotherm import EUROTHERM_STATUS_BITS, EurothermSimulator
from ._lakeshore import LAKESHORE_FAULTS, LakeShoreSimulator
from ._surfacelab import SimsSettings, SurfaceLabSimulator

__all__ = [
    "VirtualClock",
    "EurothermSimulator",
    "EUROTHERM_STATUS_BITS",
    "LakeShoreSimulator",
    "LAKESHORE_FAULTS",
]
__all__ += ["SurfaceLabSimulator", "SimsSettings"]
from ._lab import LOCATIONS, LabSampleView, SimulatedOperator, VirtualLab  # noqa: E402

__all__ += ["VirtualLab", "LabSampleView", "SimulatedOperator", "LOCATIONS"]
from ._line_server import REPLY_FAULTS  # noqa: E402
from ._modbus_rtu import RTU_REPLY_FAULTS, crc16, with_crc  # noqa: E402

__all__ += ["REPLY_FAULTS", "RTU_REPLY_FAULTS", "crc16", "with_crc"]
