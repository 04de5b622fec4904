"""Simulated instruments and the virtual lab (loopback only)."""

from ._clock import VirtualClock
from ._eurotherm import EUROTHERM_STATUS_BITS, EurothermSimulator

__all__ = ["VirtualClock", "EurothermSimulator", "EUROTHERM_STATUS_BITS"]
