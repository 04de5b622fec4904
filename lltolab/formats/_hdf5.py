"""HDF5 asset files of SIMS images (what StreamResource documents point at).

One file per export, never overwritten: datasets with a leading frame axis of length 1 so that
several assets of one run stack along it (bluesky-tiled-plugins' HDF5 consolidator, "stack").
Images, shape (1, ny, nx)::

    /li6_counts   uint32   recorded 6Li+ counts
    /li7_counts   uint32   recorded 7Li+ counts
    /c_fraction   float64  dead-time-corrected 6Li fraction (NaN: saturated / no counts)

Line profiles, shape (1, n_points): /profile_x_mm, /profile_c, /profile_li6_counts,
/profile_li7_counts.

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

__all__ = [
    "SIMS_ASSET_DATASETS",
    "SIMS_IMAGE_DATASETS",
    "SIMS_PROFILE_DATASETS",
    "SIMS_ASSET_MIMETYPE",
    "write_sims_asset",
    "read_sims_asset",
]

SIMS_ASSET_MIMETYPE = "application/x-hdf5"
#: image assets: dataset name -> numpy dtype string
SIMS_IMAGE_DATASETS: dict[str, str] = {
    "li6_counts": "<u4",
    "li7_counts": "<u4",
    "c_fraction": "<f8",
}
#: line-profile assets: dataset name -> numpy dtype string (each of shape (1, n_points))
SIMS_PROFILE_DATASETS: dict[str, str] = {
    "profile_x_mm": "<f8",
    "profile_c": "<f8",
    "profile_li6_counts": "<u4",
    "profile_li7_counts": "<u4",
}
#: every dataset an asset may hold
SIMS_ASSET_DATASETS: dict[str, str] = {**SIMS_IMAGE_DATASETS, **SIMS_PROFILE_DATASETS}


def write_sims_asset(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    *,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one asset file atomically (temporary name, then rename); refuse to overwrite.

    Parameters
    ----------
    path : path-like
        Destination ``.h5`` file; must not exist.
    arrays : mapping of name -> array
        Either the image datasets (:data:`SIMS_IMAGE_DATASETS`: recorded counts and the
        dead-time-corrected fraction, each (ny, nx)) or the line-profile datasets
        (:data:`SIMS_PROFILE_DATASETS`, each (n_points,)); all of one shape. Each is stored
        with a leading axis of length 1 (one frame per file).
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
    names = set(arrays)
    if names not in (set(SIMS_IMAGE_DATASETS), set(SIMS_PROFILE_DATASETS)):
        raise ValueError(
            f"asset datasets {sorted(names)} are neither the image set "
            f"{sorted(SIMS_IMAGE_DATASETS)} nor the profile set {sorted(SIMS_PROFILE_DATASETS)}"
        )
    shapes = {k: np.shape(a) for k, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"asset arrays must share one shape, got {shapes}")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w", libver="latest") as f:
            for name, arr in arrays.items():
                data = np.asarray(arr).astype(SIMS_ASSET_DATASETS[name], copy=False)[np.newaxis]
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
    """Read the datasets of an asset file (each with a leading frame axis).

    Raises
    ------
    ExportFormatError
        Neither the complete image set nor the complete profile set is present.
    """
    p = Path(path)
    with h5py.File(p, "r") as f:
        for group in (SIMS_IMAGE_DATASETS, SIMS_PROFILE_DATASETS):
            if all(k in f for k in group):
                return {k: f[k][()] for k in group}
        have = sorted(f)
    raise ExportFormatError(p, f"asset lacks the image or profile datasets (has {have})")
