"""Run catalog: RunEngine -> journal + TiledWriter -> embedded tiled catalog -> read back.

One catalog folder and one in-process tiled app for the whole module (opening costs seconds);
two subprocesses: a reader (new process sees the runs) and a writer killed with SIGKILL mid-run.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.callbacks import LiveTable
from bluesky.plans import count, scan
from bluesky.preprocessors import pchain
from event_model import DocumentNames, schema_validators
from ophyd import Signal
from ophyd.sim import det, motor

from lltolab.catalog import (
    RECOVERED_REASON,
    CatalogWriteError,
    CatalogWriter,
    RunSummary,
    catalog_config,
    catalog_writer,
    close_catalogs,
    format_runs,
    init_catalog,
    list_runs,
    open_catalog,
    quick_list,
    read_journal,
    recover,
    replay,
    server_config_yaml,
    warm_up,
)
from lltolab.testing import free_port

pytestmark = pytest.mark.timeout(120)

IMAGE_SHAPE = (206, 512)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """Export folder of the simulated SurfaceLab (HDF5 assets land below it)."""
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def catalog(folder, exports):
    t0 = time.perf_counter()
    client = open_catalog(folder, readable_storage=[exports])
    print(f"\ncatalog open (new folder, incl. init): {time.perf_counter() - t0:.2f} s")
    yield client
    assert close_catalogs() >= 1


@pytest.fixture(scope="module")
def RE(catalog, folder):
    engine = RunEngine({})
    engine.subscribe(catalog_writer(folder))
    return engine


@pytest.fixture(scope="module")
def sims_run(RE, exports):
    """Two SIMS images (external HDF5 assets via StreamResource/StreamDatum) of a quenched
    virtual sample, through the real SurfaceLabExport device and simulator."""
    from lltolab.devices import SurfaceLabExport
    from lltolab.diffusion import VirtualSample
    from lltolab.sim_devices import SimsSettings, SurfaceLabSimulator, VirtualClock

    sample = VirtualSample.paper_default(seed=2, window_m=(-10e-6, 100e-6, 0.0, 40e-6))
    sample.set_environment(0.0, temperature_K=295.15, immersed=True)
    sample.set_environment(59 * 3600.0, temperature_K=163.15, immersed=False)
    sim = SurfaceLabSimulator(
        sample, VirtualClock(start_s=59 * 3600.0), exports, seed=21,
        settings=SimsSettings(field_of_view_um=(100.0, 40.0), pixels=(64, 26)),
    )
    sims = SurfaceLabExport(exports, name="sims", request=sim.request, timeout_s=20.0,
                            poll_s=0.02, sidecar_grace_s=0.3)
    (uid,) = RE(count([sims], num=2), sample_id="LLTO-sims")
    return uid


@pytest.fixture(scope="module")
def scan_run(RE):
    """A 5-point scan of det vs motor with a sample id."""
    (uid,) = RE(scan([det], motor, -1.0, 1.0, 5), sample_id="LLTO-A1", operator="test")
    return uid


def _run_child(code: str, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


# -- writing and reading in this process ---------------------------------------------------------
def test_scan_stored_with_metadata_and_table(catalog, folder, scan_run):
    run = catalog[scan_run]
    start, stop = run.metadata["start"], run.metadata["stop"]
    assert start["sample_id"] == "LLTO-A1" and start["plan_name"] == "scan"
    assert stop["exit_status"] == "success" and stop["num_events"] == {"primary": 5}
    table = run["primary"].read()
    np.testing.assert_allclose(table["motor"].values, np.linspace(-1.0, 1.0, 5))
    expected = np.exp(-(np.linspace(-1.0, 1.0, 5) ** 2) / 2)  # ophyd.sim det: Gaussian, sigma 1
    np.testing.assert_allclose(table["det"].values, expected, rtol=1e-12)
    assert catalog[start["scan_id"]].metadata["start"]["uid"] == scan_run
    assert not list((folder / "journal").glob("*.jsonl"))  # settled at stop


def test_latest_and_search(catalog, RE, scan_run):
    (uid,) = RE(count([det], num=3), sample_id="LLTO-B2")
    assert catalog[-1].metadata["start"]["uid"] == uid
    from tiled.queries import Key

    found = catalog.search(Key("sample_id") == "LLTO-B2")
    assert uid in list(found)
    assert scan_run not in list(found)


def test_array_field_round_trip(catalog, RE):
    image = np.arange(np.prod(IMAGE_SHAPE), dtype=np.int64).reshape(IMAGE_SHAPE)
    camera = Signal(name="camera", value=image)
    (uid,) = RE(count([camera, det], num=2), sample_id="LLTO-img")
    run = catalog[uid]
    stored = run["primary"]["camera"].read()
    assert stored.shape == (2, *IMAGE_SHAPE)
    np.testing.assert_array_equal(np.asarray(stored[1]), image)


def test_external_sims_images_read_back(catalog, sims_run, exports):
    from lltolab.formats import read_bif6

    stream = catalog[sims_run]["primary"]
    li6 = stream["sims_li6_counts"].read()
    assert li6.shape == (2, 26, 64) and li6.dtype == np.uint32
    for k, source in enumerate(stream["sims_source_file"].read()):
        assert Path(source).parent == exports
        np.testing.assert_array_equal(li6[k], read_bif6(str(source))[0].counts)
    assert catalog[sims_run].metadata["stop"]["exit_status"] == "success"


def test_replay_documents_through_callbacks(catalog, scan_run, capsys):
    seen: list[tuple[str, dict]] = []
    n = replay(catalog[scan_run], [LiveTable(["motor", "det"]), lambda n, d: seen.append((n, d))])
    names = [name for name, _ in seen]
    assert n == len(seen)
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 5
    for name, doc in seen:
        schema_validators[DocumentNames[name]].validate(doc)
    assert [d["seq_num"] for name, d in seen if name == "event"] == [1, 2, 3, 4, 5]
    assert "det" in capsys.readouterr().out  # LiveTable printed the run


def test_list_runs_rows(catalog, scan_run):
    rows = list_runs(catalog, n=50)
    assert all(isinstance(r, RunSummary) for r in rows)
    row = next(r for r in rows if r.uid == scan_run)
    assert (row.plan_name, row.sample_id, row.exit_status) == ("scan", "LLTO-A1", "success")
    assert row.scan_id >= 1 and row.start_time > 1.6e9
    assert len(list_runs(catalog, n=1)) == 1
    text = format_runs(rows)
    assert scan_run[:8] in text and "LLTO-A1" in text
    with pytest.raises(ValueError, match="n must be"):
        list_runs(catalog, n=0)


# -- a new process reads what this one wrote ----------------------------------------------------
@pytest.mark.slow
def test_new_process_reads_runs(catalog, folder, scan_run, sims_run):
    code = """
        import json, sys
        from lltolab.catalog import open_catalog
        cat = open_catalog(sys.argv[1])
        run = cat[sys.argv[2]]
        start = run.metadata["start"]
        print(json.dumps({
            "sample": start["sample_id"],
            "motor": run["primary"].read()["motor"].values.tolist(),
            "by_scan_id": cat[start["scan_id"]].metadata["start"]["uid"],
            "latest": cat[-1].metadata["start"]["uid"],
            "exit": run.metadata["stop"]["exit_status"],
            "li6_sum": int(cat[sys.argv[3]]["primary"]["sims_li6_counts"].read().sum()),
        }))
    """
    latest = catalog[-1].metadata["start"]["uid"]
    proc = _run_child(code, str(folder), scan_run, sims_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sample"] == "LLTO-A1" and out["exit"] == "success"
    np.testing.assert_allclose(out["motor"], np.linspace(-1.0, 1.0, 5))
    assert out["by_scan_id"] == scan_run and out["latest"] == latest
    # readable_storage (the exports folder) is remembered by the catalog folder
    assert out["li6_sum"] == int(catalog[sims_run]["primary"]["sims_li6_counts"].read().sum())


# -- durability ---------------------------------------------------------------------------------
_KILLED_WRITER = """
    import itertools, sys
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import SynSignal
    from lltolab.catalog import catalog_writer

    ticks = itertools.count(1)
    ticker = SynSignal(func=lambda: float(next(ticks)), name="ticker")
    RE = RunEngine({})
    RE.subscribe(catalog_writer(sys.argv[1], batch_size=7))  # some rows reach tiled, some not

    def announce(name, doc):  # subscribed after the writer: runs once the writer returned
        if name == "start":
            print("start", doc["uid"], flush=True)
        elif name == "event":
            print("event", doc["seq_num"], doc["data"]["ticker"], flush=True)

    RE.subscribe(announce)
    RE(count([ticker], num=100000, delay=0.01), sample_id="LLTO-kill")
