"""lltolab.sim_devices: simulated instruments and the virtual lab (loopback only).

``VirtualLab`` holds one clock, one sample and one diffusion model; the Lake Shore, Eurotherm
and SurfaceLab simulators speak the real wire protocols (or write real export files) from it.
The protocol and model parts are public for tests and for building other simulators.
"""

from ._clock import VirtualClock
from ._cryo_thermal import CryoStageThermalModel
from ._eurotherm import EUROTHERM_STATUS_BITS, EurothermSimulator
from ._lab import LOCATIONS, LabSampleView, SimulatedOperator, VirtualLab
from ._lakeshore import LAKESHORE_FAULTS, LakeShoreSimulator
from ._line_server import REPLY_FAULTS, LineServer
from ._modbus_rtu import (
    RTU_REPLY_FAULTS,
    ModbusSlaveError,
    RtuSlave,
    check_crc,
    crc16,
    request_length,
    with_crc,
)
from ._serial_loop import register_loop, unregister_loop
from ._surfacelab import SimsSettings, SurfaceLabSimulator, resample_bilinear

__all__ = [
    "VirtualLab",
    "LabSampleView",
    "SimulatedOperator",
    "LOCATIONS",
    "VirtualClock",
    "LakeShoreSimulator",
    "LAKESHORE_FAULTS",
    "EurothermSimulator",
    "EUROTHERM_STATUS_BITS",
    "SurfaceLabSimulator",
    "SimsSettings",
    "CryoStageThermalModel",
    "LineServer",
    "REPLY_FAULTS",
    "RTU_REPLY_FAULTS",
    "ModbusSlaveError",
    "RtuSlave",
    "check_crc",
    "crc16",
    "request_length",
    "with_crc",
    "register_loop",
    "unregister_loop",
    "resample_bilinear",
]
