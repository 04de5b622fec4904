"""Session configuration: typed TOML sections whose defaults are the devices' own defaults.

A configuration file names the real instruments (resource strings, ports, the SurfaceLab export
folder) and may override any device setting; every setting left out takes the default of the
device class's constructor (``CryoStage``, ``Furnace``, ``SurfaceLabExport``), read from its
signature, so the devices, the sessions they build and the template never disagree::

    cfg = load_config("lab.toml")          # SessionConfig; ValueError names a bad key or value
    cfg.cryostage.limits_K                 # (77.0, 500.0) unless the file says otherwise
    print(example_config())                # the commented template, generated from the sections

A :class:`SessionConfig` is also a read-only mapping ``section name -> {key: value}`` holding
the sections the file gave (with their defaults filled in).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lltolab.vocabulary import STAGE_IMAGING_MAX_K

__all__ = [
    "SampleConfig",
    "CatalogConfig",
    "CryostageConfig",
    "FurnaceConfig",
    "SimsConfig",
    "OperatorConfig",
    "SuspendersConfig",
    "SessionConfig",
    "load_config",
    "example_config",
    "device_default",
    "read_config_tables",
]

REQUIRED = {"cryostage": "resource", "furnace": "port", "sims": "export_folder"}
"""The address each instrument section must give for a session with real instruments."""


def device_default(device: str, parameter: str) -> Any:
    """The default of ``parameter`` in the constructor of ``lltolab.devices.<device>``.

    Raises
    ------
    ValueError
        The device class has no such parameter, or it has no default.
    """
    import lltolab.devices as devices  # noqa: PLC0415 - ophyd import only when a config is made

    cls = getattr(devices, device)
    param = inspect.signature(cls).parameters.get(parameter)
    if param is None or param.default is inspect.Parameter.empty:
        raise ValueError(f"{device} has no parameter {parameter!r} with a default")
    return param.default


def _setting(device: str, parameter: str, doc: str) -> Any:
    """A field that defaults to the device's own default and names the parameter it feeds."""
    return field(default_factory=lambda: device_default(device, parameter),
                 metadata={"doc": doc, "device": device, "parameter": parameter})


def _field(default: Any, doc: str, *, example: Any = None, commented: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "example": example,
                                            "commented": commented})


@dataclass(frozen=True)
class SampleConfig:
    """``[sample]``: the sample under study."""

    id: str = _field("", "sample id put into RE.md (persisted)", example="LLTO-2026-01")


@dataclass(frozen=True)
class CatalogConfig:
    """``[catalog]``: where runs are stored (default: the user data folder)."""

    path: str = _field("", "catalog folder", example="~/lltolab/catalog")
    uri: str = _field("", "or a tiled server address", example="http://tiled.lab:8000/api",
                      commented=True)
    api_key: str = _field("", "tiled server API key", example="...", commented=True)


@dataclass(frozen=True)
class CryostageConfig:
    """``[cryostage]``: the Lake Shore 335/336 of the SIMS cryo stage (VISA)."""

    resource: str = _field("", "VISA resource string",
                           example="TCPIP::192.168.1.20::7777::SOCKET")
    limits_K: tuple[float, float] = _setting("CryoStage", "limits", "setpoint limits, K")
    tolerance_K: float = _setting("CryoStage", "tolerance", "in-position band, K")
    settle_time_s: float = _setting("CryoStage", "settle_time",
                                    "time within the band before a move is done, s")
    timeout_s: float = _setting("CryoStage", "timeout", "longest move, s")
    heater_range: int | None = _field(None, "heater range set at start (default: leave it)",
                                      example=3, commented=True)


