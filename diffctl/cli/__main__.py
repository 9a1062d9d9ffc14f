"""``python -m diffctl.cli``: the ``diffctl`` command."""

from diffctl.cli import main

raise SystemExit(main())
