"""HDF5 asset files of SIMS images (what StreamResource documents point at).

One file per export, never overwritten: datasets of shape (1, ny, nx) so that several assets of
one run stack along the first axis (bluesky-tiled-plugins' HDF5 consolidator, join "stack")::

    /li6_counts   uint32   recorded 6Li+ counts
    /li7_counts   uint32   recorded 7Li+ counts
    /c_fraction   float64  dead-time-corrected 6Li fraction (NaN: saturated / no counts)

File attributes carry the source BIF6 path and the acquisition metadata (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._errors import ExportFormatError

__all__ = ["SIMS_ASSET_DATASETS", "SIMS_ASSET_MIMETYPE", "write_sims_asset", "read_sims_asset"]

SIMS_ASSET_MIMETYPE = "application/x-hdf5"
#: dataset name -> numpy dtype string
SIMS_ASSET_DATASETS: dict[str, str] = {
    "li6_counts": "<u4",
    "li7_counts": "<u4",
    "c_fraction": "<f8",
}


def write_sims_asset(
    path: str | os.PathLike[str],
    *,
    li6_counts: np.ndarray,
    li7_counts: np.ndarray,
    c_fraction: np.ndarray,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one asset file atomically (temporary name, then rename); refuse to overwrite.

    Parameters
    ----------
    path : path-like
        Destination ``.h5`` file; must not exist.
    li6_counts, li7_counts : array (ny, nx) of unsigned int
        Recorded counts.
    c_fraction : array (ny, nx) of float
        Dead-time-corrected 6Li fraction.
    attrs : mapping, optional
        File attributes; non-scalar values are stored as JSON text.

    Returns
    -------
    Path
        The written file.
    """
    dest = Path(path)
    if dest.exists():
        raise FileExistsError(f"{dest}: asset exists already; assets are never overwritten")
    arrays = {"li6_counts": li6_counts, "li7_counts": li7_counts, "c_fraction": c_fraction}
    shape = np.shape(li6_counts)
    if len(shape) != 2 or any(np.shape(a) != shape for a in arrays.values()):
        raise ValueError(
            "li6_counts, li7_counts and c_fraction must be 2-D of one shape, got "
            + str({k: np.shape(a) for k, a in arrays.items()})
        )
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w", libver="latest") as f:
            for name, dtype in SIMS_ASSET_DATASETS.items():
                data = np.asarray(arrays[name]).astype(dtype, copy=False)[np.newaxis]
                f.create_dataset(name, data=data, chunks=data.shape)
            for key, value in (attrs or {}).items():
                if isinstance(value, str | int | float | bool | np.number):
                    f.attrs[key] = value
                else:
                    f.attrs[key] = json.dumps(value)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def read_sims_asset(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read the three datasets of an asset file (each of shape (k, ny, nx)).

    Raises
    ------
    ExportFormatError
        A dataset is missing.
    """
    p = Path(path)
    with h5py.File(p, "r") as f:
        missing = [k for k in SIMS_ASSET_DATASETS if k not in f]
        if missing:
            raise ExportFormatError(p, f"asset lacks datasets {missing}")
        return {k: f[k][()] for k in SIMS_ASSET_DATASETS}
