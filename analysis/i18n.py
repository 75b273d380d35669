"""Report texts in the reader's language (`reportLanguage`: "en", the default, or "ja").

Every text a report prints is written in English in the code and passed through `tr`. Each
module registers its own Japanese texts with `register_ja`, keyed by the exact English text, so
the table of a section lives beside the section. A text without an entry prints in English.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LANGUAGES = ("en", "ja")

_JA: dict[str, str] = {}


def register_ja(entries: Mapping[str, str]) -> None:
    """Add Japanese texts, keyed by the English text (str.format fields kept as they are)."""
    _JA.update(entries)


def tr(text: str, lang: str = "en") -> str:
    """`text` in `lang`; English when the language is "en" or the text has no entry."""
    if lang == "ja":
        return _JA.get(text, text)
    return text


_DURATION = re.compile(r"^(-?[\d.,]+) (seconds?|minutes?|hours?|days?)$")
_JA_UNITS = {"second": "秒", "minute": "分", "hour": "時間", "day": "日"}


def tr_duration(text: str, lang: str = "en") -> str:
    """A duration written by `analysis.formatting.hours_text` ("4.2 hours") in `lang`
    ("4.2 時間"); any other text is returned as it is."""
    if lang != "ja":
        return text
    found = _DURATION.match(text.strip())
    if found is None:
        return text
    return f"{found.group(1)} {_JA_UNITS[found.group(2).rstrip('s')]}"
