"""Callbacks for ``lltolab replay``: documents as JSON lines."""

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

__all__ = ["JsonLinesWriter"]


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return repr(obj)


class JsonLinesWriter:
    """A bluesky callback writing each document as one ``[name, doc]`` JSON line.

    Parameters
    ----------
    path : path or "-"
        Output file (written atomically: complete when the writer is closed) or ``-`` for
        standard output.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = None if str(path) == "-" else Path(path)
        if self.path is not None and self.path.is_dir():
            raise ValueError(f"jsonl output {str(self.path)!r} is a directory")
        self._tmp = None if self.path is None else self.path.with_name(self.path.name + ".tmp")
        self._fh: IO[str] = sys.stdout if self._tmp is None else self._tmp.open("w")

    def __call__(self, name: str, doc: Any) -> None:
        self._fh.write(json.dumps([name, doc], default=_default) + "\n")

    def close(self) -> None:
        """Finish the file (rename it into place)."""
        if self._tmp is None:
            self._fh.flush()
            return
        if not self._fh.closed:
            self._fh.close()
            os.replace(self._tmp, self.path)

    def __enter__(self) -> "JsonLinesWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
