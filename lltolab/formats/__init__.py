"""lltolab.formats: SIMS export files (BIF6 + JSON sidecar), counting corrections, HDF5 assets.

Imports nothing else of lltolab.
"""

from ._bif6 import (
    BIF6_HEADER_BYTES,
    BIF6_MAGIC,
    BIF6_MAX_BYTES,
    BIF6_MAX_PIXELS,
    Bif6Header,
    Bif6Image,
    bif6_expected_size,
    bif6_status,
    read_bif6,
    read_bif6_header,
    write_bif6,
)
from ._counting import dead_time_correct, isotope_fraction_map
from ._errors import ExportFormatError
from ._export import ExportMetadata, MetadataFallback, SimsExport, read_export, select_peak
from ._hdf5 import (
    SIMS_ASSET_DATASETS,
    SIMS_ASSET_MIMETYPE,
    SIMS_IMAGE_DATASETS,
    SIMS_PROFILE_DATASETS,
    read_sims_asset,
    write_sims_asset,
)
from ._sidecar import (
    SIDECAR_FORMAT,
    SIDECAR_MAX_BYTES,
    SIDECAR_MAX_DEPTH,
    SimsSidecar,
    read_sidecar,
    sidecar_path_for,
    write_sidecar,
)

__all__ = [
    "BIF6_HEADER_BYTES",
    "BIF6_MAGIC",
    "BIF6_MAX_BYTES",
    "BIF6_MAX_PIXELS",
    "Bif6Header",
    "Bif6Image",
    "bif6_expected_size",
    "bif6_status",
    "read_bif6",
    "read_bif6_header",
    "write_bif6",
    "dead_time_correct",
    "isotope_fraction_map",
    "ExportFormatError",
    "ExportMetadata",
    "MetadataFallback",
    "SimsExport",
    "read_export",
    "select_peak",
    "SIMS_ASSET_DATASETS",
    "SIMS_ASSET_MIMETYPE",
    "SIMS_IMAGE_DATASETS",
    "SIMS_PROFILE_DATASETS",
    "read_sims_asset",
    "write_sims_asset",
    "SIDECAR_FORMAT",
    "SIDECAR_MAX_BYTES",
    "SIDECAR_MAX_DEPTH",
    "SimsSidecar",
    "read_sidecar",
    "sidecar_path_for",
    "write_sidecar",
]
