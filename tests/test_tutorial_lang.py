"""The tutorial in each of its languages: the same narration in both, chosen as documented.

Every narration call (``say``, ``step``, ``title``, and ``trace`` when a line is
words rather than a program's output) carries English and Chinese side by side;
these tests read the lessons' source to check that neither is missing, that both
show the same measured values, and that each is in its own language. What each
lesson claims is checked in both languages by tests/test_tutorial.py.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, apt_install

from geventsrv.tutorial import catalog
from geventsrv.tutorial._lang import UnknownLanguage, choose, normalize

# The lessons run as programs: on the oldest and newest Python.
pytestmark = pytest.mark.edges

TUTORIAL = ROOT / "geventsrv" / "tutorial"
NARRATION = ("say", "step", "title", "trace")
CJK = re.compile(r"[\u4e00-\u9fff]")


def run_tutorial(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv.tutorial", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any language setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("GEVENTSRV_LANG", "LC_ALL",
                                                            "LC_MESSAGES", "LANG")}  # fmt: skip
    return {**env, **extra}


def narration_calls(path: Path) -> list[tuple[int, str, list[ast.expr]]]:
    """``(line, method, the text arguments)`` for every narration call in ``path``."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr in NARRATION:
            texts = [*node.args, *(keyword.value for keyword in node.keywords)]
            calls.append((node.lineno, node.func.attr, texts))
    return calls


