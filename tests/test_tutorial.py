"""Every lesson runs, and what it claims is what happens."""

from __future__ import annotations

import doctest
import importlib
import itertools
import json
import re
import socket
import subprocess
import sys

import pytest
from support import ROOT, recv_until_eof, require_tool

from geventsrv.tutorial import catalog
from geventsrv.tutorial._narrate import LANGUAGES, Narrator

# The lessons run as programs: on the oldest and newest Python.
pytestmark = pytest.mark.edges


def narrator(lang: str = "en") -> Narrator:
    import io

    return Narrator(io.StringIO(), lang=lang)


@pytest.fixture(params=LANGUAGES)
def lang(request: pytest.FixtureRequest) -> str:
    """Each lesson's claims hold whatever language narrates it."""
    return str(request.param)


def run_tutorial(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv.tutorial", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name, module", catalog.LESSONS)
def test_every_lesson_says_what_it_shows_and_what_to_read_first(name, module):
    lesson = importlib.import_module(module)
    assert lesson.__doc__ and "What it shows" in lesson.__doc__ and "Read first" in lesson.__doc__
    assert lesson.SUMMARY and "\n" not in lesson.SUMMARY
    assert callable(lesson.run)


def test_switching_order_values_parent_and_throw(lang):
    result = importlib.import_module("geventsrv.tutorial.switching").run(narrator(lang))
    assert [line.split(":")[1].strip()[0] for line in result["order"]] == list("12345")
    assert result["first_dead"] is True and result["second_dead"] is False
    assert result["totals"] == [100, 105, 115, 135, 135]
    assert result["child_returned"] == "child's return value"
    assert result["result"] == "cleaned up" and result["dead"] is True
    assert result["caught"] == "ValueError('bad input')" and result["doomed_dead"] is True


def test_tracing_shows_every_switch_going_through_the_hub(lang):
    result = importlib.import_module("geventsrv.tutorial.tracing").run(narrator(lang))
    switches = [(origin, target) for _, origin, target in result["switches"]]
    assert result["direct"] == []
    assert switches[0] == ("main", "hub") and switches[-1] == ("hub", "main")
    resumed = [target for origin, target in switches if origin == "hub" and target != "main"]
    assert resumed[:2] == ["a", "b"]  # started in spawn order
    assert resumed[2:] == ["b", "a"]  # woken in timer order: b sleeps less


def test_scheduling_sleeps_overlap_and_a_cpu_loop_blocks_everyone(lang):
    result = importlib.import_module("geventsrv.tutorial.scheduling").run(
        narrator(lang), seconds=1.0, busy_seconds=0.5
    )
    assert 0.95 < result["sleep_total"] < 2.0  # three 1 s sleeps, not 3 s
    assert result["blocking"]["max_gap"] > 0.4  # the ticker waited for the loop
    assert result["sleep0"]["max_gap"] > 0.4  # sleep(0) every 10 ms: timers wait ~50 yields
    assert 40 <= result["sleep0_batch"] <= 60
    assert result["idle"]["max_gap"] < 0.3  # idle() lets the hub poll each time
    assert result["idle_batch"] == 1


def test_monkeypatching_changes_timings_only_when_it_comes_first(lang):
    pause = 0.3
    result = importlib.import_module("geventsrv.tutorial.monkeypatching").run(
        narrator(lang), pause=pause
    )
    serial, overlapped = 2.5 * pause, 2 * pause  # 3 waits one by one vs at once
    assert result["unpatched"]["sleep"] > serial and result["unpatched"]["socket"] > serial
    assert result["patched"]["sleep"] < overlapped and result["patched"]["socket"] < overlapped
    assert result["patched-late"]["sleep"] > serial  # the early `from time import sleep`
    assert result["patched-late"]["socket"] < overlapped
    assert "socket" in result["patched"]["patched"]
    assert result["unpatched"]["patched"] == []


def test_echo_server_lesson_serves_every_client_at_once(lang):
    result = importlib.import_module("geventsrv.tutorial.echo_server").run(
        narrator(lang), clients=100
    )
    assert result["clients"] == 100 and result["failures"] == []