"""


def _lines_until(proc: subprocess.Popen, done, timeout: float) -> list[str]:
    """stdout lines of ``proc`` up to the first one for which ``done(line)`` (a reader thread)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError(f"child gave {got[-3:]} within {timeout} s") from None
        if line is None:
            raise AssertionError(f"child exited with {proc.poll()} after {got[-3:]}")
        got.append(line)
        if done(line):
            proc.lines = lines  # the rest, read after the kill
            return got


def _rest(proc: subprocess.Popen, timeout: float = 10.0) -> list[str]:
    got = []
    while (line := proc.lines.get(timeout=timeout)) is not None:
        got.append(line)
    return got


def test_kill_9_mid_run_loses_no_emitted_event(catalog, folder):
    path = folder / "kill-child.py"
    path.write_text(textwrap.dedent(_KILLED_WRITER))
    proc = subprocess.Popen(
        [sys.executable, str(path), str(folder)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        lines = _lines_until(
            proc, lambda line: line.startswith("event ") and int(line.split()[1]) >= 40, 90.0
        )
        # read while the child writes (SQLite WAL: one writer, other readers)
        live_uid = next(line.split()[1] for line in lines if line.startswith("start "))
        live = next(r for r in list_runs(catalog, n=5) if r.uid == live_uid)
        assert live.exit_status is None and live.sample_id == "LLTO-kill"
        quick = next(r for r in quick_list(folder, n=5) if r.uid == live_uid)
        assert quick.exit_status is None and not quick.interrupted  # its writer holds it
        assert quick.as_row().endswith("open")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        lines += _rest(proc)
        # catalog faults: a crashed run is shown as interrupted at once, not as open
        crashed = next(r for r in quick_list(folder, n=5) if r.uid == live_uid)
        assert crashed.interrupted and crashed.as_row().endswith("interrupted")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    uid = next(line.split()[1] for line in lines if line.startswith("start "))
    emitted = {int(x.split()[1]): float(x.split()[2]) for x in lines if x.startswith("event ")}
    assert len(emitted) >= 40

    partial = catalog[uid]  # start + some 7-row batches reached tiled; no stop
    assert not partial.metadata.get("stop")
    n_partial = len(partial["primary"].read()["ticker"])  # whole 7-row batches only
    assert n_partial > 0 and n_partial % 7 == 0 and n_partial <= len(emitted)
    assert (folder / "journal" / f"{uid}.jsonl").exists()

    assert recover(folder) == [uid]
    run = catalog[uid]
    stop = run.metadata["stop"]
    assert stop["exit_status"] == "fail" and stop["reason"] == RECOVERED_REASON
    table = run["primary"].read()
    stored = dict(zip(table["seq_num"].values.tolist(), table["ticker"].values.tolist(),
                      strict=True)) if "seq_num" in table else None
    if stored is None:  # seq_num is not a column of the xarray view: rows are in order
        stored = {i + 1: v for i, v in enumerate(table["ticker"].values.tolist())}
    for seq, value in emitted.items():
        assert stored[seq] == value, seq
    assert sorted(stored) == list(range(1, len(stored) + 1))
    assert stop["num_events"] == {"primary": len(stored)}
    assert not (folder / "journal" / f"{uid}.jsonl").exists()
    assert recover(folder) == []  # idempotent


def test_recover_leaves_a_live_run_alone(catalog, folder):
    writer = CatalogWriter(catalog, journal_dir=folder / "journal")
    start = {"uid": "0e0e0e0e-live-0000-0000-000000000001", "time": time.time(), "scan_id": 999}
    writer("start", start)
    try:
        assert recover(folder) == []
        assert (folder / "journal" / f"{start['uid']}.jsonl").exists()
        assert writer.open_runs == [start["uid"]]
    finally:
        writer("stop", {"uid": "0e0e0e0e-live-0000-0000-000000000002", "time": time.time(),
                        "run_start": start["uid"], "exit_status": "abort", "reason": "test",
                        "num_events": {}})
    assert catalog[start["uid"]].metadata["stop"]["exit_status"] == "abort"
    assert not (folder / "journal" / f"{start['uid']}.jsonl").exists()


@pytest.mark.filterwarnings("ignore:The callback:UserWarning")  # event-model relays the 409
def test_tiled_failure_does_not_stop_the_run_and_journal_is_settled(catalog, folder, scan_run):
    # Replaying an already stored run makes TiledWriter fail (the run container exists):
    # the writer must swallow it, keep the journal, and settle it at stop.
    docs = list(read_journal_from_run(catalog[scan_run]))
    writer = CatalogWriter(catalog, journal_dir=folder / "journal")
    for name, doc in docs:
        writer(name, doc)
    assert writer.failed_runs == [scan_run]
    assert not (folder / "journal" / f"{scan_run}.jsonl").exists()
    assert catalog[scan_run].metadata["stop"]["exit_status"] == "success"


def read_journal_from_run(run):
    for name, doc in run.documents():
        yield name, json.loads(json.dumps(doc.to_dict() if hasattr(doc, "to_dict") else doc))


def test_recover_adds_a_run_the_catalog_never_saw_and_sets_aside_garbage(catalog, folder):
    docs: list[tuple[str, dict]] = []
    engine = RunEngine({})
    engine.subscribe(lambda name, doc: docs.append((name, doc)))
    (uid,) = engine(count([det], num=4), sample_id="LLTO-lost")
    journal = folder / "journal"
    lines = [json.dumps({"name": n, "doc": d}) for n, d in docs[:-2]]  # lost: last event, stop
    (journal / f"{uid}.jsonl").write_text("\n".join(lines) + "\n")
    (journal / "garbage.jsonl").write_text("not json\nat all\n")
    assert recover(folder) == [uid]
    run = catalog[uid]
    assert run.metadata["stop"]["reason"] == RECOVERED_REASON
    assert run.metadata["stop"]["num_events"] == {"primary": 3}
    assert run["primary"].read()["det"].shape == (3,)
    assert (journal / "garbage.bad").exists() and not (journal / "garbage.jsonl").exists()
    (journal / "garbage.bad").unlink()


def test_background_writer_journals_before_the_catalog_is_open(catalog, folder):
    from concurrent.futures import Future

    # the catalog opens 0.3 s after the run started: the run is stored normally
    pending: Future = Future()
    threading.Timer(0.3, lambda: pending.set_result(catalog)).start()
    engine = RunEngine({})
    engine.subscribe(CatalogWriter(pending, journal_dir=folder / "journal"))
    (uid,) = engine(count([det], num=3), sample_id="LLTO-late")
    assert catalog[uid].metadata["stop"]["exit_status"] == "success"

    # the catalog never opens: the run fails loudly, nothing is lost, recover() writes it later
    failed: Future = Future()
    failed.set_exception(OSError("catalog disk unavailable"))
    writer = CatalogWriter(failed, journal_dir=folder / "journal")
    engine = RunEngine({})
    engine.subscribe(writer)
    with pytest.raises(CatalogWriteError, match="NOT in the catalog.*catalog disk unavailable"):
        engine(count([det], num=3), sample_id="LLTO-offline")
    (uid,) = writer.failed_runs
    assert (folder / "journal" / f"{uid}.jsonl").exists()
    assert recover(folder) == [uid]
    assert catalog[uid].metadata["stop"]["exit_status"] == "success"  # the real stop was kept
    assert len(catalog[uid]["primary"].read()["det"]) == 3

    assert warm_up(folder).result(timeout=60) is catalog  # one app per process and folder
    t0 = time.perf_counter()
    writer = catalog_writer(folder, background=True)
    assert time.perf_counter() - t0 < 1.0
    engine = RunEngine({})
    engine.subscribe(writer)
    (uid,) = engine(count([det], num=2), sample_id="LLTO-bg")
    assert len(catalog[uid]["primary"].read()["det"]) == 2


# -- pieces -------------------------------------------------------------------------------------
def test_init_catalog_creates_once_from_many_threads_and_reports_failure(tmp_path):
    """Three threads initialise one new folder at once: one database, later calls are instant;
    a database path that is a folder fails with one clear error."""
    from lltolab.catalog import CatalogAccessError

    folder = tmp_path / "new"
    errors: list[BaseException] = []

    def init() -> None:
        try:
            init_catalog(folder)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=init) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=200)
    assert not errors and (folder / "catalog.db").is_file()
    marker = folder / ".tiled-initialized"  # written once, after the one tiled catalog init
    stamp = marker.stat().st_mtime_ns
    assert init_catalog(folder) == folder.resolve()
    assert marker.stat().st_mtime_ns == stamp
    broken = tmp_path / "broken"
    (broken / "catalog.db").mkdir(parents=True)
    with pytest.raises(CatalogAccessError, match="cannot be created"):
        init_catalog(broken)


