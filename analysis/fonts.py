"""Fonts for the reports: Latin text in DejaVu Sans, CJK text in a TrueType CJK font.

DejaVu Sans ships with matplotlib and covers Latin, Greek, Cyrillic and most symbols but no
Japanese, Chinese or Korean. The CJK font is found on the machine by path: Debian's
`fonts-ipaexfont-gothic` (installed by `make system-deps`) first, then other Japanese TrueType
fonts. reportlab embeds only TrueType outlines, so CFF-based fonts (`OTTO`, such as Noto Sans CJK's
.otf/.ttc) are passed over. When none is found the reports still print (CJK characters as empty
boxes) and say so (`missing_font_note`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import matplotlib

# the resolution the report images (charts, process map) are drawn at: a PDF never enlarges them
IMAGE_DPI = 110

# first existing TrueType file wins (Debian package in the comment)
CJK_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",  # fonts-ipaexfont-gothic
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",  # Debian's alternative (any gothic)
    "/usr/share/fonts/opentype/ipafont-gothic/ipagp.ttf",  # fonts-ipafont-gothic
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/takao-gothic/TakaoPGothic.ttf",  # fonts-takao-gothic
    "/usr/share/fonts/truetype/vlgothic/VL-PGothic-Regular.ttf",  # fonts-vlgothic
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
)
CJK_PACKAGE = "fonts-ipaexfont-gothic"
# the font family the process map's DOT source names after DejaVu Sans (fontconfig finds it)
CJK_FAMILY_FOR_MAP = "IPAexGothic"

# TrueType outlines: version 1.0 or Apple's 'true'; 'OTTO' (CFF) and 'ttcf' are not embeddable
_TRUETYPE_MAGIC = (b"\x00\x01\x00\x00", b"true")


def dejavu_path(bold: bool = False) -> Path:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


def cjk_font_path(candidates: Iterable[str] | None = None) -> Path | None:
    """The first candidate that exists and has TrueType outlines, or None."""
    for candidate in CJK_FONT_CANDIDATES if candidates is None else candidates:
        path = Path(candidate)
        try:
            with path.open("rb") as fh:
                magic = fh.read(4)
        except OSError:
            continue
        if magic in _TRUETYPE_MAGIC:
            return path.resolve()
    return None


@functools.cache
def codepoints(path: Path) -> frozenset[int]:
    """The characters a TrueType font has glyphs for (FreeType's Unicode cmap, read by
    matplotlib's FT2Font: 1 ms where fontTools' import and parse took ~0.1-0.3 s)."""
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(str(path)).get_charmap())


def needs_cjk(*texts: str) -> bool:
    """Whether any text has a character that DejaVu Sans cannot draw (CJK and the like)."""
    latin = codepoints(dejavu_path())
    return any(ord(ch) not in latin for t in texts for ch in t if ord(ch) > 0xFF)


@functools.cache
def matplotlib_family(path: Path) -> str:
    """Add a font file to matplotlib's font manager (its cache may predate the font's
    installation) and return its family name."""
    from dataclasses import replace

    from matplotlib import font_manager

    manager = font_manager.fontManager
    name = str(font_manager.FontProperties(fname=str(path)).get_name())
    regular = font_manager.ttfFontProperty(font_manager.get_font(str(path)))
    # the same outlines for bold text (titles), instead of a "weight bold not found" log line
    manager.ttflist.append(replace(regular, weight=700))
    manager.addfont(str(path))  # adds the regular entry and clears the lookup cache
    return name


def missing_font_note() -> str:
    """What the reader is told when no CJK font is installed (English: see `tr`)."""
    return (
        "No CJK font was found on the machine (looked for Debian's "
        f"{CJK_PACKAGE} and other Japanese TrueType fonts): Japanese, Chinese and Korean "
        "characters print as empty boxes and the report texts are in English."
    )
