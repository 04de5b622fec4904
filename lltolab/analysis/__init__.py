"""lltolab.analysis: from ⁶Li/⁷Li counts to D*_eff, D*_gb/δ, Arrhenius energies and Haven ratios.

Units: cm, s, K, eV unless a name says otherwise (the diffusion twin, used as the forward model
of :func:`fit_time_evolution`, is SI; conversion happens at that boundary).
"""

from ._api import analyze_campaign, analyze_image, analyze_profiles
from ._arrhenius import ArrheniusFit, fit_arrhenius
from ._boundaries import (
    DEFAULT_D_BULK_CM2_S,
    DEFAULT_DELTA_CM,
    BoundaryAnalysis,
    BoundaryStep,
    analyze_boundaries,
    boundary_profile,
    find_boundaries,
    grains_from_boundary_map,
)
from ._consistency import (
    PAPER_VALUES,
    ConsistencyCheck,
    ConsistencyReport,
    consistency_report,
)
from ._erfc import ErfcFit, erfc_profile, fit_erfc_profile
from ._evolution import SealedLine, TimeEvolutionFit, fit_time_evolution
from ._figures import (
    figure_path,
    plot_arrhenius,
    plot_boundary_profiles,
    plot_c_map,
    plot_profiles,
)
from ._forward import HeatStage, ImageForwardModel, equivalent_history
from ._fraction import IsotopeFraction, dead_time_correct, isotope_fraction
from ._inversion import ImageInversion, invert_image
from ._inversion_api import inversion_report, invert_image_run, preferred_dgb_over_delta
from ._inversion_figure import plot_inversion
from ._transport import (
    E_CHARGE_C,
    K_B_J_PER_K,
    N_LI_PER_CM3,
    dgb_over_delta_from_step,
    grain_boundary_diffusivity,
    haven_ratio,
    nernst_einstein_d,
    series_bound_dgb_over_delta,
    series_deff,
)

__all__ = [
    "DEFAULT_D_BULK_CM2_S",
    "DEFAULT_DELTA_CM",
    "E_CHARGE_C",
    "K_B_J_PER_K",
    "N_LI_PER_CM3",
    "IsotopeFraction",
    "dead_time_correct",
    "isotope_fraction",
    "ErfcFit",
    "erfc_profile",
    "fit_erfc_profile",
    "SealedLine",
    "TimeEvolutionFit",
    "fit_time_evolution",
    "BoundaryStep",
    "BoundaryAnalysis",
    "analyze_boundaries",
    "find_boundaries",
    "boundary_profile",
    "grains_from_boundary_map",
    "dgb_over_delta_from_step",
    "grain_boundary_diffusivity",
    "series_deff",
    "series_bound_dgb_over_delta",
    "nernst_einstein_d",
    "haven_ratio",
    "ArrheniusFit",
    "fit_arrhenius",
    "PAPER_VALUES",
    "ConsistencyCheck",
    "ConsistencyReport",
    "consistency_report",
    "figure_path",
    "plot_c_map",
    "plot_boundary_profiles",
    "plot_profiles",
    "plot_arrhenius",
    "analyze_image",
    "analyze_profiles",
    "HeatStage",
    "ImageForwardModel",
    "equivalent_history",
    "ImageInversion",
    "invert_image",
    "plot_inversion",
    "invert_image_run",
    "inversion_report",
    "preferred_dgb_over_delta",
    "analyze_campaign",
]
