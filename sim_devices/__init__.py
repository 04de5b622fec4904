"""Simulated instruments and the virtual lab (loopback only)."""

from ._clock import VirtualClock

__all__ = ["VirtualClock"]
