"""Analysis of stored runs (lltolab.run_analysis): what needs no image acquisition."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

from lltolab.catalog import close_catalogs, open_catalog
from lltolab.run_analysis import analyze_runs, invert_run_in_background


def test_background_inversion_and_analysis_refuse_a_run_that_is_not_an_image(tmp_path) -> None:
    from bluesky_tiled_plugins import TiledWriter

    try:
        client = open_catalog(tmp_path / "catalog")
        RE = RunEngine({})
        RE.subscribe(TiledWriter(client))
        (uid,) = RE(count([det], 2), sample_id="S")
        future = invert_run_in_background(client, uid)
        exc = future.exception(timeout=120)
        assert isinstance(exc, ValueError) and "not a sims_image run" in str(exc)
        with pytest.raises(ValueError, match="'count' run; analyze takes sims_image"):
            analyze_runs(client, [uid], inversions={uid: future})
    finally:
        close_catalogs()
