"""lltolab.devices (being built; see the open issues)."""

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

__all__: list[str] = ["CryoStage", "LakeShoreLink"]
__all__ += ["SurfaceLabExport"]
__all__ += [
    "ExportWatcher", "ReadyExport", "ExportReducer", "Reduction", "LineProfile",
    "ExportAssetWriter",
]
__all__ += ["Furnace"]
__all__ += [
    "LabClock", "WallClock", "TimeSource", "MAX_WAIT_S", "SampleHandler", "SAMPLE_LOCATIONS",
    "ExchangeCell", "OperatorRequest", "Confirmation", "PromptConfirmation", "FileConfirmation",
    "CallbackConfirmation", "OperatorTimeout", "OperatorRefused", "OperatorCancelled",
]
__all__ += ["SampleRecord", "SEGMENT_KEYS"]
__all__ += ["FURNACE_STATUS_BITS", "furnace_faults"]
__all__ += ["check_request_id", "default_confirmation", "default_operator_folder"]
