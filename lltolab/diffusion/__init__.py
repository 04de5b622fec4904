"""lltolab.diffusion: the diffusion twin."""

__all__: list[str] = []
