"""lltolab.devices: ophyd devices for the instruments and the operator steps of the workflow.

``CryoStage`` (Lake Shore 335/336 over VISA), ``Furnace`` (Eurotherm 2000/3200 over Modbus RTU),
``SurfaceLabExport`` (the TOF-SIMS export folder), ``ExchangeCell`` and ``SampleHandler``
(steps a person performs and confirms), ``LabClock`` (waits of lab time) and ``SampleRecord``
(the sample's identity and thermal history). The same classes drive the simulated instruments
of :mod:`lltolab.sim_devices`.
"""

from ._cryostage import CryoStage, LakeShoreLink
from ._exchange_cell import ExchangeCell
from ._export_assets import ExportAssetWriter
from ._export_reducer import ExportReducer, LineProfile, Reduction
from ._export_watcher import ExportWatcher, ReadyExport
from ._furnace import FURNACE_STATUS_BITS, Furnace, furnace_faults
from ._lab_clock import MAX_WAIT_S, LabClock, TimeSource, WallClock
from ._operator import (
    CallbackConfirmation,
    Confirmation,
    FileConfirmation,
    OperatorCancelled,
    OperatorRefused,
    OperatorRequest,
    OperatorTimeout,
    PromptConfirmation,
    check_request_id,
    default_confirmation,
    default_operator_folder,
)
from ._sample_handler import SAMPLE_LOCATIONS, SampleHandler
from ._sample_record import SEGMENT_KEYS, SampleRecord
from ._surfacelab_export import SurfaceLabExport

__all__ = [
    "CryoStage",
    "LakeShoreLink",
    "Furnace",
    "FURNACE_STATUS_BITS",
    "SurfaceLabExport",
    "ExchangeCell",
    "SampleHandler",
    "SAMPLE_LOCATIONS",
    "SampleRecord",
    "SEGMENT_KEYS",
    "LabClock",
    "WallClock",
    "TimeSource",
    "MAX_WAIT_S",
    "OperatorRequest",
    "Confirmation",
    "PromptConfirmation",
    "FileConfirmation",
    "CallbackConfirmation",
    "OperatorTimeout",
    "OperatorRefused",
    "OperatorCancelled",
    "ExportWatcher",
    "ReadyExport",
    "ExportReducer",
    "Reduction",
    "LineProfile",
    "ExportAssetWriter",
    "furnace_faults",
    "check_request_id",
    "default_confirmation",
    "default_operator_folder",
]
