"""The twin's speed-ups keep its numbers: homogenisation nodes by preconditioned CG."""

from __future__ import annotations

import numpy as np
import pytest

from lltolab.diffusion import Conductivities, Microstructure
from lltolab.diffusion._homogenise import EffectiveDiffusivity, effective_diffusivity


def test_cg_nodes_equal_direct_solves_with_one_factorization() -> None:
    micro = Microstructure.polycrystal(80e-6, 50e-6, 1e-6, seed=7, origin_m=(0.0, 0.0))
    eff = EffectiveDiffusivity(micro)
    nodes = [34, 33, 35, 37, 30]  # in the order a workflow may ask for them
    got = {k: eff._node(k) for k in nodes}
    assert eff.factorizations == 1  # the first node only
    for k in nodes:
        direct = effective_diffusivity(micro, Conductivities(1.0, float(np.exp(k * eff.STEP))),
                                       network=eff._net)
        assert got[k] == pytest.approx(np.log(direct), abs=1e-9)


def test_cg_falls_back_to_a_direct_solve_when_it_does_not_converge() -> None:
    micro = Microstructure.polycrystal(60e-6, 40e-6, 1e-6, seed=3, origin_m=(0.0, 0.0))
    eff = EffectiveDiffusivity(micro)
    eff.MAX_ITER = 1  # far nodes cannot converge in one iteration
    a, b = eff._node(10), eff._node(60)
    assert eff.factorizations == 2
    direct = effective_diffusivity(micro, Conductivities(1.0, float(np.exp(60 * eff.STEP))),
                                   network=eff._net)
    assert b == pytest.approx(np.log(direct), abs=1e-12)
    assert a < b
