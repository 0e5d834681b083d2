"""``python -m geventsrv.tutorial [NAME | --all]``: list the lessons, or run them.

Never monkey-patches this process: lessons that need a patched process start
one of their own.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from geventsrv import cmdline
from geventsrv.tutorial._lang import UnknownLanguage
from geventsrv.tutorial._lang import choose as choose_language
from geventsrv.tutorial._narrate import Narrator, stopwatch
from geventsrv.tutorial.catalog import LESSONS, UnknownLesson, load, summaries

PROG = "python -m geventsrv.tutorial"
#: What --plot can write (matplotlib picks the format from the name).
PLOT_FORMATS = (".png", ".svg", ".pdf")


def listing(lang: str = "en") -> str:
    """The text shown when no lesson is named, in ``lang``."""
    heading = {
        "en": "Lessons (run one with its name or number, or all with --all):",
        "zh": "课程（用名称或编号运行其中一课，或用 --all 全部运行）：",
    }
    lines = [heading[lang], ""]
    for number, name, summary in summaries(lang):
        lines.append(f"  {number}. {name:<15} {summary}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cmdline.Parser(prog=PROG, description="Run the geventsrv tutorial.")
    parser.add_argument("lesson", nargs="?", help="a lesson's name or number")
    parser.add_argument("--all", action="store_true", help="run every lesson in order")
    parser.add_argument(
        "--lang",
        metavar="LANG",
        help="narrate in en or zh (default: $GEVENTSRV_LANG, else zh under a Chinese locale, "
        "else en)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="with tracing or scheduling: draw which greenlet ran when (needs matplotlib)",
    )
    args = parser.parse_args(argv)
    try:
        lang = choose_language(args.lang)
    except UnknownLanguage as exc:
        parser.error(f"{'argument ' if exc.source == '--lang' else ''}{exc.source}: {exc}")
    if args.all and args.lesson:
        parser.error("give a lesson or --all, not both")
    if not args.all and not args.lesson:
        print(listing(lang))
        return 0
    names = [name for name, _ in LESSONS] if args.all else [args.lesson]
    try:
        lessons = [load(name) for name in names]
    except UnknownLesson as exc:
        parser.error(str(exc))
    if args.plot is not None:
        if args.all or not hasattr(lessons[0][1], "draw"):
            drawn = ", ".join(name for name, module in LESSONS if _draws(module))
            parser.error(f"argument --plot: works with one of: {drawn}")
        if args.plot.suffix.lower() not in PLOT_FORMATS:
            formats = ", ".join(PLOT_FORMATS)
            parser.error(f"argument --plot: the file must end in {formats}, got {str(args.plot)!r}")
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("argument --plot: needs matplotlib: pip install matplotlib")
        folder = args.plot.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            # Said before the lesson runs, not after it.
            parser.error(
                f"argument --plot: cannot write {args.plot}: no folder {folder} to write to"
            )
    cmdline.quiet_ctrl_c_in_greenlets()
    narrator = Narrator(lang=lang)
    with stopwatch() as elapsed:
        for _, module in lessons:
            result = module.run(narrator)
    if args.plot is not None:
        from geventsrv.tutorial._timeline import cjk_font

        plot_lang = lang
        if lang == "zh" and cjk_font() is None:
            plot_lang = "en"
            narrator.say(
                "\nNo font for Chinese is installed, so the picture is labelled in English.",
                "\n没有安装能显示中文的字体（例如 Debian 的 fonts-wqy-microhei 或 "
                "fonts-noto-cjk），所以图中的文字用英文。",
            )
        try:
            path = lessons[0][1].draw(result, args.plot, plot_lang)
        except OSError as exc:
            print(f"{PROG}: error: cannot write {args.plot}: {exc.strerror}", file=sys.stderr)
            return 2
        narrator.say(f"\nThe timeline is in {path}.", f"\n时间线已写入 {path}。")
    if args.all:
        seconds = elapsed()
        narrator.say(
            f"\nAll {len(lessons)} lessons ran in {seconds:.1f} s.",
            f"\n全部 {len(lessons)} 课运行完毕，用时 {seconds:.1f} 秒。",
        )
    return 0


def _draws(module: str) -> bool:
    """Whether a lesson can draw its run (has ``draw``), without importing the others twice."""
    return hasattr(importlib.import_module(module), "draw")


if __name__ == "__main__":
    cmdline.run(main, PROG)
