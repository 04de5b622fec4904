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
testing      shared parts of the test suite (simulators, test doubles)

Modules
-------
vocabulary   names and reference values all layers share (plan names, data keys, locations)
formulas     relations defined once (dead-time correction, series model, diffusion length)
config       session configuration as typed sections; the TOML template
catalog      the tiled catalog of runs
run_analysis analysis of stored runs
session      ``start()``: RunEngine, devices, catalog, callbacks, suspenders
cli          the ``lltolab`` command

The layer map (which module may import which) is in docs/architecture.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
