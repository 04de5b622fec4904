"""Analysis of stored runs (lltolab.run_analysis): what needs no image acquisition."""

from __future__ import annotations

from pathlib import Path

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
    image's documents (kept as ``s.image_documents``) may still be on their way to the
    catalog."""
    from lltolab.session import start

    folder = tmp_path_factory.mktemp("imaged")
    with start(sim=True, catalog=folder / "catalog", sample_id="S", callbacks=False) as s:
        plans, dv = s.plans, s.devices
        s.RE(plans.isotope_exchange(dv["cell"], dv["handler"], dv["clock"],
                                    duration_s=6 * 3600.0, record=s.record))
        s.RE.catalog_flush = None  # the call returns before the run is stored
        docs: list = []
        token = s.RE.subscribe(lambda name, doc: docs.append((name, doc)))
        (uid,) = s.RE(plans.sims_image(dv["sims"], dv["stage"], dv["clock"], acquisition_s=60.0,
                                       allow_unfrozen=True))
        s.RE.unsubscribe(token)
        s.image_documents = docs
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


def test_one_read_serves_the_analysis_and_the_inversion(imaged) -> None:
    """``load_image_run_in_background`` reads a stored image run once; the boundary-step
    analysis and the inversion given it as ``loaded`` use that read and never the catalog
    (here they are given none), and the analysis is what analyze_runs computes itself."""
    from concurrent.futures import Future

    from lltolab.run_analysis import (
        analyze_image_run_in_background,
        invert_run_in_background,
        load_image,
        load_image_run_in_background,
    )

    s, uid, folder = imaged
    loaded = load_image_run_in_background(
        s.catalog, uid, wait_for=lambda: s.writer.wait_stored(uid, timeout_s=120.0))
    start, img = loaded.result(timeout=120)
    assert start["uid"] == uid
    direct = load_image(s.catalog[uid])
    assert set(img) == set(direct) and img["n_pulses"] == direct["n_pulses"] > 0
    assert img["pixel_um"] == direct["pixel_um"]
    assert (img["i6"] == direct["i6"]).all() and (img["i7"] == direct["i7"]).all()
    assert img["i6"].shape == (206, 512) and img["i6"].sum() > 0

    res = analyze_image_run_in_background(None, "not read", loaded=loaded,
                                          figures_dir=folder / "shared").result(timeout=300)
    (again,) = analyze_runs(s.catalog, [uid], invert=False)
    assert res["uid"] == uid
    assert {k: v for k, v in res.items() if k != "figures"} == \
        {k: v for k, v in again.items() if k != "figures"}

    failed: Future = Future()
    failed.set_exception(ValueError("run 'x' is a 'count' run, not a sims_image run"))
    inv = invert_run_in_background(None, "not read", loaded=failed)
    assert "not a sims_image run" in str(inv.exception(timeout=60))
    wrong = load_image_run_in_background(s.catalog, "no-such-run")
    assert wrong.exception(timeout=60) is not None


def test_last_event_reads_array_nodes_and_event_table_columns(imaged) -> None:
    """An array-valued data key is read from its own node, a scalar one from the stream's
    event table: both give the last event's value."""
    from lltolab.run_analysis import _last_event
    from lltolab.vocabulary import DataKey

    s, uid, _ = imaged
    assert s.writer.wait_stored(uid, timeout_s=120.0)
    stream = s.catalog[uid]["primary"]
    counts = _last_event(stream, DataKey.LI6_COUNTS)
    assert counts.shape == (206, 512)
    scalar = _last_event(stream, "seq_num")
    assert scalar.shape == () and int(scalar) == 1
    assert (counts == stream[DataKey.LI6_COUNTS].read()[-1]).all()


def test_an_image_run_read_from_its_documents_is_what_the_catalog_holds(imaged) -> None:
    """load_image_documents (counts from the HDF5 assets the StreamResource documents name,
    configuration from the descriptor) gives the catalog's start document and image; the
    analysis of it in a spawned worker process is what analyze_runs reports."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from lltolab.run_analysis import (
        analyze_loaded_image,
        load_image,
        load_image_documents,
    )

    s, uid, folder = imaged
    assert s.writer.wait_stored(uid, timeout_s=120.0)
    start, img = load_image_documents(s.image_documents)
    stored = s.catalog[uid]
    direct = load_image(stored)
    assert start["uid"] == uid
    for key in ("uid", "scan_id", "plan_name", "thermal_history", "sample_id"):
        assert start.get(key) == stored.metadata["start"].get(key), key
    assert img["n_pulses"] == direct["n_pulses"] and img["pixel_um"] == direct["pixel_um"]
    assert img["i6"].dtype == direct["i6"].dtype
    assert (img["i6"] == direct["i6"]).all() and (img["i7"] == direct["i7"]).all()

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        res = pool.submit(analyze_loaded_image, (start, img),
                          figures_dir=folder / "process").result(timeout=300)
    (again,) = analyze_runs(s.catalog, [uid], invert=False)
    assert {k: v for k, v in res.items() if k != "figures"} == \
        {k: v for k, v in again.items() if k != "figures"}
    assert res["figures"] and all(Path(f).is_file() for f in res["figures"])


def test_load_image_documents_names_what_is_missing(imaged) -> None:
    from lltolab.run_analysis import load_image_documents

    s, uid, _ = imaged
    docs = s.image_documents
    start = next(d for n, d in docs if n == "start")
    with pytest.raises(ValueError, match="'count' run, not a sims_image run"):
        load_image_documents([("start", {**start, "plan_name": "count"})])
    with pytest.raises(ValueError, match="lack the primary descriptor"):
        load_image_documents([(n, d) for n, d in docs if n != "descriptor"])
    with pytest.raises(ValueError, match="sims_li7_counts"):
        load_image_documents([(n, d) for n, d in docs if n != "stream_resource"
                              or d["data_key"] != "sims_li7_counts"])
