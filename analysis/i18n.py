"""Report texts in the reader's language (`reportLanguage`: "en", the default, or "ja").

Every text a report prints is written in English in the code and passed through `tr`. Each
module registers its own Japanese texts with `register_ja`, keyed by the exact English text, so
the table of a section lives beside the section. A text without an entry prints in English.
"""

from __future__ import annotations

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