def test_embedded_app_serves_without_dependency_overrides_and_shuts_down_cleanly(tmp_path):
    """While an override is registered FastAPI rebuilds every request's dependency tree; the
    app serves without it (same settings object) and tiled's shutdown finds it again."""
    from tiled.client import from_context
    from tiled.server.settings import get_settings

    from lltolab.catalog._tiled_app import build_app, embedded_context

    folder = init_catalog(tmp_path / "c")
    app = build_app(catalog_config(folder, init_if_not_exists=False))
    override = app.dependency_overrides[get_settings]
    context = embedded_context(app)
    try:
        assert app.dependency_overrides == {}
        assert override() is get_settings()
        client = from_context(context)
        client.create_container("x-container", metadata={"a": 1})
        assert list(client) == ["x-container"]
        assert client.values().first().metadata["a"] == 1
    finally:
        context.close()
    assert app.dependency_overrides == {get_settings: override}


def test_read_journal_drops_torn_last_line_only(tmp_path):
    good = [json.dumps({"name": "start", "doc": {"uid": "u"}}),
            json.dumps({"name": "event", "doc": {"seq_num": 1}})]
    path = tmp_path / "j.jsonl"
    path.write_text("\n".join(good) + '\n{"name": "event", "doc": {"seq')
    assert [n for n, _ in read_journal(path)] == ["start", "event"]
    path.write_text(good[0] + "\n{broken\n" + good[1] + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_journal(path)


def test_bad_arguments_rejected(tmp_path, catalog):
    with pytest.raises(ValueError, match="batch_size"):
        CatalogWriter(catalog, journal_dir=tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="callback"):
        replay(None, [])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        open_catalog(tmp_path / "file")
    with pytest.raises(ValueError, match="no catalog in"):
        open_catalog(tmp_path / "nothing-here", create=False)
    assert not (tmp_path / "nothing-here").exists()
    with pytest.raises(ValueError, match="catalog_uri"):
        server_config_yaml(catalog_uri="mysql://x")


def test_configs_validate_against_tiled(tmp_path):
    import yaml
    from tiled.config import Config

    config = catalog_config(tmp_path, readable_storage=[tmp_path / "exports"])
    assert config["catalog"]["uri"] == f"sqlite:///{tmp_path.resolve()}/catalog.db"
    assert config["catalog"]["uri"].startswith("sqlite:////")
    Config.model_validate(config)
    rendered = yaml.safe_load(server_config_yaml())
    assert rendered["catalog"]["uri"].startswith("postgresql://")
    assert rendered["media_types"]["BlueskyRun"]["application/json-seq"].endswith(
        "json_seq_exporter")
    Config.model_validate(rendered)


# -- scale-out: the same code against a tiled server --------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_tiled_server_uri_with_api_key(tmp_path):
    server_folder = tmp_path / "server"
    server_folder.mkdir()
    config = tmp_path / "config.yml"
    config.write_text(json.dumps(catalog_config(server_folder)))  # JSON is YAML
    port, key = free_port(), secrets.token_hex(16)  # tiled wants an alphanumeric key
    env = {**os.environ, "TILED_SINGLE_USER_API_KEY": key}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("tiled")), "serve", "config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:  # wait for the port with plain connects (tiled's client retries slowly)
            try:
                httpx.get(f"{uri}/api/v1/", timeout=2.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        engine = RunEngine({})
        writer = catalog_writer(uri, api_key=key, journal_dir=tmp_path / "journal")
        engine.subscribe(writer)
        (uid,) = engine(scan([det], motor, 0.0, 1.0, 3), sample_id="LLTO-srv")
        run = open_catalog(uri, api_key=key)[uid]
        np.testing.assert_allclose(run["primary"].read()["motor"].values, [0.0, 0.5, 1.0])
        assert run.metadata["stop"]["exit_status"] == "success"
        assert [n for n, _ in run.documents()].count("event") == 3
        assert not list((tmp_path / "journal").glob("*.jsonl"))
        with pytest.raises(Exception, match="401|403|[Uu]nauthori|[Ff]orbidden|API key"):
            _ = open_catalog(uri, api_key="wrong")[uid].metadata
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


# -- quick reads (the CLI's runs / replay without tiled's stack) -------------------------------
def test_quick_list_matches_tiled_and_archive_replays_the_original_documents(
        catalog, folder, scan_run, sims_run):
    from lltolab.catalog import iter_documents, parse_run_ref, quick_list, quick_uid

    assert quick_list(folder, n=50) == list_runs(catalog, n=50)
    assert quick_list(folder, n=2) == list_runs(catalog, n=2)
    start = catalog[scan_run].metadata["start"]
    for scan_id in {r.scan_id for r in list_runs(catalog, n=50)}:  # newest of that scan_id
        assert quick_uid(folder, scan_id) == catalog[scan_id].metadata["start"]["uid"]
    assert quick_uid(folder, scan_run[:10]) == scan_run
    assert quick_uid(folder, -1) == catalog[-1].metadata["start"]["uid"]
    with pytest.raises(ValueError, match="no run"):
        quick_uid(folder, 10**6)
    with pytest.raises(ValueError, match="run 0"):
        parse_run_ref("0")
    with pytest.raises(ValueError, match="5 characters"):
        parse_run_ref("ab")
    assert parse_run_ref("-2") == -2 and parse_run_ref(" 7 ") == 7
    # the archive holds exactly what the RunEngine emitted (original uids)
    docs = list(iter_documents(folder, scan_run))
    assert docs[0] == ("start", json.loads(json.dumps(start)))
    assert [n for n, _ in docs].count("event") == 5 and docs[-1][0] == "stop"
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    assert iter_documents(folder, "0000-not-a-run") is None
    with pytest.raises(ValueError, match="no catalog in"):
        quick_list(folder / "nothing")


@pytest.mark.timeout(200)
def test_cli_runs_and_replay_answer_fast(folder, scan_run):
    """CPU time of the whole command (Python start included): ≤ 1 s on this catalog."""
    import resource

    for args in (("runs", "--catalog", str(folder)), ("replay", scan_run[:8], "--catalog",
                                                      str(folder))):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-m", "lltolab.cli", *args], capture_output=True,
                              text=True, timeout=120, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert proc.returncode == 0, proc.stderr
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert cpu < 1.0, (args, cpu)
    assert "replayed" in proc.stdout and scan_run in proc.stdout
    assert "motor" in proc.stdout and "det" in proc.stdout  # the table of the scan


def test_databroker_v1_api_on_an_lltolab_catalog(catalog, folder, scan_run, sims_run):
    """databroker's v1 API, in a reader process of its own (importing databroker's v1 layer
    changes how tiled clients in that process present event streams)."""
    code = """
        import json, sys
        import numpy as np
        from databroker import Broker
        from lltolab.catalog import open_catalog

        cat = open_catalog(sys.argv[1])
        db = Broker(cat)
        table = db[sys.argv[2]].table()
        print(json.dumps({
            "motor": table["motor"].values.tolist(),
            "index": [int(i) for i in table.index],
            "sample": db[sys.argv[2]].start["sample_id"],
            "latest_v1": cat.v1[-1].start["uid"],
            "latest": cat[-1].metadata["start"]["uid"],
            "sims_rows": len(cat.v1[sys.argv[3]].table()),
        }))
    """
    proc = _run_child(code, str(folder), scan_run, sims_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["motor"], np.linspace(-1.0, 1.0, 5))
    assert out["index"] == [1, 2, 3, 4, 5]
    assert out["sample"] == "LLTO-A1"
    assert out["latest_v1"] == out["latest"]
    assert out["sims_rows"] == 2


# -- catalog faults: named regression tests ------------------------------------------------------
def _journal_of_a_run(num: int) -> tuple[str, list[tuple[str, dict]]]:
    docs: list[tuple[str, dict]] = []
    engine = RunEngine({})
    engine.subscribe(lambda name, doc: docs.append((name, json.loads(json.dumps(doc)))))
    (uid,) = engine(count([det], num=num), sample_id="LLTO-salvage")
    return uid, docs


def test_catalog_fault_recovery_keeps_every_readable_journal_line(catalog, folder):
    uid, docs = _journal_of_a_run(6)
    lines = [json.dumps({"name": n, "doc": d}) for n, d in docs[:-1]]  # crashed before stop
    events = [i for i, (n, _) in enumerate(docs) if n == "event"]
    lines[events[2]] = lines[events[2]][:40] + "\x00garbled"  # one corrupt line mid-file
    journal = folder / "journal" / f"{uid}.jsonl"
    journal.write_text("\n".join(lines) + "\n")
    assert recover(folder) == [uid]
    run = catalog[uid]
    assert run["primary"].read()["det"].shape == (5,)  # the 5 readable events of 6
    assert run.metadata["stop"]["num_events"] == {"primary": 5}
    assert "garbled" in (folder / "journal" / f"{uid}.unreadable").read_text()
    (folder / "journal" / f"{uid}.unreadable").unlink()


def test_queued_writer_never_holds_the_plan_and_the_call_returns_with_the_runs_stored(
        catalog, folder):
    from concurrent.futures import Future

    from lltolab._stored_run_engine import StoredRunEngine

    # the catalog opens 1.5 s after the plan began: the plan's runs are taken meanwhile (the
    # RunEngine waits only for the journal), the call returns once both runs are stored
    pending: Future = Future()
    threading.Timer(1.5, lambda: pending.set_result(catalog)).start()
    writer = CatalogWriter(pending, journal_dir=folder / "journal", queued=True)
    engine = StoredRunEngine({}, flush=writer.flush)
    engine.subscribe(writer)
    stops: list[float] = []
    engine.subscribe(lambda name, doc: stops.append(time.monotonic()) if name == "stop" else 0)
    t0 = time.monotonic()
    uids = engine(pchain(count([det], num=3), count([det], num=2)), sample_id="LLTO-q")
    assert len(uids) == 2 and time.monotonic() - t0 >= 1.4
    assert stops[-1] - t0 < 1.0  # both runs ended before the catalog was open
    for uid, n in zip(uids, (3, 2), strict=True):
        assert writer.wait_stored(uid, timeout_s=0.0)
        assert catalog[uid]["primary"].read()["det"].shape == (n,)
    assert not list((folder / "journal").glob("*.jsonl"))
    assert not writer.wait_stored("no-such-run", timeout_s=0.0)

    # the catalog never opens: the RunEngine call raises, the journals keep every document
    failed: Future = Future()
    failed.set_exception(OSError("catalog disk unavailable"))
    writer = CatalogWriter(failed, journal_dir=folder / "journal", queued=True)
    engine = StoredRunEngine({}, flush=writer.flush)
    engine.subscribe(writer)
    with pytest.raises(CatalogWriteError, match="NOT in the catalog.*catalog disk unavailable"):
        engine(count([det], num=3), sample_id="LLTO-offline")
    (uid,) = writer.failed_runs
    assert [n for n, _ in read_journal(folder / "journal" / f"{uid}.jsonl")].count("event") == 3
    assert recover(folder) == [uid]
    assert len(catalog[uid]["primary"].read()["det"]) == 3

    # a plan that fails still leaves its run stored before the call raises the plan's error
    writer = CatalogWriter(catalog, journal_dir=folder / "journal", queued=True)
    engine = StoredRunEngine({}, flush=writer.flush)
    engine.subscribe(writer)

    def failing():
        yield from count([det], num=1)
        raise RuntimeError("the plan broke")

    seen: list[str] = []
    engine.subscribe(lambda name, doc: seen.append(doc["uid"]) if name == "start" else 0)
    with pytest.raises(RuntimeError, match="the plan broke"):
        engine(failing(), sample_id="LLTO-fail")
    assert catalog[seen[-1]].metadata["stop"]["exit_status"] == "success"


def test_catalog_fault_recovery_without_a_readable_start_keeps_the_run(catalog, folder):
    uid, docs = _journal_of_a_run(3)
    lines = [json.dumps({"name": n, "doc": d}) for n, d in docs]
    lines[0] = "{torn start"
    (folder / "journal" / f"{uid}.jsonl").write_text("\n".join(lines) + "\n")
    assert recover(folder) == [uid]
    run = catalog[uid]
    assert run.metadata["start"]["recovered_without_start"] is True
    assert run.metadata["stop"]["exit_status"] == "success"  # the real stop was kept
    assert run["primary"].read()["det"].shape == (3,)
    (folder / "journal" / f"{uid}.unreadable").unlink()


def test_catalog_fault_failed_write_fails_the_run_loudly(tmp_path):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "catalog.db").write_bytes(b"this is not an SQLite database" * 100)
    writer = catalog_writer(bad, background=True)
    engine = RunEngine({})
    engine.subscribe(writer)
    seen: list[str] = []
    engine.subscribe(lambda name, doc: seen.append(name))
    engine.subscribe(writer.failure_check())  # last: every other callback sees the stop
    with pytest.raises(CatalogWriteError, match="NOT in the catalog"):
        engine(count([det], num=2), sample_id="LLTO-corrupt")
    assert seen[-1] == "stop" and engine.state == "idle"
    (uid,) = writer.failed_runs
    kept = read_journal(bad / "journal" / f"{uid}.jsonl")  # nothing lost
    assert [n for n, _ in kept].count("event") == 2 and kept[-1][0] == "stop"


