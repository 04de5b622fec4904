"""What the RE Manager's worker loads: the session's RunEngine, devices and plans.

The startup module :mod:`lltolab.queue.startup` calls :func:`build_namespace`, which reads its
settings from environment variables (the worker is a separate process started by
bluesky-queueserver; ``lltolab queue`` sets them):

``LLTOLAB_QUEUE_SIM``
    ``1`` for the simulated lab, ``0`` for the real instruments of ``LLTOLAB_QUEUE_CONFIG``.
``LLTOLAB_QUEUE_CONFIG``
    TOML configuration file (see :func:`lltolab.session.example_config`).
``LLTOLAB_QUEUE_CATALOG``
    Catalog folder or tiled server URI (default: the configuration's, else the user data dir).
``LLTOLAB_QUEUE_API_KEY``
    API key of a tiled server catalog.
``LLTOLAB_QUEUE_SAMPLE_ID``
    Sample id (default: the one the catalog's sample record holds).
``LLTOLAB_QUEUE_SEED``, ``LLTOLAB_QUEUE_TIME_SCALE``
    Seed of the virtual sample and lab seconds per wall second (simulated lab only; unset:
    lab time passes only when a device waits, and a seed reproduces).
"""

import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "build_namespace", "operator_functions", "QUEUE_PLANS", "QUEUE_DEVICES", "ENV_PREFIX",
    "queue_env",
]

ENV_PREFIX = "LLTOLAB_QUEUE_"
QUEUE_PLANS = (
    "isotope_exchange", "transfer", "quench", "sims_image", "sims_line_profile", "anneal",
    "store", "image_cycle", "exchange_quench_image_anneal_reimage", "arrhenius_campaign",
)
"""The lltolab plans offered by the queue server (plus bluesky's ``count``)."""
QUEUE_DEVICES = ("cell", "handler", "clock", "stage", "furnace", "sims", "record")
"""The devices offered by the queue server, by the names the plans' parameters take."""


def queue_env(
    *, sim: bool, config: str | None = None, catalog: str | None = None,
    api_key: str | None = None, sample_id: str | None = None, seed: int | None = None,
    time_scale: float | None = None,
) -> dict[str, str]:
    """The environment variables that make :func:`build_namespace` build this session."""
    env = {f"{ENV_PREFIX}SIM": "1" if sim else "0"}
    for key, value in (("CONFIG", config), ("CATALOG", catalog), ("API_KEY", api_key),
                       ("SAMPLE_ID", sample_id), ("SEED", seed), ("TIME_SCALE", time_scale)):
        if value is not None:
            env[f"{ENV_PREFIX}{key}"] = str(value)
    return env


def _settings(environ: Mapping[str, str]) -> dict[str, Any]:
    def get(key: str) -> str | None:
        value = environ.get(f"{ENV_PREFIX}{key}")
        return value if value else None

    sim_text = get("SIM") or "1"
    if sim_text not in ("0", "1"):
        raise ValueError(f"{ENV_PREFIX}SIM must be 0 or 1, got {sim_text!r}")
    sim = sim_text == "1"
    config = get("CONFIG")
    if not sim and config is None:
        raise ValueError(f"real instruments need {ENV_PREFIX}CONFIG (a TOML file)")
    out: dict[str, Any] = {"sim": sim, "config": config, "catalog": get("CATALOG"),
                           "api_key": get("API_KEY"), "sample_id": get("SAMPLE_ID")}
    try:
        out["seed"] = int(get("SEED") or 0)
        text = get("TIME_SCALE")
        out["time_scale"] = float(text) if text else None  # unset: the stepped lab clock
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}SEED / TIME_SCALE: {exc}") from None
    return out


def _file_confirmations(devices: Mapping[str, Any]) -> list[Any]:
    """The distinct confirmations of the devices that post answerable requests."""
    out: list[Any] = []
    for dev in devices.values():
        conf = getattr(dev, "confirmation", None)
        if conf is not None and hasattr(conf, "pending") and hasattr(conf, "answer"):
            if all(conf is not c for c in out):
                out.append(conf)
    return out


def operator_functions(devices: Mapping[str, Any]) -> tuple[Any, Any]:
    """``pending_operator_steps()`` and ``answer_operator_step(id, confirmed, note)``.

    Functions a queue server client runs (``function_execute``) to see and answer the
    operator steps the devices posted as files.
    """
    confirmations = _file_confirmations(devices)

    def pending_operator_steps() -> list[dict[str, Any]]:
        """Operator steps waiting for an answer (id, action, message, params, created)."""
        return [dict(vars(r)) for c in confirmations for r in c.pending()]

    def answer_operator_step(request_id: str, confirmed: bool = True, note: str = "") -> str:
        """Answer a pending operator step (as ``lltolab confirm ID --yes|--no`` does)."""
        for c in confirmations:
            if any(r.request_id == request_id for r in c.pending()):
                c.answer(request_id, confirmed=bool(confirmed), note=str(note))
                return request_id
        raise ValueError(f"no pending operator step with id {request_id!r}")

    return pending_operator_steps, answer_operator_step


def build_namespace(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build a session as :func:`lltolab.session.start` does; return the worker's namespace.

    The namespace holds ``RE`` (the session's RunEngine: catalog writer, persistent metadata,
    sample-id validator, LN₂ suspender), the devices of :data:`QUEUE_DEVICES`, the plans of
    :data:`QUEUE_PLANS`, bluesky's ``count`` and ``session``.

    Parameters
    ----------
    environ : mapping, optional
        Settings (default ``os.environ``); see the module docstring.
    """
    from bluesky.plans import count  # noqa: PLC0415

    import lltolab.plans as plans  # noqa: PLC0415
    from lltolab.config import read_config_tables  # noqa: PLC0415
    from lltolab.session import start  # noqa: PLC0415

    settings = _settings(os.environ if environ is None else environ)
    cfg = read_config_tables(settings["config"])
    if settings["api_key"]:
        cfg.setdefault("catalog", {})
        cfg["catalog"] = {**cfg["catalog"], "api_key": settings["api_key"]}
    sample_id = settings["sample_id"]
    session = start(cfg, sim=settings["sim"], catalog=settings["catalog"], sample_id=sample_id,
                    seed=settings["seed"], time_scale=settings["time_scale"], callbacks=False)
    RE = session.RE
    if not RE.md.get("sample_id") and settings["sim"]:
        session.record.reset(f"LLTO-sim-seed{settings['seed']}")
        RE.md["sample_id"] = session.record.sample_id.get()

    def flush_md(name: str, doc: Any) -> None:
        # the worker process ends without running finalizers: persist scan_id at each start
        if name == "start":
            RE.md.flush()

    RE.subscribe(flush_md)
    pending_operator_steps, answer_operator_step = operator_functions(session.devices)
    namespace: dict[str, Any] = {"RE": RE, "session": session, "count": count,
                                 "pending_operator_steps": pending_operator_steps,
                                 "answer_operator_step": answer_operator_step}
    namespace.update({name: session.devices[name] for name in QUEUE_DEVICES})
    namespace.update({name: getattr(plans, name) for name in QUEUE_PLANS})
    return namespace
