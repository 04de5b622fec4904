"""Scale-out: ``lltolab server`` (tiled's server) on a real PostgreSQL, clients over HTTP.

A private PostgreSQL cluster is started for the module (:class:`PostgresCluster`). Without the
PostgreSQL binaries the tests skip, unless ``LLTOLAB_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lltolab.catalog import (
    CatalogAccessError,
    PostgresCluster,
    PostgresUnavailable,
    list_runs,
    open_catalog,
    quick_list,
)

pytestmark = pytest.mark.timeout(300)
KEY = "lltolabtestkey0123"
LLTOLAB = [sys.executable, "-m", "lltolab.cli"]


@pytest.fixture(scope="module")
def postgres():
    try:
        cluster = PostgresCluster()
        cluster.start()
    except PostgresUnavailable as exc:
        if os.environ.get("LLTOLAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (LLTOLAB_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield cluster
    cluster.stop()


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        lines.put(proc.stdout.readline() or None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no first line within {timeout} s") from None
    if line is None:
        raise AssertionError(f"server exited with {proc.wait(timeout=10)}")
    return line


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """``lltolab server --catalog postgresql://… --json`` in a subprocess."""
    root = tmp_path_factory.mktemp("server")
    catalog = postgres.create_database("lltolab")
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [*LLTOLAB, "server", "--catalog", catalog, "--data", str(root / "data"),
         "--exports", str(root / "exports"), "--port", "0", "--api-key", KEY, "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    try:
        info = json.loads(_first_line(proc, 240.0))
        assert info["api_key"] == KEY and info["uri"].startswith("http://127.0.0.1:")
        yield {**info, "exports": root / "exports", "root": root}
    finally:
        proc.terminate()  # SIGTERM: clean stop
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout=10)
        proc.stdout.close()
        log.close()
    assert code == 0, (root / "server.log").read_text()[-2000:]


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LLTOLAB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def test_server_generates_a_key_and_refuses_bad_settings(tmp_path: Path) -> None:
    from lltolab.catalog import ServerSettings

    settings = ServerSettings(tmp_path / "cat")
    assert len(settings.api_key) >= 16 and settings.api_key.isalnum()
    config = settings.app_config()
    assert config["authentication"]["allow_anonymous_access"] is False
    assert str(settings.exports) in config["catalog"]["readable_storage"]
    assert config["catalog"]["metadata"]["lltolab"]["exports"] == str(settings.exports)
    for bad in ({"api_key": "short"}, {"api_key": "has-dash-chars"}, {"tables": "mysql://x"}):
        with pytest.raises(ValueError):
            ServerSettings(tmp_path / "cat", **bad)
    with pytest.raises(ValueError, match="folder or a postgresql"):
        ServerSettings("mysql://host/db")
    proc = _cli("server", "--catalog", str(tmp_path / "c"), "--api-key", "bad key")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "API key" in proc.stderr


