"""Running lltolab plans from bluesky-queueserver.

``lltolab queue --sim`` (or ``--config FILE``) starts bluesky-queueserver's RE Manager with the
startup module :mod:`lltolab.queue.startup`, which builds what :func:`lltolab.session.start`
builds; clients (``qserver``, ``bluesky_queueserver_api.zmq.REManagerAPI``, a GUI) then queue
the plans by device names. See ``docs/queue.md``.
"""

from ._manager import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_INFO_PORT,
    EXISTING_PLANS_AND_DEVICES,
    USER_GROUP_PERMISSIONS,
    QueueServer,
    QueueServerError,
    RedisServer,
    addresses_json,
    check_redis,
    free_port,
    shipped_file,
)
from ._profile import (
    ENV_PREFIX,
    QUEUE_DEVICES,
    QUEUE_PLANS,
    build_namespace,
    operator_functions,
    queue_env,
)

__all__ = [
    "QueueServer",
    "RedisServer",
    "QueueServerError",
    "addresses_json",
    "check_redis",
    "free_port",
    "shipped_file",
    "EXISTING_PLANS_AND_DEVICES",
    "USER_GROUP_PERMISSIONS",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_INFO_PORT",
    "build_namespace",
    "operator_functions",
    "queue_env",
    "ENV_PREFIX",
    "QUEUE_DEVICES",
    "QUEUE_PLANS",
]
