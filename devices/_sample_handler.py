"""SampleHandler: where the sample is, changed by operator steps."""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Signal

from lltolab.vocabulary import SAMPLE_LOCATIONS, Location

from ._operator import Confirmation, OperatorRequest, default_confirmation, start_operator_step

__all__ = ["SampleHandler", "SAMPLE_LOCATIONS"]

_MESSAGES = {
    Location.STORAGE: "Put the sample into Ar storage on the bench",
    Location.BATH: "Mount the sample above the exchange bath",
    Location.SIMS_STAGE: "Transfer the sample onto the SIMS cryo stage (load lock)",
    Location.FURNACE: "Put the sample into the annealing furnace",
}


class SampleHandler(Device):
    """The sample's location; ``set(location)`` asks a person to move it and waits.

    Parameters
    ----------
    confirmation : Confirmation, optional
        How the person confirms (default: a terminal prompt in an interactive shell, else
        answer files in the default operator folder; see ``default_confirmation``).
    timeout_s : float
        Longest wait for the confirmation (s).
    """

    location = Cpt(Signal, value=Location.STORAGE, kind="hinted")
    timeout_s = Cpt(Signal, value=3600.0, kind="config")

    def __init__(self, prefix: str = "", *, name: str,
                 confirmation: Confirmation | None = None, timeout_s: float = 3600.0,
                 initial_location: str = Location.STORAGE, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.confirmation = (confirmation if confirmation is not None
                             else default_confirmation())
        self._check(initial_location)
        self.location.put(initial_location)
        self.timeout_s.put(float(timeout_s))
        self._cancel = None

    @staticmethod
    def _check(location: str) -> None:
        if location not in SAMPLE_LOCATIONS:
            raise ValueError(f"location must be one of {SAMPLE_LOCATIONS}, got {location!r}")

    @property
    def position(self) -> str:
        """Current location."""
        return self.location.get()

    def set(self, location: str) -> DeviceStatus:
        """Move the sample to ``location`` (an operator step)."""
        self._check(location)
        request = OperatorRequest(
            "move", f"{_MESSAGES[location]} (now: {self.location.get()})",
            {"location": location, "from": self.location.get()},
        )
        status, self._cancel = start_operator_step(
            self, self.confirmation, request, float(self.timeout_s.get()),
            lambda: self.location.put(location),
        )
        return status

    def stop(self, *, success: bool = False) -> None:
        """Cancel a pending operator step (no effect otherwise)."""
        if self._cancel is not None:
            self._cancel.set()