def test_the_tutorial_echo_server_runs_as_a_program(rng):
    server = subprocess.Popen(
        [sys.executable, "-m", "geventsrv.tutorial.echo_server", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[-1])
        payload = rng.randbytes(300_000)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == payload
    finally:
        server.terminate()
        server.wait(10)


def test_asyncio_and_gevent_versions_agree(lang):
    module = importlib.import_module("geventsrv.tutorial.asyncio_side_by_side")
    result = module.run(narrator(lang))
    assert set(result) == {"gather", "task", "timeout", "echo"}
    for pair in result.values():
        assert pair["asyncio"] == pair["gevent"] or pair is result["echo"]
    assert result["gather"]["gevent"] == [1, 4, 9]
    assert result["timeout"]["gevent"] == "timed out"
    assert result["echo"]["asyncio"] == b"hello from asyncio"
    assert result["echo"]["gevent"] == b"hello from gevent"
    for name in ("gather", "task"):  # three (or two) waits of PAUSE overlap
        for model in ("asyncio", "gevent"):
            assert result[name][f"{model}_seconds"] < 2.5 * module.PAUSE


def test_protocols_one_blocking_loop_serves_http_keep_alive_and_websocket(lang):
    result = importlib.import_module("geventsrv.tutorial.protocols").run(narrator(lang))
    assert result["by_hand"].startswith(b"HTTP/1.1 200") and b"/by-hand" in result["by_hand"]
    http, ws, own = result["http"], result["websocket"], result["geventsrv"]
    assert http["answer"] == [
        (200, b"you asked for " + path + b"\n") for path in (b"/one", b"/two", b"/three")
    ]
    assert ws["answer"] == ["hello", "sans-IO"]
    for served in (http, ws):
        # The loop's greenlet waited only in recv(): every switch to the hub while
        # serving fell inside a recv() call, and it did wait there.
        assert served["switches_away_in"]["recv"] == served["switches_away_serving"] >= 1
        switches = [(origin, target) for _, _, origin, target in served["timeline"].switches]
        assert all("hub" in pair for pair in switches)  # never greenlet to greenlet
    assert http["calls"].count("recv") >= 4 and http["calls"].count("sendall") == 3
    # geventsrv's own mode: two requests and a WebSocket on one connection.
    assert [(status, path) for status, path, _ in own["requests"]] == [
        (200, "/first"),
        (200, "/second"),
    ]
    assert own["requests"][0][2]["connection"] == own["requests"][1][2]["connection"]
    assert own["echoed"] == ["over the same connection"]


def test_listing_names_every_lesson():
    result = run_tutorial()
    assert result.returncode == 0
    for number, (name, _) in enumerate(catalog.LESSONS, start=1):
        assert re.search(rf"^\s+{number}\. {name}\s", result.stdout, re.M)


# Each lesson has tests of its own on every interpreter; all of them in one process (18 s), once.
@pytest.mark.slow
def test_all_runs_every_lesson_in_order():
    result = run_tutorial("--all")
    assert result.returncode == 0, result.stderr
    titles = re.findall(r"^Lesson (\d):", result.stdout, re.M)
    assert titles == [str(n) for n in range(1, len(catalog.LESSONS) + 1)]
    assert f"All {len(catalog.LESSONS)} lessons ran in" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("args", [["nosuch"], ["99"], ["--all", "tracing"]])
def test_bad_lesson_is_one_line_and_exit_2(args):
    result = run_tutorial(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_lessons_load_by_number_or_dashed_name():
    assert catalog.load("2")[0] == "tracing"
    assert catalog.load("echo-server")[0] == "echo_server"


def test_readme_tutorial_listing_is_what_the_command_prints():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- tutorial-listing -->\n```console\n(.+?)```", readme, re.S)
    assert match, "README.md has no tutorial listing"
    shown = match.group(1).split("\n", 1)[1]  # drop the "$ command" line
    assert shown.strip() == run_tutorial().stdout.strip()


PAGES_WITH_EXAMPLES = sorted(
    path
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    if ">>> " in path.read_text()
)


def test_the_tutorial_page_holds_runnable_examples():
    assert ROOT / "docs" / "tutorial.md" in PAGES_WITH_EXAMPLES


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda path: path.name)
def test_examples_in_the_docs_run_as_shown(page):
    """The >>> examples in README.md and docs/*.md are doctests."""
    failures, tried = doctest.testfile(
        str(page), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert tried > 0 and failures == 0


def test_echo_server_lesson_describes_the_idle_reaper_not_socket_timeouts():
    """geventsrv's idle timeout is a reaper greenlet; socket timeouts are what it avoids."""
    out = narrator()
    importlib.import_module("geventsrv.tutorial.echo_server").run(out, clients=2)
    text = " ".join(out.text.split())
    assert "settimeout() makes a silent" not in text
    assert "one reaper greenlet" in text


def test_io_models_blocking_nonblocking_select_ceiling_and_triggering(lang):
    result = importlib.import_module("geventsrv.tutorial.io_models").run(narrator(lang), delay=0.2)
    blocking = result["blocking"]
    assert blocking["waited"] >= 0.18 and blocking["bytes"] == 1000
    assert blocking["copied"] < blocking["waited"] / 10  # phase 2 alone: no wait
    nonblocking = result["nonblocking"]
    assert nonblocking["raised"] == ("BlockingIOError", "EAGAIN")
    assert nonblocking["attempts"] > 100 and nonblocking["data"] == b"here"
    ceiling = result["ceiling"]
    if "skipped" in ceiling:
        pytest.skip(ceiling["skipped"])
    assert ceiling["fd"] >= 1024
    assert ceiling["select"] == "ValueError: filedescriptor out of range in select()"
    assert ceiling["poll"] == [(ceiling["fd"], True)] == ceiling["epoll"]
    assert result["level"] == {"unread": [1, 1, 1], "partial": [1, 1], "new": [1]}
    assert result["edge"] == {"unread": [1, 0, 0], "partial": [0, 0], "new": [1]}


@pytest.fixture(scope="module", params=LANGUAGES)
def event_loops_run(request: pytest.FixtureRequest) -> dict[str, object]:
    module = importlib.import_module("geventsrv.tutorial.event_loops")
    return module.run(narrator(request.param))


def test_the_selectors_chat_sleeps_when_idle_and_drops_only_the_client_that_never_reads(
    event_loops_run,
):
    chat = event_loops_run["chat"]
    assert chat["idle_wakeups"] == 0 and event_loops_run["spinning"] > 1000
    assert chat["bob"] == 2000 and chat["bob_intact"] and chat["alice"] == 2000
    assert chat["dropped"][0] == "too slow"
    assert chat["wakeups"] < 2 * 2000  # about one per line: no busy loop


def test_gevents_hub_and_the_selectors_loop_both_watch_their_sockets_with_epoll(
    event_loops_run,
):
    assert event_loops_run["backend"] == "epoll"
    watches = event_loops_run["watches"]
    assert watches["selectors chat"] == [4]  # the listener and three clients
    assert len(watches["gevent echo"]) == 1 and watches["gevent echo"][0] >= 4


def test_system_calls_per_message_as_the_lesson_says(event_loops_run):
    counted = event_loops_run["syscalls"]
    if isinstance(counted["selectors chat"], str):
        pytest.skip(f"perf cannot count here: {counted['selectors chat']}")
    selectors_chat, gevent_echo = counted["selectors chat"], counted["gevent echo"]
    for name in ("epoll_wait", "recvfrom", "sendto"):
        assert selectors_chat[name] == pytest.approx(1, abs=0.1)
    assert gevent_echo["recvfrom"] == pytest.approx(2, abs=0.1)  # one of them EAGAIN
    assert gevent_echo["getsockopt"] == pytest.approx(1, abs=0.1)
    assert selectors_chat["total"] < gevent_echo["total"]


def test_the_c10k_figures_are_the_labs_published_medians():
    from geventsrv.tutorial.event_loops import C10K

    results = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())
    medians = {
        row["server"]: row
        for row in results["medians"]
        if row["connections"] == 10000 and row["size"] == 1024
    }
    for server, figures in C10K.items():
        row = medians[server]
        assert figures == {
            "requests_per_s": row["requests_per_s"],
            "p99_us": row["p99_us"],
            "kib": row["rss_per_connection_kib"],
        }


@pytest.mark.parametrize("lesson", ["tracing", "scheduling"])
def test_plot_draws_the_recorded_switches(lesson, tmp_path):
    picture = tmp_path / f"{lesson}.png"
    result = run_tutorial(lesson, "--plot", str(picture))
    assert result.returncode == 0, result.stderr
    assert f"The timeline is in {picture}." in result.stdout
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000


def test_the_timeline_has_one_greenlet_running_at_a_time_and_the_hub_in_between():
    from geventsrv.tutorial import _timeline, tracing

    timeline = tracing.run(narrator())["timeline"]
    assert _timeline.row_order(timeline) == ["hub", "main", "a", "b"]
    spans = sorted(span for runs in _timeline.running_spans(timeline).values() for span in runs)
    assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans))
    assert spans[-1][1] == pytest.approx(timeline.duration)
    assert [origin for _, _, origin, target in timeline.switches if target == "b"] == ["hub"] * 2


