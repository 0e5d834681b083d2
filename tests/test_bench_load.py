"""Both load generators behind one interface, picked in one place."""

from __future__ import annotations

import shutil

import pytest
from support import ServerProcess

from geventsrv.bench import cload
from geventsrv.bench.load import choose_client, start_load


def test_python_is_always_available():
    assert choose_client("python") == "python"


def test_auto_picks_c_where_a_compiler_is_found():
    expected = "c" if shutil.which("cc") or shutil.which("gcc") else "python"
    assert choose_client("auto") == expected


def test_c_without_a_compiler_is_a_build_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(cload.BuildError, match="no C compiler"):
        choose_client("c")
    assert choose_client("auto") == "python"


@pytest.mark.parametrize("client", ["python", "c"])
def test_each_generator_runs_a_window_through_the_same_interface(client):
    if client == "c":
        try:
            cload.build()
        except cload.BuildError as exc:
            pytest.skip(f"the C load generator cannot be built here: {exc}")
    import time

    with ServerProcess("--port", "0") as server:
        load = start_load(client, server.address, 5, 512, seed=1)
        assert load.ready() == 0
        start = time.monotonic() + 0.3
        load.run(start, start + 0.5)
        result = load.result()
    assert result.requests > 10 and result.errors == 0 and result.mismatches == 0
    assert result.histogram.total == result.requests