def test_missing_wrong_key_or_unreachable_server_is_one_line_exit_2(server, tmp_path) -> None:
    uri = server["uri"]
    env = {"TILED_API_KEY": ""}
    cases = [
        (("runs", "--catalog", uri), "needs an API key"),
        (("runs", "--catalog", uri, "--api-key", "wrongkey123"), "refused the API key|401"),
        (("replay", "-1", "--catalog", uri, "--api-key", "wrongkey123"), "refused|401"),
        (("analyze", "1", "--catalog", uri), "needs an API key"),
        (("runs", "--catalog", "http://127.0.0.1:9", "--api-key", KEY), "unreachable|cannot reach"),
    ]
    for args, message in cases:
        proc = _cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
    # demo: no plan starts, and no local folder named after the address is created
    proc = subprocess.run([*LLTOLAB, "demo", "--catalog", uri, "--api-key", "wrongkey123"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
                          env={**os.environ, **env})
    assert proc.returncode == 2 and re.search("refused the API key|401", proc.stderr), proc.stderr
    assert list(tmp_path.iterdir()) == []
    # the key from the environment is used
    ok = _cli("runs", "--catalog", uri, env={"TILED_API_KEY": KEY})
    assert ok.returncode == 0 and ok.stdout.startswith("  scan"), ok.stderr


def test_session_refuses_a_bad_key_before_building_anything(server, monkeypatch) -> None:
    from lltolab.session import start

    monkeypatch.delenv("TILED_API_KEY", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(CatalogAccessError, match="refused the API key"):
        start(sim=True, catalog=server["uri"], api_key="wrongkey123", sample_id="X")
    with pytest.raises(CatalogAccessError, match="needs an API key"):
        start(sim=True, catalog=server["uri"], sample_id="X")
    with pytest.raises(CatalogAccessError, match="needs an API key"):  # config file's section
        start({"catalog": {"uri": server["uri"]}}, sim=True, sample_id="X")
    assert time.perf_counter() - t0 < 60


_WRITER = """
    import json, sys
    from lltolab.session import start
    uri, key, sample = sys.argv[1:4]
    with start({"catalog": {"uri": uri, "api_key": key}}, sim=True, sample_id=sample,
               seed=int(sys.argv[4]), callbacks=False) as s:
        uids = s.RE(s.plans.exchange_quench_image_anneal_reimage(
            **s.workflow_devices(), exchange_s=3600.0, anneal_K=473.15, anneal_s=600.0,
            cycles=1, profile_positions_mm=[0.1, 0.5, 1.0], record=s.record))
        print(json.dumps({"uids": list(uids), "exports": str(s.lab.export_folder)}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_two_writers_and_a_reader_on_postgresql(server) -> None:
    """The exchange → image → anneal → re-image workflow twice at once (two processes, two
    samples), read while it is written."""
    uri = server["uri"]
    writers = [subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER), uri, KEY, sample, str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TILED_API_KEY": "",  # the key comes from the config section
             "XDG_DATA_HOME": str(server["root"] / "user-data")},  # session state
    ) for seed, sample in enumerate(("LLTO-W1", "LLTO-W2"))]

    reader = open_catalog(uri, api_key=KEY)
    snapshots: list[int] = []
    images_read = 0
    while any(w.poll() is None for w in writers):
        rows = list_runs(reader, n=100)
        snapshots.append(len(rows))
        done_images = [r for r in rows if r.plan_name == "sims_image" and r.exit_status]
        if done_images:  # an analyst reads an image while the writers go on
            li6 = reader[done_images[-1].uid]["primary"]["sims_li6_counts"].read()
            assert li6.ndim == 3 and li6.sum() > 0
            images_read += 1
        time.sleep(2.0)
    outs = []
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert len(snapshots) >= 3 and snapshots[-1] > snapshots[0]
    assert images_read >= 1

    runs = list_runs(reader, n=100)
    assert len(runs) == 2 * len(outs[0]["uids"])
    assert all(r.exit_status == "success" for r in runs)
    scan_ids = [r.scan_id for r in runs]
    assert len(set(scan_ids)) == len(scan_ids)  # distinct across the two writers
    assert quick_list(uri, n=100, api_key=KEY) == runs  # the CLI's HTTP listing agrees
    for out, sample in zip(outs, ("LLTO-W1", "LLTO-W2"), strict=True):
        assert Path(out["exports"]) == server["exports"]  # where the server reads them
        mine = [r for r in runs if r.uid in out["uids"]]
        assert {r.sample_id for r in mine} == {sample}
        image = next(r for r in mine if r.plan_name == "sims_image")
        run = reader[image.uid]
        table = run["primary"].read()  # as tiled users read it
        assert table["sims_li6_counts"].shape[1:] == (206, 512)
        np.testing.assert_array_equal(np.asarray(table["sims_li6_counts"]),
                                      run["primary"]["sims_li6_counts"].read())

    # databroker users: the v1 API on the served catalog, in a reader process of its own
    # (importing databroker's v1 layer changes how that process's tiled clients read streams)
    image_uid = next(r.uid for r in runs if r.plan_name == "sims_image")
    code = (
        "import json, sys\n"
        "from databroker import Broker\n"
        "from lltolab.catalog import open_catalog\n"
        "c = open_catalog(sys.argv[1], api_key=sys.argv[2])\n"
        "print(json.dumps({'rows': len(Broker(c)[sys.argv[3]].table()),"
        " 'latest': c.v1[-1].start['uid']}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, uri, KEY, image_uid],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == 1  # one image per image run
    assert out["latest"] == runs[-1].uid


def test_server_on_a_catalog_folder_writes_reads_and_stops_on_sigint(tmp_path: Path) -> None:
    import signal

    from bluesky import RunEngine
    from bluesky.plans import scan
    from ophyd.sim import det, motor

    from lltolab.catalog import catalog_writer

    proc = subprocess.Popen(
        [*LLTOLAB, "server", "--catalog", str(tmp_path / "cat"), "--port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(_first_line(proc, 240.0))
        key, uri = info["api_key"], info["uri"]  # a key generated for this server
        assert key.isalnum() and len(key) >= 16
        engine = RunEngine({})
        engine.subscribe(catalog_writer(uri, api_key=key, journal_dir=tmp_path / "journal"))
        (uid,) = engine(scan([det], motor, 0.0, 1.0, 3), sample_id="LLTO-folder-srv")
        run = open_catalog(uri, api_key=key)[uid]
        np.testing.assert_allclose(run["primary"].read()["motor"].values, [0.0, 0.5, 1.0])
        assert run.metadata["stop"]["exit_status"] == "success"
        assert open_catalog(uri, api_key=key).metadata["lltolab"]["exports"] == str(
            (tmp_path / "cat" / "sim-exports").resolve())
        with pytest.raises(CatalogAccessError, match="refused"):
            open_catalog(uri, api_key="wrongkey123")
        # the folder itself lists the run the server wrote
        assert [r.uid for r in quick_list(tmp_path / "cat")] == [uid]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_postgres_cluster_checks_its_arguments(postgres) -> None:
    for bad in ("Bad-Name", "1abc", "", "x" * 64, "a;drop"):
        with pytest.raises(ValueError, match="database name"):
            postgres.create_database(bad)
    for port in (0, 70000, "5432"):
        with pytest.raises(ValueError, match="port"):
            PostgresCluster(port=port)  # type: ignore[arg-type]
    assert postgres.uri.startswith("postgresql://postgres@127.0.0.1:")
