"""Export asset writer: one HDF5 file per export and the StreamResource/StreamDatum documents
that announce it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from event_model import compose_stream_resource

from lltolab.formats import SIMS_ASSET_MIMETYPE, SimsExport, write_sims_asset

__all__ = ["ExportAssetWriter"]


class ExportAssetWriter:
    """Writes the arrays of a reduced export to a new HDF5 asset in ``asset_dir``.

    Parameters
    ----------
    asset_dir : path-like
        Folder of the asset files (created when needed). Each asset is a new file named
        after the BIF6 plus a random suffix; nothing is ever overwritten.
    """

    def __init__(self, asset_dir: str | Path) -> None:
        self.asset_dir = Path(asset_dir)

    def write(self, export: SimsExport, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write ``arrays`` (one frame) with the export's paths and metadata as attributes."""
        self.asset_dir.mkdir(parents=True, exist_ok=True)
        dest = self.asset_dir / f"{export.bif6_path.stem}_{uuid.uuid4().hex[:12]}.h5"
        attrs: dict[str, Any] = {
            "bif6_path": str(export.bif6_path),
            "sidecar_path": str(export.sidecar_path or ""),
            "metadata_source": export.metadata.source,
        }
        if export.sidecar is not None:
            attrs["sidecar"] = export.sidecar.to_dict()
        else:
            attrs["metadata"] = export.metadata.to_dict()
        return write_sims_asset(dest, arrays, attrs=attrs)

    @staticmethod
    def documents(
        asset: Path, data_key_prefix: str, arrays: Mapping[str, np.ndarray]
    ) -> list[tuple[str, dict]]:
        """StreamResource + StreamDatum (one frame) per dataset of ``asset``.

        Data keys are ``{data_key_prefix}_{dataset}``; each dataset holds one frame of the
        arrays' common shape.
        """
        docs: list[tuple[str, dict]] = []
        for ds, arr in arrays.items():
            bundle = compose_stream_resource(
                mimetype=SIMS_ASSET_MIMETYPE,
                uri=f"file://localhost{asset.resolve()}",
                data_key=f"{data_key_prefix}_{ds}",
                parameters={"dataset": f"/{ds}", "chunk_shape": [1, *np.shape(arr)]},
            )
            docs.append(("stream_resource", bundle.stream_resource_doc))
            docs.append(("stream_datum", bundle.compose_stream_datum(indices={"start": 0,
                                                                             "stop": 1})))
        return docs
