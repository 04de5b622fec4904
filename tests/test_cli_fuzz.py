"""Fuzzed command lines: every ``lltolab`` subcommand ends with status 0 or 2, never a
traceback, and a failure is exactly one line on stderr.

``main(argv)`` is called in-process (a few hundred cases in seconds). ``runs``, ``replay`` and
``analyze`` run for real against a two-run catalog; for ``demo``, ``shell`` and ``sim serve``
the command line is parsed and checked for real and the command body (minutes of simulated
lab, an IPython prompt, a server that runs until Ctrl-C) is replaced by a stub; those bodies
are driven end to end in tests/test_cli_demo.py and tests/test_cli_sim_serve.py.
``pytest -m slow`` runs the long campaign (thousands of cases).
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ophyd.sim import det, motor

from lltolab import cli
from lltolab.catalog import catalog_writer, close_catalogs, open_catalog

pytestmark = pytest.mark.timeout(600)

OPTIONS = {
    "demo": ["--catalog", "--seed", "--json"],
    "runs": ["--catalog", "--api-key", "-n"],
    "replay": ["--catalog", "--api-key"],
    "analyze": ["--catalog", "--api-key", "--json", "--figures", "--micrograph", "--fit-x0"],
    "shell": ["--sim", "--config", "--catalog", "--sample-id"],
    "sim serve": ["--json", "--time-scale", "--seed", "--exports"],
}
STUBBED = {"demo": "demo_command", "shell": "shell_command", "sim serve": "sim_serve_command"}
#: outcomes per command, reported by the test at the end of the module
OUTCOMES: Counter[tuple[str, int]] = Counter()
#: what the exit-2 messages were about (all commands)
ERROR_KINDS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, object]:
    """Real folders and files: a two-run catalog, a corrupt one, files of every kind."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    folder = root / "catalog"
    open_catalog(folder)
    engine = RunEngine({})
    engine.subscribe(catalog_writer(folder))
    uids = [*engine(scan([det], motor, -1.0, 1.0, 3)), *engine(count([det], num=2))]
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "catalog.db").write_bytes(b"\x00garbage" * 512)
    afile = root / "afile.txt"
    afile.write_text("text\n")
    micrograph = root / "map.npy"
    np.save(micrograph, np.zeros((26, 64), dtype=bool))
    config = root / "lab.toml"
    config.write_text("[sample]\nid = 'fuzz'\n")
    bad_toml = root / "bad.toml"
    bad_toml.write_text("[sample\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    paths = [str(p) for p in (folder, corrupt, afile, micrograph, config, bad_toml,
                              root / "missing", afile / "below", root / "new" / "deeper")]
    yield {
        "root": root, "uids": uids,
        "values": [
            *paths, "", " ", "~", "~0", "~no-such-user/x", ".", "/", "a\x00b", "x" * 300,
            "\udcff", "é/ü",
            f"http://127.0.0.1:{closed_port}", "http://", "https://[::1", "ftp://host/x",
            "0", "-0", "1", "2", "3", "-1", "-2", "-3", "00002", "+1", "1.5", "nan", "inf",
            "-inf", "1e309", "0.001", str(2**64), str(-(2**70)), "99999999999999999999999",
            uids[0], uids[1][:8], uids[0][:5], uids[1].upper(), "abcdef", "abcd", "ffff-",
            "%", "_____", "--", "-", "--help",
        ],
    }
    close_catalogs()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if OUTCOMES:
        lines = [f"  {cmd:10s} exit {rc}: {n}" for (cmd, rc), n in sorted(OUTCOMES.items())]
        print("\nfuzzed command lines (command, exit status: cases):\n" + "\n".join(lines))
        print("exit-2 messages by subject: " + ", ".join(
            f"{kind} {n}" for kind, n in ERROR_KINDS.most_common()))


def _good(world: dict[str, object]) -> dict[str, list[str]]:
    """Values that pass each option's checks (so that fuzzing reaches the commands)."""
    root, uids = world["root"], world["uids"]
    return {
        "--catalog": [str(root / "catalog")] * 3 + [str(root / "new-catalog")],
        "--seed": ["0", "7", str(2**64 - 1)], "-n": ["1", "2", "50"],
        "--time-scale": ["60", "0.5", "1e6"], "--api-key": ["secret"],
        "--figures": [str(root / "figures")], "--micrograph": [str(root / "map.npy")],
        "--config": [str(root / "lab.toml")], "--sample-id": ["LLTO-F1"],
        "--exports": [str(root / "exports")],
        "RUN": ["1", "2", "-1", "-2", uids[0], uids[1][:8], uids[0][:5]],
    }


def _free_argv(command: str, world: dict[str, object]) -> st.SearchStrategy[list[str]]:
    """Any tokens: option names of the command (and a few foreign ones) and values."""
    values = st.sampled_from(world["values"]) | st.text(max_size=12)
    options = st.sampled_from(OPTIONS[command] + ["--debug-not", "-x", "--catalog="])
    pair = st.tuples(options, values).map(list)
    token = st.one_of(pair, values.map(lambda v: [v]), options.map(lambda o: [o]))
    return st.lists(token, max_size=5).map(
        lambda groups: [*command.split(), *(t for g in groups for t in g)])


