"""The one exception of the file-format layer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ExportFormatError"]


class ExportFormatError(ValueError):
    """A SIMS export (BIF6 file, sidecar or asset) is malformed.

    The message names the file and the defect. ``path`` and ``defect`` are kept as attributes
    so callers can react without parsing the message.

    Parameters
    ----------
    path : str or Path
        The offending file.
    defect : str
        What is wrong with it, in words.
    """

    def __init__(self, path: str | Path, defect: str) -> None:
        self.path = Path(path)
        self.defect = defect
        super().__init__(f"{self.path}: {defect}")
