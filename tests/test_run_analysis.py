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


def test_analyze_runs_takes_an_inversion_already_under_way(tmp_path) -> None:
    """An image run with a future given in ``inversions``: that future's outcome is what the
    image's result reports (here an error it carries), and no second fit is started."""
    from concurrent.futures import Future

    from lltolab.session import start

    with start(sim=True, catalog=tmp_path / "catalog", sample_id="S", callbacks=False) as s:
        (uid,) = s.RE(s.plans.sims_image(s.devices["sims"], s.devices["stage"],
                                         s.devices["clock"], acquisition_s=60.0,
                                         allow_unfrozen=True))
        given: Future = Future()
        given.set_exception(ValueError("the fit given in inversions"))
        (res,) = analyze_runs(s.catalog, [uid], inversions={uid: given})
    assert res["inversion"]["error"] == "the fit given in inversions"
    assert res["dgb_over_delta_method"] in ("boundary_steps", None)
