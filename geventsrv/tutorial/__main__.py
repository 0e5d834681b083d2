"""``python -m geventsrv.tutorial [NAME | --all]``: list the lessons, or run them.

Never monkey-patches this process: lessons that need a patched process start
one of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from geventsrv import commands
from geventsrv.tutorial._narrate import Narrator, stopwatch
from geventsrv.tutorial.catalog import LESSONS, UnknownLesson, load, summaries

PROG = "python -m geventsrv.tutorial"


def listing() -> str:
    """The text shown when no lesson is named."""
    lines = ["Lessons (run one with its name or number, or all with --all):", ""]
    for number, name, summary in summaries():
        lines.append(f"  {number}. {name:<15} {summary}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = commands.Parser(prog=PROG, description="Run the geventsrv tutorial.")
    parser.add_argument("lesson", nargs="?", help="a lesson's name or number")
    parser.add_argument("--all", action="store_true", help="run every lesson in order")
    args = parser.parse_args(argv)
    if args.all and args.lesson:
        print(f"{PROG}: error: give a lesson or --all, not both", file=sys.stderr)
        return 2
    if not args.all and not args.lesson:
        print(listing())
        return 0
    names = [name for name, _ in LESSONS] if args.all else [args.lesson]
    try:
        lessons = [load(name) for name in names]
    except UnknownLesson as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    narrator = Narrator()
    with stopwatch() as elapsed:
        for _, module in lessons:
            module.run(narrator)
    if args.all:
        narrator.say(f"\nAll {len(lessons)} lessons ran in {elapsed():.1f} s.")
    return 0


if __name__ == "__main__":
    commands.run(main)
