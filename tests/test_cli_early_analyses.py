"""lltolab demo's analyses at each image's stop (lltolab.cli._early.EarlyAnalyses), fed the
documents of a real image run."""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from lltolab.catalog import close_catalogs
from lltolab.cli._early import EarlyAnalyses
from lltolab.run_analysis import analyze_runs


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A session's image run (after a 6 h exchange) and its documents, stored."""
    from lltolab.session import start

    folder = tmp_path_factory.mktemp("early")
    with start(sim=True, catalog=folder / "catalog", sample_id="S", callbacks=False) as s:
        plans, dv = s.plans, s.devices
        s.RE(plans.isotope_exchange(dv["cell"], dv["handler"], dv["clock"],
                                    duration_s=6 * 3600.0, record=s.record))
        docs: list = []
        token = s.RE.subscribe(lambda name, doc: docs.append((name, doc)))
        (uid,) = s.RE(plans.sims_image(dv["sims"], dv["stage"], dv["clock"], acquisition_s=60.0,
                                       allow_unfrozen=True, record=s.record))
        s.RE.unsubscribe(token)
        yield s, uid, docs, s.lab.sims.micrograph(), folder
    close_catalogs()


def test_an_image_is_analysed_in_the_worker_and_inverted_at_its_stop(image_run) -> None:
    s, uid, docs, micrograph, folder = image_run
    early = EarlyAnalyses(micrograph, folder / "early")
    try:
        for name, doc in docs:
            early(name, doc)
        assert early.plan_names == {uid: "sims_image"}
        assert set(early.image_results) == set(early.inversions) == {uid}
        res = early.image_results[uid].result(timeout=300)
        inv = early.inversions[uid].result(timeout=600)
    finally:
        early.close()
    assert s.writer.wait_stored(uid, timeout_s=120.0)
    (again,) = analyze_runs(s.catalog, [uid], invert=False, micrograph=micrograph)
    assert res["uid"] == uid and res["figures"]
    assert res["boundaries"] and res["median_dgb_over_delta_cm_s"] is not None
    assert {k: v for k, v in res.items() if k != "figures"} == \
        {k: v for k, v in again.items() if k != "figures"}
    assert np.isfinite(inv.dgb_over_delta_cm_s) and inv.dgb_over_delta_cm_s > 0
    assert inv.grain_source and inv.n_pixels > 0


def test_a_failed_or_unreadable_image_is_left_to_the_catalog(image_run, caplog) -> None:
    s, uid, docs, micrograph, folder = image_run
    early = EarlyAnalyses(micrograph, folder / "early-failed")
    try:
        for name, doc in docs:  # the run failed: nothing is analysed early
            early(name, {**doc, "exit_status": "fail"} if name == "stop" else doc)
        assert early.image_results == {} and early.inversions == {}
        caplog.set_level(logging.WARNING, logger="lltolab.demo")
        for name, doc in docs:  # its counts' assets are not announced: left out, said so
            if name != "stream_resource":
                early(name, doc)
        assert early.image_results == {} and early.inversions == {}
        assert f"run {uid} is analysed once stored" in caplog.text
        assert "sims_li6_counts" in caplog.text
    finally:
        early.close()


def test_a_dead_worker_neither_stops_the_workflow_nor_loses_the_analysis(image_run,
                                                                        caplog) -> None:
    s, uid, docs, micrograph, folder = image_run
    early = EarlyAnalyses(micrograph, folder / "early-dead-worker")
    try:
        gone = early._pool.submit(os._exit, 1)  # the worker process ends abruptly
        with pytest.raises(BrokenProcessPool):
            gone.result(timeout=120)
        caplog.set_level(logging.WARNING, logger="lltolab.demo")
        for name, doc in docs:  # a RunEngine callback: it must not raise
            early(name, doc)
        assert early.image_results == {}
        assert set(early.inversions) == {uid}  # the inversion runs on a thread here
        assert f"run {uid} is analysed once stored: the analysis worker is gone" in caplog.text
        assert s.writer.wait_stored(uid, timeout_s=120.0)
        (res,) = analyze_runs(s.catalog, [uid], micrograph=micrograph,
                              image_results=early.image_results, inversions=early.inversions)
    finally:
        early.close()
    assert res["median_dgb_over_delta_cm_s"] is not None
    assert res["inversion"]["dgb_over_delta_cm_s"] > 0


def test_a_background_analysis_that_failed_is_done_again_from_the_catalog(image_run,
                                                                           caplog) -> None:
    s, uid, _, micrograph, _ = image_run
    assert s.writer.wait_stored(uid, timeout_s=120.0)
    failed: Future = Future()
    failed.set_exception(BrokenProcessPool("worker died"))
    caplog.set_level(logging.WARNING, logger="lltolab.run_analysis")
    (res,) = analyze_runs(s.catalog, [uid], invert=False, micrograph=micrograph,
                          image_results={uid: failed})
    (again,) = analyze_runs(s.catalog, [uid], invert=False, micrograph=micrograph)
    assert res == again
    assert f"background analysis of run {uid} failed (BrokenProcessPool: worker died)" in \
        caplog.text
