"""Sidecar JSON, export = BIF6 + sidecar consistency, peak selection, HDF5 asset files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lltolab.formats import (
    Bif6Image,
    ExportFormatError,
    SimsSidecar,
    read_export,
    read_sidecar,
    read_sims_asset,
    sidecar_path_for,
    write_bif6,
    write_sidecar,
    write_sims_asset,
)


def _sidecar(**kw) -> SimsSidecar:
    base = dict(
        kind="image", bif6="e.bif6", field_of_view_um=(500.0, 200.0), pixels=(8, 4),
        shots_per_pixel=4, scans=25, pulses_per_pixel=100, primary_species="Bi+",
        primary_energy_keV=30.0, primary_current_pA=0.5, dose_ions_per_cm2=5.6e13,
        stage_temperature_K=163.15, start_time="2024-01-03T11:00:00+00:00",
        end_time="2024-01-03T16:00:00+00:00",
    )
    base.update(kw)
    return SimsSidecar(**base)


def _export(tmp_path: Path, sidecar: SimsSidecar | None = None, counts_max: int = 100) -> Path:
    sc = sidecar or _sidecar()
    nx, ny = sc.pixels
    rng = np.random.default_rng(0)
    imgs = [
        Bif6Image(1, 6.015, 5.9, 6.1, rng.integers(0, counts_max + 1, (ny, nx)).astype(np.uint32)),
        Bif6Image(2, 7.016, 6.9, 7.1, rng.integers(0, counts_max + 1, (ny, nx)).astype(np.uint32)),
    ]
    path = tmp_path / sc.bif6
    write_bif6(path, imgs)
    write_sidecar(sidecar_path_for(path), sc)
    return path


def test_sidecar_round_trip_and_derived_values(tmp_path: Path) -> None:
    sc = _sidecar(extra={"lab_start_s": 12.5})
    p = tmp_path / "s.json"
    write_sidecar(p, sc)
    back = read_sidecar(p)
    assert back == sc
    assert back.duration_s == 5 * 3600
    assert back.pixel_size_um == (500.0 / 8, 200.0 / 4)
    prof = _sidecar(kind="line_profile", pixels=(3, 1), positions_mm=(0.0, 0.5, 1.0),
                    field_of_view_um=(50.0, 50.0))
    write_sidecar(p, prof)
    assert read_sidecar(p).positions_mm == (0.0, 0.5, 1.0)
    assert sidecar_path_for("/a/b/x.bif6") == Path("/a/b/x.json")
    assert sidecar_path_for("/a/x.bif6", "{name}.meta") == Path("/a/x.bif6.meta")


@pytest.mark.parametrize(
    ("edit", "defect"),
    [
        (lambda d: d.pop("pulses_per_pixel"), "lacks fields"),
        (lambda d: d.update(pulses_per_pixel=99), "contradicts shots_per_pixel"),
        (lambda d: d.update(kind="movie"), "kind"),
        (lambda d: d.update(pixels=[0, 4]), "pixels"),
        (lambda d: d.update(field_of_view_um=[-1, 200]), "field_of_view_um"),
        (lambda d: d.update(end_time="2024-01-03T10:00:00+00:00"), "before start_time"),
        (lambda d: d.update(start_time="yesterday"), "ISO 8601"),
        (lambda d: d.update(stage_temperature_K=-5), "stage_temperature_K"),
        (lambda d: d.update(kind="line_profile"), "needs positions_mm"),
        (lambda d: d.update(positions_mm=[1.0]), "only allowed"),
        (lambda d: d.update(format="other"), "format tag"),
        (lambda d: d.update(colour="red"), "unknown fields"),
        (lambda d: d.update(bif6="../x.bif6"), "bare file name"),
    ],
)
def test_bad_sidecars_raise_naming_file_and_defect(tmp_path: Path, edit, defect) -> None:
    p = tmp_path / "s.json"
    d = _sidecar().to_dict()
    edit(d)
    p.write_text(json.dumps(d))
    with pytest.raises(ExportFormatError, match=defect) as info:
        read_sidecar(p)
    assert str(p) in str(info.value)


def test_sidecar_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(ExportFormatError, match="sidecar missing"):
        read_sidecar(tmp_path / "nope.json")
    p = tmp_path / "half.json"
    p.write_text('{"format": "lltolab.sims-sidecar", "ver')
    with pytest.raises(ExportFormatError, match="not valid JSON"):
        read_sidecar(p)


def test_line_profile_positions_must_match_pixels() -> None:
    with pytest.raises(ValueError, match="contradict pixels"):
        _sidecar(kind="line_profile", pixels=(3, 1), positions_mm=(0.0, 1.0))
    with pytest.raises(ValueError, match="contradict pixels"):
        _sidecar(kind="line_profile", pixels=(2, 2), positions_mm=(0.0, 1.0))


def test_read_export_and_select_peaks(tmp_path: Path) -> None:
    exp = read_export(_export(tmp_path))
    assert exp.select(6.015).peak_id == 1
    assert exp.select(7.016).peak_id == 2
    assert exp.select(7.016, peak_id=2).peak_id == 2
    assert exp.select(6.015, window_u=(5.5, 6.5)).peak_id == 1
    with pytest.raises(ExportFormatError, match="missing masses"):
        exp.select(23.0)
    with pytest.raises(ExportFormatError, match="missing masses: no image with peak id 9"):
        exp.select(6.015, peak_id=9)
    with pytest.raises(ExportFormatError, match="does not contain"):
        exp.select(6.015, peak_id=2)


def test_export_contradictions(tmp_path: Path) -> None:
    # sidecar missing
    path = _export(tmp_path)
    sidecar_path_for(path).unlink()
    with pytest.raises(ExportFormatError, match="sidecar missing") as info:
        read_export(path)
    assert str(path) in str(info.value)
    # pixels disagree with the BIF6 header
    path = _export(tmp_path)
    write_sidecar(sidecar_path_for(path), _sidecar(pixels=(8, 5)))
    with pytest.raises(ExportFormatError, match="contradict the BIF6 header"):
        read_export(path)
    # sidecar names another file
    write_sidecar(sidecar_path_for(path), _sidecar(bif6="other.bif6"))
    with pytest.raises(ExportFormatError, match="not 'e.bif6'"):
        read_export(path)
    # counts above the pulses per pixel
    sub = tmp_path / "sub"
    sub.mkdir()
    path = _export(sub, counts_max=150)
    with pytest.raises(ExportFormatError, match="exceed the sidecar's 100 pulses"):
        read_export(path)


def test_hdf5_asset_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a6 = rng.integers(0, 100, (4, 5)).astype(np.uint32)
    a7 = rng.integers(0, 100, (4, 5)).astype(np.uint32)
    c = rng.random((4, 5))
    c[0, 0] = np.nan
    arrays = {"li6_counts": a6, "li7_counts": a7, "c_fraction": c}
    p = write_sims_asset(tmp_path / "x.h5", arrays,
                         attrs={"bif6_path": "/data/e.bif6", "sidecar": {"kind": "image"}})
    back = read_sims_asset(p)
    assert back["li6_counts"].shape == (1, 4, 5)
    np.testing.assert_array_equal(back["li6_counts"][0], a6)
    np.testing.assert_array_equal(back["li7_counts"][0], a7)
    np.testing.assert_array_equal(back["c_fraction"][0], c)
    with pytest.raises(FileExistsError):
        write_sims_asset(p, arrays)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="one shape"):
        write_sims_asset(tmp_path / "y.h5", {**arrays, "c_fraction": c[:2]})
    with pytest.raises(ValueError, match="neither the image set"):
        write_sims_asset(tmp_path / "y.h5", {"li6_counts": a6})
    prof = {"profile_x_mm": np.array([0.0, 0.5]), "profile_c": np.array([0.9, 0.1]),
            "profile_li6_counts": np.array([9, 1]), "profile_li7_counts": np.array([1, 9])}
    back = read_sims_asset(write_sims_asset(tmp_path / "p.h5", prof))
    assert back["profile_li7_counts"].dtype == np.uint32
    np.testing.assert_array_equal(back["profile_x_mm"], [[0.0, 0.5]])


def test_frozen_sidecar_replace_revalidates() -> None:
    sc = _sidecar()
    with pytest.raises(ValueError, match="contradicts"):
        replace(sc, scans=3)


# --------------------------------------------------------------------- a blocked export folder
def _raw(key: str, literal: str) -> str:
    """A valid sidecar's JSON with ``key`` set to the JSON ``literal``."""
    d = _sidecar().to_dict()
    d[key] = "@@"
    return json.dumps(d).replace('"@@"', literal)


