"""Importing this module loads the report fonts (a preload module of the runner's forkserver).

`deployments.warmstart` imports it once in the forkserver, so every flow run forked from there
starts with the fonts already parsed: reportlab's TrueType fonts registered (DejaVu Sans and the
CJK font, ~6 MB to parse) and matplotlib's FreeType faces for both in its font cache. Each run
otherwise parsed them afresh in its Report Generation phase: 7 % of a quick analysis's flow-run
CPU (py-spy, bench/notes/load.md). Nothing here starts a thread or opens a connection (a fork
copies neither)."""

from __future__ import annotations

from analysis.charts import warm_up
from analysis.report_pdf import register_fonts


def load_fonts() -> None:
    register_fonts()
    warm_up()


load_fonts()