@dataclass(frozen=True)
class FurnaceConfig:
    """``[furnace]``: the Eurotherm 2000/3200 of the annealing furnace (Modbus RTU)."""

    port: str = _field("", "serial port (or a pyserial URL)", example="/dev/ttyUSB0")
    slave_address: int = _setting("Furnace", "slave_address", "Modbus slave address")
    baudrate: int = _setting("Furnace", "baudrate", "serial baud rate")
    limits_K: tuple[float, float] = _setting("Furnace", "limits", "setpoint limits, K")
    tolerance_K: float = _setting("Furnace", "tolerance", "in-position band, K")
    settle_time_s: float = _setting("Furnace", "settle_time",
                                    "time within the band before a move is done, s")
    timeout_s: float = _setting("Furnace", "timeout", "longest move, s")


@dataclass(frozen=True)
class SimsConfig:
    """``[sims]``: the SurfaceLab TOF-SIMS export folder."""

    export_folder: str = _field("", "folder SurfaceLab exports into",
                                example="D:/SurfaceLab/exports")
    timeout_s: float = _setting("SurfaceLabExport", "timeout_s",
                                "longest wait for one export, s")
    field_of_view_um: tuple[float, float] | None = _field(
        None, "field of view [width, height] in µm, for exports without a sidecar",
        example=[512.0, 206.0], commented=True)
    n_pulses: int | None = _field(None, "primary-ion pulses per pixel, for exports without a "
                                  "sidecar", example=2048, commented=True)


@dataclass(frozen=True)
class OperatorConfig:
    """``[operator]``: how a person confirms manual steps."""

    confirmation: str = _field("auto", '"auto" (prompt in an interactive terminal, else '
                               'answer files), "prompt" or "file" (another process answers '
                               "in folder)")
    folder: str = _field("", "answer folder (default for \"auto\": <catalog>/session/operator)",
                         example="~/lltolab/operator", commented=True)

    def __post_init__(self) -> None:
        if self.confirmation not in ("auto", "prompt", "file"):
            raise ValueError("[operator] confirmation must be 'auto', 'prompt' or 'file', got "
                             f"{self.confirmation!r}")
        if self.confirmation == "file" and not self.folder:
            raise ValueError("[operator] confirmation = 'file' needs folder = '...'")


@dataclass(frozen=True)
class SuspendersConfig:
    """``[suspenders]``: conditions that pause runs."""

    stage_imaging_max_K: float = _field(STAGE_IMAGING_MAX_K,
                                        "imaging waits while the stage is warmer, K")

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stage_imaging_max_K) and self.stage_imaging_max_K > 0):
            raise ValueError("[suspenders] stage_imaging_max_K must be a finite temperature "
                             f"> 0 K, got {self.stage_imaging_max_K!r}")


_SECTIONS: dict[str, type] = {
    "sample": SampleConfig,
    "catalog": CatalogConfig,
    "cryostage": CryostageConfig,
    "furnace": FurnaceConfig,
    "sims": SimsConfig,
    "operator": OperatorConfig,
    "suspenders": SuspendersConfig,
}


