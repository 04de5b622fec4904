"""lltolab demo's analyses at each image's and line profile's stop
(lltolab.cli._early.EarlyAnalyses), fed the documents of real runs."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest

from lltolab.catalog import close_catalogs
from lltolab.cli._early import EarlyAnalyses
from lltolab.run_analysis import analyze_runs, report_inversion


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
        assert set(early.inversion_reports) == {uid}
        res = early.image_results[uid].result(timeout=300)
        inv = early.inversions[uid].result(timeout=600)
        report = early.inversion_reports[uid].result(timeout=300)
    finally:
        early.close()
    # the report made in the worker is the one made here from the same fit and steps
    here = report_inversion(res, inv, figures_dir=folder / "report-here")
    assert {k: v for k, v in report.items() if k != "figures"} == \
        {k: v for k, v in here.items() if k != "figures"}
    assert [Path(f).name for f in report["figures"]] == [Path(f).name for f in here["figures"]]
    assert Path(report["figures"][0]).parent == folder / "early"
    assert Path(report["figures"][0]).is_file()
    assert report["dgb_over_delta_cm_s"] == inv.dgb_over_delta_cm_s
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
        assert early.image_results == {} and early.inversion_reports == {}
        assert set(early.inversions) == {uid}  # the inversion runs on a thread here
        assert f"run {uid} is analysed once stored: the analysis worker is gone" in caplog.text
        assert s.writer.wait_stored(uid, timeout_s=120.0)
        (res,) = analyze_runs(s.catalog, [uid], micrograph=micrograph,
                              image_results=early.image_results, inversions=early.inversions)
    finally:
        early.close()
    assert res["median_dgb_over_delta_cm_s"] is not None
    assert res["inversion"]["dgb_over_delta_cm_s"] > 0


def test_close_ends_a_worker_that_hangs_after_its_timeout(tmp_path, caplog) -> None:
    early = EarlyAnalyses(np.zeros((4, 4), dtype=bool), tmp_path / "figures")
    early._submit(early.image_results, "hung", "hung", time.sleep, 600.0)
    queued: dict = {}
    early._submit(queued, "next", "next", int, 1)  # not started when close comes: dropped
    (worker,) = early._workers
    pid = worker.pid
    deadline = time.monotonic() + 120
    while not early.image_results["hung"].running():  # handed to the worker: not cancellable
        assert time.monotonic() < deadline
        time.sleep(0.01)
    caplog.set_level(logging.WARNING, logger="lltolab.demo")
    t0 = time.monotonic()
    early.close(timeout_s=1.0)
    assert time.monotonic() - t0 < 60  # not the 600 s the analysis would take
    assert "still busy after 1.0 s: killing it" in caplog.text
    with pytest.raises(BrokenProcessPool):
        early.image_results["hung"].result(timeout=0)
    assert queued["next"].cancelled() or isinstance(queued["next"].exception(timeout=0),
                                                    BrokenProcessPool)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker process is gone (and reaped)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_close_names_a_bad_timeout_and_can_then_close(tmp_path, bad) -> None:
    early = EarlyAnalyses(np.zeros((4, 4), dtype=bool), tmp_path / "figures")
    try:
        with pytest.raises(ValueError, match=r"timeout_s must be finite and > 0 s, got"):
            early.close(timeout_s=bad)
    finally:
        early.close()
    assert not any(p.is_alive() for p in early._workers)


def test_close_ends_a_worker_that_hangs_in_its_imports(tmp_path, monkeypatch) -> None:
    import lltolab.cli._early as early_module

    (tmp_path / "lltolab_test_hangs_on_import.py").write_text(
        "import time\ntime.sleep(600)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned worker gets this path too
    monkeypatch.setattr(early_module, "_ANALYSIS_MODULE", "lltolab_test_hangs_on_import")
    early = EarlyAnalyses(np.zeros((4, 4), dtype=bool), tmp_path / "figures")
    (worker,) = early._workers
    early._submit(early.image_results, "waits", "waits", int, 1)
    t0 = time.monotonic()
    early.close(timeout_s=1.0)
    assert time.monotonic() - t0 < 60
    assert not worker.is_alive()
    job = early.image_results["waits"]  # dropped, or failed with the worker
    assert job.cancelled() or isinstance(job.exception(timeout=0), BrokenProcessPool)


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


def test_an_inversion_report_given_is_taken_and_a_failed_one_made_again(image_run,
                                                                        caplog) -> None:
    """analyze_runs takes an image's ``inversion`` entry from ``inversion_reports``; one that
    failed is made again from the fit given in ``inversions`` (and the failure logged)."""
    s, uid, _, micrograph, folder = image_run
    assert s.writer.wait_stored(uid, timeout_s=120.0)
    fit = EarlyAnalyses(micrograph, folder / "early-reports")
    try:
        for name, doc in image_run[2]:
            fit(name, doc)
        inversions = dict(fit.inversions)
        inversions[uid].result(timeout=600)
    finally:
        fit.close()
    marker: Future = Future()
    marker.set_result({"method": "inversion", "converged": False, "figures": [],
                       "from": "inversion_reports"})
    (taken,) = analyze_runs(s.catalog, [uid], micrograph=micrograph, inversions=inversions,
                            inversion_reports={uid: marker})
    assert taken["inversion"]["from"] == "inversion_reports"
    assert taken["dgb_over_delta_method"] == "boundary_steps"  # it did not converge
    failed: Future = Future()
    failed.set_exception(BrokenProcessPool("worker died"))
    caplog.set_level(logging.WARNING, logger="lltolab.run_analysis")
    (made,) = analyze_runs(s.catalog, [uid], micrograph=micrograph, inversions=inversions,
                           inversion_reports={uid: failed}, figures_dir=folder / "made")
    assert made["inversion"]["dgb_over_delta_cm_s"] == \
        inversions[uid].result().dgb_over_delta_cm_s
    assert made["dgb_over_delta_method"] == "inversion"
    assert any(f.endswith("_inversion.png") for f in made["figures"])
    assert f"report of the inversion of run {uid} failed (BrokenProcessPool" in caplog.text


@pytest.fixture(scope="module")
def profile_runs(tmp_path_factory):
    """A session's two line profiles (after a 24 h exchange; 48 h of storage between them),
    their uids and documents, stored."""
    from lltolab.session import start

    folder = tmp_path_factory.mktemp("early-profiles")
    positions = [0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 1.6, 2.0, 3.0, 4.0]
    with start(sim=True, catalog=folder / "catalog", sample_id="P", callbacks=False) as s:
        plans, dv = s.plans, s.devices
        s.RE(plans.isotope_exchange(dv["cell"], dv["handler"], dv["clock"],
                                    duration_s=24 * 3600.0, record=s.record))
        docs: list = []
        token = s.RE.subscribe(lambda name, doc: docs.append((name, doc)))
        uids = []
        for wait_s in (None, 48 * 3600.0):
            if wait_s is not None:
                s.RE(plans.store(dv["clock"], wait_s, record=s.record))
            uids += s.RE(plans.sims_line_profile(dv["sims"], dv["stage"], dv["clock"],
                                                 positions, acquisition_s=60.0,
                                                 allow_unfrozen=True, record=s.record))
        s.RE.unsubscribe(token)
        for uid in uids:
            assert s.writer.wait_stored(uid, timeout_s=120.0)
        yield s, uids, docs, folder
    close_catalogs()


def _without_figures(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "figures"} for r in results]


@pytest.mark.slow
def test_line_profiles_are_analysed_in_the_worker_after_the_one_before(profile_runs) -> None:
    """Each profile's analysis (erfc fit of the first, time evolution of the next from it)
    is made in the worker at its stop, keyed (uid before, uid), and is what analyze_runs
    computes itself from the catalog; analyze_runs takes it only under a matching key."""
    s, (first, second), docs, folder = profile_runs
    early = EarlyAnalyses(np.zeros((206, 512), dtype=bool), folder / "early")
    try:
        for name, doc in docs:  # the storage run between them is neither image nor profile
            early(name, doc)
        assert set(early.profile_results) == {(None, first), (first, second)}
        assert early.image_results == {} and early.inversions == {}
        made = [r for key in ((None, first), (first, second))
                for r in early.profile_results[key].result(timeout=300)]
    finally:
        early.close()
    here = analyze_runs(s.catalog, [first, second], figures_dir=folder / "here")
    assert _without_figures(made) == _without_figures(here)
    assert [r["uid"] for r in made] == [first, second]
    assert "erfc" in made[0] and made[1]["from_uid"] == first
    assert made[1]["d_eff_cm2_s"] > 0
    assert all(Path(f).is_file() and Path(f).parent == folder / "early"
               for r in made for f in r["figures"])

    marked = {}
    for key in early.profile_results:
        marker: Future = Future()
        marker.set_result([{"kind": "profiles", "uid": key[1], "from": str(key)}])
        marked[key] = marker
    taken = analyze_runs(s.catalog, [first, second], profile_results=marked)
    assert [r["from"] for r in taken] == [str((None, first)), str((first, second))]
    alone = analyze_runs(s.catalog, [second], profile_results=marked)  # no key (None, second)
    assert "from" not in alone[0] and "erfc" in alone[0]
    with_x0 = analyze_runs(s.catalog, [first], profile_results=marked, fit_x0=True)
    assert "from" not in with_x0[0]  # the ones given were fitted without an origin shift


@pytest.mark.slow
def test_a_failed_profile_analysis_is_done_again_and_an_unreadable_one_ends_the_chain(
        profile_runs, caplog) -> None:
    s, (first, second), docs, folder = profile_runs
    failed: Future = Future()
    failed.set_exception(BrokenProcessPool("worker died"))
    caplog.set_level(logging.WARNING)
    again = analyze_runs(s.catalog, [first, second], profile_results={(None, first): failed})
    assert _without_figures(again) == _without_figures(analyze_runs(s.catalog, [first, second]))
    assert f"background analysis of run {first} failed (BrokenProcessPool" in caplog.text

    early = EarlyAnalyses(np.zeros((206, 512), dtype=bool), folder / "early-unreadable")
    try:
        for name, doc in docs:  # the first profile's assets are not announced
            if not (name == "stream_resource" and doc["run_start"] == first):
                early(name, doc)
    finally:
        early.close()
    assert early.profile_results == {}  # nor the second: its predecessor is unknown
    assert f"run {first} and the profiles after it are analysed once stored" in caplog.text


@pytest.mark.slow
def test_a_profile_run_read_from_its_documents_is_what_the_catalog_holds(profile_runs) -> None:
    from lltolab.run_analysis import load_profile, load_profile_documents

    s, (first, _), docs, _ = profile_runs
    own = [(n, d) for n, d in docs if (d.get("run_start") or d.get("uid")) == first]
    start, x_cm, c = load_profile_documents(own)
    stored_x, stored_c = load_profile(s.catalog[first])
    assert start["uid"] == first and start["plan_name"] == "sims_line_profile"
    assert x_cm.dtype == stored_x.dtype and (x_cm == stored_x).all()
    assert (c == stored_c).all() and len(c) == 10 and 0 < c.max() <= 1
    with pytest.raises(ValueError, match="'sims_image' run, not a sims_line_profile run"):
        load_profile_documents([("start", {**start, "plan_name": "sims_image"})])
    with pytest.raises(ValueError, match="sims_profile_c"):
        load_profile_documents([(n, d) for n, d in own if n != "stream_resource"
                                or d["data_key"] != "sims_profile_c"])
