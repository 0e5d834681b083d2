"""Who ran when: every greenlet switch recorded with its time, and drawn as a timeline.

:class:`SwitchRecorder` installs a ``greenlet.settrace`` callback for the
duration of a ``with`` block; :func:`running_spans` turns its switches into
the intervals each greenlet ran; :func:`draw` makes a PNG of them, one row
per greenlet (the hub included), a mark at every switch. Lessons use it for
``python -m geventsrv.tutorial LESSON --plot FILE.png``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import greenlet


@dataclass
class Timeline:
    """The switches of one recorded run: ``(seconds since start, event, origin, target)``."""

    title: str
    switches: list[tuple[float, str, str, str]] = field(default_factory=list)
    duration: float = 0.0
    title_zh: str = ""  # the title for a reader of Chinese


class SwitchRecorder:
    """``with SwitchRecorder("title") as timeline:`` records every switch into ``timeline``.

    Greenlets are named by their ``name`` attribute (gevent's greenlets have
    one), the hub ``hub`` and the greenlet that started recording ``main``.
    """

    def __init__(self, title: str, title_zh: str = "") -> None:
        self.timeline = Timeline(title, title_zh=title_zh)
        self._names: dict[Any, str] = {}
        self._previous: Any = None
        self._start = 0.0

    def name_of(self, glet: Any) -> str:
        if glet not in self._names:
            self._names[glet] = getattr(glet, "name", None) or f"greenlet-{len(self._names)}"
        return self._names[glet]

    def _trace(self, event: str, args: tuple[Any, Any]) -> None:
        origin, target = args
        when = time.perf_counter() - self._start
        self.timeline.switches.append((when, event, self.name_of(origin), self.name_of(target)))

    def __enter__(self) -> Timeline:
        import gevent

        self._names = {greenlet.getcurrent(): "main", gevent.get_hub(): "hub"}
        self._start = time.perf_counter()
        self._previous = greenlet.settrace(self._trace)
        return self.timeline

    def __exit__(self, *exc_info: object) -> None:
        greenlet.settrace(self._previous)
        self.timeline.duration = time.perf_counter() - self._start


def running_spans(timeline: Timeline) -> dict[str, list[tuple[float, float]]]:
    """``{greenlet: [(start, end), ...]}``: when each one ran. ``main`` runs until the
    first switch; each switch ends its origin's span and starts its target's."""
    spans: dict[str, list[tuple[float, float]]] = {"main": []}
    current, since = "main", 0.0
    for when, _, origin, target in timeline.switches:
        spans.setdefault(origin, [])
        spans.setdefault(target, [])
        if origin == current:
            spans[current].append((since, when))
        current, since = target, when
    spans.setdefault(current, []).append((since, timeline.duration))
    return {name: [(a, b) for a, b in runs if b > a] for name, runs in spans.items()}


def row_order(timeline: Timeline) -> list[str]:
    """Rows top to bottom: the hub, main, then greenlets in the order they first ran."""
    names = ["hub", "main"]
    for _, _, origin, target in timeline.switches:
        for name in (origin, target):
            if name not in names:
                names.append(name)
    return names


#: Fonts that carry Chinese, most wanted first (Debian: fonts-noto-cjk, fonts-wqy-microhei).
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
#: The words on a picture, per language.
LABELS = {
    "en": {
        "axis": "milliseconds",
        "switches": "{count} switches",
        "key": "dots: a switch into that greenlet; bars: how long it ran; lines: switches",
    },
    "zh": {
        "axis": "毫秒",
        "switches": "{count} 次切换",
        "key": "圆点：切换进该 greenlet；色条：它运行了多久；细线：切换",
    },
}


def cjk_font() -> str | None:
    """The name of an installed font that can draw Chinese, or None."""
    import subprocess

    from matplotlib import font_manager

    manager = font_manager.fontManager

    def known() -> str | None:
        installed = {font.name for font in manager.ttflist}
        return next((name for name in CJK_FONTS if name in installed), None)

    if (name := known()) is not None:
        return name
    # matplotlib lists the fonts it found when it built its cache: one installed
    # since is missing there. fontconfig knows where the Chinese ones are.
    try:
        found = subprocess.run(
            ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in found.splitlines():
        try:
            manager.addfont(line.split(":")[0].strip())
        except (OSError, RuntimeError, ValueError):
            continue
    return known()


def draw(timelines: Sequence[Timeline], path: Path, heading: str, lang: str = "en") -> Path:
    """One panel per timeline: a bar where each greenlet ran, a grey tick at each switch.

    In Chinese (``lang="zh"``) only when a font for it is installed
    (:func:`cjk_font`); callers check first and say so when it is not.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = LABELS[lang]
    if lang == "zh":
        font = cjk_font()
        if font is None:
            raise LookupError("no font for Chinese is installed")
        plt.rcParams["font.sans-serif"] = [font, *plt.rcParams["font.sans-serif"]]

    heights = [1.2 + 0.4 * len(row_order(timeline)) for timeline in timelines]
    fig, axes = plt.subplots(
        len(timelines),
        1,
        figsize=(10, 0.9 + sum(heights)),
        height_ratios=heights,
        squeeze=False,
        constrained_layout=True,
    )
    colours = {"hub": "#7f7f7f", "main": "#1f77b4"}
    palette = ["#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    for ax, timeline in zip(axes[:, 0], timelines, strict=True):
        rows = row_order(timeline)
        spans = running_spans(timeline)
        scale = 1000.0  # milliseconds
        for when, _, origin, target in timeline.switches:
            ax.plot(
                [when * scale] * 2,
                [rows.index(origin), rows.index(target)],
                color="black",
                linewidth=0.4,
                alpha=0.35,
                zorder=1,
            )
        for index, name in enumerate(rows):
            colour = colours.get(name) or palette[(index - 2) % len(palette)]
            bars = [(start * scale, (end - start) * scale) for start, end in spans.get(name, [])]
            ax.broken_barh(bars, (index - 0.3, 0.6), facecolors=colour, alpha=0.55, zorder=2)
            # Most runs last microseconds, too short for a bar: a dot marks each
            # switch into this greenlet, so every run shows.
            resumed = [when * scale for when, _, _, target in timeline.switches if target == name]
            ax.scatter(resumed, [index] * len(resumed), s=14, color=colour, zorder=3)
        ax.set_yticks(range(len(rows)), rows)
        ax.invert_yaxis()
        ax.set_xlim(0, timeline.duration * scale)
        ax.set_xlabel(words["axis"])
        title = timeline.title_zh if lang == "zh" and timeline.title_zh else timeline.title
        switches = words["switches"].format(count=len(timeline.switches))
        ax.set_title(f"{title} ({switches})", fontsize=10)
    fig.suptitle(heading + "\n" + words["key"])
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
