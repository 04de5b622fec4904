"""lltolab.testing: shared test doubles, builders and fixtures (importable by any test)."""

from ._exports import ErfcSample, HistorySegment, image_sidecar, write_image_export

__all__ = ["ErfcSample", "HistorySegment", "image_sidecar", "write_image_export"]
