"""A query whose reply is checked against its expected shape, resynchronising on a mismatch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ._errors import InstrumentError, InstrumentProtocolError

__all__ = ["checked_query", "resync"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


def resync(transport: Any) -> None:
    """Ask ``transport`` to bring its link back in step (``transport.resync()`` if it has one).

    Failures are logged, never raised: resynchronising happens while another error is
    already on its way to the caller.
    """
    method = getattr(transport, "resync", None)
    if method is None:
        return
    try:
        method()
    except InstrumentError as exc:
        logger.warning("could not resynchronise %r: %s", transport, exc)


def checked_query(
    transport: Any,
    command: str,
    parse: Callable[[str], _T],
    *,
    idempotent: bool = True,
) -> _T:
    """Send ``command``, parse the reply; a reply of the wrong shape resynchronises the link.

    Parameters
    ----------
    transport : MessageTransport
        Anything with ``query(command, *, idempotent)``; its ``resync()`` is called if the
        parser rejects the reply.
    command : str
        The query line.
    parse : callable
        ``parse(reply) -> value``, raising :class:`~lltolab.comm.InstrumentProtocolError`
        when the reply is not an answer to ``command`` (wrong field count, not a number,
        physically impossible value).

    Raises
    ------
    InstrumentProtocolError
        The reply did not parse; the next query is answered on a link back in step.
    """
    reply = transport.query(command, idempotent=idempotent)
    try:
        return parse(reply)
    except InstrumentProtocolError:
        resync(transport)
        raise
