"""⁶Li fraction from ⁶Li and ⁷Li counts (eq. 1 of docs/science.md) with dead-time correction.

The relations live in :mod:`lltolab.formulas` (shared with the SIMS device's reduction, so the
stored C map and the analysis use one formula); the analysis re-exports them.
"""

from __future__ import annotations

from lltolab.formulas import IsotopeFraction, dead_time_correct, isotope_fraction

__all__ = ["IsotopeFraction", "dead_time_correct", "isotope_fraction"]