@pytest.mark.parametrize(
    ("content", "defect"),
    [
        pytest.param(_raw("stage_temperature_K", "true"), "stage_temperature_K must be in",
                     id="boolean_temperature_is_not_1K"),
        pytest.param(_raw("scans", "true"), "scans must be an integer",
                     id="boolean_count"),
        pytest.param(_raw("pixels", "[8, true]"), "pixels must be two integers",
                     id="boolean_pixel"),
        pytest.param(_raw("field_of_view_um", "[true, 200]"), "field_of_view_um",
                     id="boolean_field_of_view"),
        pytest.param(_raw("primary_energy_keV", "false"), "primary_energy_keV",
                     id="boolean_energy"),
        pytest.param(_raw("version", "true"), "unsupported sidecar version",
                     id="boolean_version"),
        pytest.param(_raw("scans", "1" + "0" * 5000), "5001 digits", id="huge_integer"),
        pytest.param(_raw("stage_temperature_K", "1" + "0" * 400), "digits",
                     id="integer_beyond_float"),
        pytest.param(_raw("dose_ions_per_cm2", "1e999"), "beyond the float range",
                     id="float_overflow"),
        pytest.param(_raw("stage_temperature_K", "NaN"), "NaN is not a number",
                     id="nan_literal"),
        pytest.param(_raw("extra", "[" * 100_000 + "]" * 100_000), "nested deeper",
                     id="deep_nesting_past_recursion"),
        pytest.param(_raw("extra", '{"a":' * 33 + "1" + "}" * 33), "nested deeper than 32",
                     id="nesting_past_the_limit"),
        pytest.param(_raw("primary_species", '"\\ud83d"'), "unpaired surrogate",
                     id="lone_surrogate"),
        pytest.param(_raw("primary_species", '"Bi\\u0000"'), "NUL", id="nul_character"),
        pytest.param(_raw("pixels", '"8x4"'), "must be a JSON array", id="string_for_array"),
        pytest.param(_raw("extra", "[1, 2]"), "extra must be a JSON object", id="extra_list"),
    ],
)
def test_hostile_sidecars_raise_export_format_errors(tmp_path: Path, content, defect) -> None:
    p = tmp_path / "s.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ExportFormatError, match=defect) as info:
        read_sidecar(p)
    assert str(p) in str(info.value)
    assert len(str(info.value)) < 2000  # the message never echoes a huge value