@pytest.mark.parametrize("args", [["echo_server", "--plot", "x.png"], ["--all", "--plot", "x.png"]])
def test_plot_for_a_lesson_without_pictures_is_one_line_and_exit_2(args, tmp_path):
    result = run_tutorial(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m geventsrv.tutorial: error: argument --plot: works with one of: tracing, "
        "scheduling (see --help)"
    )


def test_plot_to_a_format_matplotlib_cannot_write_is_refused_before_the_lesson(tmp_path):
    result = run_tutorial("tracing", "--plot", str(tmp_path / "x.txt"))
    assert result.returncode == 2 and result.stdout == ""  # refused before anything ran
    assert result.stderr.count("\n") == 1 and "the file must end in .png" in result.stderr


def test_plot_into_a_folder_that_does_not_exist_is_refused_before_the_lesson(tmp_path):
    result = run_tutorial("tracing", "--plot", str(tmp_path / "no" / "such" / "x.png"))
    assert result.returncode == 2 and result.stdout == ""  # refused before anything ran
    assert result.stderr.count("\n") == 1 and "cannot write" in result.stderr


def test_strace_counts_the_same_calls_where_perf_cannot():
    require_tool("strace", "strace")
    from geventsrv.bench import syscalls

    if why := syscalls.strace_unavailable():
        pytest.skip(why)
    from geventsrv.tutorial._programs import running_program

    module = importlib.import_module("geventsrv.tutorial.event_loops")
    with running_program("geventsrv.tutorial.echo_server") as (proc, port, _):
        counted = module.syscalls_per_message(proc.pid, port, 100, method="strace")
    assert counted["recvfrom"] == pytest.approx(2, abs=0.1)  # one fails with EAGAIN
    assert counted["sendto"] == pytest.approx(1, abs=0.1)
    assert counted["getsockopt"] == pytest.approx(1, abs=0.1)
