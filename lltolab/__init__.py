"""lltolab: control, acquisition and a digital twin for cryo-SIMS isotope-exchange experiments.

Sub-packages
------------
diffusion    the diffusion twin (microstructure, finite volumes, time stepping, VirtualSample)
analysis     from counts and profiles to D_eff, D_gb, Arrhenius energies, Haven ratio
formats      BIF6 and sidecar files, HDF5 assets
comm         instrument transports, project exceptions, ophyd signals and positioners
devices      ophyd devices for the real instruments
plans        bluesky plans
sim_devices  simulated instruments and the virtual lab
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
