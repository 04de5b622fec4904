"""``python -m lltolab.cli``: the ``lltolab`` command."""

from lltolab.cli import console_main

console_main()
