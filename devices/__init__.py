"""lltolab.devices (being built; see the open issues)."""

from ._cryostage import CryoStage, LakeShoreLink
from ._furnace import Furnace
from ._surfacelab_export import SurfaceLabExport

__all__: list[str] = ["CryoStage", "LakeShoreLink"]
__all__ += ["SurfaceLabExport"]
__all__ += ["Furnace"]