def literal_text(node: ast.expr) -> str:
    """The literal parts of a string or f-string (placeholders left out)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # a constant in braces ({'server':16}) is text too
        return "".join(
            literal_text(part.value if isinstance(part, ast.FormattedValue) else part)
            for part in node.values
        )
    if isinstance(node, ast.BinOp):  # "..." "..." split over lines is one Constant; + is not
        return literal_text(node.left) + literal_text(node.right)
    return ""


def placeholders(node: ast.expr) -> list[str]:
    """What an f-string shows: each placeholder's expression, in source form, sorted; a
    name ending in ``_zh`` counts as its English twin (``label_zh`` shows ``label``)."""
    found = [
        ast.unparse(part.value).replace("_zh", "")
        for part in ast.walk(node)
        if isinstance(part, ast.FormattedValue) and not isinstance(part.value, ast.Constant)
    ]
    return sorted(found)


LESSON_FILES = sorted(TUTORIAL.glob("*.py"))


@pytest.mark.parametrize("path", LESSON_FILES, ids=[path.name for path in LESSON_FILES])
def test_every_narration_is_in_both_languages_with_the_same_values(path):
    missing = []
    for line, method, texts in narration_calls(path):
        if method == "trace" and len(texts) < 2:
            continue  # a program's own output, shown as it printed
        where = f"{path.name}:{line} {method}()"
        if len(texts) != 2:
            missing.append(f"{where}: {len(texts)} text(s), expected English and Chinese")
            continue
        english, chinese = texts
        if not any(isinstance(text, (ast.Constant, ast.JoinedStr)) for text in texts):
            continue  # both from a table (names): the table itself is words in each language
        en, zh = literal_text(english), literal_text(chinese)
        if not en.strip() or not zh.strip():
            missing.append(f"{where}: an empty side")
        elif CJK.search(en) or not CJK.search(zh):
            missing.append(f"{where}: English first, then Chinese")
        elif placeholders(english) != placeholders(chinese):
            missing.append(f"{where}: shows {placeholders(english)} in English, "
                           f"{placeholders(chinese)} in Chinese")  # fmt: skip
    assert not missing, "\n".join(missing)


def test_a_narration_call_with_one_language_is_caught(tmp_path):
    """The check above can fail: a lesson with an English-only step is reported."""
    lesson = tmp_path / "lesson.py"
    lesson.write_text('def run(out):\n    out.step("English only")\n    out.say("a", "中文 {x}")\n')
    calls = narration_calls(lesson)
    assert [(method, len(texts)) for _, method, texts in calls] == [("step", 1), ("say", 2)]


@pytest.mark.parametrize("name, module", catalog.LESSONS)
def test_every_lesson_has_its_summary_in_both_languages(name, module):
    lesson = importlib.import_module(module)
    assert lesson.SUMMARY and not CJK.search(lesson.SUMMARY)
    assert CJK.search(lesson.SUMMARY_ZH) and "\n" not in lesson.SUMMARY_ZH


@pytest.mark.parametrize(
    "requested, environ, expected",
    [
        (None, {}, "en"),
        ("zh", {}, "zh"),
        ("en", {"GEVENTSRV_LANG": "zh"}, "en"),  # the flag wins
        (None, {"GEVENTSRV_LANG": "zh_CN"}, "zh"),
        (None, {"LANG": "zh_CN.UTF-8"}, "zh"),
        (None, {"LANG": "zh_TW.UTF-8"}, "zh"),
        (None, {"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),  # LC_ALL first
        (None, {"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "C.UTF-8"}, "zh"),
        (None, {"LANG": "de_DE.UTF-8"}, "en"),
        (None, {"GEVENTSRV_LANG": "zh-Hans"}, "zh"),
    ],
)
def test_the_language_comes_from_the_flag_the_variable_or_the_locale(requested, environ, expected):
    assert choose(requested, environ) == expected


def test_a_language_the_tutorial_does_not_speak_is_named_in_the_error():
    with pytest.raises(UnknownLanguage, match="choose one of: en, zh"):
        normalize("fr")


def test_the_listing_is_in_chinese_with_the_flag_the_variable_and_the_locale():
    for args, env in (
        (["--lang", "zh"], clean_env()),
        ([], clean_env(GEVENTSRV_LANG="zh")),
        ([], clean_env(LANG="zh_CN.UTF-8")),
    ):
        result = run_tutorial(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("课程")
        for number, name, summary in catalog.summaries("zh"):
            assert f"  {number}. {name:<15} {summary}" in result.stdout
    english = run_tutorial(env=clean_env(LANG="en_US.UTF-8"))
    assert english.stdout.startswith("Lessons") and not CJK.search(english.stdout)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--lang", "fr"], {}, "argument --lang: "),
        ([], {"GEVENTSRV_LANG": "fr"}, "GEVENTSRV_LANG: "),
    ],
)
def test_an_unknown_language_is_one_line_naming_where_it_came_from_and_exit_2(args, env, named):
    result = run_tutorial(*args, env=clean_env(**env))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "en, zh" in result.stderr
    assert f"error: {named}no lessons in 'fr'" in result.stderr, result.stderr


@pytest.mark.slow
def test_all_lessons_run_in_chinese_in_order():
    result = run_tutorial("--all", "--lang", "zh", env=clean_env())
    assert result.returncode == 0, result.stderr
    titles = re.findall(r"^第 (\d) 课：", result.stdout, re.M)
    assert titles == [str(n) for n in range(1, len(catalog.LESSONS) + 1)]
    assert f"全部 {len(catalog.LESSONS)} 课运行完毕" in result.stdout
    assert result.stderr == ""


def test_the_chinese_page_lists_what_the_command_prints():
    page = (ROOT / "docs" / "tutorial.zh.md").read_text()
    match = re.search(r"<!-- tutorial-listing -->\n```console\n(.+?)```", page, re.S)
    assert match, "docs/tutorial.zh.md has no tutorial listing"
    shown = match.group(1).split("\n", 1)[1]  # drop the "$ command" line
    assert shown.strip() == run_tutorial("--lang", "zh", env=clean_env()).stdout.strip()
    for page in ("docs/tutorial.md", "README.md"):
        assert "tutorial.zh.md" in (ROOT / page).read_text(), f"{page} does not link it"


def require_chinese_font() -> None:
    """A font for Chinese, installed (Debian's fonts-wqy-microhei) when missing and possible."""
    from geventsrv.tutorial._timeline import cjk_font

    if cjk_font() is not None:
        return
    said = apt_install("fonts-wqy-microhei", "no font for Chinese is installed")
    if cjk_font() is None:
        pytest.skip(f"no font for Chinese: installing fonts-wqy-microhei failed: {said}")


@pytest.mark.parametrize("lesson", ["tracing", "scheduling"])
def test_plot_in_chinese_labels_the_picture_in_chinese(lesson, tmp_path):
    pytest.importorskip("matplotlib")
    require_chinese_font()
    picture = tmp_path / "timeline.png"
    result = run_tutorial(lesson, "--lang", "zh", "--plot", str(picture), env=clean_env())
    assert result.returncode == 0, result.stderr
    assert picture.stat().st_size > 10_000
    assert "时间线已写入" in result.stdout and "用英文" not in result.stdout
    assert "Glyph" not in result.stderr  # matplotlib warns of every character it cannot draw
