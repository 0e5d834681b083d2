"""The ``geventsrv`` console script: patch the process first, then run the CLI.

Installed as an entry point, so it is imported by a generated wrapper; the
wrapper and this module import nothing that gevent must patch before it can
run ``patch_all()`` here.
"""

import sys


def main() -> None:
    """Monkey-patch, then hand over to :func:`geventsrv.cli.main`."""
    from geventsrv.patching import patch_all

    patch_all()
    from geventsrv.cli import main as cli_main

    sys.exit(cli_main())
