"""The package as installed and imported: no patching on import, patching first on run."""

from __future__ import annotations

import signal
import subprocess
import sys

from support import ROOT, ServerProcess


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_importing_the_package_does_not_monkey_patch():
    result = run_python(
        "import geventsrv, geventsrv.server, geventsrv.cli\n"
        "from gevent import monkey\n"
        "assert not monkey.is_module_patched('socket'), 'socket patched'\n"
        "assert not monkey.is_module_patched('threading'), 'threading patched'\n"
        "print('clean')"
    )
    assert result.stdout.strip() == "clean", result.stderr


def test_importing_the_package_loads_nothing_gevent_must_patch_first():
    """``python -m geventsrv`` imports the package before __main__ can patch."""
    result = run_python(
        "import sys; import geventsrv\n"
        "loaded = [m for m in ('ssl', 'threading', 'socket', 'gevent') if m in sys.modules]\n"
        "print(loaded)"
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_python_m_geventsrv_patches_without_a_monkeypatch_warning():
    server = ServerProcess("--port", "0").wait_listening()
    assert server.stop() == 0
    assert "MonkeyPatchWarning" not in server.stderr
    assert "Warning" not in server.stderr, server.stderr


def test_main_module_patches_as_its_first_statement():
    source = (ROOT / "geventsrv" / "__main__.py").read_text()
    first = next(line for line in source.splitlines() if line.strip() and not line.startswith("#"))
    assert first.startswith("from geventsrv.patching import patch_all; patch_all()")


def test_the_api_refuses_to_serve_in_an_unpatched_process():
    import pytest

    from geventsrv import Config, EchoServer, NotPatchedError

    with pytest.raises(NotPatchedError, match="patch_all"):
        EchoServer(Config(port=0)).start()


API_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import socket
import gevent
from geventsrv import Config, EchoServer

with EchoServer(Config(port=0, drain_timeout=5)) as server:
    host, port = server.address
    def client(n):
        with socket.create_connection((host, port), timeout=5) as sock:
            data = bytes([n]) * 100_000
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
            return got == data
    jobs = [gevent.spawn(client, n) for n in range(20)]
    gevent.joinall(jobs, timeout=20)
    print("echoed", sum(job.value for job in jobs))
    gevent.spawn(server.stop, 5)
    server.serve_forever()  # returns once stop() has finished
print("served", server.stats.accepted, "bytes", server.stats.bytes_sent)
"""


def test_the_api_serves_as_a_context_manager():
    result = run_python(API_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["echoed", "20", "served", "20", "bytes", "2000000"]


def test_console_script_entry_point_runs_the_server():
    """``geventsrv`` (the installed script) imports geventsrv.script and calls main()."""
    wrapper = "import sys; from geventsrv.script import main; sys.argv[0] = 'geventsrv'; main()"
    server = ServerProcess("--port", "0", command=(sys.executable, "-W", "always", "-c", wrapper))
    server.wait_listening()
    assert server.stop() == 0
    assert "Warning" not in server.stderr, server.stderr


def readme_python(marker: str) -> str:
    import re

    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```python\n(.+?)```\n<!-- /{marker} -->", readme, re.S)
    assert match, f"README.md has no {marker} example"
    return match.group(1)


def test_readme_serve_example_stops_on_ctrl_c_with_exit_0():
    """``sys.exit(serve(config))``: a clean stop is exit 0, and Ctrl-C prints no traceback."""
    import signal

    with ServerProcess(command=(sys.executable, "-c", readme_python("api-serve"))) as server:
        with server.connect() as sock:
            sock.sendall(b"abc")
            assert sock.recv(3) == b"ABC"
        server.send_signal(signal.SIGINT)
        assert server.wait(20) == 0
    assert "Traceback" not in server.stderr, server.stderr


def test_readme_embedding_example_serves_while_the_program_works():
    import ast
    import re
    import socket
    import time

    server = ServerProcess(command=(sys.executable, "-c", readme_python("api-embed")))
    try:
        found = None
        deadline = time.monotonic() + 20
        while found is None and time.monotonic() < deadline and server.proc.poll() is None:
            found = re.search(r"serving on (\(.+\))", server.stdout)
            time.sleep(0.05)
        assert found, server.output
        host, port = ast.literal_eval(found.group(1))
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"embedded")
            assert sock.recv(8) == b"EMBEDDED"
        time.sleep(0.3)  # the connection closed, so that the stop has nothing to drain
        server.proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop, no traceback
        assert server.proc.wait(20) == 0
    finally:
        server.kill()
    assert "Traceback" not in server.stderr, server.stderr