@dataclass(frozen=True)
class SessionConfig(Mapping[str, Mapping[str, Any]]):
    """A whole configuration: one typed section per TOML table.

    As a mapping it holds the given sections as ``{key: value}`` dicts, leaving out keys
    whose value is empty (no address, no API key).

    Attributes
    ----------
    given : frozenset of str
        The sections the source named (the others hold pure defaults).
    """

    sample: SampleConfig = field(default_factory=SampleConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    cryostage: CryostageConfig = field(default_factory=CryostageConfig)
    furnace: FurnaceConfig = field(default_factory=FurnaceConfig)
    sims: SimsConfig = field(default_factory=SimsConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    suspenders: SuspendersConfig = field(default_factory=SuspendersConfig)
    given: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SessionConfig:
        """Build from parsed TOML; unknown sections or keys and wrong types are ValueErrors."""
        sections: dict[str, Any] = {}
        for name, values in data.items():
            if name not in _SECTIONS:
                raise ValueError(f"configuration has an unknown section [{name}]; known: "
                                 f"{', '.join(_SECTIONS)} (see example_config())")
            if not isinstance(values, Mapping):
                raise ValueError(f"configuration [{name}] must be a table of keys, got "
                                 f"{values!r}")
            sections[name] = _section(name, _SECTIONS[name], values)
        return cls(**sections, given=frozenset(data))

    def require_instruments(self) -> None:
        """Check that the instrument sections name their instruments (for real devices).

        Raises
        ------
        ValueError
            A section is missing or lacks its address (resource, port, export folder).
        """
        for section, key in REQUIRED.items():
            if section not in self.given:
                raise ValueError(f"configuration lacks the [{section}] section "
                                 "(see example_config())")
            if not getattr(getattr(self, section), key):
                raise ValueError(f"configuration section [{section}] needs {key} = '...' "
                                 "(see example_config())")

    # read-only mapping of the given sections, as plain dicts (TOML shape)
    def __getitem__(self, name: str) -> Mapping[str, Any]:
        if name not in self.given:
            raise KeyError(name)
        return {k: v for k, v in dataclasses.asdict(getattr(self, name)).items()
                if v not in ("", None)}

    def __iter__(self) -> Iterator[str]:
        return (name for name in _SECTIONS if name in self.given)

    def __len__(self) -> int:
        return len(self.given)


def _section(name: str, cls: type, values: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"configuration [{name}] has an unknown key {key!r}; known: "
                             f"{', '.join(fields)}")
        kwargs[key] = _coerce(f"[{name}] {key}", fields[key].type, value)
    return cls(**kwargs)


def _coerce(where: str, annotation: str, value: Any) -> Any:
    """Check one value against its field's annotation (as written, e.g. ``"float"``)."""
    if annotation == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    if annotation in ("int", "int | None"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation in ("tuple[float, float]", "tuple[float, float] | None"):
        if (not isinstance(value, list | tuple) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)):
            raise ValueError(f"{where} must be [low, high] (two numbers), got {value!r}")
        return (float(value[0]), float(value[1]))
    raise TypeError(f"no conversion for {annotation!r} ({where})")  # a field of ours


def load_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | SessionConfig | None,
) -> SessionConfig:
    """A :class:`SessionConfig` from a TOML file, a mapping of sections, or nothing (defaults).

    Raises
    ------
    ValueError
        The file does not exist or is not TOML; a section, key or value is not valid.
    """
    if config is None:
        return SessionConfig()
    if isinstance(config, SessionConfig):
        return config
    if isinstance(config, Mapping):
        return SessionConfig.from_mapping(config)
    path = Path(config).expanduser()
    if not path.is_file():
        raise ValueError(f"configuration file {str(path)!r} does not exist")
    with path.open("rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"configuration file {str(path)!r} is not valid TOML: {exc}") from None
    return SessionConfig.from_mapping(data)


def read_config_tables(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The configuration's sections as plain, mutable tables, after :func:`load_config` has
    checked every section, key and value (clear ValueError).

    For code that adds to a configuration before handing it to ``session.start`` (the queue
    server's startup adds the API key).
    """
    if config is None:
        return {}
    load_config(config)
    if isinstance(config, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    with Path(config).expanduser().open("rb") as f:
        return tomllib.load(f)


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def example_config() -> str:
    """A commented TOML configuration for the real instruments, generated from the sections.

    Every setting shows its default (the device's own); addresses show an example.
    """
    defaults = SessionConfig()
    lines = ["# lltolab session configuration (real instruments)",
             "# every key but the instrument addresses is optional; shown: the defaults"]
    for name, cls in _SECTIONS.items():
        lines += ["", f"[{name}]  # {(cls.__doc__ or '').split(':', 1)[-1].strip()}"]
        section = getattr(defaults, name)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            value = getattr(section, f.name)
            if meta.get("example") is not None and (value in ("", None)):
                value = meta["example"]
            prefix = "# " if meta.get("commented") else ""
            lines.append(f"{prefix}{f.name} = {_toml(value)}  # {meta.get('doc', '')}")
    return "\n".join(lines) + "\n"
