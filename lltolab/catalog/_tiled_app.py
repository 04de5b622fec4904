"""Building tiled's server app for a catalog, without FastAPI's per-request override cost.

tiled's ``build_app_from_config`` registers one FastAPI dependency override, for
``tiled.server.settings.get_settings``. While an app has any override, FastAPI rebuilds the
dependency tree of every sub-dependency of every request (``inspect.signature`` on each): a
quarter to a third of the embedded catalog's CPU time per request (``docs/catalog.md``).

tiled's override writes the app's settings into the process-wide ``Settings`` that
``get_settings()`` caches and returns that same object. Once it has run, the dependency
resolves to the very same object with or without the override, so the override can be taken
out while the app serves requests. It must be back for tiled's shutdown, which looks it up:
:func:`build_app` wraps the app's lifespan to remove it after startup and to put it back before
shutdown. If the override ever returns another object (a different tiled), it is left alone.

The in-process client (:func:`embedded_context`) also answers tiled's "close stream" requests
itself when the app has neither a streaming cache nor webhooks: the server would look the node
up (about 14 ms of CPU) to tell nobody. ``TiledWriter`` sends one per node of every run, a
quarter of its requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["build_app", "embedded_context", "settings_of"]


def build_app(config: Mapping[str, Any]) -> Any:
    """tiled's app for ``config`` (``build_app_from_config``), serving without overrides.

    Parameters
    ----------
    config
        A tiled server configuration (``catalog_config`` or ``ServerSettings.app_config``).

    Returns
    -------
    fastapi.FastAPI
        The app, for uvicorn or :func:`embedded_context`.
    """
    from tiled.config import Config
    from tiled.server.app import build_app_from_config
    from tiled.server.settings import get_settings

    parsed = Config.model_validate(dict(config))  # what build_app_from_config does with a dict
    app = build_app_from_config(parsed)
    # a closed stream tells websocket subscribers (streaming cache) and webhooks, if any
    # (tiled starts its webhook dispatcher only when webhook secret keys are set)
    webhooks = parsed.webhooks is not None and bool(parsed.webhooks.secret_keys)
    app.state.lltolab_streams_observed = parsed.streaming_cache is not None or webhooks
    if set(app.dependency_overrides) != {get_settings}:
        return app
    override = app.dependency_overrides[get_settings]
    if override() is not get_settings():
        return app
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            app.dependency_overrides.pop(get_settings, None)
            try:
                yield state
            finally:
                app.dependency_overrides[get_settings] = override

    app.router.lifespan_context = lifespan
    return app


def settings_of(app: Any) -> Any:
    """The ``tiled.server.settings.Settings`` that ``app`` serves with."""
    from tiled.server.settings import get_settings

    override = app.dependency_overrides.get(get_settings)
    return override() if override is not None else get_settings()


def embedded_context(app: Any) -> Any:
    """``tiled.client.Context.from_app(app)`` for a single-user app built by :func:`build_app`.

    The API key is given explicitly: left unset, ``from_app`` would look it up through the
    override after startup has taken the override out.
    """
    from tiled.client import Context

    served = app
    if getattr(app.state, "lltolab_streams_observed", True) is False:
        served = _AnswerStreamCloses(app)
    return Context.from_app(served, api_key=settings_of(app).single_user_api_key or None)


class _AnswerStreamCloses:
    """ASGI wrapper: ``DELETE /api/v1/stream/close/<path>`` gets tiled's answer (200, JSON
    ``null``) without reaching the app; everything else (lifespan included) goes through.
    For an app where nothing observes streams: closing one changes nothing there."""

    _PREFIX = "/api/v1/stream/close/"
    _BODY = b"null"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["method"] == "DELETE"
                and scope["path"].startswith(self._PREFIX)):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(self._BODY)).encode())]})
            await send({"type": "http.response.body", "body": self._BODY})
            return
        await self.app(scope, receive, send)
