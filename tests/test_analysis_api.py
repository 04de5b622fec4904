"""analyze_image / analyze_profiles / analyze_campaign: JSON-able dicts and PNG figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lltolab.analysis import (
    SealedLine,
    analyze_campaign,
    analyze_image,
    analyze_profiles,
    erfc_profile,
    figure_path,
)
from lltolab.diffusion import K_B_EV

PNG = b"\x89PNG\r\n\x1a\n"


def _grain_counts(seed: int = 0):
    ny, nx = 60, 90
    x = (np.arange(nx) + 0.5) * 1e-4
    c = np.broadcast_to(0.6 - 1.5 * x, (ny, nx)).copy()
    ids = np.zeros((ny, nx), dtype=np.int64)
    ids[:, 45:] = 1
    c[:, 45:] -= 0.03  # D g / ΔC = 2.6e-8 * 1.5 / 0.03 = 1.3e-6 cm/s
    rng = np.random.default_rng(seed)
    n = 40000
    i6 = rng.binomial(n, -np.expm1(-0.6 * c))
    i7 = rng.binomial(n, -np.expm1(-0.6 * (1 - c)))
    return i6, i7, n, ids


def test_analyze_image_from_counts_writes_named_png(tmp_path) -> None:
    i6, i7, n, ids = _grain_counts()
    out = analyze_image(i6=i6, i7=i7, n_pulses=n, pixel_um=1.0, run="scan 12",
                        grain_ids=ids, temperature_K=295.15, figures_dir=tmp_path)
    json.dumps(out)
    assert out["kind"] == "image" and out["shape"] == [60, 90]
    assert out["median_dgb_over_delta_cm_s"] == pytest.approx(1.3e-6, rel=0.15)
    assert out["median_dgb_cm2_s"] == pytest.approx(out["median_dgb_over_delta_cm_s"] * 5e-8)
    table = out["boundaries"]["boundaries"]
    assert len(table) == 1 and table[0]["selected"] is True
    fig, prof = out["figures"]
    assert fig.endswith("scan-12_c_map_boundaries.png")
    assert prof.endswith("scan-12_boundary_profiles.png")
    for f in (fig, prof):
        assert open(f, "rb").read(8) == PNG


def test_analyze_image_input_errors() -> None:
    with pytest.raises(ValueError, match="give c_map"):
        analyze_image()
    with pytest.raises(ValueError, match="not both"):
        analyze_image(np.zeros((5, 5)), i6=np.zeros((5, 5)), i7=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="pixel_um"):
        analyze_image(np.full((5, 5), 0.5), pixel_um=0.0)


def test_analyze_profiles_erfc_and_evolution(tmp_path) -> None:
    line = SealedLine(np.linspace(0.0, 0.6, 301))
    xc = line.centres_cm
    c0 = erfc_profile(xc, 3e-9, 59 * 3600, c0=0.0759, cs=0.95)
    x = np.linspace(0.001, 0.599, 200)
    obs = line.observation(x)
    times = [0.0, 14 * 86400.0, 42 * 86400.0]
    profs = [obs @ c0] + [obs @ line.advance(c0, 3e-9, t) for t in times[1:]]
    out = analyze_profiles(x, profs, times, exchange_s=59 * 3600, run="line",
                           domain_cm=(0.0, 0.6), figures_dir=tmp_path)
    json.dumps(out)
    assert out["method"] == "time_evolution"
    assert out["erfc"]["d_eff_cm2_s"] == pytest.approx(3e-9, rel=0.02)
    assert out["time_evolution"]["d_eff_cm2_s"] == pytest.approx(3e-9, rel=0.01)
    assert out["d_eff_cm2_s"] == out["time_evolution"]["d_eff_cm2_s"]
    assert out["figures"][0].endswith("line_profiles_fit.png")
    only_erfc = analyze_profiles(x, profs[:1], exchange_s=59 * 3600)
    assert only_erfc["method"] == "erfc" and "time_evolution" not in only_erfc
    with pytest.raises(ValueError, match="nothing to fit"):
        analyze_profiles(x, profs[:1])
    with pytest.raises(ValueError, match="times_s"):
        analyze_profiles(x, profs)


def test_analyze_campaign_arrhenius_and_series_checks(tmp_path) -> None:
    temps = [295.15, 333.15, 373.15, 413.15]
    pts = []
    for t in temps:
        k = 0.048 / 16e-4 * math.exp(-0.43 / (K_B_EV * t))
        d_b = 2.6e-8 * math.exp(-0.40 / K_B_EV * (1 / t - 1 / 295.15))
        pts.append({"temperature_K": t, "dgb_over_delta_cm_s": k,
                    "dgb_over_delta_cm_s_stderr": 0.05 * k, "d_bulk_cm2_s": d_b,
                    "d_eff_cm2_s": 1 / (1 / d_b + 1 / (16e-4 * k)), "sigma_S_per_cm": 1e-3})
    pts[-1]["d_eff_cm2_s"] *= 3  # inconsistent with the series model
    out = analyze_campaign(pts, run="camp", figures_dir=tmp_path)
    json.dumps(out)
    arr = out["arrhenius"]
    assert arr["(l/δ)D_gb"]["ea_eV"] == pytest.approx(0.43, abs=1e-9)
    assert arr["(l/δ)D_gb"]["prefactor"] == pytest.approx(0.048, rel=1e-8)
    assert arr["D_bulk"]["ea_eV"] == pytest.approx(0.40, abs=1e-9)
    assert set(arr) == {"D_eff", "(l/δ)D_gb", "D_bulk", "D_sigma"}
    flags = [c["flagged"] for c in out["consistency"]]
    assert flags == [False, False, False, True]
    assert out["points"][0]["haven_ratio"] == pytest.approx(2.6e-8 / 3.16e-8, rel=0.02)
    assert out["figures"][0].endswith("camp_arrhenius.png")
    with pytest.raises(ValueError, match="temperature_K"):
        analyze_campaign([{"d_eff_cm2_s": 1e-9}])
    with pytest.raises(ValueError, match="empty"):
        analyze_campaign([])


def test_figure_path_sanitises(tmp_path) -> None:
    p = figure_path(tmp_path / "new", "run/../7", "c map")
    assert p.parent.is_dir() and p.name == "run-..-7_c-map.png"
