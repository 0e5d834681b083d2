"""Which language the lessons speak: ``--lang``, else ``GEVENTSRV_LANG``, else the locale."""

from __future__ import annotations

import os
from collections.abc import Mapping

from geventsrv.tutorial._narrate import LANGUAGES

#: Locale variables, in the order the C library reads them for messages.
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


class UnknownLanguage(ValueError):
    """A language the tutorial does not speak; ``str()`` names the ones it does, and
    ``source`` where the bad value came from (``--lang`` or ``GEVENTSRV_LANG``)."""

    def __init__(self, message: str, source: str = "--lang") -> None:
        super().__init__(message)
        self.source = source


def normalize(value: str) -> str:
    """``zh``, ``zh_CN.UTF-8``, ``zh-Hans`` -> ``zh``; ``en_US`` -> ``en``; else UnknownLanguage."""
    code = value.strip().lower().replace("-", "_").split("_")[0].split(".")[0]
    if code not in LANGUAGES:
        raise UnknownLanguage(f"no lessons in {value!r}; choose one of: {', '.join(LANGUAGES)}")
    return code


def choose(requested: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The language to narrate in: what was asked for, else ``GEVENTSRV_LANG``, else
    Chinese when the locale is a Chinese one, else English."""
    for value, source in ((requested, "--lang"), (environ.get("GEVENTSRV_LANG"), "GEVENTSRV_LANG")):
        if value:
            try:
                return normalize(value)
            except UnknownLanguage as exc:
                raise UnknownLanguage(str(exc), source) from None
    for name in LOCALE_VARIABLES:
        value = environ.get(name)
        if value:  # the first one set decides, as for the C library
            return "zh" if value.lower().startswith("zh") else LANGUAGES[0]
    return LANGUAGES[0]