def _shaped_argv(command: str, world: dict[str, object]) -> st.SearchStrategy[list[str]]:
    """Well-formed command lines whose values are good, bad or random."""
    good = _good(world)
    anything = st.sampled_from(world["values"]) | st.text(max_size=12)

    def value(name: str) -> st.SearchStrategy[str]:
        if name not in good:
            return anything
        right = st.sampled_from(good[name])
        return st.one_of(right, right, right, anything)  # mostly good: reach the command

    flags = {"--json", "--fit-x0", "--sim"}
    parts = []
    for opt in OPTIONS[command]:
        item = st.just([opt]) if opt in flags else value(opt).map(lambda v, o=opt: [o, v])
        parts.append(st.one_of(st.just([]), item, item) if opt == "--catalog"
                     else st.one_of(st.just([]), item))
    n_refs = {"replay": (1, 1), "analyze": (1, 3)}.get(command)
    refs = (st.lists(value("RUN"), min_size=n_refs[0], max_size=n_refs[1]) if n_refs
            else st.just([]))
    return st.tuples(refs, st.permutations(parts).flatmap(lambda ps: st.tuples(*ps))).map(
        lambda t: [*command.split(), *t[0], *(x for group in t[1] for x in group)])


def _mutant_argv(command: str, world: dict[str, object]) -> st.SearchStrategy[list[str]]:
    """A good command line (real catalog, good values) with at most one token replaced."""
    good = _good(world)
    flags = {"--json", "--fit-x0", "--sim"}
    base = [*command.split()]
    if command in ("replay", "analyze"):
        base.append(good["RUN"][1])
    for opt in OPTIONS[command]:
        base += [opt] if opt in flags else [opt, good[opt][0]]
    anything = st.sampled_from(world["values"]) | st.text(max_size=12)
    first = len(command.split())
    return st.tuples(st.integers(first - 1, len(base) - 1), anything).map(
        lambda t: base if t[0] < first else [*base[:t[0]], t[1], *base[t[0] + 1:]])


def _argv(command: str, world: dict[str, object]) -> st.SearchStrategy[list[str]]:
    return st.one_of(_mutant_argv(command, world), _shaped_argv(command, world),
                     _free_argv(command, world))


def _run(argv: list[str], world: dict[str, object], monkeypatch_ctx) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with monkeypatch_ctx() as mp:
        for name in STUBBED.values():
            mp.setattr(cli, name, lambda args: 0)
        mp.setenv("XDG_DATA_HOME", str(world["root"] / "xdg"))
        mp.setenv("LLTOLAB_DEBUG", "")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    return rc, err.getvalue()


KINDS = [  # (kind, words of the one-line message), first match wins
    ("usage", ["(see 'lltolab", "give --sim", "--sample-id"]),
    ("analysis", ["analyze takes"]),
    ("run reference", ["run ", "scan_id"]),
    ("server", ["tiled server", "catalog address"]),
    ("database", ["catalog database"]),
    ("catalog folder", ["catalog", "no catalog"]),
    ("micrograph", ["micrograph"]),
    ("configuration", ["configuration file", "[catalog]"]),
    ("output folder", ["figures folder", "export folder"]),
    ("number", ["--seed", "-n must", "--time-scale"]),
]


def _kind(err: str) -> str:
    for kind, words in KINDS:
        if any(w in err for w in words):
            return kind
    return "other"


def _check(command: str, argv: list[str], rc: int, err: str) -> None:
    OUTCOMES[(command, rc)] += 1
    if rc == 2:
        ERROR_KINDS[_kind(err)] += 1
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lltolab"), (argv, err)


def _fuzz(command: str, world: dict[str, object], n: int, *, derandomize: bool) -> None:
    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(argv=_argv(command, world))
    def case(argv: list[str]) -> None:
        rc, err = _run(argv, world, pytest.MonkeyPatch.context)
        _check(command, argv, rc, err)

    case()


@pytest.mark.parametrize("command", list(OPTIONS))
def test_fuzzed_argv_ends_in_0_or_one_line_and_2(command, world) -> None:
    _fuzz(command, world, 60, derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("command", list(OPTIONS))
def test_fuzzed_argv_long_campaign(command, world) -> None:
    _fuzz(command, world, 600, derandomize=False)


def test_fuzz_reaches_success_and_every_error(world) -> None:
    """The pool is rich enough: real runs are found and each kind of error is produced."""
    uids = world["uids"]
    ok = [["runs", "--catalog", str(world["root"] / "catalog")],
          ["replay", uids[1][:8], "--catalog", str(world["root"] / "catalog")],
          ["replay", "-2", "--catalog", str(world["root"] / "catalog")]]
    for argv in ok:
        rc, err = _run(argv, world, pytest.MonkeyPatch.context)
        assert rc == 0, (argv, err)
    bad = {
        "0": ["replay", "0", "--catalog", str(world["root"] / "catalog")],
        "NUL": ["analyze", "1", "--micrograph", "a\x00b"],
        "not a database": ["runs", "--catalog", str(world["root"] / "corrupt")],
        "is a file": ["demo", "--catalog", str(world["root"] / "afile.txt")],
        "not valid TOML": ["shell", "--config", str(world["root"] / "bad.toml")],
        "not a .npy array": ["analyze", "1", "--catalog", str(world["root"] / "catalog"),
                    "--micrograph", str(world["root"] / "afile.txt")],
    }
    for words, argv in bad.items():
        rc, err = _run(argv, world, pytest.MonkeyPatch.context)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (argv, err)
        assert words in err, (argv, err)
    assert Path(world["root"] / "catalog" / "catalog.db").exists()