def test_the_in_process_catalog_serves_no_prometheus_metrics_a_server_config_does(tmp_path):
    from lltolab.catalog._tiled_app import build_app, embedded_context

    client = open_catalog(tmp_path / "c")
    assert client.context.http_client.get("/api/v1/metrics").status_code == 404
    config = catalog_config(tmp_path / "c", init_if_not_exists=False)
    assert config["metrics"] == {"prometheus": True}
    served = embedded_context(build_app(config))
    try:
        response = served.http_client.get("/api/v1/metrics")
        assert response.status_code == 200
        assert "tiled_request_duration_seconds" in response.text
    finally:
        served.close()


def test_stream_closes_are_answered_in_process_only_where_nothing_observes_streams(tmp_path):
    """tiled looks the node up to tell its streaming cache and webhooks; with neither, the
    in-process client answers tiled's 200 itself (so even a node that does not exist)."""
    from lltolab.catalog._tiled_app import build_app, embedded_context

    folder = init_catalog(tmp_path / "c")
    app = build_app(catalog_config(folder, init_if_not_exists=False, metrics=False))
    assert app.state.lltolab_streams_observed is False
    quiet = embedded_context(app)
    try:
        response = quiet.http_client.delete("/api/v1/stream/close/no-such-node")
        assert (response.status_code, response.json()) == (200, None)
        # the rest still reaches tiled
        assert quiet.http_client.get("/api/v1/metadata/no-such-node").status_code == 404
    finally:
        quiet.close()
    observed = build_app(catalog_config(folder, init_if_not_exists=False, metrics=False))
    observed.state.lltolab_streams_observed = True  # as with a streaming cache or webhooks
    served = embedded_context(observed)
    try:
        assert served.http_client.delete("/api/v1/stream/close/no-such-node").status_code == 404
    finally:
        served.close()
    with_hooks = dict(catalog_config(folder, init_if_not_exists=False, metrics=False),
                      webhooks={"secret_keys": ["x" * 32]})
    assert build_app(with_hooks).state.lltolab_streams_observed is True
