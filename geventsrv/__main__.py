from geventsrv.patching import patch_all; patch_all()  # noqa: E702  # fmt: skip

# ``python -m geventsrv``. Patching is the first statement so that every module
# imported afterwards (socket, ssl, threading, ...) gets gevent's cooperative
# versions; patching later would leave some code holding the blocking ones.
import sys

from geventsrv.cli import main

sys.exit(main())
