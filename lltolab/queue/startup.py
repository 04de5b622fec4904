"""Startup module for bluesky-queueserver's RE Manager (``--startup-module lltolab.queue.startup``).

Importing it builds what :func:`lltolab.session.start` builds (the simulated lab or the real
instruments, the catalog writer, persistent metadata, the LN₂ suspender) from the
``LLTOLAB_QUEUE_*`` environment variables (see :mod:`lltolab.queue._profile`) and leaves in
this module's namespace exactly the RunEngine ``RE``, the devices and the plans the queue
server offers. ``lltolab queue`` starts the manager with it.
"""

from lltolab.queue._profile import build_namespace as _build_namespace

globals().update(_build_namespace())
del _build_namespace
