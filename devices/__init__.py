"""lltolab.devices (being built; see the open issues)."""

from ._cryostage import CryoStage, LakeShoreLink

__all__: list[str] = ["CryoStage", "LakeShoreLink"]
