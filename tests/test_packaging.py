"""The project's own promises: dependencies agree, and CI runs what the README says."""

from __future__ import annotations

import re
import sys

import pytest
from support import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None


def requirement_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_requirements_txt_agrees_with_pyproject():
    if tomllib is None:
        import pytest

        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.update(extra)
    assert set(requirement_lines()) == declared


def test_every_requirement_pins_a_minimum_version():
    for line in requirement_lines():
        assert ">=" in line, line


def readme_block(marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.+?)\n```\n<!-- /{marker} -->", readme, re.S)
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def test_readme_gives_one_command_to_run_and_one_to_test():
    """Both in a virtual environment they make: a distribution's Python refuses pip outside one."""
    for marker, venv, program in (
        ("run-command", ".venv", ".venv/bin/geventsrv"),
        ("test-command", ".venv-tests", ".venv-tests/bin/tox"),
    ):
        command = readme_block(marker)
        assert command.startswith(f"python3 -m venv {venv} && {venv}/bin/pip install "), command
        assert command.endswith(program) and "\n" not in command


def test_each_readme_command_has_an_environment_of_its_own():
    """Two commands making one .venv with two different python3s (the system's, then
    pyenv's) leave it pointing at the second's library, with the first's links: broken."""
    assert readme_block("run-command").split()[3] != readme_block("test-command").split()[3]


def test_every_page_of_commands_says_where_they_run():
    """After the quick start, python3 is the system's until the environment is activated."""
    pages = sorted((ROOT / "docs").glob("*.md"))
    for page in pages:
        text = page.read_text()
        if "python3 -m geventsrv" in text or "\nlocust " in text:
            assert "README.md#quick-start" in text, page.name


@pytest.mark.slow
def test_the_readme_run_command_starts_the_server_from_a_fresh_clone(tmp_path):
    import os
    import shutil
    import signal
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and the project's repository to clone")
    import psutil

    # The project's files as a clone of this working tree would hold them.
    clone = tmp_path / "clone"
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\n")  # fmt: skip
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    env = dict(os.environ, GEVENTSRV_PORT="0")  # the default port may be taken here
    env.pop("VIRTUAL_ENV", None)
    server = subprocess.Popen(
        ["sh", "-c", readme_block("run-command")], cwd=clone, env=env, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        lines = []
        for line in server.stderr:  # pip's output, then the server's log
            lines.append(line)
            if "listening on" in line:
                break
        assert "listening on 127.0.0.1:" in lines[-1], "".join(lines[-20:])
        (geventsrv,) = psutil.Process(server.pid).children()  # the shell runs it last
        geventsrv.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0  # the shell's status: the server's, a clean stop
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "eval" in ci
    assert "TOX_SKIP_MISSING_INTERPRETERS=false" in ci


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda path: path.name)
def test_links_between_pages_resolve(page):
    """Every relative link (and #anchor) in README and docs/ points at something that exists."""
    text = page.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(target)
        elif anchor and goal.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", goal.read_text(), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, broken


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