def test_sidecar_with_a_non_utf8_byte(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    blob = json.dumps(_sidecar().to_dict()).encode().replace(b"Bi+", b"Bi\xe9")
    p.write_bytes(blob)
    with pytest.raises(ExportFormatError, match=r"not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        read_sidecar(p)


def test_sidecar_that_is_a_directory_or_too_large(tmp_path: Path) -> None:
    from lltolab.formats import SIDECAR_MAX_BYTES

    d = tmp_path / "s.json"
    d.mkdir()
    with pytest.raises(ExportFormatError, match="is a directory"):
        read_sidecar(d)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (SIDECAR_MAX_BYTES + 1))
    with pytest.raises(ExportFormatError, match="larger than"):
        read_sidecar(big)


def test_booleans_are_not_numbers_when_built_in_code() -> None:
    with pytest.raises(ValueError, match="stage_temperature_K"):
        _sidecar(stage_temperature_K=True)
    with pytest.raises(ValueError, match="pixels"):
        _sidecar(pixels=(True, 4))


def test_export_without_sidecar_uses_the_fallback(tmp_path: Path) -> None:
    from lltolab.formats import MetadataFallback

    path = _export(tmp_path)
    sidecar_path_for(path).unlink()
    with pytest.raises(ExportFormatError, match="sidecar missing"):
        read_export(path)
    exp = read_export(path, fallback=MetadataFallback((500.0, 200.0), 100))
    assert exp.sidecar is None and exp.sidecar_path is None
    assert exp.metadata.source == "configuration"
    assert exp.metadata.pulses_per_pixel == 100 and exp.metadata.pixels == (8, 4)
    assert exp.metadata.to_dict()["stage_temperature_K"] is None
    assert exp.metadata.end_time  # the file's modification time
    with pytest.raises(ExportFormatError, match="exceed the configured 50 pulses"):
        read_export(path, fallback=MetadataFallback((500.0, 200.0), 50))
    with pytest.raises(ValueError, match="n_pulses"):
        MetadataFallback((500.0, 200.0), 0)
