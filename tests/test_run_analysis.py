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


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    """A session that exchanged 6 h and took one image (allowed unfrozen), and its uid; the
    image's documents may still be on their way to the catalog."""
    from lltolab.session import start

    folder = tmp_path_factory.mktemp("imaged")
    with start(sim=True, catalog=folder / "catalog", sample_id="S", callbacks=False) as s:
        plans, dv = s.plans, s.devices
        s.RE(plans.isotope_exchange(dv["cell"], dv["handler"], dv["clock"],
                                    duration_s=6 * 3600.0, record=s.record))
        s.RE.catalog_flush = None  # the call returns before the run is stored
        (uid,) = s.RE(plans.sims_image(dv["sims"], dv["stage"], dv["clock"], acquisition_s=60.0,
                                       allow_unfrozen=True))
        yield s, uid, folder
    close_catalogs()


def test_analyze_runs_takes_an_inversion_already_under_way(imaged) -> None:
    """An image run with a future given in ``inversions``: that future's outcome is what the
    image's result reports (here an error it carries), and no second fit is started."""
    from concurrent.futures import Future

    s, uid, _ = imaged
    assert s.writer.wait_stored(uid, timeout_s=120.0)
    given: Future = Future()
    given.set_exception(ValueError("the fit given in inversions"))
    (res,) = analyze_runs(s.catalog, [uid], inversions={uid: given})
    assert res["inversion"]["error"] == "the fit given in inversions"
    assert res["dgb_over_delta_method"] in ("boundary_steps", None)


def test_image_analysis_in_the_background_is_what_analyze_runs_reports(imaged) -> None:
    """An image analysed while the session goes on (reading its run once the writer has
    stored it) gives the result dict that analyze_runs computes itself, and analyze_runs
    takes it from ``image_results`` instead of analysing again."""
    from concurrent.futures import Future

    from lltolab.run_analysis import analyze_image_run_in_background

    s, uid, folder = imaged
    early = analyze_image_run_in_background(
        s.catalog, uid, figures_dir=folder / "early",
        wait_for=lambda: s.writer.wait_stored(uid, timeout_s=120.0))
    early_res = early.result(timeout=300)
    (again,) = analyze_runs(s.catalog, [uid], invert=False, figures_dir=folder / "late")
    marker: Future = Future()
    marker.set_result({**early_res, "from": "image_results"})
    (taken,) = analyze_runs(s.catalog, [uid], invert=False, image_results={uid: marker})
    wrong = analyze_image_run_in_background(s.catalog, "no-such-run")
    assert wrong.exception(timeout=60) is not None
    assert taken["from"] == "image_results"
    assert early_res["uid"] == uid and early_res["pixel_um"] == again["pixel_um"]
    same = {k: v for k, v in early_res.items() if k != "figures"}
    assert same == {k: v for k, v in again.items() if k != "figures"}
    assert same["median_dgb_over_delta_cm_s"] is not None and same["boundaries"]
    assert {p.split("/")[-1] for p in early_res["figures"]} == \
        {p.split("/")[-1] for p in again["figures"]}
