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

# protocol and model parts, public for tests and for building other simulators
from ._cryo_thermal import CryoStageThermalModel  # noqa: E402
from ._line_server import REPLY_FAULTS, LineServer  # noqa: E402
from ._modbus_rtu import (  # noqa: E402
    RTU_REPLY_FAULTS,
    ModbusSlaveError,
    RtuSlave,
    check_crc,
    crc16,
    request_length,
    with_crc,
)
from ._serial_loop import register_loop, unregister_loop  # noqa: E402
from ._surfacelab import resample_bilinear  # noqa: E402

__all__ += [
    "CryoStageThermalModel", "LineServer", "REPLY_FAULTS", "RTU_REPLY_FAULTS",
    "ModbusSlaveError", "RtuSlave", "check_crc", "crc16",
    "request_length", "with_crc", "register_loop", "unregister_loop", "resample_bilinear",
]
