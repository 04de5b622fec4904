"""lltolab.devices (being built; see the open issues)."""

from ._cryostage import CryoStage, LakeShoreLink
from ._furnace import Furnace

__all__: list[str] = ["CryoStage", "LakeShoreLink"]
__all__ += ["Furnace"]
