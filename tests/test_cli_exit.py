"""The console script's prompt exit: status, whole output, exit handlers, data readable after."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lltolab._prompt_exit import exit_status


@pytest.mark.timeout(120)
def test_prompt_exit_keeps_output_status_and_stored_data(tmp_path) -> None:
    folder = tmp_path / "cat"
    code = textwrap.dedent("""
        import atexit, pathlib, sys
        from lltolab.catalog import open_catalog
        from lltolab._prompt_exit import exit_promptly
        atexit.register(pathlib.Path(sys.argv[2]).write_text, "handler ran")
        open_catalog(sys.argv[1]).create_container("abcdef-kept", metadata={"a": 1})
        print("x" * 200_000)
        exit_promptly(3)
        print("never")
    """)
    marker = tmp_path / "atexit.txt"
    proc = subprocess.run([sys.executable, "-c", code, str(folder), str(marker)],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout == "x" * 200_000 + "\n"
    assert marker.read_text() == "handler ran"  # e.g. IPython saves its history so
    reader = textwrap.dedent("""
        import sys
        from lltolab.catalog import open_catalog
        print(open_catalog(sys.argv[1]).values().first().metadata["a"])
    """)
    read = subprocess.run([sys.executable, "-c", reader, str(folder)], capture_output=True,
                          text=True, timeout=100)
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.strip() == "1"


def test_exit_status_follows_sys_exit(capsys) -> None:
    assert exit_status(None) == 0
    assert exit_status(2) == 2
    assert exit_status("stopped: no catalog") == 1
    assert capsys.readouterr().err == "stopped: no catalog\n"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("3", "3")])
def test_console_script_starts_with_one_blas_thread_unless_told(given, expected) -> None:
    """Set before numpy loads OpenBLAS, which reads it then; the environment's value wins."""
    code = textwrap.dedent("""
        import os, sys
        from lltolab import cli
        def report(argv=None):
            print(os.environ["OPENBLAS_NUM_THREADS"], "numpy" in sys.modules)
            return 0
        cli.main = report
        cli.console_main()
    """)
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=100, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [expected, "False"]


def test_console_script_locks_ast_parse_where_cpython_needs_it() -> None:
    """Every command, not only those that build a session, parses under the lock."""
    code = textwrap.dedent("""
        import ast
        from lltolab import cli
        def report(argv=None):
            print(getattr(ast.parse, "__lltolab_locked__", False), ast.literal_eval("[7]"))
            return 0
        cli.main = report
        cli.console_main()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from lltolab._ast_lock import AST_PARSE_RACES  # noqa: PLC0415

    assert proc.stdout.split() == [str(AST_PARSE_RACES), "[7]"]
